// Thresholded self-attention kernels behind SCGA and SCRA (see ../include/radseg_kernels.h).
//
// thresholded_attention_kernel mirrors `thresholded_attention` in radseg_edge/kernels/blocked.py:
// a thread block owns BLOCK_M query rows of one group and walks over the keys in BLOCK_N tiles:
//   1. similarity tile  S = Q_rows . Q_tile^T, reduced over d in BLOCK_K chunks (shared memory)
//   2. score = tau * (S - m); score < 0 -> masked (-inf)
//   3. online softmax per row: running max (starts at 0: kept scores are >= 0), running sum,
//      rescale factor alpha = exp(old_max - new_max)
//   4. acc = acc * alpha + P . V_tile  (acc: BLOCK_M x Dv fp32 in dynamic shared memory),
//      skipped when every entry of the tile is masked
// and finally writes acc / running_sum. Extra memory: the fp32 normalised rows (N x d per group).
#include "radseg_kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math_constants.h>

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kBlockM = 16;  // query rows per thread block
constexpr int kBlockN = 64;  // keys per tile
constexpr int kBlockK = 32;  // reduction chunk of the similarity
constexpr int kColsPerThread = kBlockM * kBlockN / kThreads;  // similarity entries per thread (4)
constexpr int kThreadsPerRow = kBlockN / kColsPerThread;     // 16
constexpr float kNormEps = 1e-12f;                          // as torch.nn.functional.normalize

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

__device__ __forceinline__ float warp_sum(float x) {
    for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(0xffffffffu, x, offset);
    return x;
}

