// GEMV for decode: y (rows x out) = x (rows x in) W^T (+ bias), rows <= kGemvMaxRows (16), any mix of
// float32 / float16 / bfloat16 for x, W, bias and y, float32 accumulation, y rounded once.
//
// Bytes: out*in*sizeof(W) + rows*in*sizeof(x) + rows*out*sizeof(y); FLOPs: 2*rows*out*in. W dominates,
// so both kernels are built to stream W from HBM exactly once at full bandwidth. Two kernels, picked per
// call (gemv_variant; MAMBA_CUDA_GEMV_VARIANT = "tiled" or "warp" forces one, for the benchmark and the
// tests; another value is an INVALID_ARGUMENT error):
//
// Bandwidth arithmetic (H200: 4.2 TB/s copy, 132 SMs, ~0.7-1 us loaded HBM latency): to keep HBM busy,
// bandwidth x latency = 3-4 MB must be in flight, 25-32 KB per SM; with the latency growing under load,
// the kernels aim for 2-4x that. mamba-2.8b in_proj (10240x2560 bf16, 52 MB) lasts 12.5 us at copy speed,
// out_proj (2560x5120, 26 MB) 6.2 us: a serial round trip (~1 us) before the first FMA, or a tail where
// few SMs still load, costs 10-15% each at these sizes.
//
// Measured on an H200 (graph replay, bf16 W, one row; docs/gpu-results.md): the tiled kernel streams the
// large shapes faster (in_proj 10240x2560 68% of copy against 50%, out_proj 48% against 40%, lm head 91%
// against 66%), the warp kernel the few-output ones (x_proj 192x5120 twice as fast). Three more warp
// variants (W through L1, one output per lane group with 8-vector batches, an L2::256B hint per load)
// were measured within a few % of the warp kernel or slower and were removed.
//
// 1. "warp" kernel (gemv_warp_kernel, default for 1-2 rows and at most kWarpMaxOut outputs): no
//    shared-memory staging of x.
//   - A group of lanes_per_row (4..32) lanes owns kRowsPerGroup (1-2) outputs; warps_k warps split one
//     group's columns (interleaved 16-byte vectors), so that short rows (dt_proj: 160 columns = 20
//     vectors) do not idle lanes and few outputs (x_proj: 192) still spread over the SMs. The host plan
//     (plan_warp_gemv) picks lanes_per_row so a lane has >= 4 vectors per row where possible, and raises
//     warps_k while the grid has fewer than 32 warps per SM.
//   - W: each lane keeps two batches of kUnroll vectors x kRowsPerGroup rows in registers and refills one
//     while FMAs consume the other (register double buffering): 2*4*2 = 16 loads of 16 B per lane, 8 KB
//     per warp in flight; 2 blocks of 8 warps per SM -> up to 128 KB per SM, 4x the bandwidth-latency
//     product, so that the ramp (first loads) and the tail (last blocks) still see enough bytes in flight.
//     (~124 registers per thread at one row: 2 blocks of 256 threads per SM.) in_proj: a lane's 10
//     vectors per row take 2 round trips (16 loads, then 4); out_proj (4 warps per output pair): 5 vectors
//     per row, one round trip.
//   - W loads that stream past L1 (ld.global.nc.L1::no_allocate), so L1 keeps x; x (rows*in elements,
//     L2-resident) is read with 16-byte __ldg loads straight from the FMA loop: no __syncthreads and no
//     staging round trip before the first FMA. Every x vector read serves kRowsPerGroup W rows; at 1-2
//     rows that is 2-4 B of L1 traffic per B of W, well under L1's bandwidth. With more rows the x
//     traffic grows with the row count, so the tiled kernel (x reused by 4 W rows) stays the default there.
//   - Many small blocks (640 for in_proj and out_proj, 264 resident at a time, 2.4 turnovers) rather than
//     one persistent wave with a static share per warp (10240 outputs over 132 x 16 warps would give some
//     warps 5 output pairs and others 4: a 20% tail): the block scheduler refills SMs as blocks finish, so
//     the tail is about one block's lifetime at a fraction of the SMs, with 64 KB still in flight per block.
//   - Column splits (warps_k > 1) are reduced through shared memory once per block; lane groups by
//     shuffles. The bias is added and y stored once.
// 2. "tiled" kernel (gemv_tiled_kernel, default otherwise; the first version of this file):
//   - x is converted to float32 once per block into shared memory, in tiles of kTileK columns (32 KB),
//     and read back with float4 loads; every x element read from shared memory serves kRowsPerWarp (4)
//     rows of W. The first W loads of a tile are issued before x is staged (they do not need it).
//   - A warp owns 4 outputs and a slice of the columns; a block has 8 warps, split as warps_n (output
//     groups) x warps_k (column slices), reduced through shared memory.
//   - W is read with 16-byte loads, kUnroll x kRowsPerWarp of them in flight per lane before any FMA.
// 3. Norm prologue of the tiled kernel (TiledGemvTraits::kNorm; mamba_norm_linear): x is the output of an
//    RMSNorm (with residual) or a gated, grouped RMSNorm computed inside the kernel, which saves the norm
//    kernel of a decode layer (its launch gap and its own load -> reduce -> store latency, ~3-4 us).
//    Every block sums the squares of its rows from the norm's inputs (rows*in elements of x plus the
//    residual or z, L2-resident: ~20 KB per block at mamba2-2.7b's 5120 bf16 channels, 8 loads per thread
//    in flight while the block's first W loads fly), then stages the normalized, weight-scaled values,
//    rounded to the normed tensor's dtype as the norm kernel rounds its output, as its x tile; block 0
//    also stores the normed tensor (and residual_out), so each element has one writer. Only when the whole
//    row fits in one x tile (in <= kTileK) and at most kMaxNormGroups groups; the host runs the two kernels
//    otherwise. Extra bytes: blocks * rows * in * (sizeof(x) + sizeof(residual or z)) of L2 reads.
//
// Both: a misaligned W (pointer or row stride) or the tail of a row not a multiple of the vector takes
// element loads (kVec = false instantiation, or the last vector only); rows (M) are a compile-time bucket
// (1, 2, 4, 8, 16) so that the accumulators stay in registers; x and y dtypes are run-time switches (they
// are rows*(in + out) elements), which keeps the instantiations to W dtype x row bucket x vector flag.
//
// Programmatic dependent launch (launch.cuh): both kernels are PDL-safe, loading nothing before the wait as
// the contract there asks (any tensor, weights included, may be the previous op's output). The warp kernel
// does ask L2 for its first two batches of W before the wait (prefetch_l2), which is allowed and puts the
// first HBM round trip under the previous kernel's tail. x is first read at the marked dependency point.
#include "gemv.cuh"
#include "launch.cuh"
#include "ops/norm_linear.h"

