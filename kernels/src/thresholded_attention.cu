// Thresholded self-attention kernels behind SCGA and SCRA (see ../include/radseg_kernels.h).
//
// Two attention kernels, chosen per dtype by run_attention():
//   - thresholded_attention_tc_kernel: fp16/bf16 inputs on sm_80+, both products on tensor cores
//     (WMMA 16x16x16, fp32 accumulation, fp32 online softmax); see its comment below;
//   - thresholded_attention_kernel: the exact fp32 path (CUDA-core FMAs), also fp16/bf16 before sm_80.
// The SCGA threshold is reduced across blocks (column_partial_sums_kernel + mean_similarity_kernel).
//
// thresholded_attention_kernel mirrors `thresholded_attention` in radseg_edge/kernels/blocked.py:
// a thread block owns BLOCK_M query rows of one group and walks over the keys in BLOCK_N tiles:
//   1. similarity tile  S = Q_rows . Q_tile^T, reduced over d in BLOCK_K chunks (shared memory)
//   2. score = tau * (S - m); score < 0 -> masked (-inf)
//   3. online softmax per row: running max (starts at 0: kept scores are >= 0), running sum,
//      rescale factor alpha = exp(old_max - new_max)
//   4. acc = acc * alpha + P . V_tile  (acc: BLOCK_M x Dv fp32 in dynamic shared memory),
//      skipped when every entry of the tile is masked
// and finally writes acc / running_sum. Extra memory: the normalised rows (N x d per group, fp32 or
// the input's half type), one threshold per group and, for SCGA, B x ceil(N / 128) x C partial sums.
#include "radseg_kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math_constants.h>
#include <mma.h>

#include <type_traits>

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
// (b*N + n)*H + h) -> q[((b*H + h)*N + n)*d + k] = x / max(||x||, eps), computed in fp32 and stored as
// Q (fp32 for the exact path, the input's half type for the tensor-core path). One warp per row.
template <typename T, typename Q>
__global__ void normalize_rows_kernel(const T* __restrict__ x, Q* __restrict__ q, int64_t rows, int64_t n,
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
    Q* dst = q + ((b * heads + h) * n + i) * d;
    for (int64_t k = lane; k < d; k += 32) dst[k] = from_float<Q>(to_float(src[k]) * inv);
}

// SCGA threshold m[b] = ||sum_i q_i||^2 / N^2 (the mean of all cosine similarities), reduced across
// blocks in two deterministic steps (no atomics):
//   column_partial_sums_kernel: grid (ceil(C / kThreads), R = ceil(N / kMeanRows), B); block (x, r, b)
//     writes partial[(b*R + r)*C + col] = sum of q[b, i, col] over its kMeanRows rows i;
//   mean_similarity_kernel: one block per image squares the column sums (sum over r) and reduces.
constexpr int kMeanRows = 128;

template <typename Q>
__global__ void column_partial_sums_kernel(const Q* __restrict__ q, float* __restrict__ partial, int64_t n,
                                           int64_t c) {
    const int64_t col = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
    if (col >= c) return;
    const int64_t chunks = gridDim.y, r = blockIdx.y, b = blockIdx.z;
    const int64_t first = r * kMeanRows, last = first + kMeanRows < n ? first + kMeanRows : n;
    const Q* base = q + b * n * c + col;
    float sum = 0.f;
    for (int64_t i = first; i < last; ++i) sum += to_float(base[i * c]);
    partial[(b * chunks + r) * c + col] = sum;
}

