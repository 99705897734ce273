/*
 * Test of the C API that includes nothing but radseg_edge.h (compiled as C99).
 *
 *   radseg_c_api_test EXPORT_DIR
 *       loads a valid export and checks results and every bad-input status code
 *   radseg_c_api_test --expect-create-failure STATUS_NAME PATH
 *       checks that radseg_create(PATH) fails with STATUS_NAME, a NULL handle and a message
 *
 * Prints one line per check; exits 0 only if every check passed.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "radseg_edge.h"

static int g_failures = 0;
static int g_checks = 0;

#define CHECK(cond, ...)                          \
  do {                                            \
    ++g_checks;                                   \
    if (cond) {                                   \
      printf("ok   ");                            \
    } else {                                      \
      printf("FAIL ");                            \
      ++g_failures;                               \
    }                                             \
    printf(__VA_ARGS__);                          \
    printf("\n");                                 \
  } while (0)

#define CHECK_STATUS(call, expected, what)                                                              \
  do {                                                                                                 \
    radseg_status st_ = (call);                                                                        \
    CHECK(st_ == (expected), "%s -> %s (expected %s) %s", what, radseg_status_string(st_),             \
          radseg_status_string(expected), st_ == RADSEG_OK ? "" : radseg_last_error());               \
  } while (0)

static int expect_create_failure(const char* status_name, const char* path) {
  radseg_runtime* rt = (radseg_runtime*)0x1; /* must be reset to NULL */
  radseg_status st = radseg_create(path, NULL, &rt);
  CHECK(strcmp(radseg_status_string(st), status_name) == 0, "create('%s') -> %s (expected %s): %s", path,
        radseg_status_string(st), status_name, radseg_last_error());
  CHECK(rt == NULL, "handle is NULL after a failed create");
  CHECK(strlen(radseg_last_error()) > 0, "failed create leaves a message");
  radseg_destroy(rt);
  return g_failures == 0 ? 0 : 1;
}

/* Fills a packed RGB test pattern (smooth gradients plus a bright square). */
static void fill_pattern(unsigned char* rgb, int w, int h) {
  int x, y;
  for (y = 0; y < h; ++y) {
    for (x = 0; x < w; ++x) {
      unsigned char* p = rgb + ((size_t)y * w + x) * 3;
      int inside = x > w / 3 && x < 2 * w / 3 && y > h / 4 && y < h / 2;
      p[0] = (unsigned char)(inside ? 250 : (x * 255) / (w > 1 ? w - 1 : 1));
      p[1] = (unsigned char)(inside ? 240 : (y * 255) / (h > 1 ? h - 1 : 1));
      p[2] = (unsigned char)(inside ? 30 : ((x + y) * 7) & 0xFF);
    }
  }
}

