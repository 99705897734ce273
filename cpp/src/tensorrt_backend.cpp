// TensorRT backend: runs the serialized engine named by manifest.json (artefacts.pipeline_engine.file),
// built by the export issue from the same fixed-resolution pipeline (input: 1 x H x W x 3 uint8 RGB;
// outputs: labels 1 x H x W int64 or int32, probs 1 x K x H x W fp32).
// Before deserializing, the engine's key record <engine>.json is checked against this machine (GPU, SM,
// SM count, TensorRT, CUDA, L4T, precision, shape profile, ONNX and plugin hashes) with the Python backend's
// rules and messages (engine_key.cpp), and the export's plugin libraries are loaded through the runtime's
// plugin registry. Inference runs on the backend's own CUDA stream.
// Compiled only when CMake finds TensorRT (RADSEG_WITH_TENSORRT); otherwise make_tensorrt_backend()
// reports RADSEG_ERR_BACKEND_UNAVAILABLE.
#include "radseg_edge/segmenter.hpp"

#ifdef RADSEG_WITH_TENSORRT

#include <NvInfer.h>
#include <NvInferVersion.h>
#include <cuda_runtime_api.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <vector>

#include "engine_key.hpp"
#include "json.hpp"

namespace radseg {
namespace {

class Logger final : public nvinfer1::ILogger {
 public:
  void log(Severity severity, const char* msg) noexcept override {
    if (severity <= Severity::kWARNING) std::cerr << "[TensorRT] " << msg << "\n";
  }
};

void cuda_check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw Error(Status::Runtime, std::string(what) + ": " + cudaGetErrorString(err));
}

// This machine as an engine key describes it (what radseg_edge.export.cache.describe_device records).
DeviceDescription describe_device(int device) {
  cudaDeviceProp p{};
  cuda_check(cudaGetDeviceProperties(&p, device), "cudaGetDeviceProperties");
  int runtime = 0;
  cuda_check(cudaRuntimeGetVersion(&runtime), "cudaRuntimeGetVersion");
  DeviceDescription d;
  d.gpu_name = p.name;
  d.sm = std::to_string(p.major) + "." + std::to_string(p.minor);
  d.sm_count = p.multiProcessorCount;
  d.tensorrt = std::to_string(NV_TENSORRT_MAJOR) + "." + std::to_string(NV_TENSORRT_MINOR) + "." +
               std::to_string(NV_TENSORRT_PATCH) + "." + std::to_string(NV_TENSORRT_BUILD);
  d.cuda = std::to_string(runtime / 1000) + "." + std::to_string((runtime % 1000) / 10);
  d.l4t = read_l4t_release();
  return d;
}

// The key the manifest's pipeline_engine record promises (files resolved in the manifest's folder).
ExpectedKey expected_key(const Manifest& m, const DeviceDescription& device, std::vector<std::string>* plugins) {
  std::ifstream f(m.path);
  std::stringstream text;
  text << f.rdbuf();
  const json::Value root = json::parse(text.str());
  const json::Value* art = root.get({"artefacts", "pipeline_engine"});
  const std::filesystem::path folder = std::filesystem::path(m.path).parent_path();
  auto field = [&](const char* name, const char* fallback) -> std::string {
    const json::Value* v = art ? art->find(name) : nullptr;
    if (v && v->type == json::Value::Type::String) return v->string;
    if (fallback) return fallback;
    throw Error(Status::Manifest, m.path + ": artefacts.pipeline_engine." + name + " is missing; rebuild the engine");
  };
  ExpectedKey key;
  key.device = device;
  key.precision = field("precision", nullptr);
  key.shape_profile = field("shape_profile", "static");
  key.onnx_path = (folder / field("onnx", nullptr)).string();
  const json::Value* list = art ? art->find("plugins") : nullptr;
  if (list && list->type == json::Value::Type::Array) {
    for (const auto& p : list->array) {
      const json::Value* file = p.type == json::Value::Type::Object ? p.find("file") : &p;
      if (file && file->type == json::Value::Type::String) plugins->push_back((folder / file->string).string());
    }
  }
  key.plugin_paths = *plugins;
  return key;
}

int64_t volume(const nvinfer1::Dims& d) {
  int64_t v = 1;
  for (int i = 0; i < d.nbDims; ++i) v *= d.d[i];
  return v;
}

class TensorRTBackend final : public InferenceBackend {
 public:
  TensorRTBackend(const Manifest& m, const Options& options) : manifest_(m), want_probs_(options.want_probs) {
    std::error_code ec;
    if (m.engine_path.empty()) {
      throw Error(Status::Manifest, m.path + ": no artefacts.pipeline_engine for the TensorRT backend "
                                        "(radseg-edge export --format engine-fp16 --imgsz HxW)");
    }
    if (!std::filesystem::is_regular_file(m.engine_path, ec)) {
      throw Error(Status::PackageNotFound, "TensorRT engine '" + m.engine_path + "' does not exist");
    }
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
      throw Error(Status::BackendUnavailable, "the TensorRT backend needs a CUDA device; none was found");
    }
    const int device = options.device < 0 ? 0 : options.device;
    cuda_check(cudaSetDevice(device), "cudaSetDevice");