#include "core/env_choice.h"

namespace mamba::cuda {

namespace {

// The normalization the tiled kernel applies to x while staging it (norm_linear; kNorm != kNormNone):
// the RMSNorm with residual of mamba_rms_norm or the gated, grouped RMSNorm of mamba_gated_rms_norm, with
// norm.cu's arithmetic in the same order, so that the staged values are the bits the norm kernel stores.
constexpr int kNormNone = 0, kNormRms = 1, kNormGated = 2;
// Normalization groups per row the prologue handles (Mamba-2 models use 1 to 8).
constexpr int kMaxNormGroups = 8;

struct NormPrologueArgs {
    AnyPtr x, other, weight, normed, residual_out;  // other: the residual (kNormRms) or the gate z (kNormGated)
    int64_t x_s0, x_s1, o_s0, o_s1, w_s, n_s0, n_s1, ro_s0, ro_s1;
    int group_size, groups;
    float eps;
    bool has_other, has_residual_out, norm_before_gate;
};

struct GemvArgs {
    NormPrologueArgs norm;  // read only by the kNorm != kNormNone instantiations
    AnyPtr x, bias, y;
    const void * w;
    int64_t x_s0, x_s1, ldw, bias_s, y_s0, y_s1;
    int rows, in, out;
    int warps_n;        // output groups per block (tiled: warps of 4 outputs; warp kernel: warps_k-warp teams)
    int warps_k;        // warp kernel: warps that split one lane group's columns
    int lanes_per_row;  // warp kernel: lanes (4..32, a power of two) that split one output's columns
    bool has_bias;
    bool w_vec;         // W starts on a 16-byte boundary with rows a whole number of 16-byte vectors apart
    bool x_vec;         // x rows start on 16-byte boundaries with unit column stride: vector loads of x
};

// How a W vector is loaded: through L1 (__ldg), or past L1 (W is read once, L1 keeps x).
constexpr int kLoadThroughL1 = 0, kLoadStream = 1;

template <int kLoad>
__device__ __forceinline__ uint4 load_w16(const void * p) {
    if constexpr (kLoad == kLoadThroughL1) {
        return __ldg(reinterpret_cast<const uint4 *>(p));
    } else {
        uint4 v;
        asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
        return v;
    }
}

// One 16-byte vector of a W row starting at column k; elements at or past `in` read as zero. 16-byte
// loads need both the compile-time (Tr::kVec) and the run-time (vec) permission.
template <class Tr>
__device__ __forceinline__ uint4 load_w_vector(const typename Tr::W * row, int64_t k, int64_t in, bool vec = true) {
    using TW = typename Tr::W;
    if (Tr::kVec && vec && k + Tr::kVecElems <= in) return load_w16<Tr::kLoad>(row + k);
    uint4 raw = make_uint4(0u, 0u, 0u, 0u);
    TW * e = reinterpret_cast<TW *>(&raw);
#pragma unroll
    for (int i = 0; i < Tr::kVecElems; ++i)
        if (k + i < in) e[i] = row[k + i];
    return raw;
}

// The FMAs of both kernels: acc[r][m] += W row r's vector w[r] . x row m's matching V columns, for the
// x rows m < rows (load_x_row(m, xv) fills those columns as float32).
template <class TW, int R, int M, int V = 16 / int(sizeof(TW)), class LoadXRow>
__device__ __forceinline__ void fma_vectors(const uint4 (&w)[R], int rows, float (&acc)[R][M], LoadXRow && load_x_row) {
    float wf[R][V];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const TW * e = reinterpret_cast<const TW *>(&w[r]);
#pragma unroll
        for (int i = 0; i < V; ++i) wf[r][i] = to_f32<TW>(e[i]);
    }
#pragma unroll
    for (int m = 0; m < M; ++m) {
        if (m >= rows) break;
        float xv[V];
        load_x_row(m, xv);
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
            for (int i = 0; i < V; ++i) acc[r][m] = fmaf(wf[r][i], xv[i], acc[r][m]);
    }
}

// y[m, n] = s (+ bias[n]), rounded once to y's dtype.
__device__ __forceinline__ void store_output(const GemvArgs & a, int m, int64_t n, float s) {
    if (a.has_bias) s += a.bias.load(n * a.bias_s);
    a.y.store(m * a.y_s0 + n * a.y_s1, s);
}

// The end of both kernels when warps split a block's columns: adds the split warps' sums and stores y.
// A block has `teams` teams of `splits` warps; a team owns `outputs` consecutive outputs (the block's
// team t from output (blockIdx.x * teams + t) * outputs on), and its split k is the block's warp
// t * team_stride + k * split_stride. partial (flat, [warp][capacity][M]) holds warp w's sum of output
// o of its team, x row m, at (w * capacity + o) * M + m. The caller has synchronized the block.
template <int M>
__device__ __forceinline__ void reduce_splits_and_store(const GemvArgs & a, const float * partial, int capacity, int outputs, int teams, int splits,
                                                        int team_stride, int split_stride) {
    for (int t = threadIdx.x; t < teams * outputs * M; t += blockDim.x) {
        const int team = t / (outputs * M), o = (t / M) % outputs, m = t % M;
        const int64_t n = (int64_t(blockIdx.x) * teams + team) * outputs + o;
        if (m >= a.rows || n >= a.out) continue;
        float s = 0.0f;
        for (int k = 0; k < splits; ++k) s += partial[((team * team_stride + k * split_stride) * capacity + o) * M + m];
        store_output(a, m, n, s);
    }
}

// ---- tiled kernel ----

template <class TW, int kRowBucket, bool kVecLoads, int kNormKind = kNormNone>
struct TiledGemvTraits {
    using W = TW;
    static constexpr int kNorm = kNormKind;           // kNormNone: stage x as given; otherwise normalize it (prologue)
    static constexpr int kRows = kRowBucket;          // accumulator rows (x rows beyond `rows` are skipped)
    static constexpr bool kVec = kVecLoads;           // W pointer and row stride allow 16-byte loads
    static constexpr int kWarps = 8;
    static constexpr int kThreads = 32 * kWarps;
    static constexpr int kRowsPerWarp = 4;            // outputs (rows of W) per warp
    static constexpr int kVecElems = 16 / int(sizeof(TW));
    static constexpr int kUnroll = 2;                 // vectors per lane and row loaded before the FMAs
    static constexpr int kLoad = kLoadThroughL1;
    static constexpr int kTileK = 8192 / kRows;       // x tile columns: kRows * kTileK floats = 32 KB
    static_assert(kTileK % kVecElems == 0, "x tiles hold whole vectors");
};

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

// The value whose squares the norm sums, as norm.cu computes it: x + residual (RMSNorm), x * silu(z)
// (gated, gate before the norm) or x.
template <int kNorm>
__device__ __forceinline__ float norm_input(const NormPrologueArgs & n, int m, int64_t i) {
    float r = n.x.load(m * n.x_s0 + i * n.x_s1);
    if constexpr (kNorm == kNormRms) {
        if (n.has_other) r += n.other.load(m * n.o_s0 + i * n.o_s1);
    } else {
        if (n.has_other && !n.norm_before_gate) r *= silu_f(n.other.load(m * n.o_s0 + i * n.o_s1));
    }
    return r;
}

// v rounded to a float dtype and back: what a store to a tensor of that dtype keeps.
__device__ __forceinline__ float round_to_dtype(int dtype, float v) {
    switch (dtype) {
        case int(DType::F16): return __half2float(__float2half_rn(v));
        case int(DType::BF16): return __bfloat162float(__float2bfloat16_rn(v));
        default: return v;
    }
}

// The prologue of the fused norm + GEMV (the whole row in one tile: the host checks in <= kTileK).
// Pass 1, per (row, group): the norm's input values into xs (L2 reads, 8 per thread in flight) and the
// sum of their squares, reduced per warp into norm_partial, then 1/rms per (row, group) into inv_rms.
// Pass 2, per element: the normalized, weight-scaled value rounded to the normed tensor's dtype (the
// bits the norm kernel would store), in place in xs; block 0 also stores it (and residual_out), so each
// output element has exactly one writer. Columns from `in` up to `padded` are zeros.
template <class Tr>
__device__ __forceinline__ void stage_normed_rows(const GemvArgs & a, int padded, float * xs, float (*norm_partial)[Tr::kWarps], float * inv_rms) {
    constexpr int kThreads = Tr::kThreads, T = Tr::kTileK, kInFlight = 8;
    const NormPrologueArgs & n = a.norm;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int pairs = a.rows * n.groups;
    for (int p = 0; p < pairs; ++p) {
        const int m = p / n.groups;
        const int c0 = (p % n.groups) * n.group_size, c1 = c0 + n.group_size;
        float sum_sq = 0.0f;
        for (int i0 = c0 + threadIdx.x; i0 < c1; i0 += kInFlight * kThreads) {
            float v[kInFlight];
#pragma unroll
            for (int u = 0; u < kInFlight; ++u) {
                const int i = i0 + u * kThreads;
                v[u] = i < c1 ? norm_input<Tr::kNorm>(n, m, i) : 0.0f;
            }
#pragma unroll
            for (int u = 0; u < kInFlight; ++u) {
                const int i = i0 + u * kThreads;
                if (i < c1) xs[m * T + i] = v[u];
                sum_sq += v[u] * v[u];
            }
        }
        sum_sq = warp_sum(sum_sq);
        if (lane == 0) norm_partial[p][warp] = sum_sq;
    }
    for (int i = threadIdx.x; i < a.rows * (padded - a.in); i += kThreads) {
        const int m = i / (padded - a.in), k = a.in + i % (padded - a.in);
        xs[m * T + k] = 0.0f;
    }
    __syncthreads();
    for (int p = threadIdx.x; p < pairs; p += kThreads) {
        float total = 0.0f;
        for (int w = 0; w < Tr::kWarps; ++w) total += norm_partial[p][w];
        inv_rms[p] = 1.0f / sqrtf(total / float(n.group_size) + n.eps);
    }
    __syncthreads();
    const bool writer = blockIdx.x == 0;
    const bool gate_after = Tr::kNorm == kNormGated && n.norm_before_gate && n.has_other;
    const int total = a.rows * a.in;
    for (int e0 = threadIdx.x; e0 < total; e0 += kInFlight * kThreads) {
        // The weights (and late gates) of kInFlight elements loaded before any is used.
        float w[kInFlight], z[kInFlight];
#pragma unroll
        for (int u = 0; u < kInFlight; ++u) {
            const int e = e0 + u * kThreads;
            const int m = e / a.in, i = e - m * a.in;
            w[u] = e < total ? n.weight.load(i * n.w_s) : 0.0f;
            z[u] = e < total && gate_after ? n.other.load(m * n.o_s0 + i * n.o_s1) : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < kInFlight; ++u) {
            const int e = e0 + u * kThreads;
            if (e >= total) break;
            const int m = e / a.in, i = e - m * a.in;
            const float r = xs[m * T + i];
            const float inv = inv_rms[m * n.groups + i / n.group_size];
            // norm.cu's order: r * inv * weight (r is x + residual, x * silu(z) or x), then * silu(z) when
            // the gate follows the norm.
            float out = r * inv * w[u];
            if (gate_after) out = out * silu_f(z[u]);
            if (writer) {
                n.normed.store(m * n.n_s0 + i * n.n_s1, out);
                if (Tr::kNorm == kNormRms && n.has_residual_out) n.residual_out.store(m * n.ro_s0 + i * n.ro_s1, r);
            }
            xs[m * T + i] = round_to_dtype(n.normed.dtype, out);
        }
    }
}

template <class Tr>
__global__ void __launch_bounds__(Tr::kThreads) gemv_tiled_kernel(GemvArgs a) {
    using TW = typename Tr::W;
    constexpr int R = Tr::kRowsPerWarp, M = Tr::kRows, V = Tr::kVecElems, U = Tr::kUnroll, T = Tr::kTileK;
    __shared__ __align__(16) float xs[M * T];
    __shared__ float partial[Tr::kWarps][R][M];
    // The norm prologue's per-warp sums and 1/rms per (row, group); one element when unused.
    constexpr int kNormPairs = Tr::kNorm == kNormNone ? 1 : M * kMaxNormGroups;
    __shared__ float norm_partial[kNormPairs][Tr::kWarps];
    __shared__ float inv_rms[kNormPairs];
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
        // dependency point: inputs produced by the previous kernel are read from here on (x; see the warp
        // kernel on why the PDL wait stays at the top)
        if constexpr (Tr::kNorm != kNormNone) {
            stage_normed_rows<Tr>(a, tile_padded, xs, norm_partial, inv_rms);  // one tile: t0 = 0, tile = in
        } else switch (a.x.dtype) {
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
                fma_vectors<TW>(wv[u], a.rows, acc, [&](int m, float (&xv)[V]) {
                    const float4 * xp = reinterpret_cast<const float4 *>(xs + m * T + v * V);
#pragma unroll
                    for (int q = 0; q < V / 4; ++q) {
                        const float4 f = xp[q];
                        xv[4 * q] = f.x;
                        xv[4 * q + 1] = f.y;
                        xv[4 * q + 2] = f.z;
                        xv[4 * q + 3] = f.w;
                    }
                });
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
    // Warp w is split w / warps_n of team w % warps_n.
    reduce_splits_and_store<M>(a, &partial[0][0][0], R, R, warps_n, warps_k, 1, warps_n);
}

// ---- warp kernel ----

template <class TW, int kRowBucket, int kRowsPerGroupV, int kUnrollV, int kLoadV>
struct WarpGemvTraits {
    using W = TW;
    static constexpr int kRows = kRowBucket;        // accumulator rows (1, 2 or 4; x rows beyond `rows` are skipped)
    static constexpr bool kVec = true;              // 16-byte W loads where GemvArgs::w_vec allows (a uniform branch)
    static constexpr int kMaxWarps = 8;             // blocks of 2, 4 or 8 warps (plan_warp_gemv)
    static constexpr int kMaxThreads = 32 * kMaxWarps;
    static constexpr int kMinLanesPerRow = 4;
    static constexpr int kRowsPerGroup = kRowsPerGroupV;  // outputs a lane group owns
    static constexpr int kUnroll = kUnrollV;        // vectors per lane and row in one of the two batches
    static constexpr int kLoad = kLoadV;
    static constexpr int kVecElems = 16 / int(sizeof(TW));
    // Outputs of one warp at most (8 lane groups of 4 lanes), for the shared-memory column reduction.
    static constexpr int kMaxRowsPerWarp = 32 / kMinLanesPerRow * kRowsPerGroup;
};

// V consecutive elements of x row m from column k as float32; columns at or past `in` read as zero (the
// matching W elements are zero, but x there may be out of bounds or NaN).
template <int V>
__device__ __forceinline__ void load_x(const GemvArgs & a, int m, int64_t k, float (&xv)[V]) {
    const int64_t off = m * a.x_s0 + k * a.x_s1;
    if (a.x_vec && k + V <= a.in) {
        switch (a.x.dtype) {
            case int(DType::F16):
            case int(DType::BF16): {
                // V half-width elements: 16 bytes (V = 8) or 8 bytes (V = 4).
                uint32_t raw[V / 2];
                const char * p = a.x.p + off * 2;
                if constexpr (V == 8) {
                    const uint4 q = __ldg(reinterpret_cast<const uint4 *>(p));
                    raw[0] = q.x, raw[1] = q.y, raw[2] = q.z, raw[3] = q.w;
                } else {
                    const uint2 q = __ldg(reinterpret_cast<const uint2 *>(p));
                    raw[0] = q.x, raw[1] = q.y;
                }
                if (a.x.dtype == int(DType::BF16)) {
                    const bf16_t * e = reinterpret_cast<const bf16_t *>(raw);
#pragma unroll
                    for (int i = 0; i < V; ++i) xv[i] = __bfloat162float(e[i]);
                } else {
                    const f16_t * e = reinterpret_cast<const f16_t *>(raw);
#pragma unroll
                    for (int i = 0; i < V; ++i) xv[i] = __half2float(e[i]);
                }
                break;
            }
            default: {
                const float4 * p = reinterpret_cast<const float4 *>(a.x.p + off * 4);
#pragma unroll
                for (int q = 0; q < V / 4; ++q) {
                    const float4 f = __ldg(p + q);
                    xv[4 * q] = f.x, xv[4 * q + 1] = f.y, xv[4 * q + 2] = f.z, xv[4 * q + 3] = f.w;
                }
                break;
            }
        }
    } else {
#pragma unroll
        for (int i = 0; i < V; ++i) xv[i] = k + i < a.in ? a.x.load(off + i * a.x_s1) : 0.0f;
    }
}

// Block: warps_n teams of warps_k warps; a warp: 32 / lanes_per_row lane groups; a lane group:
// kRowsPerGroup consecutive outputs. Lane l of a group, in warp wk of its team, reads the row's vectors
// wk * lanes_per_row + l + j * (warps_k * lanes_per_row), j = 0, 1, ...
template <class Tr>
__global__ void __launch_bounds__(Tr::kMaxThreads) gemv_warp_kernel(GemvArgs a) {
    using TW = typename Tr::W;
    constexpr int R = Tr::kRowsPerGroup, M = Tr::kRows, V = Tr::kVecElems, U = Tr::kUnroll;
    __shared__ float partial[Tr::kMaxWarps][Tr::kMaxRowsPerWarp][M];

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int lpr = a.lanes_per_row, groups = 32 / lpr;
    const int wk = warp % a.warps_k, wn = warp / a.warps_k;
    const int g = lane / lpr, lid = lane % lpr;
    const int64_t n0 = (int64_t(blockIdx.x) * a.warps_n + wn) * groups * R + g * R;  // the group's first output
    const TW * rows_w[R];
    bool row_ok[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        row_ok[r] = n0 + r < a.out;
        rows_w[r] = static_cast<const TW *>(a.w) + (row_ok[r] ? n0 + r : 0) * a.ldw;
    }
    const int vectors = (a.in + V - 1) / V;
    const int stride = a.warps_k * lpr;
    const int first = wk * lpr + lid;
    const int count = first < vectors ? (vectors - first + stride - 1) / stride : 0;  // this lane's vectors per row

    // Before the PDL wait only an L2 prefetch of the first two batches of W: a hint that reads nothing
    // into registers, so it is safe even if the previous kernel is still writing W (L2 is the point of
    // coherence; the loads after the wait see the final values). With PDL this moves the first HBM round
    // trip of W under the previous kernel's tail.
#pragma unroll
    for (int j = 0; j < 2 * U; ++j)
#pragma unroll
        for (int r = 0; r < R; ++r)
            if (j < count && row_ok[r]) prefetch_l2(rows_w[r] + int64_t(first + j * stride) * V);
    wait_for_producer();  // PDL-safe (launch.cuh): x, W and bias may come from the previous kernel
    allow_dependents();

    float acc[R][M];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int m = 0; m < M; ++m) acc[r][m] = 0.0f;

    // Batch j0: the lane's vectors j0 .. j0 + U - 1 of each of its R rows (zeros past the row's end).
    auto load_batch = [&](uint4 (&buf)[U][R], int j0) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int j = j0 + u;
            const int64_t k = int64_t(first + j * stride) * V;
#pragma unroll
            for (int r = 0; r < R; ++r) buf[u][r] = j < count && row_ok[r] ? load_w_vector<Tr>(rows_w[r], k, a.in, a.w_vec) : make_uint4(0u, 0u, 0u, 0u);
        }
    };
    auto fma_batch = [&](const uint4 (&buf)[U][R], int j0) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int j = j0 + u;
            if (j >= count) break;
            const int64_t k = int64_t(first + j * stride) * V;
            fma_vectors<TW>(buf[u], a.rows, acc, [&](int m, float (&xv)[V]) { load_x<V>(a, m, k, xv); });
        }
    };

    // Two batches in flight: while the FMAs wait for one, the other is on its way; each batch is refilled
    // as soon as its FMAs are done.
    uint4 batch_a[U][R], batch_b[U][R];
    load_batch(batch_a, 0);
    load_batch(batch_b, U);
    // dependency point: inputs produced by the previous kernel are read from here on (x; the W loads
    // above come after the PDL wait too, because launch.cuh's contract lets any tensor, weights included,
    // be the previous op's output, but they find W in L2 when the prefetch before the wait ran early).
    for (int j0 = 0; j0 < count; j0 += 2 * U) {
        fma_batch(batch_a, j0);
        if (j0 + 2 * U < count) load_batch(batch_a, j0 + 2 * U);
        fma_batch(batch_b, j0 + U);
        if (j0 + 3 * U < count) load_batch(batch_b, j0 + 3 * U);
    }

    // Sum over the lanes of a group (xor offsets below lanes_per_row stay inside the group).
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int m = 0; m < M; ++m) {
            float s = acc[r][m];
#pragma unroll
            for (int o = 16; o > 0; o >>= 1)
                if (o < lpr) s += __shfl_xor_sync(0xffffffffu, s, o);
            acc[r][m] = s;
        }
    if (a.warps_k == 1) {
        if (lid == 0) {
#pragma unroll
            for (int r = 0; r < R; ++r) {
                if (!row_ok[r]) continue;
#pragma unroll
                for (int m = 0; m < M; ++m)
                    if (m < a.rows) store_output(a, m, n0 + r, acc[r][m]);
            }
        }
        return;
    }
    // Column splits: the warps of a team add their sums through shared memory.
    if (lid == 0) {
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
            for (int m = 0; m < M; ++m) partial[warp][g * R + r][m] = acc[r][m];
    }
    __syncthreads();
    // Warp w is split w % warps_k of team w / warps_k.
    reduce_splits_and_store<M>(a, &partial[0][0][0], Tr::kMaxRowsPerWarp, groups * R, a.warps_n, a.warps_k, a.warps_k, 1);
}

