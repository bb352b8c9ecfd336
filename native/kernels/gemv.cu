// GEMV for decode: y (rows x out) = x (rows x in) W^T (+ bias), rows <= kGemvMaxRows (16), any mix of
// float32 / float16 / bfloat16 for x, W, bias and y, float32 accumulation, y rounded once.
//
// Bytes: out*in*sizeof(W) + rows*in*sizeof(x) + rows*out*sizeof(y); FLOPs: 2*rows*out*in. W dominates,
// so the kernel is built to stream W from HBM exactly once at full bandwidth:
// - W is read with 16-byte loads (8 bf16/f16 or 4 f32 elements), kUnroll x kRowsPerWarp of them in flight
//   per lane before any arithmetic (16 with one or two rows, 8 with more); a misaligned W (pointer or row
//   stride) or the tail of a row not a multiple of the vector takes element loads (kVec = false
//   instantiation, or the last vector only).
// - x is converted to float32 once per block into shared memory, in tiles of kTileK columns (32 KB),
//   and read back with float4 loads; every x element read from shared memory serves kRowsPerWarp rows of W.
//   The first W loads of a tile are issued before x is staged (they do not need it). x and y are only
//   rows*(in + out) elements, so their dtype is a run-time switch (once per tile for x, AnyPtr for y),
//   which keeps the instantiations to W dtype x row bucket x vector flag.
// - A warp owns kRowsPerWarp (4) outputs and a slice of the columns; a block has 8 warps, split as
//   warps_n (output groups) x warps_k (column slices); column slices are reduced through shared memory.
// - Grid (plan_gemv): blocks along N (outputs) x blocks along K (split-K chunks). The aim is >= 4 waves of
//   resident blocks (asked from the occupancy API), so that the last, partial wave costs little:
//   32 outputs per block, halved down to 8 (1-2 rows; more rows keep more) while that gives fewer blocks; if the outputs alone give fewer
//   than 2 waves (small N), K is split into chunks of >= 512 columns (multiples of 256). Split-K blocks
//   write float32 partial sums to a workspace ([splits][rows][out], its size fixed per shape and device, so
//   a graph's warm-up call grows it before capture) and gemv_split_reduce_kernel adds the chunks in a fixed
//   order, adds the bias and rounds y once: deterministic, no atomics. mamba-2.8b on 132 SMs (2 blocks per
//   SM): in_proj 10240x2560 -> 1280 blocks of 8 outputs; out_proj 2560x5120 -> 320 x 4 chunks of 1280;
//   x_proj 192x5120 -> 12 x 10 chunks of 512; dt_proj 5120x160 -> 160 blocks of 32 outputs (short rows:
//   the warps that would find no column go to outputs).
// - Without split-K the bias is added and y stored by the block itself.
// - Rows (M) are a compile-time bucket (1, 2, 4, 8, 16) so that the accumulators stay in registers.
#include "gemv.cuh"

