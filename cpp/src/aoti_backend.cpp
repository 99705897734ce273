// AOTInductor backend: runs a .pt2 package through libtorch's AOTIModelPackageLoader.
//
// All tensors that cross a frame boundary are allocated here, once: the packed RGB input (pinned
// host memory plus a device copy on CUDA), the int32 label map and the fp32 probabilities. The
// compiled model itself allocates its outputs and intermediates through libtorch's allocator (the
// CUDA caching allocator reuses them after the first frame).
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <c10/core/DeviceType.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/version.h>

#include <filesystem>
#include <fstream>
#include <vector>

#include "radseg_edge/segmenter.hpp"

namespace radseg {
namespace {

std::string shape_string(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "] " + std::string(c10::toString(t.scalar_type()));
}

// A .pt2 package is a zip archive: refuse anything else before libtorch tries to unpack it.
bool looks_like_zip(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char magic[4] = {0, 0, 0, 0};
  f.read(magic, 4);
  return f.gcount() == 4 && magic[0] == 'P' && magic[1] == 'K' && magic[2] == 3 && magic[3] == 4;
}

class AotiBackend final : public InferenceBackend {
 public:
  AotiBackend(const Manifest& m, const Options& options) : manifest_(m), want_probs_(options.want_probs) {
    std::error_code ec;
    if (m.package_path.empty()) {
      throw Error(Status::Manifest, m.path + ": no 'package' (.pt2) for the AOTInductor backend");
    }
    if (!std::filesystem::is_regular_file(m.package_path, ec)) {
      throw Error(Status::PackageNotFound, "AOTInductor package '" + m.package_path + "' does not exist");
    }
    if (!looks_like_zip(m.package_path)) {
      throw Error(Status::PackageCorrupt, "'" + m.package_path +
                                              "' is not an AOTInductor .pt2 package (not a zip archive): "
                                              "re-export it with `radseg-edge export --format aoti`");
    }
    if (options.num_threads > 0) at::set_num_threads(options.num_threads);

    const bool want_cuda = options.device >= 0 || m.device.rfind("cuda", 0) == 0;
    if (want_cuda && !at::hasCUDA()) {
      throw Error(Status::BackendUnavailable,
                  "the package was compiled for CUDA but this libtorch has no CUDA device; export a CPU package "
                  "(`radseg-edge export --format aoti --device cpu`) or run on a GPU machine");
    }
    const c10::DeviceIndex index = want_cuda ? static_cast<c10::DeviceIndex>(options.device < 0 ? 0 : options.device)
                                             : static_cast<c10::DeviceIndex>(-1);
    device_ = want_cuda ? c10::Device(c10::DeviceType::CUDA, index) : c10::Device(c10::DeviceType::CPU);

    try {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 8)
      loader_ = std::make_unique<torch::inductor::AOTIModelPackageLoader>(m.package_path, "model", false, 1, index);
#else  // libtorch 2.6/2.7 (e.g. NVIDIA's Jetson wheels): no device index, the package's device is used
      loader_ = std::make_unique<torch::inductor::AOTIModelPackageLoader>(m.package_path, "model");
#endif
    } catch (const std::exception& e) {
      throw Error(Status::PackageCorrupt, "cannot load AOTInductor package '" + m.package_path + "': " +
                                              first_line(e.what()));
    }
    check_metadata();

    const int64_t H = m.height, W = m.width, K = m.num_classes;
    auto u8 = at::TensorOptions().dtype(at::kByte);
    input_host_ = at::empty({1, H, W, 3}, want_cuda ? u8.pinned_memory(true) : u8);
    input_device_ = want_cuda ? at::empty({1, H, W, 3}, u8.device(device_)) : input_host_;
    inputs_ = {input_device_};
    labels_host_ = at::empty({1, H, W}, at::TensorOptions().dtype(at::kInt));
    labels_device_ = want_cuda ? at::empty({1, H, W}, at::TensorOptions().dtype(at::kInt).device(device_))
                               : labels_host_;
    if (want_probs_) probs_host_ = at::empty({1, K, H, W}, at::TensorOptions().dtype(at::kFloat));
  }