// ---- launch ----

enum class GemvVariant { Automatic, Tiled, Warp };

constexpr EnvChoice<GemvVariant> kVariants[] = {{"tiled", GemvVariant::Tiled}, {"warp", GemvVariant::Warp}};

// Most outputs for which the warp kernel is the default (x_proj's 192 are; dt_proj's 5120 run as fast
// with either kernel, out_proj's 2560 faster tiled).
constexpr int64_t kWarpMaxOut = 1024;

// MAMBA_CUDA_GEMV_VARIANT (one of kVariants' names) forces a kernel; read at each call so that the
// benchmark and the tests can switch it; any other value fails the call (INVALID_ARGUMENT) before a
// launch. Unset or empty: the warp kernel for up to two rows (x from L1 costs 2-4 B of L1 traffic per B
// of W there) and few outputs, the tiled one otherwise.
GemvVariant gemv_variant(int64_t rows, int64_t out) {
    const GemvVariant forced = env_choice("MAMBA_CUDA_GEMV_VARIANT", kVariants, GemvVariant::Automatic);
    if (forced != GemvVariant::Automatic) return forced;
    return rows <= 2 && out <= kWarpMaxOut ? GemvVariant::Warp : GemvVariant::Tiled;
}

// The fused norm instantiations (kNorm != kNormNone) exist for vector-aligned W only (the host checks).
template <class TW, int kRows, int kNorm>
void launch_tiled_rows(mamba_context & ctx, const GemvArgs & a, bool vec, unsigned blocks) {
    if (vec || kNorm != kNormNone) {
        using Tr = TiledGemvTraits<TW, kRows, true, kNorm>;
        launch_kernel(ctx, "gemv_tiled_kernel", true, gemv_tiled_kernel<Tr>, dim3(blocks), dim3(Tr::kThreads), 0, a);
    } else {
        using Tr = TiledGemvTraits<TW, kRows, false>;
        launch_kernel(ctx, "gemv_tiled_kernel", true, gemv_tiled_kernel<Tr>, dim3(blocks), dim3(Tr::kThreads), 0, a);
    }
    MAMBA_CUDA_CHECK_LAUNCH("gemv_tiled_kernel");
}