namespace mamba::cuda {

namespace {

struct GemvArgs {
    AnyPtr x, bias, y;
    const void * w;
    int64_t x_s0, x_s1, ldw, bias_s, y_s0, y_s1;
    float * partial;   // split-K: [splits][rows][out] float32 sums, reduced by gemv_split_reduce_kernel
    int rows, in, out, warps_n;
    int k_chunk;       // columns per blockIdx.y (a multiple of kChunkAlign); in when there is no split
    bool has_bias;
};

// Split-K chunks start on multiples of this many columns, so that every chunk starts on a whole 16-byte
// vector of an aligned W row and only the matrix's last chunk has a partial vector.
constexpr int kChunkAlign = 256;

template <class TW, int kRowBucket, bool kVecLoads>
struct GemvTraits {
    using W = TW;
    static constexpr int kRows = kRowBucket;          // accumulator rows (x rows beyond `rows` are skipped)
    static constexpr bool kVec = kVecLoads;           // W pointer and row stride allow 16-byte loads
    static constexpr int kWarps = 8;
    static constexpr int kThreads = 32 * kWarps;
    static constexpr int kRowsPerWarp = 4;            // outputs (rows of W) per warp
    static constexpr int kVecElems = 16 / int(sizeof(TW));
    // Vectors per lane and row loaded before the FMAs: 4 x 4 = 16 loads of 16 bytes in flight per lane
    // with one or two rows (few accumulators), 8 with more rows (the accumulators need the registers).
    static constexpr int kUnroll = kRows <= 2 ? 4 : 2;
    static constexpr int kTileK = 8192 / kRows;       // x tile columns: kRows * kTileK floats = 32 KB
    static_assert(kTileK % kVecElems == 0, "x tiles hold whole vectors");
};

// One 16-byte vector of a W row starting at column k; elements at or past `in` read as zero.
template <class Tr>
__device__ __forceinline__ uint4 load_w_vector(const typename Tr::W * row, int64_t k, int64_t in) {
    using TW = typename Tr::W;
    if (Tr::kVec && k + Tr::kVecElems <= in) return __ldg(reinterpret_cast<const uint4 *>(row + k));
    uint4 raw = make_uint4(0u, 0u, 0u, 0u);
    TW * e = reinterpret_cast<TW *>(&raw);
#pragma unroll
    for (int i = 0; i < Tr::kVecElems; ++i)
        if (k + i < in) e[i] = row[k + i];
    return raw;
}

// Stages rows x [0, rows) x columns [t0, t0 + tile) of x as float32 into xs (row stride T), zeros up to
// tile_padded. Typed loads, kStageLoads per thread issued before their stores, so that a thread waits for
// one memory round trip per kStageLoads elements (2560 float32 columns: two round trips per block).
template <class TX, int kThreads, int T>
__device__ __forceinline__ void stage_x_tile(const char * x_bytes, int64_t x_s0, int64_t x_s1, int rows, int64_t t0, int tile, int tile_padded,
                                             float * xs) {
    const TX * x = reinterpret_cast<const TX *>(x_bytes);
    const int total = rows * tile_padded;
    constexpr int kStageLoads = 8;
    for (int i0 = threadIdx.x; i0 < total; i0 += kStageLoads * kThreads) {
        float v[kStageLoads];
#pragma unroll
        for (int u = 0; u < kStageLoads; ++u) {
            const int i = i0 + u * kThreads;
            const int m = i / tile_padded, k = i - m * tile_padded;
            v[u] = i < total && k < tile ? to_f32<TX>(__ldg(x + m * x_s0 + (t0 + k) * x_s1)) : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < kStageLoads; ++u) {
            const int i = i0 + u * kThreads;
            const int m = i / tile_padded, k = i - m * tile_padded;
            if (i < total) xs[m * T + k] = v[u];
        }
    }
}

// Two blocks per SM up to 8 rows (<= 128 registers): twice the W loads in flight of one block.
template <class Tr>
__global__ void __launch_bounds__(Tr::kThreads, Tr::kRows <= 8 ? 2 : 1) gemv_kernel(GemvArgs a) {
    using TW = typename Tr::W;
    constexpr int R = Tr::kRowsPerWarp, M = Tr::kRows, V = Tr::kVecElems, U = Tr::kUnroll, T = Tr::kTileK;
    __shared__ __align__(16) float xs[M * T];
    __shared__ float partial[Tr::kWarps][R][M];

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int warps_n = a.warps_n, warps_k = Tr::kWarps / warps_n;
    const int wn = warp % warps_n, wk = warp / warps_n;
    const int64_t n0 = (int64_t(blockIdx.x) * warps_n + wn) * R;
    const TW * rows_w[R];
    bool row_ok[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        row_ok[r] = n0 + r < a.out;
        rows_w[r] = static_cast<const TW *>(a.w) + (row_ok[r] ? n0 + r : 0) * a.ldw;
    }
    float acc[R][M];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int m = 0; m < M; ++m) acc[r][m] = 0.0f;

