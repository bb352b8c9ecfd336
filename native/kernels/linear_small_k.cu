// mamba_linear_softplus on the tensor cores for layers whose inner dimension fits in shared memory (K <= 256,
// a multiple of 8; x and W both bfloat16 or both float16): Mamba-1's dt projection, K = dt_rank = d_model / 16.
// cuBLAS has no softplus epilogue, and a separate pass would round dt twice or move it twice.
//
// What must move, M x K x N (mamba-2.8b prefill of 2048 tokens: 2048 x 160 x 5120, bf16 y): x and W read once
// from HBM (0.66 + 1.6 MB; x is read again from L2 by every column tile: N / 64 times), M N outputs written
// (21 MB, ~5 us at 4 TB/s). FLOPs: 2 M N K on the tensor cores (3.4 G) and one softplus per output (two MUFU
// ops and ~14 FMA-pipe instructions: the epilogue, not the product, is this kernel's arithmetic).
//
// Design (SmallKTraits):
// - A block owns a column tile of 64 outputs: its W rows (64 x K) stay in shared memory for the whole
//   kernel. The grid's blocks per column tile split the row tiles (32 rows of x) between them, round robin;
//   each block steps through its row tiles with the next one's copy (16-byte cp.async) in flight while the
//   current one is multiplied and its epilogue runs.
// - 4 warps as 2 x 2, each 16 rows x 32 columns of the tile: per 16-wide k step one ldmatrix.x4 for A, two
//   for B, four m16n8k16 MMAs with float32 accumulators. Shared rows are K + 8 elements (K a multiple of 16;
//   K = 8 mod 16 is padded with zeros), so that the 8 rows an ldmatrix reads fall in distinct banks.
// - Epilogue from the accumulators: + bias, softplus_mufu on the float32 sum, rounded once to y's dtype,
//   stored as pairs of columns.
// - Blocks per SM as the occupancy calculator allows (43 KB of shared memory at K = 160: 5), the grid one
//   wave of them.
#include "common.cuh"
#include "launch.cuh"
#include "linear_small_k.cuh"
#include "mma_fragments.cuh"
#include "mma_ops.cuh"

