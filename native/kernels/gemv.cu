// GEMV for decode: y (rows x out) = x (rows x in) W^T (+ bias), rows <= kGemvMaxRows (16), any mix of
// float32 / float16 / bfloat16 for x, W, bias and y, float32 accumulation, y rounded once.
//
// Bytes: out*in*sizeof(W) + rows*in*sizeof(x) + rows*out*sizeof(y); FLOPs: 2*rows*out*in. W dominates,
// so the kernel is built to stream W from HBM exactly once at full bandwidth:
// - W is read with 16-byte loads (8 bf16/f16 or 4 f32 elements), kUnroll x kRowsPerWarp of them in flight
//   per lane before any arithmetic; a misaligned W (pointer or row stride) or the tail of a row not a
//   multiple of the vector takes element loads (kVec = false instantiation, or the last vector only).
// - x is converted to float32 once per block into shared memory, in tiles of kTileK columns (32 KB),
//   and read back with float4 loads; every x element read from shared memory serves kRowsPerWarp rows of W.
//   The first W loads of a tile are issued before x is staged (they do not need it). x and y are only
//   rows*(in + out) elements, so their dtype is a run-time switch (once per tile for x, AnyPtr for y),
//   which keeps the instantiations to W dtype x row bucket x vector flag.
// - A warp owns kRowsPerWarp (4) outputs and a slice of the columns; a block has 8 warps, split as
//   warps_n (output groups) x warps_k (column slices). warps_n is chosen at launch so that there are at
//   least one or two blocks per SM (N = 768 gives 192 blocks of 4 outputs, each output's columns shared by 8
//   warps); column slices are reduced through shared memory, then bias is added and y stored once.
// - Rows (M) are a compile-time bucket (1, 2, 4, 8, 16) so that the accumulators stay in registers.
#include "gemv.cuh"
#include "launch.cuh"

