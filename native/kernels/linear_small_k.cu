// mamba_linear_softplus on the tensor cores for layers whose inner dimension is small (K <= 160, a multiple of
// 8; x and W both bfloat16 or both float16): Mamba-1's dt projection, K = dt_rank = d_model / 16 (48 to 160 in
// the public checkpoints). cuBLAS has no softplus epilogue, and a separate pass would round dt twice or move
// it twice.
//
// What must move, M x K x N (mamba-2.8b prefill of 2048 tokens: 2048 x 160 x 5120, bf16 y): x and W read once
// from HBM (0.66 + 1.6 MB; from L2 each block reads its W columns once and x once for every column tile: 34
// MB in all), M N outputs written (21 MB, ~5 us at 4 TB/s). FLOPs: 2 M N K on the tensor cores (3.4 G) and
// one softplus per output (two MUFU ops and ~12 FMA-pipe instructions): with K this small the epilogue, not
// the product, is the arithmetic, and operand traffic through shared memory would cost more than the MMAs.
//
// Design (SmallKTraits):
// - W stays in registers: a warp owns 32 output columns and holds their B fragments for the whole K (10
//   k steps x 4 n8 tiles x 2 registers = 80 registers at K = 160), loaded once from global memory. Only x
//   goes through shared memory, as ldmatrix A fragments: 10 bytes of shared traffic an output.
// - A block is 8 warps: 256 columns (x is read from L2 once for every column tile: 20 times at N = 5120).
//   The grid's blocks per column tile split the row tiles (32 rows of x) between them, round robin; a block
//   steps through its row tiles with the next one's copy (16-byte cp.async, double buffered) in flight while
//   the current one is multiplied and its epilogue runs.
// - Per row tile a warp computes 2 m16 x 4 n8 tiles, one m16 slice after the other (product, then its
//   epilogue): per slice and k step one ldmatrix.x4 and 4 MMAs. Shared rows are K + 8 elements (K a multiple
//   of 16; K = 8 mod 16 is padded with zeros), so that the 8 rows an ldmatrix reads fall in distinct banks.
// - Epilogue from the accumulators: + bias, softplus_mufu on the float32 sum (all 16 of a thread's slice
//   first, so that they interleave), rounded once to y's dtype, staged in shared memory as pairs of columns
//   and stored as whole 16-byte pieces of rows (pairs straight from the registers at the edges).
// - 128 registers at most (2 blocks, 16 warps an SM); the grid is one wave of blocks.
// Measured (H200, the 2.8b case; gpu-results.md runs 154-160): 0.0295 ms, against cuBLAS's 0.0211 for the
// projection without the softplus; with the W tile in shared memory and B fragments by ldmatrix (0.0364) and
// with 4-warp blocks and pair stores (0.0338) it was slower. Nsight Compute: L2 at 34% of its peak, 43% of the
// issue slots, stalls on the MMA chain over K and the softplus series at the register-bound 16 warps an SM.
#include "common.cuh"
#include "launch.cuh"
#include "linear_small_k.cuh"
#include "mma_fragments.cuh"
#include "mma_ops.cuh"