  const char* name() const override { return "aoti"; }
  std::uint8_t* input_buffer() override { return input_host_.data_ptr<std::uint8_t>(); }
  const std::int32_t* labels() const override { return labels_host_.data_ptr<std::int32_t>(); }
  const float* probs() const override { return want_probs_ ? probs_host_.data_ptr<float>() : nullptr; }

  void infer() override {
    try {
      if (input_device_.data_ptr() != input_host_.data_ptr()) input_device_.copy_(input_host_, true);
      outputs_ = loader_->run(inputs_);
      // Finish the GPU work here so that the stage timing charges it to inference, not to the copy-out.
      if (device_.is_cuda()) c10::impl::getDeviceGuardImpl(device_.type())->synchronizeDevice(device_.index());
    } catch (const std::exception& e) {
      // Failing on the warm-up frame means the package is unusable; later it is a run-time failure.
      throw Error(ran_once_ ? Status::Runtime : Status::PackageCorrupt,
                  "the AOTInductor package failed to run on a " + std::to_string(manifest_.width) + "x" +
                      std::to_string(manifest_.height) + " frame" +
                      (ran_once_ ? ": " : " (does manifest.json belong to this package?): ") + first_line(e.what()));
    }
    check_outputs();
    ran_once_ = true;
  }

  void fetch() override {
    try {
      labels_device_.copy_(outputs_[0]);  // int64 -> int32 on the model's device
      if (labels_device_.data_ptr() != labels_host_.data_ptr()) labels_host_.copy_(labels_device_);
      if (want_probs_) probs_host_.copy_(outputs_[1]);
    } catch (const std::exception& e) {
      throw Error(Status::Runtime, std::string("copying the model outputs failed: ") + first_line(e.what()));
    }
    outputs_.clear();
  }

 private:
  static std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

  // The exporter stores the input size and class count in the package's metadata; a manifest that
  // disagrees with them belongs to another export.
  void check_metadata() {
    std::unordered_map<std::string, std::string> meta;
    try {
      meta = loader_->get_metadata();
    } catch (const std::exception&) {
      return;
    }
    const std::pair<const char*, int> expected[] = {{"radseg.height", manifest_.height},
                                                    {"radseg.width", manifest_.width},
                                                    {"radseg.num_classes", manifest_.num_classes}};
    for (const auto& [key, value] : expected) {
      auto it = meta.find(key);
      if (it != meta.end() && it->second != std::to_string(value)) {
        throw Error(Status::Manifest, manifest_.path + " says " + std::string(key).substr(7) + " = " +
                                          std::to_string(value) + " but the package '" + manifest_.package_path +
                                          "' was compiled for " + it->second +
                                          ": use the manifest.json exported with this package");
      }
    }
  }

  void check_outputs() const {
    const int64_t H = manifest_.height, W = manifest_.width, K = manifest_.num_classes;
    const bool ok = outputs_.size() >= 2 && outputs_[0].sizes() == at::IntArrayRef({1, H, W}) &&
                    outputs_[1].sizes() == at::IntArrayRef({1, K, H, W}) &&
                    outputs_[1].scalar_type() == at::kFloat;
    if (!ok) {
      std::string found;
      for (const auto& t : outputs_) found += (found.empty() ? "" : ", ") + shape_string(t);
      throw Error(Status::Manifest, "expected outputs (labels [1, " + std::to_string(H) + ", " + std::to_string(W) +
                                        "], probs [1, " + std::to_string(K) + ", " + std::to_string(H) + ", " +
                                        std::to_string(W) + "] Float) from the package, found (" + found +
                                        "): does " + manifest_.path + " belong to this package?");
    }
  }

  Manifest manifest_;
  bool want_probs_;
  bool ran_once_ = false;
  c10::Device device_{c10::DeviceType::CPU};
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader_;
  at::Tensor input_host_, input_device_, labels_host_, labels_device_, probs_host_;
  std::vector<at::Tensor> inputs_;
  std::vector<at::Tensor> outputs_;
};

}  // namespace

std::unique_ptr<InferenceBackend> make_aoti_backend(const Manifest& manifest, const Options& options) {
  return std::make_unique<AotiBackend>(manifest, options);
}

}  // namespace radseg
