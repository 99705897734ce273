#include "radseg_edge/segmenter.hpp"

#include <chrono>
#include <cstring>

namespace radseg {
namespace {

using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// Copies `frame` (strided rows, RGB or BGR) into a packed H x W x 3 RGB buffer.
void pack_rgb(const Frame& frame, std::uint8_t* dst) {
  const size_t row_bytes = static_cast<size_t>(frame.width) * 3;
  for (int y = 0; y < frame.height; ++y) {
    const std::uint8_t* src = frame.data + static_cast<std::int64_t>(y) * frame.stride_bytes;
    std::uint8_t* out = dst + static_cast<size_t>(y) * row_bytes;
    if (frame.format == PixelFormat::RGB8) {
      std::memcpy(out, src, row_bytes);
    } else {
      for (size_t i = 0; i < row_bytes; i += 3) {
        out[i] = src[i + 2];
        out[i + 1] = src[i + 1];
        out[i + 2] = src[i];
      }
    }
  }
}

}  // namespace

Segmenter::Segmenter(const std::string& path, const Options& options)
    : manifest_(Manifest::load(path)), options_(options) {
  BackendKind kind = options.backend;
  if (kind == BackendKind::Auto) {
    kind = (!manifest_.engine_path.empty() && tensorrt_compiled_in()) || manifest_.package_path.empty()
               ? BackendKind::TensorRT
               : BackendKind::AOTI;
  }
  if (kind == BackendKind::TensorRT) {
    backend_ = make_tensorrt_backend(manifest_, options_);
  } else if (kind == BackendKind::AOTI) {
    backend_ = make_aoti_backend(manifest_, options_);
  } else {
    throw Error(Status::InvalidArgument, "unknown backend " + std::to_string(static_cast<int>(kind)));
  }
  // Warm-up: one mid-grey frame, so that lazy initialisation and first-run allocations happen here
  // and a package that cannot run is reported at load time rather than on the first camera frame.
  std::memset(backend_->input_buffer(), 128, static_cast<size_t>(manifest_.height) * manifest_.width * 3);
  backend_->infer();
  backend_->fetch();
}

Segmenter::~Segmenter() = default;

const char* Segmenter::backend_name() const { return backend_->name(); }

void Segmenter::check_frame(const Frame& frame) const {
  if (frame.data == nullptr) throw Error(Status::InvalidArgument, "frame.data is NULL");
  if (frame.format != PixelFormat::RGB8 && frame.format != PixelFormat::BGR8) {
    throw Error(Status::InvalidArgument, "frame.format must be RGB8 (0) or BGR8 (1); found " +
                                             std::to_string(static_cast<int>(frame.format)));
  }
  if (frame.width != manifest_.width || frame.height != manifest_.height) {
    throw Error(Status::SizeMismatch,
                "frame is " + std::to_string(frame.width) + "x" + std::to_string(frame.height) +
                    " (width x height) but the model was compiled for " + std::to_string(manifest_.width) + "x" +
                    std::to_string(manifest_.height) + ": resize the frame or export a package for this size");
  }
  const std::int64_t row_bytes = static_cast<std::int64_t>(frame.width) * 3;
  if (frame.stride_bytes < row_bytes) {
    throw Error(Status::BadStride, "frame.stride_bytes is " + std::to_string(frame.stride_bytes) +
                                       " but a row of " + std::to_string(frame.width) +
                                       " RGB/BGR pixels needs at least " + std::to_string(row_bytes) + " bytes");
  }
}

SegmentationView Segmenter::run(const Frame& frame) {
  check_frame(frame);
  SegmentationView out;
  const auto t0 = Clock::now();
  pack_rgb(frame, backend_->input_buffer());
  const auto t1 = Clock::now();
  backend_->infer();
  const auto t2 = Clock::now();
  backend_->fetch();
  const auto t3 = Clock::now();
  out.labels = backend_->labels();
  out.probs = options_.want_probs ? backend_->probs() : nullptr;
  out.width = manifest_.width;
  out.height = manifest_.height;
  out.num_classes = manifest_.num_classes;
  out.timing.preprocess_ms = ms_between(t0, t1);
  out.timing.inference_ms = ms_between(t1, t2);
  out.timing.postprocess_ms = ms_between(t2, t3);
  out.timing.total_ms = ms_between(t0, t3);
  return out;
}

}  // namespace radseg