namespace mamba::cuda {

namespace {

struct SmallKTraits {
    static constexpr int kThreads = 256;
    static constexpr int kWarps = kThreads / 32;
    static constexpr int kMinBlocksPerSM = 2;
    static constexpr int kRows = 32;                 // rows of x a tile
    static constexpr int kWarpCols = 32;             // output columns a warp
    static constexpr int kCols = kWarps * kWarpCols; // output columns a block
    static constexpr int kM16 = kRows / 16;          // m16 MMA tiles a row tile
    static constexpr int kN8 = kWarpCols / 8;        // n8 MMA tiles a warp
    static constexpr int kMaxK = 160;
    static constexpr int kMaxSteps = kMaxK / 16;     // k steps of 16
    // A warp's staged output slice: 16 rows of 32 columns, rows padded by 16 bytes so that the lanes' pair
    // stores (8 rows x 4 lanes) fall in distinct banks.
    template <class Y>
    static constexpr int stage_row_bytes() { return kWarpCols * int(sizeof(Y)) + 16; }
    template <class Y>
    static constexpr int stage_bytes() { return kWarps * 16 * stage_row_bytes<Y>(); }
};

struct SmallKArgs {
    const char * x;
    const char * w;
    char * y;
    AnyPtr bias;
    int64_t ldx, ldw, ldy, bias_s;
    int M, N, K, padded_k, row_stride;  // row_stride: elements of a shared row
    int row_tiles;
    bool has_bias, pair_stores, vec_stores;  // vec_stores: y and its rows 16-byte aligned
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

// Copies row tile `tile` of x into shared buffer `dst` (kRows rows of row_stride elements), zero-filling rows
// at or past M and the columns from K to padded_k: lane l copies the l-th 16-byte piece of its warp's rows
// (padded_k <= 160 is at most 20 pieces), walking down them with one pointer, so no thread divides.
template <class T>
__device__ __forceinline__ void copy_x_tile(T * dst, const T * x, int tile, const SmallKArgs & a) {
    using Tr = SmallKTraits;
    const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5;
    const int c = 8 * lane;
    if (c >= a.padded_k) return;
    const int first = tile * Tr::kRows + warp;
    const int rows_left = c < a.K ? a.M - first : 0;  // this lane's rows in range (none in the zero padding)
    const int64_t step = int64_t(Tr::kWarps) * a.ldx;
    const T * src = x + int64_t(first) * a.ldx + c;
    T * to = dst + warp * a.row_stride + c;
#pragma unroll
    for (int i = 0; i < Tr::kRows / Tr::kWarps; ++i, src += step, to += Tr::kWarps * a.row_stride) {
        const bool in = i * Tr::kWarps < rows_left;
        cp_async_16(to, in ? src : x, in);
    }
}

// Raw 32 bits of two consecutive 16-bit elements (p 4-byte aligned), zero when !in.
__device__ __forceinline__ uint32_t load_pair_bits(const void * p, bool in) { return in ? *reinterpret_cast<const uint32_t *>(p) : 0u; }

template <class T, class Y>
__global__ void __launch_bounds__(SmallKTraits::kThreads, SmallKTraits::kMinBlocksPerSM) linear_small_k_kernel(SmallKArgs a) {
    using Tr = SmallKTraits;
    wait_for_producer();  // PDL-safe (launch.cuh): x comes from the previous kernel
    allow_dependents();
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T * sx = reinterpret_cast<T *>(smem_raw);  // [2][kRows][row_stride]
    const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5;
    // This warp's staged output slice (whole tiles only): written as pairs, stored as 16-byte pieces of rows.
    unsigned char * stage = smem_raw + size_t(2 * Tr::kRows) * a.row_stride * sizeof(T) + size_t(warp) * 16 * Tr::template stage_row_bytes<Y>();

    const int g = lane / 4, c2 = 2 * (lane % 4);  // accumulator and B fragment layout (mma_fragments.cuh)
    const int wc = int(blockIdx.y) * Tr::kCols + warp * Tr::kWarpCols;  // this warp's first output column
    const int steps = a.padded_k / 16;
    const T * x = reinterpret_cast<const T *>(a.x);
    Y * y = reinterpret_cast<Y *>(a.y);

    int tile = int(blockIdx.x);
    if (tile < a.row_tiles) copy_x_tile(sx, x, tile, a);
    cp_async_commit();

    // W's B fragments for this warp's columns and all of K: n8 tile j, k step s: b0 = W[col][16 s + c2, +1],
    // b1 = W[col][16 s + 8 + c2, +1] with col = wc + 8 j + g; zeros past N or K. And the bias of this thread's
    // accumulator columns (wc + 8 j + c2, +1).
    uint32_t wf[Tr::kMaxSteps][Tr::kN8][2];
    float bias[Tr::kN8][2];
#pragma unroll
    for (int j = 0; j < Tr::kN8; ++j) {
        const int col = wc + 8 * j + g;
        const T * wrow = reinterpret_cast<const T *>(a.w) + int64_t(col < a.N ? col : 0) * a.ldw;
#pragma unroll
        for (int s = 0; s < Tr::kMaxSteps; ++s)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int k = 16 * s + 8 * h + c2;
                wf[s][j][h] = load_pair_bits(wrow + k, s < steps && col < a.N && k < a.K);
            }
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const int bc = wc + 8 * j + c2 + e;
            bias[j][e] = a.has_bias && bc < a.N ? a.bias.load(int64_t(bc) * a.bias_s) : 0.0f;
        }
    }