namespace mamba::cuda {

namespace {

struct GemvArgs {
    AnyPtr x, bias, y;
    const void * w;
    int64_t x_s0, x_s1, ldw, bias_s, y_s0, y_s1;
    int rows, in, out, warps_n;
    bool has_bias;
};

template <class TW, int kRowBucket, bool kVecLoads>
struct GemvTraits {
    using W = TW;
    static constexpr int kRows = kRowBucket;          // accumulator rows (x rows beyond `rows` are skipped)
    static constexpr bool kVec = kVecLoads;           // W pointer and row stride allow 16-byte loads
    static constexpr int kWarps = 8;
    static constexpr int kThreads = 32 * kWarps;
    static constexpr int kRowsPerWarp = 4;            // outputs (rows of W) per warp
    static constexpr int kVecElems = 16 / int(sizeof(TW));
    static constexpr int kUnroll = 2;                 // vectors per lane and row loaded before the FMAs
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
// tile_padded. Typed loads, four per thread issued before their stores, so that a thread waits for one
// memory round trip per four elements, not one per element.
template <class TX, int kThreads, int T>
__device__ __forceinline__ void stage_x_tile(const char * x_bytes, int64_t x_s0, int64_t x_s1, int rows, int64_t t0, int tile, int tile_padded,
                                             float * xs) {
    const TX * x = reinterpret_cast<const TX *>(x_bytes);
    const int total = rows * tile_padded;
    for (int i0 = threadIdx.x; i0 < total; i0 += 4 * kThreads) {
        float v[4];
#pragma unroll
        for (int u = 0; u < 4; ++u) {
            const int i = i0 + u * kThreads;
            const int m = i / tile_padded, k = i - m * tile_padded;
            v[u] = i < total && k < tile ? to_f32<TX>(__ldg(x + m * x_s0 + (t0 + k) * x_s1)) : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < 4; ++u) {
            const int i = i0 + u * kThreads;
            const int m = i / tile_padded, k = i - m * tile_padded;
            if (i < total) xs[m * T + k] = v[u];
        }
    }
}

template <class Tr>
__global__ void __launch_bounds__(Tr::kThreads) gemv_kernel(GemvArgs a) {
    using TW = typename Tr::W;
    constexpr int R = Tr::kRowsPerWarp, M = Tr::kRows, V = Tr::kVecElems, U = Tr::kUnroll, T = Tr::kTileK;
    __shared__ __align__(16) float xs[M * T];
    __shared__ float partial[Tr::kWarps][R][M];
    wait_for_producer();  // PDL-safe (launch.cuh): x, W and bias may come from the previous kernel
    allow_dependents();

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
    uint4 wv[U][R];
    for (int64_t t0 = 0; t0 < a.in; t0 += T) {
        const int tile = a.in - t0 < T ? int(a.in - t0) : T;
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
        if (a.has_bias) s += a.bias.load(n * a.bias_s);
        a.y.store(m * a.y_s0 + n * a.y_s1, s);
    }
}

template <class TW, int kRows>
void launch_gemv_rows(mamba_context & ctx, const GemvArgs & a, bool vec, unsigned blocks) {
    if (vec) {
        using Tr = GemvTraits<TW, kRows, true>;
        launch_kernel(ctx, "gemv_kernel", true, gemv_kernel<Tr>, dim3(blocks), dim3(Tr::kThreads), 0, a);
    } else {
        using Tr = GemvTraits<TW, kRows, false>;
        launch_kernel(ctx, "gemv_kernel", true, gemv_kernel<Tr>, dim3(blocks), dim3(Tr::kThreads), 0, a);
    }
    MAMBA_CUDA_CHECK_LAUNCH("gemv_kernel");
}

template <class TW>
void launch_gemv(mamba_context & ctx, const GemvArgs & a, bool vec, unsigned blocks) {
    if (a.rows <= 1) launch_gemv_rows<TW, 1>(ctx, a, vec, blocks);
    else if (a.rows <= 2) launch_gemv_rows<TW, 2>(ctx, a, vec, blocks);
    else if (a.rows <= 4) launch_gemv_rows<TW, 4>(ctx, a, vec, blocks);
    else if (a.rows <= 8) launch_gemv_rows<TW, 8>(ctx, a, vec, blocks);
    else launch_gemv_rows<TW, 16>(ctx, a, vec, blocks);
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
    // As many outputs per block as still leave enough blocks: big N gets 32 outputs per block (the x tile
    // reused by all 8 warps), small N gets 4 outputs per block with the columns split 8 ways. Every block
    // stages all of x (rows*in floats from L2), so with several rows one block per SM is the target
    // (fewer x reloads), with one or two rows two (more loads in flight).
    constexpr int kRowsPerWarp = 4, kWarps = 8;
    const int64_t want_blocks = (M <= 2 ? 2 : 1) * int64_t(std::max(state_of(ctx).multiprocessors, 1));
    int warps_n = kWarps;
    while (warps_n > 1 && ceil_div(N, int64_t(warps_n) * kRowsPerWarp) < want_blocks) warps_n /= 2;
    a.warps_n = warps_n;
    const int64_t blocks = ceil_div(N, int64_t(warps_n) * kRowsPerWarp);
    if (blocks > INT32_MAX) return false;
    const size_t elem = dtype_size(p.weight.dtype);
    const bool vec = (reinterpret_cast<uintptr_t>(p.weight.data) & 15u) == 0 && (a.ldw * int64_t(elem)) % 16 == 0;
    switch (p.weight.dtype) {
        case DType::F32: launch_gemv<float>(ctx, a, vec, unsigned(blocks)); break;
        case DType::BF16: launch_gemv<bf16_t>(ctx, a, vec, unsigned(blocks)); break;
        case DType::F16: launch_gemv<f16_t>(ctx, a, vec, unsigned(blocks)); break;
        default: return false;
    }
    return true;
}

}  // namespace mamba::cuda