__global__ void mean_similarity_kernel(const float* __restrict__ partial, float* __restrict__ m, int64_t n,
                                       int64_t c, int64_t chunks) {
    __shared__ float warp_totals[kWarps];
    const float* base = partial + static_cast<int64_t>(blockIdx.x) * chunks * c;
    float local = 0.f;
    for (int64_t col = threadIdx.x; col < c; col += kThreads) {
        float column_sum = 0.f;
        for (int64_t r = 0; r < chunks; ++r) column_sum += base[r * c + col];
        local += column_sum * column_sum;
    }
    local = warp_sum(local);
    if (threadIdx.x % 32 == 0) warp_totals[threadIdx.x / 32] = local;
    __syncthreads();
    if (threadIdx.x == 0) {
        float total = 0.f;
        for (int w = 0; w < kWarps; ++w) total += warp_totals[w];
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
__global__ void __launch_bounds__(kThreads, 1)
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
    // step 4's split: row_groups in {1, 2, 4, 8, 16}, the largest with row_groups * dv <= kThreads
    int row_groups = 1;
    while (row_groups < kBlockM && 2 * row_groups * dv <= kThreads) row_groups *= 2;
    const int rows_per_group = kBlockM / row_groups;
    const int span = kThreads / row_groups;  // threads per row group
    const int rg = tid / span, c0 = tid % span;

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
        // 4. acc = acc * alpha + P . V. Thread t owns rows [rg * rows_per_group, (rg + 1) * rows_per_group)
        //    of columns c0, c0 + span, ...: with dv < kThreads the rows are split over row groups, so
        //    that every thread has work (dv = 64: 4 row groups of 4 rows).
        if (tile_has_kept && rg < row_groups) {
            const int keys = static_cast<int>(n - key0 < kBlockN ? n - key0 : kBlockN);
            const int r0 = rg * rows_per_group;
            for (int64_t col = c0; col < dv; col += span) {
                float a[kBlockM];
#pragma unroll
                for (int r = 0; r < kBlockM; ++r) {
                    if (r < rows_per_group) a[r] = acc[(r0 + r) * dv + col] * alpha[r0 + r];
                }
                for (int j = 0; j < keys; ++j) {
                    const float value = to_float(vg[(key0 + j) * v_sn + col]);
#pragma unroll
                    for (int r = 0; r < kBlockM; ++r) {
                        if (r < rows_per_group) a[r] += p_tile[r0 + r][j] * value;
                    }
                }
#pragma unroll
                for (int r = 0; r < kBlockM; ++r) {
                    if (r < rows_per_group) acc[(r0 + r) * dv + col] = a[r];
                }
            }
        }
    }
    __syncthreads();
    for (int64_t e = tid; e < kBlockM * dv; e += kThreads) {
        const int64_t r = e / dv, col = e % dv, row = row0 + r;
        if (row < n) out[((b * n + row) * heads + h) * dv + col] = from_float<T>(acc[e] / row_sum[r]);
    }
}

// ---------------------------------------------------------------------------------------------
// Tensor-core path (fp16 / bf16 inputs, sm_80 and newer): both products on WMMA 16x16x16 tiles with
// fp32 accumulation, online softmax in fp32. A block of kTcWarps warps owns kTcM = 16 query rows of
// one group and walks over the keys in kTcN = 64 tiles:
//   1. S = Q_rows . K_tile^T: warp w computes the 16 x 16 slice of keys [16w, 16w + 16), reduced over
//      d in kTcK chunks staged (zero-padded past N and d) in shared memory;
//   2. online softmax over the 16 x 64 fp32 tile (warp w: rows w, w + 4, ...): P (input type) in
//      shared memory, alpha and the running max / sum per row;
//   3. acc = acc * alpha + P . V: warp w owns the 16-wide value-channel tiles w, w + 4, ...; each
//      16 x 16 product is one WMMA chain over the 64 keys (V sub-tile zero-padded in shared memory),
//      added to the fp32 accumulator (dynamic shared memory, 16 x dv) with the rescale.
// Every channel tile has work for one warp, so SCRA heads of width 64 keep all four warps busy.
constexpr int kTcWarps = 4;
constexpr int kTcThreads = kTcWarps * 32;
constexpr int kTcM = 16;
constexpr int kTcN = 16 * kTcWarps;  // 64
constexpr int kTcK = 64;
constexpr int kTcPad = 8;            // keeps WMMA row strides multiples of 8 halves (16 bytes)

template <typename T>
struct TcShared {
    __align__(32) T q[kTcM][kTcK + kTcPad];
    __align__(32) T k[kTcN][kTcK + kTcPad];
    __align__(32) float s[kTcM][kTcN + 4];
    __align__(32) T p[kTcM][kTcN + kTcPad];
    __align__(32) T v[kTcWarps][kTcN][16 + kTcPad];
    __align__(32) float pv[kTcWarps][16][16 + 4];
    float row_max[kTcM], row_sum[kTcM], alpha[kTcM];
    int tile_has_kept;
};