int main(int argc, char** argv) {
  radseg_runtime* rt = NULL;
  radseg_options opts;
  radseg_result res, res2;
  radseg_frame frame;
  int32_t w = 0, h = 0, k, i, in_range = 1, finite = 1;
  size_t n;
  unsigned char *rgb, *bgr, *padded;
  int32_t* labels_copy;
  float* probs_copy;

  if (argc == 4 && strcmp(argv[1], "--expect-create-failure") == 0) return expect_create_failure(argv[2], argv[3]);
  if (argc != 2) {
    fprintf(stderr, "usage: radseg_c_api_test EXPORT_DIR | --expect-create-failure STATUS_NAME PATH\n");
    return 2;
  }

  CHECK(radseg_api_version() == RADSEG_EDGE_API_VERSION, "api version %d", radseg_api_version());
  CHECK_STATUS(radseg_create(NULL, NULL, &rt), RADSEG_ERR_INVALID_ARGUMENT, "create(NULL path)");
  CHECK_STATUS(radseg_create(argv[1], NULL, NULL), RADSEG_ERR_INVALID_ARGUMENT, "create(NULL out)");
  CHECK_STATUS(radseg_create("/nonexistent/radseg/export", NULL, &rt), RADSEG_ERR_PACKAGE_NOT_FOUND,
               "create(missing directory)");
  CHECK(rt == NULL, "handle stays NULL after a failed create");
  radseg_options_init(&opts);
  opts.backend = (radseg_backend)9;
  CHECK_STATUS(radseg_create(argv[1], &opts, &rt), RADSEG_ERR_INVALID_ARGUMENT, "create(backend 9)");
  radseg_destroy(NULL);
  CHECK(1, "destroy(NULL) is a no-op");
  radseg_options_init(&opts);
  opts.backend = RADSEG_BACKEND_TENSORRT; /* this export has no engine; TensorRT may not even be compiled in */
  {
    radseg_status st = radseg_create(argv[1], &opts, &rt);
    CHECK((st == RADSEG_ERR_BACKEND_UNAVAILABLE || st == RADSEG_ERR_MANIFEST) && rt == NULL,
          "create(TensorRT backend, no engine) -> %s: %s", radseg_status_string(st), radseg_last_error());
  }

  radseg_options_init(&opts);
  opts.num_threads = 2;
  CHECK_STATUS(radseg_create(argv[1], &opts, &rt), RADSEG_OK, "create(valid export)");
  if (rt == NULL) return 1;
  CHECK_STATUS(radseg_input_size(rt, &w, &h), RADSEG_OK, "input_size");
  k = radseg_num_classes(rt);
  CHECK(w > 0 && h > 0 && k > 0, "model takes %dx%d, %d classes, backend %s", w, h, k, radseg_backend_name(rt));
  CHECK(radseg_class_name(rt, 0) != NULL && radseg_class_name(rt, k) == NULL && radseg_class_name(rt, -1) == NULL,
        "class names: first '%s', out of range -> NULL", radseg_class_name(rt, 0) ? radseg_class_name(rt, 0) : "");

  n = (size_t)w * h;
  rgb = malloc(n * 3);
  bgr = malloc(n * 3);
  padded = malloc((size_t)(w * 3 + 17) * h);
  labels_copy = malloc(n * sizeof(int32_t));
  probs_copy = malloc(n * k * sizeof(float));
  fill_pattern(rgb, w, h);
  for (i = 0; i < (int32_t)n; ++i) {
    bgr[3 * i] = rgb[3 * i + 2];
    bgr[3 * i + 1] = rgb[3 * i + 1];
    bgr[3 * i + 2] = rgb[3 * i];
  }
  for (i = 0; i < h; ++i) memcpy(padded + (size_t)i * (w * 3 + 17), rgb + (size_t)i * w * 3, (size_t)w * 3);

  frame.data = rgb;
  frame.width = w;
  frame.height = h;
  frame.stride_bytes = (int64_t)w * 3;
  frame.format = RADSEG_PIXEL_RGB8;
  CHECK_STATUS(radseg_run(rt, &frame, &res), RADSEG_OK, "run(RGB frame)");
  CHECK(res.width == w && res.height == h && res.num_classes == k && res.labels && res.probs,
        "result describes a %dx%d map with %d classes", res.width, res.height, res.num_classes);
  for (i = 0; i < (int32_t)n; ++i) in_range = in_range && res.labels[i] >= -1 && res.labels[i] < k;
  for (i = 0; i < (int32_t)(n * k); ++i) finite = finite && isfinite(res.probs[i]) && res.probs[i] >= 0.0f;
  CHECK(in_range, "labels lie in [-1, %d)", k);
  CHECK(finite, "probabilities are finite and non-negative");
  CHECK(res.timing.total_ms > 0.0 && res.timing.inference_ms > 0.0 &&
            res.timing.total_ms + 1e-9 >= res.timing.preprocess_ms + res.timing.inference_ms,
        "timing: preprocess %.3f ms, inference %.3f ms, postprocess %.3f ms, total %.3f ms",
        res.timing.preprocess_ms, res.timing.inference_ms, res.timing.postprocess_ms, res.timing.total_ms);
  memcpy(labels_copy, res.labels, n * sizeof(int32_t));
  memcpy(probs_copy, res.probs, n * k * sizeof(float));

  frame.data = bgr;
  frame.format = RADSEG_PIXEL_BGR8;
  CHECK_STATUS(radseg_run(rt, &frame, &res2), RADSEG_OK, "run(same frame as BGR)");
  CHECK(memcmp(labels_copy, res2.labels, n * sizeof(int32_t)) == 0 &&
            memcmp(probs_copy, res2.probs, n * k * sizeof(float)) == 0,
        "BGR input gives the same labels and probabilities as RGB");
  CHECK(res2.labels == res.labels && res2.probs == res.probs, "result buffers are reused between frames");

  frame.data = padded;
  frame.format = RADSEG_PIXEL_RGB8;
  frame.stride_bytes = (int64_t)w * 3 + 17;
  CHECK_STATUS(radseg_run(rt, &frame, &res2), RADSEG_OK, "run(padded stride w*3+17)");
  CHECK(memcmp(labels_copy, res2.labels, n * sizeof(int32_t)) == 0, "padded rows give the same labels");

  /* Bad inputs: a clear status, no crash, and the handle keeps working. */
  frame.data = NULL;
  frame.stride_bytes = (int64_t)w * 3;
  CHECK_STATUS(radseg_run(rt, &frame, &res2), RADSEG_ERR_INVALID_ARGUMENT, "run(NULL pixels)");
  frame.data = rgb;
  CHECK_STATUS(radseg_run(NULL, &frame, &res2), RADSEG_ERR_INVALID_ARGUMENT, "run(NULL runtime)");
  CHECK_STATUS(radseg_run(rt, NULL, &res2), RADSEG_ERR_INVALID_ARGUMENT, "run(NULL frame)");
  CHECK_STATUS(radseg_run(rt, &frame, NULL), RADSEG_ERR_INVALID_ARGUMENT, "run(NULL result)");
  frame.width = h;
  frame.height = w;
  CHECK_STATUS(radseg_run(rt, &frame, &res2), w == h ? RADSEG_OK : RADSEG_ERR_SIZE_MISMATCH,
               "run(transposed frame size)");
  frame.width = w / 2;
  frame.height = h / 2;
  CHECK_STATUS(radseg_run(rt, &frame, &res2), RADSEG_ERR_SIZE_MISMATCH, "run(frame of another resolution)");
  frame.width = w;
  frame.height = h;
  frame.stride_bytes = (int64_t)w * 3 - 1;
  CHECK_STATUS(radseg_run(rt, &frame, &res2), RADSEG_ERR_BAD_STRIDE, "run(stride w*3-1)");
  frame.stride_bytes = -(int64_t)w * 3;
  CHECK_STATUS(radseg_run(rt, &frame, &res2), RADSEG_ERR_BAD_STRIDE, "run(negative stride)");
  frame.stride_bytes = (int64_t)w * 3;
  frame.format = (radseg_pixel_format)7;
  CHECK_STATUS(radseg_run(rt, &frame, &res2), RADSEG_ERR_INVALID_ARGUMENT, "run(pixel format 7)");
  CHECK(strlen(radseg_last_error()) > 0, "last error explains: %s", radseg_last_error());
  frame.format = RADSEG_PIXEL_RGB8;
  CHECK_STATUS(radseg_run(rt, &frame, &res2), RADSEG_OK, "run(valid frame after bad ones)");
  CHECK(memcmp(labels_copy, res2.labels, n * sizeof(int32_t)) == 0, "the handle still gives the same labels");
  CHECK(strlen(radseg_last_error()) == 0, "a successful call clears the last error");
  radseg_destroy(rt);
  rt = NULL;

  radseg_options_init(&opts);
  opts.want_probs = 0;
  CHECK_STATUS(radseg_create(argv[1], &opts, &rt), RADSEG_OK, "create(labels only)");
  if (rt != NULL) {
    CHECK_STATUS(radseg_run(rt, &frame, &res2), RADSEG_OK, "run(labels only)");
    CHECK(res2.probs == NULL && memcmp(labels_copy, res2.labels, n * sizeof(int32_t)) == 0,
          "labels-only runtime returns no probabilities and the same labels");
    radseg_destroy(rt);
  }

  free(rgb);
  free(bgr);
  free(padded);
  free(labels_copy);
  free(probs_copy);
  printf("%d checks, %d failed\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