    std::vector<std::string> plugins;
    verify_engine(m.engine_path, expected_key(m, describe_device(device), &plugins));
    std::ifstream f(m.engine_path, std::ios::binary);
    std::vector<char> blob((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    runtime_.reset(nvinfer1::createInferRuntime(logger_));
    if (!runtime_) throw Error(Status::Runtime, "TensorRT could not create a runtime");
    for (const auto& lib : plugins) {  // registers the plugin creators (IPluginV3) before deserializing
      if (runtime_->getPluginRegistry().loadLibrary(lib.c_str()) == nullptr) {
        throw Error(Status::PackageCorrupt, "TensorRT could not load the plugin library '" + lib + "'");
      }
    }
    engine_.reset(runtime_->deserializeCudaEngine(blob.data(), blob.size()));
    if (!engine_) {
      throw Error(Status::PackageCorrupt, "TensorRT could not deserialize '" + m.engine_path +
                                              "' (corrupt, or built for another GPU / TensorRT version): "
                                              "rebuild it with `radseg-edge export --format trt` on this machine");
    }
    context_.reset(engine_->createExecutionContext());
    if (!context_) throw Error(Status::Runtime, "TensorRT could not create an execution context");
    cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");

    const int64_t H = m.height, W = m.width, K = m.num_classes;
    for (int i = 0; i < engine_->getNbIOTensors(); ++i) {
      const char* name = engine_->getIOTensorName(i);
      const bool is_input = engine_->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT;
      const nvinfer1::Dims dims = engine_->getTensorShape(name);
      const nvinfer1::DataType type = engine_->getTensorDataType(name);
      if (is_input) {
        if (type != nvinfer1::DataType::kUINT8 || volume(dims) != H * W * 3) {
          throw Error(Status::Manifest, "engine input '" + std::string(name) + "' is not a 1 x " + std::to_string(H) +
                                            " x " + std::to_string(W) + " x 3 uint8 frame: does " + m.path +
                                            " belong to this engine?");
        }
        input_name_ = name;
      } else if (volume(dims) == H * W && (type == nvinfer1::DataType::kINT64 || type == nvinfer1::DataType::kINT32)) {
        labels_name_ = name;
        labels_are_int64_ = type == nvinfer1::DataType::kINT64;
      } else if (volume(dims) == K * H * W && type == nvinfer1::DataType::kFLOAT) {
        probs_name_ = name;
      }
    }
    if (input_name_.empty() || labels_name_.empty() || probs_name_.empty()) {
      throw Error(Status::Manifest, "engine '" + m.engine_path + "' lacks a uint8 frame input, a " + std::to_string(H) +
                                        "x" + std::to_string(W) + " label output or a " + std::to_string(K) +
                                        "-class probability output");
    }
    const size_t n = static_cast<size_t>(H * W);
    cuda_check(cudaMallocHost(&input_host_, n * 3), "cudaMallocHost");
    cuda_check(cudaMalloc(&input_device_, n * 3), "cudaMalloc");
    cuda_check(cudaMalloc(&labels_device_, n * (labels_are_int64_ ? 8 : 4)), "cudaMalloc");
    cuda_check(cudaMalloc(&probs_device_, n * K * 4), "cudaMalloc");
    cuda_check(cudaMallocHost(&labels_staging_, n * (labels_are_int64_ ? 8 : 4)), "cudaMallocHost");
    labels_.resize(n);
    if (want_probs_) cuda_check(cudaMallocHost(&probs_host_, n * K * 4), "cudaMallocHost");
    context_->setTensorAddress(input_name_.c_str(), input_device_);
    context_->setTensorAddress(labels_name_.c_str(), labels_device_);
    context_->setTensorAddress(probs_name_.c_str(), probs_device_);
  }

  ~TensorRTBackend() override {
    context_.reset();
    engine_.reset();
    runtime_.reset();
    if (stream_) cudaStreamDestroy(stream_);
    cudaFreeHost(input_host_);
    cudaFree(input_device_);
    cudaFree(labels_device_);
    cudaFree(probs_device_);
    cudaFreeHost(labels_staging_);
    cudaFreeHost(probs_host_);
  }

  const char* name() const override { return "tensorrt"; }
  std::uint8_t* input_buffer() override { return static_cast<std::uint8_t*>(input_host_); }
  const std::int32_t* labels() const override { return labels_.data(); }
  const float* probs() const override { return want_probs_ ? static_cast<const float*>(probs_host_) : nullptr; }

  void infer() override {
    const size_t n = static_cast<size_t>(manifest_.height) * manifest_.width;
    cuda_check(cudaMemcpyAsync(input_device_, input_host_, n * 3, cudaMemcpyHostToDevice, stream_), "upload");
    if (!context_->enqueueV3(stream_)) throw Error(Status::Runtime, "TensorRT enqueueV3 failed");
    cuda_check(cudaStreamSynchronize(stream_), "TensorRT inference");
  }

  void fetch() override {
    const size_t n = static_cast<size_t>(manifest_.height) * manifest_.width;
    const size_t label_bytes = n * (labels_are_int64_ ? 8 : 4);
    cuda_check(cudaMemcpyAsync(labels_staging_, labels_device_, label_bytes, cudaMemcpyDeviceToHost, stream_),
               "download labels");
    if (want_probs_) {
      cuda_check(cudaMemcpyAsync(probs_host_, probs_device_, n * manifest_.num_classes * 4, cudaMemcpyDeviceToHost,
                                 stream_),
                 "download probabilities");
    }
    cuda_check(cudaStreamSynchronize(stream_), "download");
    if (labels_are_int64_) {
      const auto* src = static_cast<const int64_t*>(labels_staging_);
      for (size_t i = 0; i < n; ++i) labels_[i] = static_cast<std::int32_t>(src[i]);
    } else {
      std::memcpy(labels_.data(), labels_staging_, n * 4);
    }
  }

 private:
  template <typename T>
  struct Deleter {
    void operator()(T* p) const { delete p; }
  };

  Manifest manifest_;
  bool want_probs_;
  Logger logger_;
  std::unique_ptr<nvinfer1::IRuntime, Deleter<nvinfer1::IRuntime>> runtime_;
  std::unique_ptr<nvinfer1::ICudaEngine, Deleter<nvinfer1::ICudaEngine>> engine_;
  std::unique_ptr<nvinfer1::IExecutionContext, Deleter<nvinfer1::IExecutionContext>> context_;
  cudaStream_t stream_ = nullptr;
  std::string input_name_, labels_name_, probs_name_;
  bool labels_are_int64_ = true;
  void* input_host_ = nullptr;
  void* input_device_ = nullptr;
  void* labels_device_ = nullptr;
  void* probs_device_ = nullptr;
  void* labels_staging_ = nullptr;
  void* probs_host_ = nullptr;
  std::vector<std::int32_t> labels_;
};

}  // namespace

bool tensorrt_compiled_in() { return true; }

std::unique_ptr<InferenceBackend> make_tensorrt_backend(const Manifest& manifest, const Options& options) {
  return std::make_unique<TensorRTBackend>(manifest, options);
}

}  // namespace radseg

#else  // !RADSEG_WITH_TENSORRT

namespace radseg {

bool tensorrt_compiled_in() { return false; }

std::unique_ptr<InferenceBackend> make_tensorrt_backend(const Manifest&, const Options&) {
  throw Error(Status::BackendUnavailable,
              "this build of the radseg-edge runtime has no TensorRT backend: rebuild with TensorRT installed "
              "(CMake finds NvInfer.h and libnvinfer; set TensorRT_ROOT) or use the AOTInductor package");
}

}  // namespace radseg

#endif