// grid: (ceil(N / kTcM), groups); dynamic shared memory: kTcM * dv floats.
// q: groups x N x d, type T (row-normalised); v, out, threshold as in thresholded_attention_kernel.
template <typename T>
__global__ void __launch_bounds__(kTcThreads)
thresholded_attention_tc_kernel(const T* __restrict__ q, const T* __restrict__ v, const float* __restrict__ threshold,
                                T* __restrict__ out, int64_t n, int64_t d, int64_t dv, int64_t heads, float tau,
                                int64_t v_sb, int64_t v_sh, int64_t v_sn) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap();  // the host launches this kernel only on compute capability >= 8.0
#else
    namespace wmma = nvcuda::wmma;
    extern __shared__ float acc[];  // kTcM x dv
    __shared__ TcShared<T> sh;

    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    const int64_t group = blockIdx.y, b = group / heads, h = group % heads;
    const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kTcM;
    const T* qg = q + group * n * d;
    const T* vg = v + b * v_sb + h * v_sh;
    const float m = threshold[group];
    const T zero = from_float<T>(0.f);
    const int64_t col_tiles = (dv + 15) / 16;

    for (int64_t e = tid; e < kTcM * dv; e += kTcThreads) acc[e] = 0.f;
    if (tid < kTcM) {
        sh.row_max[tid] = 0.f;
        sh.row_sum[tid] = 0.f;
    }

    for (int64_t key0 = 0; key0 < n; key0 += kTcN) {
        // 1. similarity tile
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> s_frag;
        wmma::fill_fragment(s_frag, 0.f);
        for (int64_t k0 = 0; k0 < d; k0 += kTcK) {
            __syncthreads();  // previous readers of sh.q / sh.k (and of sh.p, sh.tile_has_kept) are done
            for (int e = tid; e < kTcM * kTcK; e += kTcThreads) {
                const int r = e / kTcK, k = e % kTcK;
                const int64_t row = row0 + r, kk = k0 + k;
                sh.q[r][k] = (row < n && kk < d) ? qg[row * d + kk] : zero;
            }
            for (int e = tid; e < kTcN * kTcK; e += kTcThreads) {
                const int r = e / kTcK, k = e % kTcK;
                const int64_t key = key0 + r, kk = k0 + k;
                sh.k[r][k] = (key < n && kk < d) ? qg[key * d + kk] : zero;
            }
            __syncthreads();
            const int64_t depth = d - k0 < kTcK ? d - k0 : kTcK;
            for (int kk = 0; kk < depth; kk += 16) {  // the zero padding covers a partial last step
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a_frag;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> b_frag;
                wmma::load_matrix_sync(a_frag, &sh.q[0][kk], kTcK + kTcPad);
                wmma::load_matrix_sync(b_frag, &sh.k[16 * warp][kk], kTcK + kTcPad);
                wmma::mma_sync(s_frag, a_frag, b_frag, s_frag);
            }
        }
        wmma::store_matrix_sync(&sh.s[0][16 * warp], s_frag, kTcN + 4, wmma::mem_row_major);
        if (tid == 0) sh.tile_has_kept = 0;
        __syncthreads();
        // 2. thresholded scores and online softmax: warp w owns rows w, w + kTcWarps, ...
        for (int r = warp; r < kTcM; r += kTcWarps) {
            float score[2];
#pragma unroll
            for (int j = 0; j < 2; ++j) {
                const int col = lane + 32 * j;
                const float value = (sh.s[r][col] - m) * tau;
                const bool keep = row0 + r < n && key0 + col < n && !(value < 0.f);
                score[j] = keep ? value : -CUDART_INF_F;
            }
            const float tile_max = warp_max(fmaxf(score[0], score[1]));
            const float old_max = sh.row_max[r];
            const float new_max = fmaxf(old_max, tile_max);
            const float e0 = expf(score[0] - new_max), e1 = expf(score[1] - new_max);
            sh.p[r][lane] = from_float<T>(e0);
            sh.p[r][lane + 32] = from_float<T>(e1);
            const float tile_sum = warp_sum(e0 + e1);
            if (lane == 0) {
                const float scale = expf(old_max - new_max);
                sh.alpha[r] = scale;
                sh.row_sum[r] = sh.row_sum[r] * scale + tile_sum;
                sh.row_max[r] = new_max;
                if (tile_max > -CUDART_INF_F) sh.tile_has_kept = 1;
            }
        }
        __syncthreads();
        // 3. acc = acc * alpha + P . V, warp w on channel tiles w, w + kTcWarps, ...
        if (sh.tile_has_kept) {
            for (int64_t ct = warp; ct < col_tiles; ct += kTcWarps) {
                const int64_t col0 = ct * 16;
                for (int e = lane; e < kTcN * 16; e += 32) {
                    const int j = e / 16, c = e % 16;
                    const int64_t key = key0 + j, col = col0 + c;
                    sh.v[warp][j][c] = (key < n && col < dv) ? vg[key * v_sn + col] : zero;
                }
                __syncwarp();
                wmma::fragment<wmma::accumulator, 16, 16, 16, float> o_frag;
                wmma::fill_fragment(o_frag, 0.f);
#pragma unroll
                for (int kk = 0; kk < kTcN; kk += 16) {
                    wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a_frag;
                    wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> b_frag;
                    wmma::load_matrix_sync(a_frag, &sh.p[0][kk], kTcN + kTcPad);
                    wmma::load_matrix_sync(b_frag, &sh.v[warp][kk][0], 16 + kTcPad);
                    wmma::mma_sync(o_frag, a_frag, b_frag, o_frag);
                }
                wmma::store_matrix_sync(&sh.pv[warp][0][0], o_frag, 16 + 4, wmma::mem_row_major);
                __syncwarp();
                for (int e = lane; e < 16 * 16; e += 32) {
                    const int r = e / 16, c = e % 16;
                    const int64_t col = col0 + c;
                    if (col < dv) acc[r * dv + col] = acc[r * dv + col] * sh.alpha[r] + sh.pv[warp][r][c];
                }
                __syncwarp();  // sh.v[warp] / sh.pv[warp] are rewritten by the next channel tile
            }
        }
    }
    __syncthreads();
    for (int64_t e = tid; e < kTcM * dv; e += kTcThreads) {
        const int64_t r = e / dv, col = e % dv, row = row0 + r;
        if (row < n) out[((b * n + row) * heads + h) * dv + col] = from_float<T>(acc[e] / sh.row_sum[r]);
    }
