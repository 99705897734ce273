// radseg-edge CUDA kernels: SCGA and the SCRA self-correlation step, without N x N memory.
//
// Both operators are one "thresholded self-attention" per group g (an image for SCGA, an
// (image, head) pair for SCRA):
//     q_i = x_i / max(||x_i||, 1e-12)                 (row-normalised, fp32 workspace)
//     s_ij = tau * (q_i . q_j - m_g);  s_ij < 0 -> masked (excluded from the softmax)
//     out_i = sum_j softmax_j(s_ij) v_j               (fp32 accumulation, online softmax)
// SCGA: x = v = the stitched features F (B x N x C), m_g = ||sum_i q_i||^2 / N^2 (mean similarity).
// SCRA: x = the projected first-attention output O split in H chunks of d channels, v = the
//       original values V, m_g = 0; the result is written with heads merged (B x N x H*d).
// Reference: radseg_edge/core/scga.py (scga_reference), radseg_edge/core/scra.py
// (self_correlation_attention). All pointers are device pointers; every call is asynchronous on
// `stream`. Return value: 0 on success, else a code for radseg_error_string().
#ifndef RADSEG_KERNELS_H
#define RADSEG_KERNELS_H

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum radseg_dtype { RADSEG_FLOAT32 = 0, RADSEG_FLOAT16 = 1, RADSEG_BFLOAT16 = 2 } radseg_dtype;

enum {
    RADSEG_OK = 0,
    RADSEG_ERR_ARGUMENT = 1,     // a size is <= 0, a pointer is null, the dtype is unknown or B*H > 65535
    RADSEG_ERR_SHARED_MEMORY = 2,  // value width too large for the device's shared memory per block
    RADSEG_ERR_CUDA = 3          // a CUDA launch failed (see cudaGetLastError)
};

const char* radseg_error_string(int code);

// Workspace bytes for radseg_scga (B*N*C + B + B*ceil(N/128)*C floats, 256-byte aligned parts).
size_t radseg_scga_workspace_size(int64_t batch, int64_t n, int64_t channels);

// SCGA. features, out: B x N x C contiguous, dtype `dtype`. batch_mean != 0: one threshold for the
// whole batch (the official code's batch behaviour).
int radseg_scga(const void* features, void* out, void* workspace, int64_t batch, int64_t n, int64_t channels,
                float tau, int batch_mean, radseg_dtype dtype, cudaStream_t stream);

// Workspace bytes for radseg_self_correlation (B*H*N*d + B*H floats, aligned).
size_t radseg_self_correlation_workspace_size(int64_t batch, int64_t heads, int64_t n, int64_t head_dim);

// SCRA recursive step (before the output projection).
// o: B x N x (H*d) contiguous; v: B x H x N x d given by element strides (v_stride_b, v_stride_h,
// v_stride_n; the last dimension contiguous); out: B x N x (H*d) contiguous. All of dtype `dtype`.
int radseg_self_correlation(const void* o, const void* v, void* out, void* workspace, int64_t batch, int64_t heads,
                            int64_t n, int64_t head_dim, int64_t v_stride_b, int64_t v_stride_h, int64_t v_stride_n,
                            float tau, radseg_dtype dtype, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif  // RADSEG_KERNELS_H