namespace mamba::cuda {

namespace {

struct SmallKTraits {
    static constexpr int kThreads = 128;
    static constexpr int kRows = 32;     // rows of x a tile (BM)
    static constexpr int kCols = 64;     // outputs a block (BN)
    static constexpr int kMaxK = 256;
    static constexpr int kWarpRows = 16;
    static constexpr int kWarpCols = 32;
    static constexpr int kN8 = kWarpCols / 8;  // n8 MMA tiles a warp
    static_assert((kRows / kWarpRows) * (kCols / kWarpCols) * 32 == kThreads, "one warp tile a warp");
};

struct SmallKArgs {
    const char * x;
    const char * w;
    char * y;
    AnyPtr bias;
    int64_t ldx, ldw, ldy, bias_s;
    int M, N, K, padded_k, row_stride;  // row_stride: elements of a shared row
    int row_tiles;
    bool has_bias, pair_stores;
};

template <class T>
__device__ __forceinline__ void mma_16bit(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    if constexpr (std::is_same_v<T, bf16_t>) mma_bf16(d, a, b0, b1);
    else mma_f16(d, a, b0, b1);
}

template <class Y>
__device__ __forceinline__ void store_pair(Y * p, float v0, float v1) {
    if constexpr (std::is_same_v<Y, float>) *reinterpret_cast<float2 *>(p) = make_float2(v0, v1);
    else if constexpr (std::is_same_v<Y, bf16_t>) *reinterpret_cast<__nv_bfloat162 *>(p) = __floats2bfloat162_rn(v0, v1);
    else *reinterpret_cast<__half2 *>(p) = __floats2half2_rn(v0, v1);
}

// Copies `rows` rows of K elements (row stride ld) into shared rows of `row_stride` elements, zero-filling
// rows at or past `valid` and the columns from K to padded_k.
template <class T>
__device__ __forceinline__ void copy_rows(T * dst, const T * src, int64_t ld, int rows, int valid, const SmallKArgs & a) {
    const int pieces_row = a.padded_k / 8;
    for (int p = int(threadIdx.x); p < rows * pieces_row; p += SmallKTraits::kThreads) {
        const int r = p / pieces_row, c = (p % pieces_row) * 8;
        const bool in = r < valid && c < a.K;
        cp_async_16(dst + r * a.row_stride + c, in ? src + r * ld + c : src, in);
    }
}

template <class T, class Y>
__global__ void __launch_bounds__(SmallKTraits::kThreads) linear_small_k_kernel(SmallKArgs a) {
    using Tr = SmallKTraits;
    wait_for_producer();  // PDL-safe (launch.cuh): x comes from the previous kernel
    allow_dependents();
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T * sw = reinterpret_cast<T *>(smem_raw);  // [kCols][row_stride]
    T * sx = sw + Tr::kCols * a.row_stride;    // [2][kRows][row_stride]

    const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5;
    const int wr = (warp / (Tr::kCols / Tr::kWarpCols)) * Tr::kWarpRows;  // warp tile's first row
    const int wc = (warp % (Tr::kCols / Tr::kWarpCols)) * Tr::kWarpCols;  // and first column
    const int n0 = int(blockIdx.y) * Tr::kCols;
    const T * x = reinterpret_cast<const T *>(a.x);
    const T * w = reinterpret_cast<const T *>(a.w) + int64_t(n0) * a.ldw;
    Y * y = reinterpret_cast<Y *>(a.y);

    int tile = int(blockIdx.x);
    copy_rows(sw, w, a.ldw, Tr::kCols, a.N - n0, a);
    if (tile < a.row_tiles) copy_rows(sx, x + int64_t(tile) * Tr::kRows * a.ldx, a.ldx, Tr::kRows, a.M - tile * Tr::kRows, a);
    cp_async_commit();

    // This thread's output columns (accumulator layout: mma_fragments.cuh) and their bias.
    const int g = lane / 4, c2 = 2 * (lane % 4);
    float bias[Tr::kN8][2];
#pragma unroll
    for (int j = 0; j < Tr::kN8; ++j)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const int col = n0 + wc + 8 * j + c2 + e;
            bias[j][e] = a.has_bias && col < a.N ? a.bias.load(int64_t(col) * a.bias_s) : 0.0f;
        }

    for (int buf = 0; tile < a.row_tiles; tile += int(gridDim.x), buf ^= 1) {
        const int next = tile + int(gridDim.x);
        if (next < a.row_tiles)
            copy_rows(sx + (buf ^ 1) * Tr::kRows * a.row_stride, x + int64_t(next) * Tr::kRows * a.ldx, a.ldx, Tr::kRows, a.M - next * Tr::kRows, a);
        cp_async_commit();
        cp_async_wait_group<1>();  // this tile (and W) landed for this thread
        __syncthreads();           // ... and for every thread

        float acc[Tr::kN8][4] = {};
        const T * xs = sx + buf * Tr::kRows * a.row_stride;
        for (int k0 = 0; k0 < a.padded_k; k0 += 16) {
            uint32_t af[4];
            ldsm_x4(af, xs + (wr + frag::ldsm_a_row(lane)) * a.row_stride + k0 + frag::ldsm_a_col(lane));
#pragma unroll
            for (int jj = 0; jj < Tr::kN8 / 2; ++jj) {
                uint32_t bf[4];
                ldsm_x4(bf, sw + (wc + 16 * jj + frag::ldsm_bt_row(lane)) * a.row_stride + k0 + frag::ldsm_bt_col(lane));
                mma_16bit<T>(acc[2 * jj], af, bf[0], bf[1]);
                mma_16bit<T>(acc[2 * jj + 1], af, bf[2], bf[3]);
            }
        }
        __syncthreads();  // every warp is done with this buffer before the next iteration refills it

        // Epilogue: bias, softplus, one rounding, pairs of columns; checks only in a tile at the edges.
        const int row0 = tile * Tr::kRows + wr + g;
        const bool whole = a.pair_stores && (tile + 1) * Tr::kRows <= a.M && n0 + Tr::kCols <= a.N;
#pragma unroll
        for (int j = 0; j < Tr::kN8; ++j) {
            const int col = n0 + wc + 8 * j + c2;
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int row = row0 + 8 * h;
                const float v0 = softplus_mufu(acc[j][2 * h] + bias[j][0]), v1 = softplus_mufu(acc[j][2 * h + 1] + bias[j][1]);
                Y * dst = y + int64_t(row) * a.ldy + col;
                if (whole) {
                    store_pair(dst, v0, v1);
                } else if (row < a.M && col < a.N) {
                    if (a.pair_stores && col + 1 < a.N) {
                        store_pair(dst, v0, v1);
                    } else {
                        dst[0] = from_f32<Y>(v0);
                        if (col + 1 < a.N) dst[1] = from_f32<Y>(v1);
                    }
                }
            }
        }
    }
    cp_async_wait_all();  // no copy outlives the block
}