#endif
}

size_t align256(size_t bytes) { return (bytes + 255) / 256 * 256; }

bool launch_ok() { return cudaGetLastError() == cudaSuccess; }

// Checks that `dynamic_bytes` of dynamic shared memory fit next to `kernel`'s static shared memory
// (its real size, from cudaFuncGetAttributes) and allows the kernel the device's whole room (opt-in
// limit minus the static part), not just this call's size: the attribute is per function and shared
// by every host thread, so setting it to each call's own size would let a concurrent call with a
// narrower width lower it between this call's check and its launch. Set once per device.
int check_shared(const void* kernel, size_t dynamic_bytes) {
    int device = 0, optin = 0;
    cudaFuncAttributes attributes{};
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) != cudaSuccess ||
        cudaFuncGetAttributes(&attributes, kernel) != cudaSuccess) {
        return RADSEG_ERR_CUDA;
    }
    const size_t room = static_cast<size_t>(optin) > attributes.sharedSizeBytes
                            ? static_cast<size_t>(optin) - attributes.sharedSizeBytes
                            : 0;
    if (dynamic_bytes > room) return RADSEG_ERR_SHARED_MEMORY;
    if (static_cast<size_t>(attributes.maxDynamicSharedSizeBytes) < room &&
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(room)) !=
            cudaSuccess) {
        return RADSEG_ERR_CUDA;
    }
    return RADSEG_OK;
}

