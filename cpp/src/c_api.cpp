// C API over radseg::Segmenter: every exception is caught here and becomes a status code plus a
// thread-local message (radseg_last_error()).
#include "radseg_edge.h"

#include <new>
#include <string>

#include "radseg_edge/segmenter.hpp"

struct radseg_runtime {
  std::unique_ptr<radseg::Segmenter> segmenter;
};

namespace {

thread_local std::string g_last_error;

radseg_status fail(radseg_status status, const std::string& message) {
  try {
    g_last_error = message;
  } catch (...) {  // out of memory while storing the message: keep the status
  }
  return status;
}

// Runs `body`, turning any exception into a status code.
template <typename Body>
radseg_status guarded(Body&& body) {
  try {
    body();
    g_last_error.clear();
    return RADSEG_OK;
  } catch (const radseg::Error& e) {
    return fail(static_cast<radseg_status>(e.status()), e.what());
  } catch (const std::bad_alloc&) {
    return fail(RADSEG_ERR_INTERNAL, "out of memory");
  } catch (const std::exception& e) {
    return fail(RADSEG_ERR_INTERNAL, std::string("unexpected error: ") + e.what());
  } catch (...) {
    return fail(RADSEG_ERR_INTERNAL, "unexpected error of unknown type");
  }
}

}  // namespace

extern "C" {

void radseg_options_init(radseg_options* options) {
  if (options == nullptr) return;
  options->backend = RADSEG_BACKEND_AUTO;
  options->device = -1;
  options->want_probs = 1;
  options->num_threads = 0;
}

radseg_status radseg_create(const char* path, const radseg_options* options, radseg_runtime** out) {
  if (out == nullptr) return fail(RADSEG_ERR_INVALID_ARGUMENT, "radseg_create: out is NULL");
  *out = nullptr;
  if (path == nullptr) return fail(RADSEG_ERR_INVALID_ARGUMENT, "radseg_create: path is NULL");
  radseg_options defaults;
  radseg_options_init(&defaults);
  const radseg_options& o = options ? *options : defaults;
  if (o.backend < RADSEG_BACKEND_AUTO || o.backend > RADSEG_BACKEND_TENSORRT) {
    return fail(RADSEG_ERR_INVALID_ARGUMENT, "radseg_create: options.backend must be AUTO (0), AOTI (1) or TENSORRT (2)");
  }
  return guarded([&] {
    radseg::Options cpp;
    cpp.backend = static_cast<radseg::BackendKind>(o.backend);
    cpp.device = o.device;
    cpp.want_probs = o.want_probs != 0;
    cpp.num_threads = o.num_threads;
    auto rt = std::make_unique<radseg_runtime>();
    rt->segmenter = std::make_unique<radseg::Segmenter>(path, cpp);
    *out = rt.release();
  });
}

radseg_status radseg_run(radseg_runtime* rt, const radseg_frame* frame, radseg_result* result) {
  if (rt == nullptr || frame == nullptr || result == nullptr) {
    return fail(RADSEG_ERR_INVALID_ARGUMENT, std::string("radseg_run: ") +
                                                 (rt == nullptr ? "rt" : frame == nullptr ? "frame" : "result") +
                                                 " is NULL");
  }
  return guarded([&] {
    radseg::Frame f;
    f.data = frame->data;
    f.width = frame->width;
    f.height = frame->height;
    f.stride_bytes = frame->stride_bytes;
    f.format = static_cast<radseg::PixelFormat>(frame->format);
    const radseg::SegmentationView v = rt->segmenter->run(f);
    result->labels = v.labels;
    result->probs = v.probs;
    result->width = v.width;
    result->height = v.height;
    result->num_classes = v.num_classes;
    result->timing.preprocess_ms = v.timing.preprocess_ms;
    result->timing.inference_ms = v.timing.inference_ms;
    result->timing.postprocess_ms = v.timing.postprocess_ms;
    result->timing.total_ms = v.timing.total_ms;
  });
}

void radseg_destroy(radseg_runtime* rt) {
  try {
    delete rt;
  } catch (...) {  // destructors should not throw; never let it cross the C boundary
  }
}

radseg_status radseg_input_size(const radseg_runtime* rt, int32_t* width, int32_t* height) {
  if (rt == nullptr || width == nullptr || height == nullptr) {
    return fail(RADSEG_ERR_INVALID_ARGUMENT, "radseg_input_size: NULL argument");
  }
  *width = rt->segmenter->manifest().width;
  *height = rt->segmenter->manifest().height;
  return RADSEG_OK;
}

int32_t radseg_num_classes(const radseg_runtime* rt) {
  return rt == nullptr ? -1 : rt->segmenter->manifest().num_classes;
}

const char* radseg_class_name(const radseg_runtime* rt, int32_t i) {
  if (rt == nullptr) return nullptr;
  const auto& classes = rt->segmenter->manifest().classes;
  if (i < 0 || static_cast<size_t>(i) >= classes.size()) return nullptr;
  return classes[static_cast<size_t>(i)].c_str();
}

const char* radseg_backend_name(const radseg_runtime* rt) {
  return rt == nullptr ? "" : rt->segmenter->backend_name();
}

const char* radseg_status_string(radseg_status status) {
  switch (status) {
    case RADSEG_OK: return "RADSEG_OK";
    case RADSEG_ERR_INVALID_ARGUMENT: return "RADSEG_ERR_INVALID_ARGUMENT";
    case RADSEG_ERR_PACKAGE_NOT_FOUND: return "RADSEG_ERR_PACKAGE_NOT_FOUND";
    case RADSEG_ERR_PACKAGE_CORRUPT: return "RADSEG_ERR_PACKAGE_CORRUPT";
    case RADSEG_ERR_MANIFEST: return "RADSEG_ERR_MANIFEST";
    case RADSEG_ERR_SIZE_MISMATCH: return "RADSEG_ERR_SIZE_MISMATCH";
    case RADSEG_ERR_BAD_STRIDE: return "RADSEG_ERR_BAD_STRIDE";
    case RADSEG_ERR_BACKEND_UNAVAILABLE: return "RADSEG_ERR_BACKEND_UNAVAILABLE";
    case RADSEG_ERR_RUNTIME: return "RADSEG_ERR_RUNTIME";
    case RADSEG_ERR_INTERNAL: return "RADSEG_ERR_INTERNAL";
  }
  return "RADSEG_ERR_UNKNOWN";
}

const char* radseg_last_error(void) { return g_last_error.c_str(); }

int radseg_api_version(void) { return RADSEG_EDGE_API_VERSION; }

}  // extern "C"