    for (int buf = 0; tile < a.row_tiles; tile += int(gridDim.x), buf ^= 1) {
        const int next = tile + int(gridDim.x);
        if (next < a.row_tiles) copy_x_tile(sx + (buf ^ 1) * Tr::kRows * a.row_stride, x, next, a);
        cp_async_commit();
        cp_async_wait_group<1>();  // this tile landed for this thread
        __syncthreads();           // ... and for every thread

        // One m16 slice at a time (its product, then its epilogue), so that W's fragments, one slice's sums and
        // their softplus fit in the registers.
        const T * a_row = sx + buf * Tr::kRows * a.row_stride + frag::ldsm_a_row(lane) * a.row_stride + frag::ldsm_a_col(lane);
        const bool whole = a.pair_stores && (tile + 1) * Tr::kRows <= a.M && wc + Tr::kWarpCols <= a.N;
#pragma unroll
        for (int m = 0; m < Tr::kM16; ++m) {
            float acc[Tr::kN8][4] = {};
#pragma unroll
            for (int s = 0; s < Tr::kMaxSteps; ++s) {
                if (s >= steps) break;
                uint32_t af[4];
                ldsm_x4(af, a_row + 16 * m * a.row_stride + 16 * s);
#pragma unroll
                for (int j = 0; j < Tr::kN8; ++j) mma_16bit<T>(acc[j], af, wf[s][j][0], wf[s][j][1]);
            }
            if (m == Tr::kM16 - 1) __syncthreads();  // every warp is done with this buffer before the next iteration refills it

            // Epilogue: bias, softplus (all of the slice's first, so that they interleave), one rounding, pairs of
            // columns; bounds checks only in a tile at the edges.
            float v[Tr::kN8][4];
#pragma unroll
            for (int j = 0; j < Tr::kN8; ++j)
#pragma unroll
                for (int i = 0; i < 4; ++i) v[j][i] = softplus_mufu(acc[j][i] + bias[j][i % 2]);
            const int row0 = tile * Tr::kRows + 16 * m + g, col0 = wc + c2;
            Y * const out = y + int64_t(row0) * a.ldy + col0;
            if (whole && a.vec_stores) {
                // Through shared memory, so that each row's 32 outputs leave as whole 16-byte pieces.
                constexpr int kRowBytes = Tr::template stage_row_bytes<Y>();
                constexpr int kPieces = Tr::kWarpCols * int(sizeof(Y)) / 16;  // 16-byte pieces a row
#pragma unroll
                for (int j = 0; j < Tr::kN8; ++j)
#pragma unroll
                    for (int h = 0; h < 2; ++h)
                        store_pair(reinterpret_cast<Y *>(stage + (g + 8 * h) * kRowBytes) + 8 * j + c2, v[j][2 * h], v[j][2 * h + 1]);
                __syncwarp();
                Y * const slice = y + int64_t(tile * Tr::kRows + 16 * m) * a.ldy + wc;
#pragma unroll
                for (int q = lane; q < 16 * kPieces; q += 32) {
                    const int r = q / kPieces, piece = q % kPieces;
                    *reinterpret_cast<uint4 *>(slice + r * a.ldy + piece * (16 / int(sizeof(Y)))) =
                        *reinterpret_cast<const uint4 *>(stage + r * kRowBytes + piece * 16);
                }
                __syncwarp();  // the slice is read before the next one is staged
            } else if (whole) {
#pragma unroll
                for (int j = 0; j < Tr::kN8; ++j)
#pragma unroll
                    for (int h = 0; h < 2; ++h) store_pair(out + 8 * h * a.ldy + 8 * j, v[j][2 * h], v[j][2 * h + 1]);
            } else {
#pragma unroll
                for (int j = 0; j < Tr::kN8; ++j)
#pragma unroll
                    for (int h = 0; h < 2; ++h) {
                        const int row = row0 + 8 * h, col = col0 + 8 * j;
                        if (row >= a.M || col >= a.N) continue;
                        Y * dst = out + 8 * h * a.ldy + 8 * j;
                        if (a.pair_stores && col + 1 < a.N) {
                            store_pair(dst, v[j][2 * h], v[j][2 * h + 1]);
                        } else {
                            dst[0] = from_f32<Y>(v[j][2 * h]);
                            if (col + 1 < a.N) dst[1] = from_f32<Y>(v[j][2 * h + 1]);
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
    const size_t smem = size_t(2 * Tr::kRows) * size_t(a.row_stride) * sizeof(T) + size_t(Tr::template stage_bytes<Y>());
    int per_sm = 0;
    MAMBA_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, Tr::kThreads, smem));
    const int col_tiles = int(ceil_div(int64_t(a.N), int64_t(Tr::kCols)));
    // One wave: the block slots shared out over the column tiles, each block taking every S-th row tile.
    const int slots = std::max(1, per_sm) * state_of(ctx).multiprocessors;
    const int per_col = std::max(1, std::min(a.row_tiles, slots / col_tiles));
    launch_kernel(ctx, "linear_small_k_kernel", true, kernel, dim3(unsigned(per_col), unsigned(col_tiles)), dim3(Tr::kThreads), smem, a);
    MAMBA_CUDA_CHECK_LAUNCH("linear_small_k_kernel");
}

}  // namespace

bool try_linear_small_k(mamba_context & ctx, const LinearParams & p) {
    using Tr = SmallKTraits;
    const int64_t M = p.rows, K = p.in_features, N = p.out_features;
    const DType t = p.x.dtype;
    if ((t != DType::BF16 && t != DType::F16) || p.weight.dtype != t) return false;
    if (K <= 0 || K > Tr::kMaxK || K % 8 != 0 || M > INT32_MAX || N > INT32_MAX) return false;
    const int64_t ldx = M == 1 ? K : p.x.stride[0], ldw = N == 1 ? K : p.weight.stride[0];
    // 16-byte copies of x rows, 4-byte loads of W pairs.
    const bool w_pairs = ldw >= K && ldw % 2 == 0 && reinterpret_cast<uintptr_t>(p.weight.data) % 4 == 0;
    if (ldx < K || ldx % 8 != 0 || !aligned16(p.x.data) || !w_pairs) return false;
    if (int64_t(ceil_div(M, int64_t(Tr::kRows))) > INT32_MAX) return false;
    if (ceil_div(N, int64_t(Tr::kCols)) > 65535) return false;  // the column tiles are grid.y

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
    a.vec_stores = aligned16(p.y.data) && (a.ldy * int64_t(y_size)) % 16 == 0;

    const bool bf16 = t == DType::BF16;
    switch (p.y.dtype) {
        case DType::BF16: bf16 ? launch_small_k<bf16_t, bf16_t>(ctx, a) : launch_small_k<f16_t, bf16_t>(ctx, a); break;
        case DType::F16: bf16 ? launch_small_k<bf16_t, f16_t>(ctx, a) : launch_small_k<f16_t, f16_t>(ctx, a); break;
        default: bf16 ? launch_small_k<bf16_t, float>(ctx, a) : launch_small_k<f16_t, float>(ctx, a); break;
    }
    return true;
}

}  // namespace mamba::cuda