template <class TW, int kNorm = kNormNone>
void launch_tiled(mamba_context & ctx, GemvArgs a, bool vec) {
    // As many outputs per block as still leave enough blocks: big N gets 32 outputs per block (the x tile
    // reused by all 8 warps), small N gets 4 outputs per block with the columns split 8 ways. Every block
    // stages all of x (rows*in floats from L2), so with several rows one block per SM is the target
    // (fewer x reloads), with one or two rows two (more loads in flight).
    constexpr int kRowsPerWarp = 4, kWarps = 8;
    const int64_t want_blocks = (a.rows <= 2 ? 2 : 1) * int64_t(std::max(state_of(ctx).multiprocessors, 1));
    int warps_n = kWarps;
    while (warps_n > 1 && ceil_div(a.out, int64_t(warps_n) * kRowsPerWarp) < want_blocks) warps_n /= 2;
    a.warps_n = warps_n;
    const unsigned blocks = unsigned(ceil_div(a.out, int64_t(warps_n) * kRowsPerWarp));
    if (a.rows <= 1) launch_tiled_rows<TW, 1, kNorm>(ctx, a, vec, blocks);
    else if (a.rows <= 2) launch_tiled_rows<TW, 2, kNorm>(ctx, a, vec, blocks);
    else if (a.rows <= 4) launch_tiled_rows<TW, 4, kNorm>(ctx, a, vec, blocks);
    else if (a.rows <= 8) launch_tiled_rows<TW, 8, kNorm>(ctx, a, vec, blocks);
    else launch_tiled_rows<TW, 16, kNorm>(ctx, a, vec, blocks);
}