// The tensor-core kernel runs only where its loaded code was compiled for sm_80+: a device of compute
// capability >= 8.0 AND a binary (or PTX JIT-compiled) from compute_80 or newer. A build for older
// targets only (e.g. CMAKE_CUDA_ARCHITECTURES=75) running on an sm_80+ device JIT-compiles the
// __trap() branch, so the device's capability alone is not enough.
template <typename T>
bool tensor_cores_available() {
    int device = 0, major = 0;
    if (cudaGetDevice(&device) != cudaSuccess) return false;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) return false;
    if (major < 8) return false;
    cudaFuncAttributes attributes{};
    if (cudaFuncGetAttributes(&attributes, reinterpret_cast<const void*>(thresholded_attention_tc_kernel<T>)) !=
        cudaSuccess) {
        (void)cudaGetLastError();  // no image for this device: the fp32-workspace kernel reports it at launch
        return false;
    }
    return attributes.ptxVersion >= 80;
}

// Q: the type of the normalised rows in the workspace (T on the tensor-core path, else fp32).
template <typename T, typename Q>
int run_attention_with(const void* x, const void* v, void* out, void* q_workspace, float* threshold, float* partial,
                       int64_t batch, int64_t heads, int64_t n, int64_t d, int64_t v_sb, int64_t v_sh, int64_t v_sn,
                       float tau, bool scga, bool batch_mean, cudaStream_t stream) {
    Q* q = static_cast<Q*>(q_workspace);
    const int64_t rows = batch * n * heads;
    normalize_rows_kernel<T, Q><<<static_cast<unsigned>((rows + kWarps - 1) / kWarps), kThreads, 0, stream>>>(
        static_cast<const T*>(x), q, rows, n, heads, d);
    if (scga) {
        const int64_t chunks = (n + kMeanRows - 1) / kMeanRows;
        const dim3 grid(static_cast<unsigned>((d + kThreads - 1) / kThreads), static_cast<unsigned>(chunks),
                        static_cast<unsigned>(batch));
        column_partial_sums_kernel<Q><<<grid, kThreads, 0, stream>>>(q, partial, n, d);
        mean_similarity_kernel<<<static_cast<unsigned>(batch), kThreads, 0, stream>>>(partial, threshold, n, d,
                                                                                      chunks);
        if (batch_mean) batch_mean_kernel<<<1, 1, 0, stream>>>(threshold, batch);
    } else if (cudaMemsetAsync(threshold, 0, sizeof(float) * batch * heads, stream) != cudaSuccess) {
        return RADSEG_ERR_CUDA;
    }
    const size_t shared = sizeof(float) * kBlockM * d;  // dv == d for both operators; kTcM == kBlockM
    const dim3 grid(static_cast<unsigned>((n + kBlockM - 1) / kBlockM), static_cast<unsigned>(batch * heads));
    if constexpr (std::is_same<Q, float>::value) {
        const int rc = check_shared(reinterpret_cast<const void*>(thresholded_attention_kernel<T>), shared);
        if (rc != RADSEG_OK) return rc;
        thresholded_attention_kernel<T><<<grid, kThreads, shared, stream>>>(
            q, static_cast<const T*>(v), threshold, static_cast<T*>(out), n, d, d, heads, tau, v_sb, v_sh, v_sn);
    } else {
        const int rc = check_shared(reinterpret_cast<const void*>(thresholded_attention_tc_kernel<T>), shared);
        if (rc != RADSEG_OK) return rc;
        thresholded_attention_tc_kernel<T><<<grid, kTcThreads, shared, stream>>>(
            q, static_cast<const T*>(v), threshold, static_cast<T*>(out), n, d, d, heads, tau, v_sb, v_sh, v_sn);
    }
    return launch_ok() ? RADSEG_OK : RADSEG_ERR_CUDA;
}

// fp32: the exact CUDA-core kernel; fp16/bf16: the tensor-core kernel (CUDA-core kernel before sm_80).
template <typename T>
int run_attention(const void* x, const void* v, void* out, void* q, float* threshold, float* partial, int64_t batch,
                  int64_t heads, int64_t n, int64_t d, int64_t v_sb, int64_t v_sh, int64_t v_sn, float tau, bool scga,
                  bool batch_mean, cudaStream_t stream) {
    if constexpr (!std::is_same<T, float>::value) {
        if (tensor_cores_available<T>()) {
            return run_attention_with<T, T>(x, v, out, q, threshold, partial, batch, heads, n, d, v_sb, v_sh, v_sn,
                                            tau, scga, batch_mean, stream);
        }
    }
    return run_attention_with<T, float>(x, v, out, q, threshold, partial, batch, heads, n, d, v_sb, v_sh, v_sn, tau,
                                        scga, batch_mean, stream);
}