__device__ __forceinline__ float warp_max(float x) {
    for (int offset = 16; offset > 0; offset >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
    return x;
}

// Row r of x (rows = B*N*H chunks of d contiguous values; chunk h of token (b, n) is row r =
// (b*N + n)*H + h) -> q[((b*H + h)*N + n)*d + k] = x / max(||x||, eps), fp32. One warp per row.
template <typename T>
__global__ void normalize_rows_kernel(const T* __restrict__ x, float* __restrict__ q, int64_t rows, int64_t n,
                                      int64_t heads, int64_t d) {
    const int64_t r = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (r >= rows) return;
    const T* src = x + r * d;
    float ss = 0.f;
    for (int64_t k = lane; k < d; k += 32) {
        const float value = to_float(src[k]);
        ss += value * value;
    }
    const float inv = 1.f / fmaxf(sqrtf(warp_sum(ss)), kNormEps);
    const int64_t token = r / heads, h = r % heads;
    const int64_t b = token / n, i = token % n;
    float* dst = q + ((b * heads + h) * n + i) * d;
    for (int64_t k = lane; k < d; k += 32) dst[k] = to_float(src[k]) * inv;
}

// m[b] = ||sum_i q_i||^2 / N^2 for q: B x N x C fp32 (the mean of all cosine similarities).
__global__ void mean_similarity_kernel(const float* __restrict__ q, float* __restrict__ m, int64_t n, int64_t c) {
    __shared__ float partial[kWarps];
    const float* base = q + static_cast<int64_t>(blockIdx.x) * n * c;
    float local = 0.f;
    for (int64_t col = threadIdx.x; col < c; col += kThreads) {
        float column_sum = 0.f;
        for (int64_t i = 0; i < n; ++i) column_sum += base[i * c + col];
        local += column_sum * column_sum;
    }
    local = warp_sum(local);
    if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = local;
    __syncthreads();
    if (threadIdx.x == 0) {
        float total = 0.f;
        for (int w = 0; w < kWarps; ++w) total += partial[w];
        m[blockIdx.x] = total / (static_cast<float>(n) * static_cast<float>(n));
    }
}

// m[0..B) <- their mean (the official code's threshold for a batch).
__global__ void batch_mean_kernel(float* m, int64_t batch) {
    float total = 0.f;
    for (int64_t b = 0; b < batch; ++b) total += m[b];
    for (int64_t b = 0; b < batch; ++b) m[b] = total / static_cast<float>(batch);
}

// grid: (ceil(N / kBlockM), groups); dynamic shared memory: kBlockM * dv floats.
// q: groups x N x d fp32; v: element (b, h, j, k) at b*v_sb + h*v_sh + j*v_sn + k;
// out: element (b, i, h, k) at ((b*N + i)*H + h)*dv + k; threshold: one per group.
template <typename T>
__global__ void __launch_bounds__(kThreads)
thresholded_attention_kernel(const float* __restrict__ q, const T* __restrict__ v, const float* __restrict__ threshold,
                             T* __restrict__ out, int64_t n, int64_t d, int64_t dv, int64_t heads, float tau,
                             int64_t v_sb, int64_t v_sh, int64_t v_sn) {
    extern __shared__ float acc[];  // kBlockM x dv
    __shared__ float q_tile[kBlockM][kBlockK + 1];
    __shared__ float k_tile[kBlockN][kBlockK + 1];
    __shared__ float p_tile[kBlockM][kBlockN + 1];
    __shared__ float row_max[kBlockM], row_sum[kBlockM], alpha[kBlockM];
    __shared__ int tile_has_kept;

    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    const int64_t group = blockIdx.y, b = group / heads, h = group % heads;
    const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kBlockM;
    const float* qg = q + group * n * d;
    const T* vg = v + b * v_sb + h * v_sh;
    const float m = threshold[group];

    for (int64_t e = tid; e < kBlockM * dv; e += kThreads) acc[e] = 0.f;
    if (tid < kBlockM) {
        row_max[tid] = 0.f;
        row_sum[tid] = 0.f;
    }
    const int my_row = tid / kThreadsPerRow;  // similarity entries (my_row, my_col0 + j*kThreadsPerRow)
    const int my_col0 = tid % kThreadsPerRow;

    for (int64_t key0 = 0; key0 < n; key0 += kBlockN) {
        // 1. similarity tile
        float sim[kColsPerThread] = {};
        for (int64_t k0 = 0; k0 < d; k0 += kBlockK) {
            __syncthreads();
            for (int e = tid; e < kBlockM * kBlockK; e += kThreads) {
                const int r = e / kBlockK, k = e % kBlockK;
                const int64_t row = row0 + r, kk = k0 + k;
                q_tile[r][k] = (row < n && kk < d) ? qg[row * d + kk] : 0.f;
            }
            for (int e = tid; e < kBlockN * kBlockK; e += kThreads) {
                const int r = e / kBlockK, k = e % kBlockK;
                const int64_t key = key0 + r, kk = k0 + k;
                k_tile[r][k] = (key < n && kk < d) ? qg[key * d + kk] : 0.f;
            }
            __syncthreads();
#pragma unroll 8
            for (int k = 0; k < kBlockK; ++k) {
                const float qv = q_tile[my_row][k];
#pragma unroll
                for (int j = 0; j < kColsPerThread; ++j) sim[j] += qv * k_tile[my_col0 + j * kThreadsPerRow][k];
            }
        }
        // 2. thresholded scores (the k-loop's barrier above ends every read of the previous tile's flag)
        if (tid == 0) tile_has_kept = 0;
#pragma unroll
        for (int j = 0; j < kColsPerThread; ++j) {
            const int col = my_col0 + j * kThreadsPerRow;
            const float score = (sim[j] - m) * tau;
            const bool keep = row0 + my_row < n && key0 + col < n && !(score < 0.f);
            p_tile[my_row][col] = keep ? score : -CUDART_INF_F;
        }
        __syncthreads();
        // 3. online softmax: warp w owns rows w and w + kWarps; lane covers columns lane, lane + 32
        for (int r = warp; r < kBlockM; r += kWarps) {
            const float a = p_tile[r][lane], c = p_tile[r][lane + 32];
            const float tile_max = warp_max(fmaxf(a, c));
            const float new_max = fmaxf(row_max[r], tile_max);
            const float ea = expf(a - new_max), ec = expf(c - new_max);
            p_tile[r][lane] = ea;
            p_tile[r][lane + 32] = ec;
            const float tile_sum = warp_sum(ea + ec);
            if (lane == 0) {
                const float scale = expf(row_max[r] - new_max);
                alpha[r] = scale;
                row_sum[r] = row_sum[r] * scale + tile_sum;
                row_max[r] = new_max;
                if (tile_max > -CUDART_INF_F) tile_has_kept = 1;
            }
        }
        __syncthreads();
        // 4. acc = acc * alpha + P . V  (each thread owns columns tid, tid + kThreads, ...)
        if (tile_has_kept) {
            const int keys = static_cast<int>(n - key0 < kBlockN ? n - key0 : kBlockN);
            for (int64_t col = tid; col < dv; col += kThreads) {
                float a[kBlockM];
#pragma unroll
                for (int r = 0; r < kBlockM; ++r) a[r] = acc[r * dv + col] * alpha[r];
                for (int j = 0; j < keys; ++j) {
                    const float value = to_float(vg[(key0 + j) * v_sn + col]);
#pragma unroll
                    for (int r = 0; r < kBlockM; ++r) a[r] += p_tile[r][j] * value;
                }
#pragma unroll
                for (int r = 0; r < kBlockM; ++r) acc[r * dv + col] = a[r];
            }
        }
    }
    __syncthreads();
    for (int64_t e = tid; e < kBlockM * dv; e += kThreads) {
        const int64_t r = e / dv, col = e % dv, row = row0 + r;
        if (row < n) out[((b * n + row) * heads + h) * dv + col] = from_float<T>(acc[e] / row_sum[r]);
    }
}

size_t align256(size_t bytes) { return (bytes + 255) / 256 * 256; }

bool launch_ok() { return cudaGetLastError() == cudaSuccess; }

template <typename T>
int run_attention(const void* x, const void* v, void* out, float* q, float* threshold, int64_t batch, int64_t heads,
                  int64_t n, int64_t d, int64_t v_sb, int64_t v_sh, int64_t v_sn, float tau, bool scga,
                  bool batch_mean, cudaStream_t stream) {
    if (batch * heads > 65535) return RADSEG_ERR_ARGUMENT;  // grid.y limit; split the batch
    const int64_t rows = batch * n * heads;
    normalize_rows_kernel<T><<<static_cast<unsigned>((rows + kWarps - 1) / kWarps), kThreads, 0, stream>>>(
        static_cast<const T*>(x), q, rows, n, heads, d);
    if (scga) {
        mean_similarity_kernel<<<static_cast<unsigned>(batch), kThreads, 0, stream>>>(q, threshold, n, d);
        if (batch_mean) batch_mean_kernel<<<1, 1, 0, stream>>>(threshold, batch);
    } else if (cudaMemsetAsync(threshold, 0, sizeof(float) * batch * heads, stream) != cudaSuccess) {
        return RADSEG_ERR_CUDA;
    }
    const size_t shared = sizeof(float) * kBlockM * d;  // dv == d for both operators
    int device = 0, optin = 0;
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
    const size_t static_shared = sizeof(float) * (kBlockM * (kBlockK + 1) + kBlockN * (kBlockK + 1) +
                                                  kBlockM * (kBlockN + 1) + 3 * kBlockM) + sizeof(int);
    if (shared + static_shared > static_cast<size_t>(optin)) return RADSEG_ERR_SHARED_MEMORY;
    if (cudaFuncSetAttribute(thresholded_attention_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(shared)) != cudaSuccess) {
        return RADSEG_ERR_CUDA;
    }
    const dim3 grid(static_cast<unsigned>((n + kBlockM - 1) / kBlockM), static_cast<unsigned>(batch * heads));
    thresholded_attention_kernel<T><<<grid, kThreads, shared, stream>>>(
        q, static_cast<const T*>(v), threshold, static_cast<T*>(out), n, d, d, heads, tau, v_sb, v_sh, v_sn);
    return launch_ok() ? RADSEG_OK : RADSEG_ERR_CUDA;
}

int dispatch(radseg_dtype dtype, const void* x, const void* v, void* out, float* q, float* threshold, int64_t batch,
             int64_t heads, int64_t n, int64_t d, int64_t v_sb, int64_t v_sh, int64_t v_sn, float tau, bool scga,
             bool batch_mean, cudaStream_t stream) {
    switch (dtype) {
        case RADSEG_FLOAT32:
            return run_attention<float>(x, v, out, q, threshold, batch, heads, n, d, v_sb, v_sh, v_sn, tau, scga,
                                        batch_mean, stream);
        case RADSEG_FLOAT16:
            return run_attention<__half>(x, v, out, q, threshold, batch, heads, n, d, v_sb, v_sh, v_sn, tau, scga,
                                         batch_mean, stream);
        case RADSEG_BFLOAT16:
            return run_attention<__nv_bfloat16>(x, v, out, q, threshold, batch, heads, n, d, v_sb, v_sh, v_sn, tau,
                                                scga, batch_mean, stream);
    }
    return RADSEG_ERR_ARGUMENT;
}

}  // namespace