struct WarpPlan {
    int lanes_per_row, warps_k, warps_n, warps_per_block;
    int64_t blocks;
};

// Lanes per output: 32, halved (down to 4) while a lane would get fewer than 4 vectors of a row. Column
// splits: doubled (up to the 8 warps of a block) while the grid has fewer than 32 warps per SM (so that
// the ~2 resident blocks of 8 warps per SM turn over a few times: the block scheduler evens out the tail)
// and each lane keeps >= 2 vectors. Block size: 8 warps, halved (down to 2, and no fewer than a team) while there
// are fewer blocks than SMs. mamba-2.8b on 132 SMs with 2 outputs per group: in_proj 10240x2560 ->
// 32 lanes, 640 blocks of 8 warps; out_proj 2560x5120 -> 32 lanes, 4 warps per output pair, 640 blocks;
// x_proj 192x5120 -> 32 lanes, 8 warps per output pair, 96 blocks; dt_proj 5120x160 -> 4 lanes, 2 warps
// per 16 outputs, 160 blocks of 4 warps.
WarpPlan plan_warp_gemv(int64_t in, int64_t out, int vec_elems, int rows_per_group, int sms) {
    WarpPlan p{};
    const int64_t vectors = ceil_div(in, vec_elems);
    p.lanes_per_row = 32;
    while (p.lanes_per_row > 4 && vectors < 4 * int64_t(p.lanes_per_row)) p.lanes_per_row /= 2;
    const int64_t teams = ceil_div(out, int64_t(32 / p.lanes_per_row) * rows_per_group);
    p.warps_k = 1;
    while (p.warps_k < 8 && teams * p.warps_k < 32 * int64_t(sms) && vectors >= 2 * int64_t(p.lanes_per_row) * (2 * p.warps_k)) p.warps_k *= 2;
    p.warps_per_block = 8;
    while (p.warps_per_block > p.warps_k && p.warps_per_block > 2 && ceil_div(teams, p.warps_per_block / p.warps_k) < sms) p.warps_per_block /= 2;
    p.warps_n = p.warps_per_block / p.warps_k;
    p.blocks = ceil_div(teams, p.warps_n);
    return p;
}

