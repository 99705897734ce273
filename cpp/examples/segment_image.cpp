// Segment one image file with the C++ API and write its label map.
//
//   radseg_segment_image EXPORT_DIR image.ppm labels.pgm [--probs probs.npy] [--labels-npy labels.npy]
//                        [--bgr] [--threads N] [--backend auto|aoti|tensorrt]
//
// EXPORT_DIR comes from `radseg-edge export --format aoti`; the image must have the exported size.
// --bgr hands the frame to the runtime in BGR order (as a camera/OpenCV would); results are the same.
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "pnm.hpp"
#include "radseg_edge/segmenter.hpp"

namespace {

int usage() {
  std::cerr << "usage: radseg_segment_image EXPORT_DIR IMAGE.ppm LABELS.pgm [--probs P.npy] [--labels-npy L.npy]"
               " [--bgr] [--threads N] [--backend auto|aoti|tensorrt]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) return usage();
  const std::string model = argv[1], image_path = argv[2], labels_path = argv[3];
  std::string probs_path, labels_npy;
  bool bgr = false;
  radseg::Options options;
  for (int i = 4; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--probs" && has_value) probs_path = argv[++i];
    else if (a == "--labels-npy" && has_value) labels_npy = argv[++i];
    else if (a == "--threads" && has_value) options.num_threads = std::atoi(argv[++i]);
    else if (a == "--bgr") bgr = true;
    else if (a == "--backend" && has_value) {
      const std::string b = argv[++i];
      options.backend = b == "aoti" ? radseg::BackendKind::AOTI
                        : b == "tensorrt" ? radseg::BackendKind::TensorRT
                                          : radseg::BackendKind::Auto;
    } else {
      return usage();
    }
  }
  options.want_probs = !probs_path.empty();

  try {
    radseg::examples::Image img = radseg::examples::read_pnm(image_path);
    if (bgr) {
      for (size_t i = 0; i < img.rgb.size(); i += 3) std::swap(img.rgb[i], img.rgb[i + 2]);
    }
    radseg::Segmenter seg(model, options);
    const radseg::Frame frame{img.rgb.data(), img.width, img.height, static_cast<std::int64_t>(img.width) * 3,
                              bgr ? radseg::PixelFormat::BGR8 : radseg::PixelFormat::RGB8};
    const radseg::SegmentationView out = seg.run(frame);

    radseg::examples::write_label_pgm(labels_path, out.labels, out.width, out.height);
    if (!labels_npy.empty()) radseg::examples::write_npy(labels_npy, out.labels, {out.height, out.width});
    if (!probs_path.empty()) {
      radseg::examples::write_npy(probs_path, out.probs, {out.num_classes, out.height, out.width});
    }

    std::vector<long> counts(static_cast<size_t>(out.num_classes) + 1, 0);
    for (int i = 0; i < out.width * out.height; ++i) ++counts[static_cast<size_t>(out.labels[i] + 1)];
    std::printf("%s backend, %dx%d, %d classes: preprocess %.2f ms, inference %.2f ms, postprocess %.2f ms, "
                "total %.2f ms\n",
                seg.backend_name(), out.width, out.height, out.num_classes, out.timing.preprocess_ms,
                out.timing.inference_ms, out.timing.postprocess_ms, out.timing.total_ms);
    const auto& names = seg.manifest().classes;
    for (int k = 0; k < out.num_classes; ++k) {
      if (counts[static_cast<size_t>(k) + 1] == 0) continue;
      std::printf("  %-24s %6.2f%%\n", k < static_cast<int>(names.size()) ? names[k].c_str() : "?",
                  100.0 * counts[static_cast<size_t>(k) + 1] / (out.width * out.height));
    }
    return 0;
  } catch (const radseg::Error& e) {
    std::cerr << "error (status " << static_cast<int>(e.status()) << "): " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