extern "C" {

const char* radseg_error_string(int code) {
    switch (code) {
        case RADSEG_OK: return "ok";
        case RADSEG_ERR_ARGUMENT:
            return "radseg kernels: invalid argument (size <= 0, null pointer, unknown dtype or batch*heads > 65535)";
        case RADSEG_ERR_SHARED_MEMORY:
            return "radseg kernels: feature width too large for this GPU's shared memory per block";
        case RADSEG_ERR_CUDA: return "radseg kernels: a CUDA launch failed (check cudaGetLastError)";
        default: return "radseg kernels: unknown error code";
    }
}

size_t radseg_scga_workspace_size(int64_t batch, int64_t n, int64_t channels) {
    return align256(sizeof(float) * batch * n * channels) + align256(sizeof(float) * batch);
}

int radseg_scga(const void* features, void* out, void* workspace, int64_t batch, int64_t n, int64_t channels,
                float tau, int batch_mean, radseg_dtype dtype, cudaStream_t stream) {
    if (!features || !out || !workspace || batch <= 0 || n <= 0 || channels <= 0) return RADSEG_ERR_ARGUMENT;
    float* q = static_cast<float*>(workspace);
    float* threshold = reinterpret_cast<float*>(static_cast<char*>(workspace) +
                                                align256(sizeof(float) * batch * n * channels));
    return dispatch(dtype, features, features, out, q, threshold, batch, 1, n, channels, n * channels, 0, channels,
                    tau, true, batch_mean != 0, stream);
}

size_t radseg_self_correlation_workspace_size(int64_t batch, int64_t heads, int64_t n, int64_t head_dim) {
    return align256(sizeof(float) * batch * heads * n * head_dim) + align256(sizeof(float) * batch * heads);
}

int radseg_self_correlation(const void* o, const void* v, void* out, void* workspace, int64_t batch, int64_t heads,
                            int64_t n, int64_t head_dim, int64_t v_stride_b, int64_t v_stride_h, int64_t v_stride_n,
                            float tau, radseg_dtype dtype, cudaStream_t stream) {
    if (!o || !v || !out || !workspace || batch <= 0 || heads <= 0 || n <= 0 || head_dim <= 0) {
        return RADSEG_ERR_ARGUMENT;
    }
    float* q = static_cast<float*>(workspace);
    float* threshold = reinterpret_cast<float*>(static_cast<char*>(workspace) +
                                                align256(sizeof(float) * batch * heads * n * head_dim));
    return dispatch(dtype, o, v, out, q, threshold, batch, heads, n, head_dim, v_stride_b, v_stride_h, v_stride_n,
                    tau, false, false, stream);
}

}  // extern "C"