template <class TW, int kRows, int kRowsPerGroup, int kUnroll, int kLoad>
void launch_warp_rows(mamba_context & ctx, GemvArgs a) {
    using Tr = WarpGemvTraits<TW, kRows, kRowsPerGroup, kUnroll, kLoad>;
    const WarpPlan p = plan_warp_gemv(a.in, a.out, Tr::kVecElems, kRowsPerGroup, std::max(state_of(ctx).multiprocessors, 1));
    if (p.blocks > INT32_MAX) fail(MAMBA_STATUS_UNSUPPORTED, "linear on CUDA: too many outputs for the GEMV grid");
    a.lanes_per_row = p.lanes_per_row;
    a.warps_k = p.warps_k;
    a.warps_n = p.warps_n;
    launch_kernel(ctx, "gemv_warp_kernel", true, gemv_warp_kernel<Tr>, dim3(unsigned(p.blocks)), dim3(unsigned(32 * p.warps_per_block)), 0, a);
    MAMBA_CUDA_CHECK_LAUNCH("gemv_warp_kernel");
}

// Row buckets 1, 2 and 4. More rows (only when forced: the default takes the tiled kernel beyond two rows)
// run as one launch per 4 rows, each reading W again: correct, not fast, and fewer instantiations.
template <class TW, int kRowsPerGroup, int kUnroll, int kLoad>
void launch_warp(mamba_context & ctx, const GemvArgs & a) {
    const int64_t x_elem = int64_t(dtype_size(DType(a.x.dtype))), y_elem = int64_t(dtype_size(DType(a.y.dtype)));
    for (int r0 = 0; r0 < a.rows; r0 += 4) {
        GemvArgs c = a;
        c.rows = std::min(4, a.rows - r0);
        c.x.p += r0 * a.x_s0 * x_elem;
        c.y.p += r0 * a.y_s0 * y_elem;
        if (c.rows <= 1) launch_warp_rows<TW, 1, kRowsPerGroup, kUnroll, kLoad>(ctx, c);
        else if (c.rows <= 2) launch_warp_rows<TW, 2, kRowsPerGroup, kUnroll, kLoad>(ctx, c);
        else launch_warp_rows<TW, 4, kRowsPerGroup, kUnroll, kLoad>(ctx, c);
    }
}

