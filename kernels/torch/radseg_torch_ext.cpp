// PyTorch bindings of the radseg CUDA kernels (see ../include/radseg_kernels.h).
// Built on first use by radseg_edge/kernels/cuda_ops.py with torch.utils.cpp_extension.load.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include "radseg_kernels.h"

namespace {

radseg_dtype to_radseg_dtype(const torch::Tensor& t) {
    switch (t.scalar_type()) {
        case torch::kFloat32: return RADSEG_FLOAT32;
        case torch::kFloat16: return RADSEG_FLOAT16;
        case torch::kBFloat16: return RADSEG_BFLOAT16;
        default: TORCH_CHECK(false, "radseg kernels take float32, float16 or bfloat16 tensors, got ", t.scalar_type());
    }
}

torch::Tensor workspace(int64_t bytes, const torch::Tensor& like) {
    return torch::empty({bytes}, like.options().dtype(torch::kUInt8));
}

}  // namespace

// features: B x N x C CUDA tensor -> B x N x C (same dtype).
torch::Tensor scga(const torch::Tensor& features, double tau, bool batch_mean) {
    TORCH_CHECK(features.is_cuda() && features.dim() == 3, "scga expects a B x N x C CUDA tensor, got ",
                features.sizes(), " on ", features.device());
    const c10::cuda::CUDAGuard guard(features.device());
    auto x = features.contiguous();
    auto out = torch::empty_like(x);
    const int64_t b = x.size(0), n = x.size(1), c = x.size(2);
    auto ws = workspace(static_cast<int64_t>(radseg_scga_workspace_size(b, n, c)), x);
    const int rc = radseg_scga(x.data_ptr(), out.data_ptr(), ws.data_ptr(), b, n, c, static_cast<float>(tau),
                               batch_mean ? 1 : 0, to_radseg_dtype(x), c10::cuda::getCurrentCUDAStream().stream());
    TORCH_CHECK(rc == RADSEG_OK, radseg_error_string(rc));
    return out;
}

// o: B x N x C, v: B x H x N x d (last dim contiguous) -> B x N x C (heads merged, dtype of v).
torch::Tensor self_correlation(const torch::Tensor& o, const torch::Tensor& v, double tau) {
    TORCH_CHECK(o.is_cuda() && v.is_cuda() && o.dim() == 3 && v.dim() == 4,
                "self_correlation expects CUDA tensors o: B x N x C and v: B x H x N x d");
    TORCH_CHECK(o.device() == v.device(), "o and v must be on the same device, got ", o.device(), " and ", v.device());
    const c10::cuda::CUDAGuard guard(v.device());
    const int64_t b = v.size(0), h = v.size(1), n = v.size(2), d = v.size(3);
    TORCH_CHECK(o.size(0) == b && o.size(1) == n && o.size(2) == h * d, "o must be B x N x (H*d), got ", o.sizes());
    auto values = v.stride(3) == 1 ? v : v.contiguous();
    auto x = o.to(values.scalar_type()).contiguous();
    auto out = torch::empty({b, n, h * d}, values.options());
    auto ws = workspace(static_cast<int64_t>(radseg_self_correlation_workspace_size(b, h, n, d)), x);
    const int rc = radseg_self_correlation(x.data_ptr(), values.data_ptr(), out.data_ptr(), ws.data_ptr(), b, h, n, d,
                                           values.stride(0), values.stride(1), values.stride(2),
                                           static_cast<float>(tau), to_radseg_dtype(values),
                                           c10::cuda::getCurrentCUDAStream().stream());
    TORCH_CHECK(rc == RADSEG_OK, radseg_error_string(rc));
    return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "radseg-edge fused SCGA and SCRA self-correlation CUDA kernels";
    m.def("scga", &scga, "SCGA: B x N x C -> B x N x C", pybind11::arg("features"), pybind11::arg("tau"),
          pybind11::arg("batch_mean") = false);
    m.def("self_correlation", &self_correlation, "SCRA step: (B x N x C, B x H x N x d) -> B x N x C",
          pybind11::arg("o"), pybind11::arg("v"), pybind11::arg("tau"));
}