int dispatch(radseg_dtype dtype, const void* x, const void* v, void* out, void* q, float* threshold, float* partial,
             int64_t batch, int64_t heads, int64_t n, int64_t d, int64_t v_sb, int64_t v_sh, int64_t v_sn, float tau,
             bool scga, bool batch_mean, cudaStream_t stream) {
    if (batch * heads > 65535) return RADSEG_ERR_ARGUMENT;  // grid.y limit; split the batch
    switch (dtype) {
        case RADSEG_FLOAT32:
            return run_attention<float>(x, v, out, q, threshold, partial, batch, heads, n, d, v_sb, v_sh, v_sn, tau,
                                        scga, batch_mean, stream);
        case RADSEG_FLOAT16:
            return run_attention<__half>(x, v, out, q, threshold, partial, batch, heads, n, d, v_sb, v_sh, v_sn, tau,
                                         scga, batch_mean, stream);
        case RADSEG_BFLOAT16:
            return run_attention<__nv_bfloat16>(x, v, out, q, threshold, partial, batch, heads, n, d, v_sb, v_sh,
                                                v_sn, tau, scga, batch_mean, stream);
    }
    return RADSEG_ERR_ARGUMENT;
}

// Workspace parts, in order: normalised rows (fp32-sized), thresholds, SCGA column partial sums.
size_t rows_bytes(int64_t groups, int64_t n, int64_t d) { return align256(sizeof(float) * groups * n * d); }
size_t thresholds_bytes(int64_t groups) { return align256(sizeof(float) * groups); }
size_t partial_bytes(int64_t batch, int64_t n, int64_t c) {
    return align256(sizeof(float) * batch * ((n + kMeanRows - 1) / kMeanRows) * c);
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
    return rows_bytes(batch, n, channels) + thresholds_bytes(batch) + partial_bytes(batch, n, channels);
}

int radseg_scga(const void* features, void* out, void* workspace, int64_t batch, int64_t n, int64_t channels,
                float tau, int batch_mean, radseg_dtype dtype, cudaStream_t stream) {
    if (!features || !out || !workspace || batch <= 0 || n <= 0 || channels <= 0) return RADSEG_ERR_ARGUMENT;
    char* base = static_cast<char*>(workspace);
    float* threshold = reinterpret_cast<float*>(base + rows_bytes(batch, n, channels));
    float* partial = reinterpret_cast<float*>(base + rows_bytes(batch, n, channels) + thresholds_bytes(batch));
    return dispatch(dtype, features, features, out, workspace, threshold, partial, batch, 1, n, channels,
                    n * channels, 0, channels, tau, true, batch_mean != 0, stream);
}

size_t radseg_self_correlation_workspace_size(int64_t batch, int64_t heads, int64_t n, int64_t head_dim) {
    return rows_bytes(batch * heads, n, head_dim) + thresholds_bytes(batch * heads);
}

int radseg_self_correlation(const void* o, const void* v, void* out, void* workspace, int64_t batch, int64_t heads,
                            int64_t n, int64_t head_dim, int64_t v_stride_b, int64_t v_stride_h, int64_t v_stride_n,
                            float tau, radseg_dtype dtype, cudaStream_t stream) {
    if (!o || !v || !out || !workspace || batch <= 0 || heads <= 0 || n <= 0 || head_dim <= 0) {
        return RADSEG_ERR_ARGUMENT;
    }
    float* threshold = reinterpret_cast<float*>(static_cast<char*>(workspace) +
                                                rows_bytes(batch * heads, n, head_dim));
    return dispatch(dtype, o, v, out, workspace, threshold, nullptr, batch, heads, n, head_dim, v_stride_b,
                    v_stride_h, v_stride_n, tau, false, false, stream);
}

}  // extern "C"