template <class T, class Y>
void launch_small_k(mamba_context & ctx, const SmallKArgs & a) {
    using Tr = SmallKTraits;
    auto kernel = linear_small_k_kernel<T, Y>;
    const size_t smem = size_t(Tr::kCols + 2 * Tr::kRows) * size_t(a.row_stride) * sizeof(T);
    MAMBA_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    int per_sm = 0;
    MAMBA_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, Tr::kThreads, smem));
    const int col_tiles = int(ceil_div(int64_t(a.N), int64_t(Tr::kCols)));
    // One wave: the block slots shared out over the column tiles, each block taking every S-th row tile.
    const int slots = std::max(1, per_sm) * state_of(ctx).multiprocessors;
    const int per_col = std::max(1, std::min(a.row_tiles, slots / col_tiles));
    launch_kernel(ctx, "linear_small_k_kernel", true, kernel, dim3(unsigned(per_col), unsigned(col_tiles)), dim3(Tr::kThreads), smem, a);
    MAMBA_CUDA_CHECK_LAUNCH("linear_small_k_kernel");
}

bool aligned16(const void * p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

bool try_linear_small_k(mamba_context & ctx, const LinearParams & p) {
    using Tr = SmallKTraits;
    const int64_t M = p.rows, K = p.in_features, N = p.out_features;
    const DType t = p.x.dtype;
    if ((t != DType::BF16 && t != DType::F16) || p.weight.dtype != t) return false;
    if (K <= 0 || K > Tr::kMaxK || K % 8 != 0 || M > INT32_MAX || N > INT32_MAX) return false;
    const int64_t ldx = M == 1 ? K : p.x.stride[0], ldw = N == 1 ? K : p.weight.stride[0];
    if (ldx < K || ldx % 8 != 0 || ldw < K || ldw % 8 != 0 || !aligned16(p.x.data) || !aligned16(p.weight.data)) return false;
    if (int64_t(ceil_div(M, int64_t(Tr::kRows))) > INT32_MAX) return false;

    SmallKArgs a{};
    a.x = p.x.data;
    a.w = p.weight.data;
    a.y = p.y.data;
    a.ldx = ldx;
    a.ldw = ldw;
    a.ldy = M == 1 ? N : p.y.stride[0];
    a.has_bias = p.bias.has_value();
    a.bias = p.bias ? any(*p.bias) : AnyPtr{};
    a.bias_s = p.bias ? p.bias->stride[0] : 0;
    a.M = int(M);
    a.N = int(N);
    a.K = int(K);
    a.padded_k = int(ceil_div(K, int64_t(16)) * 16);
    a.row_stride = a.padded_k + 8;
    a.row_tiles = int(ceil_div(M, int64_t(Tr::kRows)));
    const size_t y_size = dtype_size(p.y.dtype);
    a.pair_stores = reinterpret_cast<uintptr_t>(p.y.data) % (2 * y_size) == 0 && a.ldy % 2 == 0;

    const bool bf16 = t == DType::BF16;
    switch (p.y.dtype) {
        case DType::BF16: bf16 ? launch_small_k<bf16_t, bf16_t>(ctx, a) : launch_small_k<f16_t, bf16_t>(ctx, a); break;
        case DType::F16: bf16 ? launch_small_k<bf16_t, f16_t>(ctx, a) : launch_small_k<f16_t, f16_t>(ctx, a); break;
        default: bf16 ? launch_small_k<bf16_t, float>(ctx, a) : launch_small_k<f16_t, float>(ctx, a); break;
    }
    return true;
}

}  // namespace mamba::cuda