    const int step = warps_k * 32;  // vectors between a lane's consecutive loads of one row
    // This block's columns: [k_begin, k_end), the whole row without split-K.
    const int64_t k_begin = int64_t(blockIdx.y) * a.k_chunk;
    const int64_t k_end = k_begin + a.k_chunk < a.in ? k_begin + a.k_chunk : int64_t(a.in);
    uint4 wv[U][R];
    for (int64_t t0 = k_begin; t0 < k_end; t0 += T) {
        const int tile = k_end - t0 < T ? int(k_end - t0) : T;
        const int tile_padded = (tile + V - 1) / V * V;  // the last vector's tail reads zeros, never garbage
        const int vectors = tile_padded / V;
        // The loads of U vectors of each of the R rows, W's in-range elements only (zeros elsewhere).
        auto load_batch = [&](int v0) {
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const int v = v0 + u * step;
#pragma unroll
                for (int r = 0; r < R; ++r)
                    wv[u][r] = v < vectors && row_ok[r] ? load_w_vector<Tr>(rows_w[r], t0 + int64_t(v) * V, a.in) : make_uint4(0u, 0u, 0u, 0u);
            }
        };
        int v0 = wk * 32 + lane;
        __syncthreads();  // the previous tile is no longer read
        load_batch(v0);   // W needs no x: its first loads fly while x is staged
        switch (a.x.dtype) {
            case int(DType::F16): stage_x_tile<f16_t, Tr::kThreads, T>(a.x.p, a.x_s0, a.x_s1, a.rows, t0, tile, tile_padded, xs); break;
            case int(DType::BF16): stage_x_tile<bf16_t, Tr::kThreads, T>(a.x.p, a.x_s0, a.x_s1, a.rows, t0, tile, tile_padded, xs); break;
            default: stage_x_tile<float, Tr::kThreads, T>(a.x.p, a.x_s0, a.x_s1, a.rows, t0, tile, tile_padded, xs); break;
        }
        __syncthreads();
        while (v0 < vectors) {
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const int v = v0 + u * step;
                if (v >= vectors) break;
                float wf[R][V];
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    const TW * e = reinterpret_cast<const TW *>(&wv[u][r]);
#pragma unroll
                    for (int i = 0; i < V; ++i) wf[r][i] = to_f32<TW>(e[i]);
                }
#pragma unroll
                for (int m = 0; m < M; ++m) {
                    if (m >= a.rows) break;
                    float xv[V];
                    const float4 * xp = reinterpret_cast<const float4 *>(xs + m * T + v * V);
#pragma unroll
                    for (int q = 0; q < V / 4; ++q) {
                        const float4 f = xp[q];
                        xv[4 * q] = f.x;
                        xv[4 * q + 1] = f.y;
                        xv[4 * q + 2] = f.z;
                        xv[4 * q + 3] = f.w;
                    }
#pragma unroll
                    for (int r = 0; r < R; ++r)
#pragma unroll
                        for (int i = 0; i < V; ++i) acc[r][m] = fmaf(wf[r][i], xv[i], acc[r][m]);
                }
            }
            v0 += step * U;
            if (v0 < vectors) load_batch(v0);
        }
    }

#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int m = 0; m < M; ++m) {
            const float s = warp_sum(acc[r][m]);
            if (lane == 0) partial[warp][r][m] = s;
        }
    __syncthreads();
    for (int t = threadIdx.x; t < warps_n * R * M; t += Tr::kThreads) {
        const int g = t / (R * M), r = (t / M) % R, m = t % M;
        const int64_t n = (int64_t(blockIdx.x) * warps_n + g) * R + r;
        if (m >= a.rows || n >= a.out) continue;
        float s = 0.0f;
        for (int k = 0; k < warps_k; ++k) s += partial[k * warps_n + g][r][m];
        if (gridDim.y > 1) {
            a.partial[(int64_t(blockIdx.y) * a.rows + m) * a.out + n] = s;  // bias and rounding after the reduction
            continue;
        }
        if (a.has_bias) s += a.bias.load(n * a.bias_s);
        a.y.store(m * a.y_s0 + n * a.y_s1, s);
    }
}

// Split-K epilogue: y[m, n] = sum over the chunks in a fixed order (+ bias), rounded once. The order
// never changes, so results are the same bits on every run.
__global__ void gemv_split_reduce_kernel(GemvArgs a, int splits) {
    const int64_t total = int64_t(a.rows) * a.out;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t m = i / a.out, n = i - m * a.out;
        float s = 0.0f;
        for (int c = 0; c < splits; ++c) s += a.partial[int64_t(c) * total + i];
        if (a.has_bias) s += a.bias.load(n * a.bias_s);
        a.y.store(m * a.y_s0 + n * a.y_s1, s);
    }
}

