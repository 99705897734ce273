// radseg::Segmenter - the C++ class behind radseg_edge.h.
//
// Loads an exported model (an AOTInductor .pt2 package or a TensorRT engine, described by the
// export's manifest.json), takes an RGB or BGR uint8 frame in host memory and returns the label map
// (height x width int32) and optionally the per-class probabilities (K x height x width fp32), with
// per-stage timing. Errors are thrown as radseg::Error (status + message); the C API turns them into
// status codes. Buffers are allocated once, at construction, and reused for every frame.
//
//   radseg::Segmenter seg("export_dir");
//   radseg::SegmentationView out = seg.run({pixels, width, height, width * 3, radseg::PixelFormat::BGR8});
//   out.labels[y * out.width + x];
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace radseg {

// Same values as radseg_status in radseg_edge.h.
enum class Status : int {
  Ok = 0,
  InvalidArgument = 1,
  PackageNotFound = 2,
  PackageCorrupt = 3,
  Manifest = 4,
  SizeMismatch = 5,
  BadStride = 6,
  BackendUnavailable = 7,
  Runtime = 8,
  Internal = 9,
};

class Error : public std::runtime_error {
 public:
  Error(Status status, const std::string& message) : std::runtime_error(message), status_(status) {}
  Status status() const noexcept { return status_; }

 private:
  Status status_;
};

enum class PixelFormat : int { RGB8 = 0, BGR8 = 1 };
enum class BackendKind : int { Auto = 0, AOTI = 1, TensorRT = 2 };

struct Frame {
  const std::uint8_t* data = nullptr;  // row 0, pixel 0
  int width = 0;
  int height = 0;
  std::int64_t stride_bytes = 0;       // distance between rows, >= width * 3
  PixelFormat format = PixelFormat::RGB8;
};

// Wall time of the stages of one frame, milliseconds.
struct StageTiming {
  double preprocess_ms = 0.0;   // repack strided RGB/BGR rows into the model's packed RGB input
  double inference_ms = 0.0;    // the compiled model (on a GPU: including the input upload)
  double postprocess_ms = 0.0;  // labels int64 -> int32 and probabilities into the result buffers
  double total_ms = 0.0;
};

// What manifest.json says about the exported model.
struct Manifest {
  std::string path;           // manifest.json
  std::string package_path;   // AOTInductor .pt2 (manifest: artefacts.aoti.file, relative to its folder)
  std::string engine_path;    // TensorRT engine of the whole pipeline (artefacts.pipeline_engine.file), or empty
  int height = 0;             // input frame size the model was compiled for
  int width = 0;
  int num_classes = 0;
  std::vector<std::string> classes;
  std::string device = "cpu";  // artefacts.aoti.device: "cpu" or "cuda" (what the package was compiled for)

  // Reads `path`: an export directory (its manifest.json), a manifest.json, or a .pt2 package with
  // manifest.json beside it. Throws Error(PackageNotFound | Manifest).
  static Manifest load(const std::string& path);
};

struct Options {
  BackendKind backend = BackendKind::Auto;
  int device = -1;        // -1: the manifest's device; >= 0: that CUDA device
  bool want_probs = true; // copy per-class probabilities out (K x H x W floats per frame)
  int num_threads = 0;    // CPU intra-op threads, 0 = libtorch default
};

// Output of one frame; the pointers stay valid until the next run() or the Segmenter's destruction.
struct SegmentationView {
  const std::int32_t* labels = nullptr;  // height x width, row-major; -1 = below prediction threshold
  const float* probs = nullptr;          // num_classes x height x width, nullptr if want_probs is false
  int width = 0;
  int height = 0;
  int num_classes = 0;
  StageTiming timing;
};

// One way of running the exported model. Owns its host input/output buffers.
class InferenceBackend {
 public:
  virtual ~InferenceBackend() = default;
  virtual const char* name() const = 0;
  // Packed 1 x H x W x 3 RGB uint8 input, written by the Segmenter before infer().
  virtual std::uint8_t* input_buffer() = 0;
  // Runs the model on input_buffer(); throws Error on failure.
  virtual void infer() = 0;
  // Copies the last infer()'s outputs to the host buffers labels()/probs().
  virtual void fetch() = 0;
  virtual const std::int32_t* labels() const = 0;
  virtual const float* probs() const = 0;  // nullptr if probabilities were not requested
};

class Segmenter {
 public:
  // Loads the model, allocates all buffers and runs one warm-up frame. Throws Error.
  explicit Segmenter(const std::string& path, const Options& options = Options());
  ~Segmenter();
  Segmenter(const Segmenter&) = delete;
  Segmenter& operator=(const Segmenter&) = delete;

  // Segments one frame. Throws Error(InvalidArgument | SizeMismatch | BadStride | Runtime).
  SegmentationView run(const Frame& frame);

  // Throws Error if `frame` cannot be given to this model (null data, size, stride, format).
  void check_frame(const Frame& frame) const;

  const Manifest& manifest() const { return manifest_; }
  const char* backend_name() const;

 private:
  Manifest manifest_;
  Options options_;
  std::unique_ptr<InferenceBackend> backend_;
};

// Backends (defined in their own translation units).
std::unique_ptr<InferenceBackend> make_aoti_backend(const Manifest& manifest, const Options& options);
std::unique_ptr<InferenceBackend> make_tensorrt_backend(const Manifest& manifest, const Options& options);
bool tensorrt_compiled_in();

}  // namespace radseg
