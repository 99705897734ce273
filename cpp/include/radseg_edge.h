/*
 * radseg_edge.h - C API of the radseg-edge runtime (RADSeg open-vocabulary segmentation).
 *
 * One opaque handle per loaded model. Every function returns a status code; no C++ exception
 * crosses this header. After radseg_create() (which runs one warm-up frame) radseg_run() reuses
 * buffers allocated at creation: the label map and probabilities it returns point into memory
 * owned by the handle, valid until the next radseg_run() or radseg_destroy() on that handle.
 *
 *   radseg_runtime* rt = NULL;
 *   if (radseg_create("export_dir", NULL, &rt) != RADSEG_OK) { puts(radseg_last_error()); ... }
 *   radseg_frame frame = {pixels, width, height, width * 3, RADSEG_PIXEL_BGR8};
 *   radseg_result result;
 *   radseg_run(rt, &frame, &result);      // result.labels: height x width int32 class ids
 *   radseg_destroy(rt);
 *
 * A handle is not thread-safe: use one handle per thread (or serialize calls).
 */
#ifndef RADSEG_EDGE_H
#define RADSEG_EDGE_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define RADSEG_API __declspec(dllexport)
#else
#define RADSEG_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define RADSEG_EDGE_API_VERSION 1

/* Opaque handle of one loaded model. */
typedef struct radseg_runtime radseg_runtime;

/* Status codes. radseg_status_string() names them; radseg_last_error() explains the last failure. */
typedef enum radseg_status {
  RADSEG_OK = 0,
  RADSEG_ERR_INVALID_ARGUMENT = 1,      /* null pointer, unknown pixel format or option */
  RADSEG_ERR_PACKAGE_NOT_FOUND = 2,     /* model package or manifest file does not exist */
  RADSEG_ERR_PACKAGE_CORRUPT = 3,       /* package cannot be loaded or run (truncated, not a .pt2) */
  RADSEG_ERR_MANIFEST = 4,              /* manifest.json unreadable, missing keys, or disagrees with the package */
  RADSEG_ERR_SIZE_MISMATCH = 5,         /* frame width/height differ from the package's input size */
  RADSEG_ERR_BAD_STRIDE = 6,            /* row stride smaller than width * 3 bytes */
  RADSEG_ERR_BACKEND_UNAVAILABLE = 7,   /* backend not compiled in (e.g. TensorRT) or device missing */
  RADSEG_ERR_RUNTIME = 8,               /* inference failed */
  RADSEG_ERR_INTERNAL = 9               /* unexpected failure (out of memory, bug) */
} radseg_status;

typedef enum radseg_pixel_format {
  RADSEG_PIXEL_RGB8 = 0, /* 3 bytes per pixel, R G B */
  RADSEG_PIXEL_BGR8 = 1  /* 3 bytes per pixel, B G R (OpenCV's order) */
} radseg_pixel_format;

typedef enum radseg_backend {
  RADSEG_BACKEND_AUTO = 0,     /* TensorRT engine if the manifest names one and it was compiled in, else AOTI */
  RADSEG_BACKEND_AOTI = 1,     /* AOTInductor .pt2 package through libtorch */
  RADSEG_BACKEND_TENSORRT = 2  /* serialized TensorRT engine */
} radseg_backend;

typedef struct radseg_options {
  radseg_backend backend; /* default RADSEG_BACKEND_AUTO */
  int32_t device;         /* -1: the package's device (from the manifest); >= 0: that CUDA device */
  int32_t want_probs;     /* 1 (default): keep per-class probabilities; 0: labels only (less copying) */
  int32_t num_threads;    /* CPU intra-op threads (process-wide libtorch setting); 0 (default): leave as is */
} radseg_options;

/* One image in host memory. Rows are `stride_bytes` apart; each row holds width * 3 bytes. */
typedef struct radseg_frame {
  const uint8_t* data;
  int32_t width;
  int32_t height;
  int64_t stride_bytes;
  radseg_pixel_format format;
} radseg_frame;

/* Per-stage wall time of one radseg_run(), milliseconds. */
typedef struct radseg_timing {
  double preprocess_ms;  /* stride/channel-order repacking into the model's input buffer (+ upload) */
  double inference_ms;   /* the compiled model */
  double postprocess_ms; /* copying labels (int64 -> int32) and probabilities to the result buffers */
  double total_ms;
} radseg_timing;

typedef struct radseg_result {
  const int32_t* labels; /* height x width, row-major, 0-based class ids (-1: below threshold) */
  const float* probs;    /* num_classes x height x width, or NULL when want_probs was 0 */
  int32_t width;
  int32_t height;
  int32_t num_classes;
  radseg_timing timing;
} radseg_result;

/* Fills `options` with the defaults. */
RADSEG_API void radseg_options_init(radseg_options* options);

/*
 * Loads a model. `path` is an export directory holding manifest.json, a manifest.json file, or a
 * .pt2 package with manifest.json beside it. `options` may be NULL (defaults). Runs one warm-up
 * frame. On failure *out is set to NULL and radseg_last_error() says why.
 */
RADSEG_API radseg_status radseg_create(const char* path, const radseg_options* options, radseg_runtime** out);

/* Segments one frame; fills `result` (pointers valid until the next run/destroy of `rt`). */
RADSEG_API radseg_status radseg_run(radseg_runtime* rt, const radseg_frame* frame, radseg_result* result);

/* Frees everything; NULL is allowed. */
RADSEG_API void radseg_destroy(radseg_runtime* rt);

/* Model facts (from the manifest). Return RADSEG_ERR_INVALID_ARGUMENT on NULL arguments. */
RADSEG_API radseg_status radseg_input_size(const radseg_runtime* rt, int32_t* width, int32_t* height);
RADSEG_API int32_t radseg_num_classes(const radseg_runtime* rt);              /* -1 if rt is NULL */
RADSEG_API const char* radseg_class_name(const radseg_runtime* rt, int32_t i); /* NULL if out of range */
RADSEG_API const char* radseg_backend_name(const radseg_runtime* rt);         /* "aoti", "tensorrt" */

/* Name of a status code, e.g. "RADSEG_ERR_SIZE_MISMATCH". Never NULL. */
RADSEG_API const char* radseg_status_string(radseg_status status);

/* Message of the last failure in this thread (what was expected, what was found); "" if none. */
RADSEG_API const char* radseg_last_error(void);

RADSEG_API int radseg_api_version(void);

#ifdef __cplusplus
}
#endif

#endif /* RADSEG_EDGE_H */