// Launch geometry: output groups per block (warps_n, 4 outputs each), the column split, the grid.
struct GemvPlan {
    int warps_n = 8, splits = 1, k_chunk = 0;
    int64_t blocks_n = 0;
};

// Aims for at least kMinWaves full waves of resident blocks, so that the last, partly filled wave costs
// little and every SM keeps W loads in flight to the end:
// 1. outputs: 32 per block (8 warps along N) and halved while that leaves too few blocks, down to 8 (two
//    warps along N) for one or two rows, more with more rows: each block stages its x columns once, and
//    the outputs per block keep those x reads (L2) at half the W bytes (HBM) or less;
// 2. columns (split-K): when the outputs give fewer than half that (small N: x_proj, out_proj), K is cut into
//    chunks of at least kMinChunk columns, each block sums one chunk into a float32 workspace and a small
//    kernel adds the chunks in a fixed order (deterministic), the bias, and rounds y once;
// 3. warps along K never outnumber the 16-byte vectors of a chunk's row per 32 lanes (small K: dt_proj), the
//    idle warps go to more outputs instead.
GemvPlan plan_gemv(int64_t N, int64_t K, int rows, int w_bytes, int vec_elems, int blocks_per_sm, int sms) {
    constexpr int kRowsPerWarp = 4, kWarps = 8, kMinWaves = 4;
    constexpr int64_t kMinChunk = 512;
    const int64_t target = int64_t(kMinWaves) * std::max(blocks_per_sm, 1) * std::max(sms, 1);
    GemvPlan pl;
    auto groups = [&](int wn) { return ceil_div(N, int64_t(wn) * kRowsPerWarp); };
    // x staged per block is rows*chunk*4 bytes against 4*warps_n*chunk*w_bytes of W: at least twice as
    // much W, so more rows keep more outputs per block (bf16 W: 8 outputs up to 2 rows, 32 from 8 rows).
    int min_warps_n = 2;
    while (min_warps_n < kWarps && min_warps_n * w_bytes < 2 * rows) min_warps_n *= 2;
    while (pl.warps_n > min_warps_n && groups(pl.warps_n) < target) pl.warps_n /= 2;
    int64_t splits = 1;
    if (2 * groups(pl.warps_n) < target && K >= 2 * kMinChunk)
        splits = std::min(ceil_div(target, groups(pl.warps_n)), K / kMinChunk);
    int64_t chunk = ceil_div(ceil_div(K, splits), kChunkAlign) * kChunkAlign;
    if (chunk >= K) chunk = std::max<int64_t>(K, 1);
    pl.splits = int(ceil_div(std::max<int64_t>(K, 1), chunk));
    pl.k_chunk = int(chunk);
    // Warps along K that still get one vector per lane of each row; the rest go along N.
    const int64_t vectors = ceil_div(chunk, vec_elems);
    int warps_k_useful = 1;
    while (warps_k_useful < kWarps && int64_t(warps_k_useful) * 2 * 32 <= vectors) warps_k_useful *= 2;
    pl.warps_n = std::max(pl.warps_n, kWarps / warps_k_useful);
    // Few outputs: no more output groups per block than there are outputs.
    while (pl.warps_n > 1 && int64_t(pl.warps_n / 2) * kRowsPerWarp >= N) pl.warps_n /= 2;
    pl.blocks_n = groups(pl.warps_n);
    return pl;
}