template <class TW>
void launch_gemv(mamba_context & ctx, const GemvArgs & a, bool vec, GemvVariant variant) {
    switch (variant) {
        case GemvVariant::Tiled: launch_tiled<TW>(ctx, a, vec); break;
        case GemvVariant::Warp: launch_warp<TW, 2, 4, kLoadStream>(ctx, a); break;
        case GemvVariant::Automatic: fail(MAMBA_STATUS_INTERNAL, "GEMV variant not resolved");
    }
}

// Columns of x one tile of the tiled kernel holds at `rows` rows (TiledGemvTraits::kTileK of its bucket).
int64_t tiled_columns(int64_t rows) {
    const int64_t bucket = rows <= 1 ? 1 : rows <= 2 ? 2 : rows <= 4 ? 4 : rows <= 8 ? 8 : 16;
    return 8192 / bucket;
}

// The kernel arguments of y = x W^T (+ bias) (without the norm prologue).
GemvArgs gemv_args(const LinearParams & p) {
    const int64_t M = p.rows, K = p.in_features, N = p.out_features;
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
    const int64_t x_elem = int64_t(dtype_size(p.x.dtype));
    a.x_vec = (K <= 1 || a.x_s1 == 1) && (reinterpret_cast<uintptr_t>(p.x.data) & 15u) == 0 && (M == 1 || (a.x_s0 * x_elem) % 16 == 0);
    const size_t elem = dtype_size(p.weight.dtype);
    a.w_vec = (reinterpret_cast<uintptr_t>(p.weight.data) & 15u) == 0 && (a.ldw * int64_t(elem)) % 16 == 0;
    return a;
}

