// Minimal frame loop over the C API, as a camera node would run it: create once, run every frame,
// destroy at shutdown. Frames are synthesized (a moving gradient, BGR like most camera drivers) or
// taken from a PPM image; per-stage timing is printed as JSON (one object) at the end.
//
//   radseg_frame_loop EXPORT_DIR [--frames N] [--image x.ppm] [--threads N] [--labels-only]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "pnm.hpp"
#include "radseg_edge.h"

namespace {

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5)];
}

double mean(const std::vector<double>& v) {
  double s = 0.0;
  for (double x : v) s += x;
  return v.empty() ? 0.0 : s / static_cast<double>(v.size());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: radseg_frame_loop EXPORT_DIR [--frames N] [--image x.ppm] [--threads N] [--labels-only]\n");
    return 2;
  }
  int frames = 100;
  std::string image_path;
  radseg_options options;
  radseg_options_init(&options);
  for (int i = 2; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--frames") && i + 1 < argc) frames = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--image") && i + 1 < argc) image_path = argv[++i];
    else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) options.num_threads = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--labels-only")) options.want_probs = 0;
  }

  radseg_runtime* rt = nullptr;
  if (radseg_create(argv[1], &options, &rt) != RADSEG_OK) {
    std::fprintf(stderr, "error: %s\n", radseg_last_error());
    return 1;
  }
  int32_t width = 0, height = 0;
  radseg_input_size(rt, &width, &height);

  // The camera buffer: BGR rows padded to a multiple of 64 bytes, allocated once.
  const int64_t stride = (static_cast<int64_t>(width) * 3 + 63) / 64 * 64;
  std::vector<uint8_t> camera(static_cast<size_t>(stride) * height, 0);
  if (!image_path.empty()) {
    try {
      const radseg::examples::Image img = radseg::examples::read_pnm(image_path);
      if (img.width != width || img.height != height) {
        std::fprintf(stderr, "error: image is %dx%d but the model takes %dx%d\n", img.width, img.height, width, height);
        radseg_destroy(rt);
        return 1;
      }
      for (int y = 0; y < height; ++y) {
        for (int x = 0; x < width; ++x) {
          const uint8_t* p = &img.rgb[(static_cast<size_t>(y) * width + x) * 3];
          uint8_t* q = &camera[static_cast<size_t>(y) * stride + static_cast<size_t>(x) * 3];
          q[0] = p[2], q[1] = p[1], q[2] = p[0];
        }
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "error: %s\n", e.what());
      radseg_destroy(rt);
      return 1;
    }
  }

  std::vector<double> pre, infer, post, total;
  const int32_t* first_labels = nullptr;
  bool stable_buffers = true;
  for (int f = 0; f < frames; ++f) {
    if (image_path.empty()) {  // synthesize the next frame in place
      for (int y = 0; y < height; ++y) {
        uint8_t* row = &camera[static_cast<size_t>(y) * stride];
        for (int x = 0; x < width; ++x) {
          row[3 * x] = static_cast<uint8_t>(x * 2 + f);
          row[3 * x + 1] = static_cast<uint8_t>(y * 2);
          row[3 * x + 2] = static_cast<uint8_t>((x + y + 3 * f) & 0xFF);
        }
      }
    }
    const radseg_frame frame = {camera.data(), width, height, stride, RADSEG_PIXEL_BGR8};
    radseg_result result;
    const radseg_status st = radseg_run(rt, &frame, &result);
    if (st != RADSEG_OK) {
      std::fprintf(stderr, "frame %d: %s: %s\n", f, radseg_status_string(st), radseg_last_error());
      radseg_destroy(rt);
      return 1;
    }
    if (first_labels == nullptr) first_labels = result.labels;
    stable_buffers = stable_buffers && result.labels == first_labels;
    pre.push_back(result.timing.preprocess_ms);
    infer.push_back(result.timing.inference_ms);
    post.push_back(result.timing.postprocess_ms);
    total.push_back(result.timing.total_ms);
  }
  std::printf("{\"backend\": \"%s\", \"width\": %d, \"height\": %d, \"num_classes\": %d, \"frames\": %d, "
              "\"result_buffers_reused\": %s,\n",
              radseg_backend_name(rt), width, height, radseg_num_classes(rt), frames, stable_buffers ? "true" : "false");
  const char* names[] = {"preprocess", "inference", "postprocess", "total"};
  const std::vector<double>* series[] = {&pre, &infer, &post, &total};
  for (int s = 0; s < 4; ++s) {
    std::printf(" \"%s\": {\"mean_ms\": %.4f, \"p50_ms\": %.4f, \"p90_ms\": %.4f}%s\n", names[s], mean(*series[s]),
                percentile(*series[s], 0.5), percentile(*series[s], 0.9), s < 3 ? "," : "}");
  }
  radseg_destroy(rt);
  return 0;
}