template <class Tr>
void launch_gemv_traits(mamba_context & ctx, GemvArgs a) {
    // Resident blocks per SM of this instantiation (registers and shared memory decide), asked once.
    static const int blocks_per_sm = [] {
        int n = 0;
        if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, gemv_kernel<Tr>, Tr::kThreads, 0) != cudaSuccess) {
            (void)cudaGetLastError();
            n = 1;
        }
        return std::max(n, 1);
    }();
    const GemvPlan pl = plan_gemv(a.out, a.in, Tr::kRows, int(sizeof(typename Tr::W)), Tr::kVecElems, blocks_per_sm, state_of(ctx).multiprocessors);
    if (pl.blocks_n > INT32_MAX) fail(MAMBA_STATUS_UNSUPPORTED, "linear on CUDA: too many outputs for the GEMV grid");
    a.warps_n = pl.warps_n;
    a.k_chunk = pl.k_chunk;
    a.partial = nullptr;
    if (pl.splits > 1) {
        // Same size for the same shape on the same device: a graph's warm-up call has already grown it.
        WorkspaceCarver carver;
        carver.add(size_t(pl.splits) * size_t(a.rows) * size_t(a.out) * sizeof(float));
        a.partial = reinterpret_cast<float *>(carver.take(ctx));
    }
    gemv_kernel<Tr><<<dim3(unsigned(pl.blocks_n), unsigned(pl.splits)), Tr::kThreads, 0, stream_of(ctx)>>>(a);
    MAMBA_CUDA_CHECK_LAUNCH("gemv_kernel");
    if (pl.splits > 1) {
        const int threads = 256;
        const int64_t blocks = std::min<int64_t>(ceil_div(int64_t(a.rows) * a.out, threads), int64_t(state_of(ctx).multiprocessors) * 8);
        gemv_split_reduce_kernel<<<unsigned(blocks), threads, 0, stream_of(ctx)>>>(a, pl.splits);
        MAMBA_CUDA_CHECK_LAUNCH("gemv_split_reduce_kernel");
    }
}

template <class TW, int kRows>
void launch_gemv_rows(mamba_context & ctx, const GemvArgs & a, bool vec) {
    if (vec) launch_gemv_traits<GemvTraits<TW, kRows, true>>(ctx, a);
    else launch_gemv_traits<GemvTraits<TW, kRows, false>>(ctx, a);
}

template <class TW>
void launch_gemv(mamba_context & ctx, const GemvArgs & a, bool vec) {
    if (a.rows <= 1) launch_gemv_rows<TW, 1>(ctx, a, vec);
    else if (a.rows <= 2) launch_gemv_rows<TW, 2>(ctx, a, vec);
    else if (a.rows <= 4) launch_gemv_rows<TW, 4>(ctx, a, vec);
    else if (a.rows <= 8) launch_gemv_rows<TW, 8>(ctx, a, vec);
    else launch_gemv_rows<TW, 16>(ctx, a, vec);
}

}  // namespace

bool try_gemv(mamba_context & ctx, const LinearParams & p) {
    const int64_t M = p.rows, K = p.in_features, N = p.out_features;
    if (M < 1 || M > kGemvMaxRows || N < 1) return false;
    if (K > INT32_MAX || N > INT32_MAX) return false;
    // W with a strided last axis is rejected by validation; guard anyway (the kernel reads rows contiguously).
    if (K > 1 && p.weight.stride[1] != 1) return false;
    GemvArgs a{};
    a.x = any(p.x);
    a.x_s0 = p.x.stride[0];
    a.x_s1 = p.x.stride[1];
    a.w = p.weight.data;
    a.ldw = N == 1 ? 0 : p.weight.stride[0];  // one row: its stride is never used
    a.has_bias = p.bias.has_value();
    a.bias = any(p.bias);
    a.bias_s = p.bias ? p.bias->stride[0] : 0;
    a.y = any(p.y);
    a.y_s0 = p.y.stride[0];
    a.y_s1 = p.y.stride[1];
    a.rows = int(M);
    a.in = int(K);
    a.out = int(N);
    const size_t elem = dtype_size(p.weight.dtype);
    const bool vec = (reinterpret_cast<uintptr_t>(p.weight.data) & 15u) == 0 && (a.ldw * int64_t(elem)) % 16 == 0;
    switch (p.weight.dtype) {
        case DType::F32: launch_gemv<float>(ctx, a, vec); break;
        case DType::BF16: launch_gemv<bf16_t>(ctx, a, vec); break;
        case DType::F16: launch_gemv<f16_t>(ctx, a, vec); break;
        default: return false;
    }
    return true;
}

}  // namespace mamba::cuda