// Whether the GEMV kernels take this linear at all (rows, sizes, W layout and dtype).
bool gemv_applies(const LinearParams & p) {
    const int64_t M = p.rows, K = p.in_features, N = p.out_features;
    if (M < 1 || M > kGemvMaxRows || N < 1) return false;
    if (K > INT32_MAX || N > INT32_MAX) return false;
    // W with a strided last axis is rejected by validation; guard anyway (the kernels read rows contiguously).
    if (K > 1 && p.weight.stride[1] != 1) return false;
    return p.weight.dtype == DType::F32 || p.weight.dtype == DType::BF16 || p.weight.dtype == DType::F16;
}

// How mamba_norm_linear runs on CUDA: MAMBA_CUDA_NORM_LINEAR = "fused" or "separate" forces one (for the
// benchmark and the tests; "fused" still falls back where the fused kernel does not apply); another
// value is an INVALID_ARGUMENT error. Unset or empty: fused where it applies.
enum class NormLinearMode { Automatic, Fused, Separate };
constexpr EnvChoice<NormLinearMode> kNormLinearModes[] = {{"fused", NormLinearMode::Fused}, {"separate", NormLinearMode::Separate}};

// Fills a.norm from the norm's arguments; false where the fused kernel cannot run this norm: more than
// kMaxNormGroups groups, or an output of the norm sharing memory with one of its inputs (block 0 writes
// them while the other blocks still read the inputs).
bool bind_norm(const NormLinearParams & p, GemvArgs & a) {
    NormPrologueArgs & n = a.norm;
    const auto bind = [](const Tensor & t, AnyPtr & ptr, int64_t & s0, int64_t & s1) {
        ptr = any(t);
        s0 = t.stride[0];
        s1 = t.stride[1];
    };
    if (p.rms) {
        const RmsNormParams & r = *p.rms;
        const auto shares_input = [&](const Tensor & out) { return same_memory(out, r.x) || (r.residual && same_memory(out, *r.residual)); };
        if (shares_input(r.y) || (r.residual_out && shares_input(*r.residual_out))) return false;
        bind(r.x, n.x, n.x_s0, n.x_s1);
        n.has_other = r.residual.has_value();
        if (n.has_other) bind(*r.residual, n.other, n.o_s0, n.o_s1);
        n.weight = any(r.weight);
        n.w_s = r.weight.stride[0];
        bind(r.y, n.normed, n.n_s0, n.n_s1);
        n.has_residual_out = r.residual_out.has_value();
        if (n.has_residual_out) bind(*r.residual_out, n.residual_out, n.ro_s0, n.ro_s1);
        n.group_size = int(r.hidden);
        n.groups = 1;
        n.eps = r.eps;
        return true;
    }
    const GatedRmsNormParams & g = *p.gated;
    if (same_memory(g.y, g.x) || (g.z && same_memory(g.y, *g.z))) return false;
    if (g.dim / g.group_size > kMaxNormGroups) return false;
    bind(g.x, n.x, n.x_s0, n.x_s1);
    n.has_other = g.z.has_value();
    if (n.has_other) bind(*g.z, n.other, n.o_s0, n.o_s1);
    n.weight = any(g.weight);
    n.w_s = g.weight.stride[0];
    bind(g.y, n.normed, n.n_s0, n.n_s1);
    n.group_size = int(g.group_size);
    n.groups = int(g.dim / g.group_size);
    n.eps = g.eps;
    n.norm_before_gate = g.norm_before_gate;
    return true;
}

template <class TW>
void launch_fused(mamba_context & ctx, const GemvArgs & a, bool rms) {
    if (rms) launch_tiled<TW, kNormRms>(ctx, a, true);
    else launch_tiled<TW, kNormGated>(ctx, a, true);
}

// The fused norm + tiled GEMV when it applies (see bind_norm; the row in one x tile; vector-aligned W);
// returns false (having done nothing) otherwise.
bool try_fused_norm_gemv(mamba_context & ctx, const NormLinearParams & p) {
    const LinearParams & lin = p.linear;
    if (!gemv_applies(lin) || lin.in_features < 1 || lin.in_features > tiled_columns(lin.rows)) return false;
    GemvArgs a = gemv_args(lin);
    if (!a.w_vec || !bind_norm(p, a)) return false;
    switch (lin.weight.dtype) {
        case DType::F32: launch_fused<float>(ctx, a, p.rms.has_value()); break;
        case DType::BF16: launch_fused<bf16_t>(ctx, a, p.rms.has_value()); break;
        default: launch_fused<f16_t>(ctx, a, p.rms.has_value()); break;
    }
    return true;
}

}  // namespace

bool try_gemv(mamba_context & ctx, const LinearParams & p) {
    if (!gemv_applies(p)) return false;
    const GemvArgs a = gemv_args(p);
    const bool vec = a.w_vec;
    const GemvVariant variant = gemv_variant(p.rows, p.out_features);
    switch (p.weight.dtype) {
        case DType::F32: launch_gemv<float>(ctx, a, vec, variant); break;
        case DType::BF16: launch_gemv<bf16_t>(ctx, a, vec, variant); break;
        default: launch_gemv<f16_t>(ctx, a, vec, variant); break;
    }
    return true;
}

void norm_linear(mamba_context & ctx, const NormLinearParams & p) {
    const NormLinearMode mode = env_choice("MAMBA_CUDA_NORM_LINEAR", kNormLinearModes, NormLinearMode::Automatic);
    if (mode != NormLinearMode::Separate && try_fused_norm_gemv(ctx, p)) return;
    // Empty norms and linears are skipped, as their own calls skip them.
    if (p.linear.in_features > 0) {
        if (p.rms) rms_norm(ctx, *p.rms);
        else gated_rms_norm(ctx, *p.gated);
    }
    if (p.linear.out_features > 0) linear(ctx, p.linear);
}

}  // namespace mamba::cuda
