// GEMV for decode: y (rows x out) = x (rows x in) W^T (+ bias), rows <= kGemvMaxRows (16), any mix of
// float32 / float16 / bfloat16 for x, W, bias and y, float32 accumulation, y rounded once.
//
// Bytes: out*in*sizeof(W) + rows*in*sizeof(x) + rows*out*sizeof(y); FLOPs: 2*rows*out*in. W dominates,
// so both kernels are built to stream W from HBM exactly once at full bandwidth. Two kernels, picked per
// call (gemv_variant; MAMBA_CUDA_GEMV_VARIANT = "tiled" or "warp" forces one, "gemm" the cuBLAS path, for
// the benchmark and the tests; another value is an INVALID_ARGUMENT error):
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
// were measured within a few % of the warp kernel or slower and were removed. A double-buffered tiled
// variant (one flat stream of W vectors per warp across its outputs, two batches of 8 or 4 16-byte loads
// in flight per lane, a grid sized to the resident warps, x read from L1 per vector as the warp kernel
// does) was slower everywhere (a replayed graph of 8 calls, one row, ms: in_proj 0.213 / 0.195 against 0.148, out_proj
// 0.170 / 0.152 against 0.105, lm head 0.848 / 0.818 against 0.540; an 8-layer decode chain 0.604 / 0.532
// against 0.422) and was removed. It landed near the warp kernel, the other kernel that reads x from L1,
// so deeper W loads did not pay for losing the shared-memory x tile.
//
// Batched decode (2-16 rows): each W element feeds `rows` FMAs from CUDA cores, and the kernels fall off
// copy speed quickly (mamba-2.8b in_proj with bf16 x: 51/39/27/16% of copy at 2/4/8/16 rows), while
// cuBLAS's tensor-core GEMM holds 80% at every row count. So the default hands batched rows of 16-bit W
// to cuBLAS (gemv_variant, kGemmMinOut and kGemmAnyRows; "gemm" forces that path at any row count).
// A GEMV on the tensor cores for these rows (m16n8k16 MMAs on W as loaded into registers, its first W before the
// PDL wait) reached 44-52% of copy on mamba-2.8b's in_proj at 2-8 rows against cuBLAS's 81%, with 16-byte loads of 8
// rows an instruction or of whole lines, and made batched decode 26-68% slower (runs 170-172, docs/gpu-results.md).
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
//     Staging takes 16-byte loads where x allows them, all of a thread's vectors of a round requested
//     before any is stored (stage_x_tile_vec): the FMAs wait for the whole tile, and element loads four at
//     a time had made that wait five L2 round trips at out_proj's 5120 columns (out_proj went from 45% to
//     60% of copy bandwidth with the 16-byte staging, in_proj from 65% to 74%).
//   - A warp owns 4 outputs and a slice of the columns; a block has 8 warps, split as warps_n (output
//     groups) x warps_k (column slices), reduced through shared memory.
//   - W is read with 16-byte loads, kUnroll x kRowsPerWarp of them in flight per lane before any FMA.
//   - Fixed blocks end unevenly (mamba-2.8b's in_proj: over 4-5 us of a ~15 us kernel). Handing the outputs out from a
//     ticket counter instead, so that late or slowly served blocks take less, was slower in every layout measured
//     (runs 173-175, branch gemv-queue: blocks of 8 outputs 15-26% on the 8-layer chains, one row a warp 52-69%):
//     a block's barrier between pieces, or a warp's ticket on its path, costs more than the tail.
//
// Conv step epilogue (mamba_linear_conv1d_update; tiled kernel only): the outputs in [conv.offset,
// conv.offset + conv.dim) also go through one causal conv1d step on their channel's rolling state, so a
// decode step's input projection and conv step are one kernel instead of two (the conv step alone is a
// launch and a memory round trip; measured, the fusion saves 1.6-1.8 us of a ~41 us mamba-2.8b layer). The block's conv operands (state,
// filter, bias: at most 32 outputs x rows) are requested into registers before the first x tile is staged
// and parked in shared memory, so the epilogue waits for no load. Extra bytes: rows*dim*(2*(width-1)
// state + conv_y) + dim*(width + 1) filter and bias, as the separate conv step moves minus its x read.
// Measured on an H200 (run 20): an 8-layer mamba-2.8b decode chain 0.3305 -> 0.3158 ms; decode 2.700 ->
// 2.595 ms/step (mamba-2.8b) and 2.702 -> 2.671 (mamba2-2.7b) against MAMBA_CUDA_LINEAR_CONV=separate.
// Built only for 16-byte W loads (kConv builds), so the plain builds keep their registers.
//
// x_proj epilogue (mamba_mamba1_step at batch 1, step_xproj.cuh; kXProj builds: the conv epilogue, one row, 16-byte W
// loads, x tiles of 16 KB): a block of conv channels copies its columns of x_proj's weight (q x its channels) into
// shared memory with cp.async, before the PDL wait where it may, and after its conv step multiplies them by the
// channels' outputs and adds the q partial sums into float64 sums (one atomic add per output and block). Extra
// bytes: x_proj's weight once (what the separate x_proj reads) and q * 8 bytes of atomics per block of conv channels.
//
// Row-norm epilogue (mamba_mamba2_step's folded gated norm, step_norm.cuh; tiled kernel only, kRowNorm builds
// for 1, 2 and 4 rows with 16-byte W loads): row m's outputs are scaled by 1 / sqrt(sum of its partial sums of
// squares / dim + eps) before the bias. The block requests the row's partial sums (at most kNormPartialsMax
// floats, written by the kernel before) after its PDL wait, parks them in shared memory with the first x tile
// and warp 0 adds them after the last FMA. Extra bytes: each block reads the rows' partial sums from L2.
//
// Staged W (kStage builds: one row, 16-bit W, 16-byte loads, no epilogue; try_gemv's stage_weights, which the Mamba-1
// step passes for out_proj): the first batch of W goes to registers before the PDL wait as above, and every other
// vector a lane has in the first tile to shared memory with cp.async (dynamic, sized to the vectors staged), also
// before the wait. Registers cap what a grid holds early (mamba-2.8b's out_proj: 2 of a lane's 5 vectors a row, 10 of
// its 26 MB); the Mamba-1 state update lets out_proj's blocks in before its own wait (launch.cuh,
// MAMBA_CUDA_UPDATE_RELEASE), so they are resident while in_proj's last blocks and the update run, and the staged
// vectors (3 of the 5, the other 16 MB) load then instead of after the wait: all of W at mamba-2.8b. Bytes: the same
// W, once. The build takes a 5120-column x tile (20 KB) so that 3 blocks an SM still fit with 48 KB staged each.
// Measured on an H200 (bf16, batch 1, configurations interleaved, run 115): the 8-layer mamba-2.8b chain
// 0.2312-0.2313 ms against 0.2336-0.2337 staging one batch (MAMBA_CUDA_GEMV_STAGE=one, its own build: the second
// batch only, a 32 KB x tile), decode 1.881 against 1.942 ms/step. One batch had gained 0.3-2.5% over no staging
// (MAMBA_CUDA_GEMV_STAGE=off; runs 103-111, on several H200s). Mamba-2's out_proj (the row-norm build, after a state
// update that moves 5 MB of state) lost 7% staging one batch (chain 0.2622-0.2632 against 0.2465-0.2468), so it does
// not stage. The early loads slow the Mamba-1 update they overlap (its last stretch 3.4-3.5 µs against 1.7 with
// none; runs 108-110); bulk copies instead of cp.async changed nothing.
//
// Measured and removed: each lane of the tiled kernel asking L2 for the lines of its first N W batches
// before the PDL wait, to use the previous small kernel's idle HBM, was no faster (run 20, an 8-layer
// mamba-2.8b decode chain: 0.3186 / 0.3228 / 0.3212 ms for N = 1 / 2 / 3 against 0.3158; the model within
// the run-to-run spread). Prefetching the block's whole first tile, i.e. all of W at one row, had made the
// GEMVs slower still (in_proj 53% of copy against 67%).
//
// Both: a misaligned W (pointer or row stride) or the tail of a row not a multiple of the vector takes
// element loads (kVec = false instantiation, or the last vector only); rows (M) are a compile-time bucket
// (1, 2, 4, 8, 16) so that the accumulators stay in registers; x and y dtypes are run-time switches (they
// are rows*(in + out) elements), which keeps the instantiations to W dtype x row bucket x vector flag.
//
// Programmatic dependent launch (launch.cuh): both kernels are PDL-safe. Where the op just before does not
// write W (early_w, launch.cuh's early reads) the warp kernel loads its first two batches of W and the tiled
// kernel at one row its first batch before the wait; otherwise the warp kernel only asks L2 for its first
// two batches there (prefetch_l2), which puts the first HBM round trip under the previous kernel's tail.
// x is first read at the marked dependency point.
//
// L2 policy of W: every 16-byte W load carries an L2 cache policy, evict_first inside the Mamba-1 step
// (mamba1_step.cu sets CudaState::weights_evict_first around its projections), evict_normal elsewhere;
// MAMBA_CUDA_GEMV_EVICT=first or =normal forces one for every call. A decode step reads each weight once.
// Measured on two H200s (runs 65 and 66, bf16 B1 decode, ms a step, normal / first everywhere): mamba-2.8b
// 2.329 / 2.168 and 2.322, 2.315 / 2.160, 2.167 (-7%); mamba2-2.7b 2.335 / 2.382 and 2.326, 2.326 / 2.370,
// 2.362 (+2%), hence only the Mamba-1 step. Each kernel timed alone (MAMBA_CUDA_TRACE=1) moved by no more
// than the noise either way, so the gain comes from the kernels' overlap under PDL, not from any one kernel.
// Run 68 split it (mamba-2.8b, default 2.156): in_proj alone evict-first 2.195, every GEMV but in_proj 2.327.
#include <type_traits>

#include "gemv.cuh"
#include "launch.cuh"
#include "step_norm.cuh"
#include "step_pre_norm.cuh"
#include "step_xproj.cuh"

#include "core/env_choice.h"

namespace mamba::cuda {

namespace {

struct GemvArgs {
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
    bool has_conv;      // tiled kernel: the conv step epilogue on the outputs of `conv`'s range (kConv builds)
    bool early_conv;    // with has_conv: the conv state, weight and bias load before the PDL wait (launch.cuh)
    bool early_w;       // the first W loads go before the PDL wait (readable_before_wait, launch.cuh): the
                        // tiled kernel's first batch at one row, the warp kernel's two first batches
    bool w_evict_first; // W's 16-byte loads mark their lines to leave L2 first (MAMBA_CUDA_GEMV_EVICT)
    int stage_w;        // the caller asks for W's staging (try_gemv's stage_weights): 0 no, 1 one batch, 2 the whole first
                        // tile (the default; MAMBA_CUDA_GEMV_STAGE); launch_tiled sets staged_batches and staged_vectors
    int staged_batches; // tiled kernel at one row with early_w (kStage builds): W batches of the first tile after the
                        // first, copied into shared memory with cp.async before the PDL wait (at most kMaxStagedBatches)
    int staged_vectors; // the vectors a lane stages a row, in those batches (a last batch may be partial)
    double * clear;       // clear_count values zeroed at the kernel's end (ClearAfterWait, gemv.cuh), or null
    int64_t clear_count;
    bool has_norm;      // tiled kernel (kRowNorm builds: 16-byte W loads, up to kNormMaxRows rows): row m's sums scaled by
                        // 1 / sqrt(sum(norm row m) * inv_dim + eps) (step_norm.cuh)
    struct Norm {
        const float * partials;  // row m's `count` partial sums of squares at partials + m * s0
        int64_t s0;
        int count;  // rows * count <= kNormPartialsMax
        float inv_dim, eps;
    } norm;
    bool has_xproj;     // tiled kernel with the conv epilogue (kXProj builds: one row, 16-byte W loads): x_proj's
                        // partial sums over the block's conv channels, added into xproj.sums (step_xproj.cuh)
    struct XProj {
        const void * w;  // x_proj's weight (q, conv.dim), W's dtype, rows ldw elements apart, 16-byte aligned
        int64_t ldw;
        double * sums;   // `replicas` copies of q sums, `stride` apart, zero before the kernel
        int64_t stride;
        int q, replicas;
        bool early;      // the block's columns of it load before the PDL wait (readable_before_wait, launch.cuh)
    } xproj;
    bool has_pre_norm;  // tiled kernel with the conv epilogue (kPreNorm builds: one row, 16-byte W and x loads): x (+ residual)
                        // is an RMSNorm's input, normalized inside the GEMV (step_pre_norm.cuh)
    struct PreNorm {
        AnyPtr residual, weight, residual_out;  // one row each, contiguous and 16-byte aligned: the weight of W's dtype,
                                                // residual (optional) and residual_out float32
        int64_t weight_bytes;
        bool has_residual;
        bool early;           // the norm's weight is asked into L2 before the PDL wait (readable_before_wait, launch.cuh)
        bool early_residual;  // the residual's first tile is copied before the PDL wait (readable_before_wait)
        float inv_dim, eps;
    } pre;
    struct Conv {
        AnyPtr state, weight, bias, y;
        int64_t state_s0, state_s1, state_s2, weight_s0, weight_s1, bias_s, y_s0, y_s1;
        int64_t offset, dim;  // outputs [offset, offset + dim) are channels 0 .. dim - 1
        int width;            // 2 .. kConvFusedMaxWidth
        bool has_bias, silu;
    } conv;
};

// Widest conv filter the epilogue takes (the checkpoints' is 4); wider ones run the conv step separately.
constexpr int kConvFusedMaxWidth = 4;

// How a W vector is loaded: through L1 (__ldg), or past L1 (W is read once, L1 keeps x).
constexpr int kLoadThroughL1 = 0, kLoadStream = 1;

// volatile: the compiler keeps each load where the code puts it relative to the PDL wait (itself volatile asm),
// before it for the early reads and after it for the rest; a plain asm has no memory operand to order it by.
template <int kLoad>
__device__ __forceinline__ uint4 load_w16(const void * p, uint64_t policy) {
    uint4 v;
    if constexpr (kLoad == kLoadThroughL1) {
        asm volatile("ld.global.nc.L2::cache_hint.v4.u32 {%0, %1, %2, %3}, [%4], %5;" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p), "l"(policy));
    } else {
        asm volatile("ld.global.nc.L1::no_allocate.L2::cache_hint.v4.u32 {%0, %1, %2, %3}, [%4], %5;"
            : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
            : "l"(p), "l"(policy));
    }
    return v;
}

// The L2 policy of a kernel's W loads (GemvArgs::w_evict_first), made once per thread.
__device__ __forceinline__ uint64_t w_load_policy(const GemvArgs & a) { return a.w_evict_first ? l2_policy<L2Evict::First>() : l2_policy<L2Evict::Normal>(); }

// One 16-byte vector of a W row starting at column k; elements at or past `in` read as zero. 16-byte
// loads need both the compile-time (Tr::kVec) and the run-time (vec) permission; they carry the L2 policy.
template <class Tr>
__device__ __forceinline__ uint4 load_w_vector(const typename Tr::W * row, int64_t k, int64_t in, uint64_t policy, bool vec = true) {
    using TW = typename Tr::W;
    if (Tr::kVec && vec && k + Tr::kVecElems <= in) return load_w16<Tr::kLoad>(row + k, policy);
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
template <int M, class Store>
__device__ __forceinline__ void reduce_splits_and_store(const GemvArgs & a, const float * partial, int capacity, int outputs, int teams, int splits,
                                                        int team_stride, int split_stride, Store && store) {
    for (int t = threadIdx.x; t < teams * outputs * M; t += blockDim.x) {
        const int team = t / (outputs * M), o = (t / M) % outputs, m = t % M;
        const int64_t n = (int64_t(blockIdx.x) * teams + team) * outputs + o;
        if (m >= a.rows || n >= a.out) continue;
        float s = 0.0f;
        for (int k = 0; k < splits; ++k) s += partial[((team * team_stride + k * split_stride) * capacity + o) * M + m];
        store(m, n, s);
    }
}

// At the kernel's end (after its PDL wait, so the kernel before has completed): a.clear's values zeroed across the
// grid. Only in the one-row builds try_gemv takes, and at the end rather than right after the wait: elsewhere the code
// changes the register allocation of builds near their 80-register bound (some then spill).
__device__ __forceinline__ void clear_after_wait(const GemvArgs & a) {
    if (a.clear == nullptr) return;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < a.clear_count; i += int64_t(gridDim.x) * blockDim.x) a.clear[i] = 0.0;
}

// ---- tiled kernel ----

template <class TW, int kRowBucket, bool kVecLoads, bool kConvStep = false, bool kRowNormScale = false, bool kXProjPartials = false,
          bool kPreNormIn = false, int kPreNormRound = 2, int kStageMode = 0>
struct TiledGemvTraits {
    using W = TW;
    static constexpr int kRows = kRowBucket;          // accumulator rows (x rows beyond `rows` are skipped)
    static constexpr bool kVec = kVecLoads;           // W pointer and row stride allow 16-byte loads
    static constexpr bool kConv = kConvStep;          // the conv step epilogue (GemvArgs::conv)
    static constexpr bool kRowNorm = kRowNormScale;   // rows scaled by the norm of GemvArgs::norm (its own builds, so
                                                      // that the others compile exactly as without it)
    static constexpr bool kXProj = kXProjPartials;    // x_proj's partial sums after the conv step (GemvArgs::xproj)
    static_assert(!(kConv && kRowNorm), "one epilogue a build");
    static_assert(!kXProj || (kConv && kRowBucket == 1 && kVecLoads), "x_proj's partials follow the conv step of one row");
    static constexpr bool kPreNorm = kPreNormIn;      // x (+ residual) normalized on the way in (GemvArgs::pre)
    static_assert(!kPreNorm || (kConv && kRowBucket == 1 && kVecLoads), "the pre-norm comes with the conv step of one row");
    static constexpr int kPreRound = kPreNormRound;   // x vectors a thread of the pre-norm's staging requests at once
    static constexpr bool kStage = kStageMode > 0;    // W batches staged in shared memory before the wait (GemvArgs::staged_batches)
    static constexpr int kStageBatches = kStageMode == 2 ? 2 : 1;  // at most: 2 (the default build, MAMBA_CUDA_GEMV_STAGE=auto) with a smaller x tile
    static_assert(!kStage || (kRowBucket == 1 && kVecLoads && !kConvStep && !kRowNormScale && !kXProjPartials && !kPreNormIn),
                  "staging is built for the one-row plain build");
    static constexpr int kWarps = 8;
    static constexpr int kThreads = 32 * kWarps;
    static constexpr int kRowsPerWarp = 4;            // outputs (rows of W) per warp
    static constexpr int kVecElems = 16 / int(sizeof(TW));
    static constexpr int kUnroll = 2;                 // vectors per lane and row loaded before the FMAs
    static constexpr int kLoad = kLoadThroughL1;
    // x tile columns: kRows * kTileK floats = 32 KB; 16 KB in the kXProj build, whose x_proj columns take the rest
    // of the 48 KB (in_proj's input, the model width, is at most 2560 in the Mamba-1 checkpoints: one tile).
    // The staging of the whole first tile (kStageBatches 2) takes a 5120-column tile, 20 KB, so that 3 blocks an SM fit
    // with up to 48 KB of staged W each (mamba-2.8b's out_proj: 3 of a lane's 5 vectors a row).
    static constexpr int kTileK = (kXProj ? 4096 : kStageBatches == 2 ? 5120 : 8192) / kRows;
    static constexpr int kXProjBytes = kXProj ? int(kXProjSliceBytes) : 16;
    static_assert(kTileK % kVecElems == 0, "x tiles hold whole vectors");
    // One row: 3 resident blocks an SM (at most 85 registers), which the early-W path would otherwise cost
    // (94 registers without the bound); 0 leaves the other builds' register allocation free, as before.
    static constexpr int kMinBlocksPerSM = kRowBucket == 1 ? 3 : 0;
};

// W batches a kStage build stages at most: the default build two, the second partly (its dynamic shared memory is sized
// to the vectors staged), with a 20 KB x tile; the "one" build one (32 KB), with the 32 KB x tile. At mamba-2.8b's
// out_proj (at most 48 KB staged) both keep 3 blocks an SM; 4 vectors a lane staged (64 KB) leave 2.
constexpr int kMaxStagedBatches = 2;

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

// The same with 16-byte loads, for x rows that allow them (x_vec: 16-byte aligned, unit stride; the tile
// starts on a 16-byte boundary, T elements being a multiple of 16 bytes). A thread requests its vectors of a
// round, kRound of them (all of a 16-bit tile row of up to 8192 columns in one round over 256 threads), before
// it stores any, so staging costs one or two round trips to L2 instead of one per four elements: the first
// FMA waits for the whole tile, so at one row this latency was most of the time before it (out_proj: 5120
// columns, five serial round trips). A vector that reaches past the tile's end is read element by element
// up to it, zeros after; those up to tile_padded are the zeros the W vectors' tails multiply.
template <class TX, int kThreads, int T, int M>
__device__ __forceinline__ void stage_x_tile_vec(const char * x_bytes, int64_t x_s0, int rows, int64_t t0, int tile, int tile_padded, float * xs) {
    constexpr int Vx = 16 / int(sizeof(TX));
    constexpr int kRound = 4;
    const TX * x = reinterpret_cast<const TX *>(x_bytes);
    const int row_vectors = (tile_padded + Vx - 1) / Vx;  // <= T / Vx: T is a multiple of 8
    const int total = rows * row_vectors;
    for (int base = 0; base < total; base += kRound * kThreads) {
        uint4 raw[kRound];
#pragma unroll
        for (int u = 0; u < kRound; ++u) {
            const int i = min(base + u * kThreads + int(threadIdx.x), total - 1);  // clamped: a valid vector
            const int m = M == 1 ? 0 : i / row_vectors, k0 = (i - m * row_vectors) * Vx;
            const TX * src = x + m * x_s0 + t0 + k0;
            if (k0 + Vx <= tile) {
                raw[u] = __ldg(reinterpret_cast<const uint4 *>(src));
            } else {
                TX * e = reinterpret_cast<TX *>(&raw[u]);
#pragma unroll
                for (int j = 0; j < Vx; ++j) e[j] = k0 + j < tile ? src[j] : from_f32<TX>(0.0f);
            }
        }
#pragma unroll
        for (int u = 0; u < kRound; ++u) {
            const int i = base + u * kThreads + int(threadIdx.x);
            if (i >= total) break;
            const int m = M == 1 ? 0 : i / row_vectors, k0 = (i - m * row_vectors) * Vx;
            const TX * e = reinterpret_cast<const TX *>(&raw[u]);
            float4 * dst = reinterpret_cast<float4 *>(xs + m * T + k0);
#pragma unroll
            for (int q = 0; q < Vx / 4; ++q)
                dst[q] = make_float4(to_f32<TX>(e[4 * q]), to_f32<TX>(e[4 * q + 1]), to_f32<TX>(e[4 * q + 2]), to_f32<TX>(e[4 * q + 3]));
        }
    }
}

// The pre-norm's residual (float32) for the tile's vectors a thread stages in stage_pre_norm_tile (vector i of Vx
// columns is thread i % kThreads'), copied into xs at their own columns with cp.async (zeros past the tile), so that
// they need no registers while in flight: each thread reads back only its own copies, so no barrier comes between.
// Before the PDL wait where the op just before did not write the residual (the stream's previous block wrote it).
template <class TX, int kThreads>
__device__ __forceinline__ void copy_residual_tile(const GemvArgs & a, int64_t t0, int tile, int tile_padded, float * xs) {
    constexpr int Vx = 16 / int(sizeof(TX));
    const float * res = reinterpret_cast<const float *>(a.pre.residual.p) + t0;
    const int vectors = (tile_padded + Vx - 1) / Vx;
    for (int i = threadIdx.x; i < vectors; i += kThreads)
#pragma unroll
        for (int q = 0; q < Vx / 4; ++q) {
            const int k = i * Vx + 4 * q;  // the row's length is a multiple of 4: a piece is in or out as a whole
            cp_async_16(xs + k, res + (k < tile ? k : 0), k < tile);
        }
    cp_async_commit();
}

// The pre-norm's staging of one row (kPreNorm builds): xs[k] = (x[k] + residual[k]) * weight[k] in float32 for the
// tile's columns, zeros up to tile_padded; block 0 stores the sums x + residual into residual_out. The residual is in
// xs already (copy_residual_tile, waited for); x (16-byte rows) and the weight (W's dtype), contiguous and 16-byte
// aligned (gemv_conv1d_pre_norm_unsupported), take one 16-byte load a vector each (two for a float32 weight under
// 16-bit x), all of a round requested before any is used, so that the tile costs one L2 round trip as
// stage_x_tile_vec's does. Returns the thread's sum of squares of its sums, which the block adds up after its last
// FMA: the norm scales the outputs, not the inputs, so no reduction stands before the first FMA.
template <class TX, class TW, int kThreads, int kRound>
__device__ __forceinline__ float stage_pre_norm_tile(const GemvArgs & a, int64_t t0, int tile, int tile_padded, float * xs) {
    constexpr int Vx = 16 / int(sizeof(TX));
    constexpr int kWPieces = (Vx * int(sizeof(TW)) + 15) / 16, kWElems = Vx / kWPieces;
    static_assert(Vx % 4 == 0 && kWPieces * kWElems == Vx, "whole float4s and whole weight pieces a vector");
    using WPiece = std::conditional_t<(kWElems * sizeof(TW) == 16), uint4, uint2>;
    static_assert(sizeof(WPiece) == kWElems * sizeof(TW), "a weight piece is 8 or 16 bytes");
    const GemvArgs::PreNorm & pn = a.pre;
    const TX * x = reinterpret_cast<const TX *>(a.x.p) + t0;
    const TW * w = reinterpret_cast<const TW *>(pn.weight.p) + t0;
    const int vectors = (tile_padded + Vx - 1) / Vx;
    float ss = 0.0f;
    for (int base = 0; base < vectors; base += kRound * kThreads) {
        uint4 xv[kRound];
        WPiece wv[kRound][kWPieces];
#pragma unroll
        for (int u = 0; u < kRound; ++u) {
            const int k0 = min(base + u * kThreads + int(threadIdx.x), vectors - 1) * Vx;  // clamped: a valid vector
            if (k0 + Vx <= tile) {
                xv[u] = __ldg(reinterpret_cast<const uint4 *>(x + k0));
#pragma unroll
                for (int p = 0; p < kWPieces; ++p) wv[u][p] = __ldg(reinterpret_cast<const WPiece *>(w + k0) + p);
            } else {  // the tile's last, partial vector: elements up to its end, zeros after
                TX * xe = reinterpret_cast<TX *>(&xv[u]);
                TW * we = reinterpret_cast<TW *>(&wv[u][0]);
#pragma unroll
                for (int j = 0; j < Vx; ++j) {
                    xe[j] = k0 + j < tile ? x[k0 + j] : from_f32<TX>(0.0f);
                    we[j] = k0 + j < tile ? w[k0 + j] : from_f32<TW>(0.0f);
                }
            }
        }
#pragma unroll
        for (int u = 0; u < kRound; ++u) {
            const int i = base + u * kThreads + int(threadIdx.x);
            if (i >= vectors) break;
            const int k0 = i * Vx;
            const TX * xe = reinterpret_cast<const TX *>(&xv[u]);
            const TW * we = reinterpret_cast<const TW *>(&wv[u][0]);
            float4 * tile_x = reinterpret_cast<float4 *>(xs + k0);
            float r[Vx];
#pragma unroll
            for (int q = 0; q < Vx / 4; ++q) {
                const float4 rq = pn.has_residual ? tile_x[q] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                r[4 * q] = to_f32<TX>(xe[4 * q]) + rq.x;
                r[4 * q + 1] = to_f32<TX>(xe[4 * q + 1]) + rq.y;
                r[4 * q + 2] = to_f32<TX>(xe[4 * q + 2]) + rq.z;
                r[4 * q + 3] = to_f32<TX>(xe[4 * q + 3]) + rq.w;
            }
#pragma unroll
            for (int j = 0; j < Vx; ++j) ss = fmaf(r[j], r[j], ss);
            if (blockIdx.x == 0) {  // the sums once, as the tile's columns hold them
                float * out = reinterpret_cast<float *>(pn.residual_out.p) + t0 + k0;
#pragma unroll
                for (int q = 0; q < Vx / 4; ++q)
                    if (k0 + 4 * q < tile) reinterpret_cast<float4 *>(out)[q] = make_float4(r[4 * q], r[4 * q + 1], r[4 * q + 2], r[4 * q + 3]);
            }
#pragma unroll
            for (int q = 0; q < Vx / 4; ++q)
                tile_x[q] = make_float4(r[4 * q] * to_f32<TW>(we[4 * q]), r[4 * q + 1] * to_f32<TW>(we[4 * q + 1]), r[4 * q + 2] * to_f32<TW>(we[4 * q + 2]),
                                        r[4 * q + 3] * to_f32<TW>(we[4 * q + 3]));
        }
    }
    return ss;
}

// The conv step operands of a block's outputs first .. first + kOutputs - 1 as a flat float array: the state
// [j][m][k] (k < kConvFusedMaxWidth - 1), the filter [j][k], the bias [j], for output first + j and x row m;
// zeros for outputs outside the conv range or the block (a block owns warps_n * 4 of the kOutputs slots:
// the next block's channels are neither read nor written here), rows past `rows` and taps past the width.
template <int M, int kOutputs, int kThreads>
struct ConvOperands {
    static constexpr int kTaps = kConvFusedMaxWidth;
    static constexpr int kWeightBase = kOutputs * M * (kTaps - 1);
    static constexpr int kBiasBase = kWeightBase + kOutputs * kTaps;
    static constexpr int kCount = kBiasBase + kOutputs;
    static constexpr int kPerThread = (kCount + kThreads - 1) / kThreads;

    __device__ static float load(const GemvArgs & a, int64_t first, int owned, int i) {
        const GemvArgs::Conv & c = a.conv;
        if (i < kWeightBase) {
            const int j = i / (M * (kTaps - 1)), m = i / (kTaps - 1) % M, k = i % (kTaps - 1);
            const int64_t ch = first + j - c.offset;
            const bool ok = j < owned && ch >= 0 && ch < c.dim && first + j < a.out && m < a.rows && k < c.width - 1;
            return ok ? c.state.load(m * c.state_s0 + ch * c.state_s1 + k * c.state_s2) : 0.0f;
        }
        if (i < kBiasBase) {
            const int j = (i - kWeightBase) / kTaps, k = (i - kWeightBase) % kTaps;
            const int64_t ch = first + j - c.offset;
            const bool ok = j < owned && ch >= 0 && ch < c.dim && first + j < a.out && k < c.width;
            return ok ? c.weight.load(ch * c.weight_s0 + k * c.weight_s1) : 0.0f;
        }
        const int j = i - kBiasBase;
        const int64_t ch = first + j - c.offset;
        return c.has_bias && j < owned && ch >= 0 && ch < c.dim && first + j < a.out ? c.bias.load(ch * c.bias_s) : 0.0f;
    }

    // Stores y[m, n] = s (+ bias) as store_output does; an output in the conv range then takes its conv
    // step with the value as y holds it: the same sum, in the same order, as causal_conv1d_update_kernel.
    // Returns the conv step's output as conv.y holds it (0 outside the conv range).
    __device__ static float store(const GemvArgs & a, const float * ops, int64_t first, int m, int64_t n, float s) {
        if (a.has_bias) s += a.bias.load(n * a.bias_s);
        a.y.store(m * a.y_s0 + n * a.y_s1, s);
        const GemvArgs::Conv & c = a.conv;
        const int64_t ch = n - c.offset;
        if (ch < 0 || ch >= c.dim) return 0.0f;
        const int j = int(n - first);
        const float x = a.y.rounded(s);
        const float * state = ops + (j * M + m) * (kTaps - 1);
        const float * w = ops + kWeightBase + j * kTaps;
        float acc = ops[kBiasBase + j];
#pragma unroll
        for (int k = 0; k < kTaps; ++k) {
            const float v = k < c.width - 1 ? state[k] : (k == c.width - 1 ? x : 0.0f);
            acc += w[k] * v;
        }
        if (c.silu) acc = silu_f(acc);
        c.y.store(m * c.y_s0 + ch * c.y_s1, acc);
#pragma unroll
        for (int k = 0; k < kTaps - 1; ++k) {
            const int64_t at = m * c.state_s0 + ch * c.state_s1 + k * c.state_s2;
            if (k < c.width - 2) c.state.store(at, state[k + 1]);
            else if (k == c.width - 2) c.state.store(at, x);
        }
        return c.y.rounded(acc);
    }
};

// The block's columns [c0, c0 + owned) of x_proj's weight, all q rows, into xw as 16-byte pieces, row after
// row (owned * sizeof(TW) is a multiple of 16 and the rows 16-byte aligned: gemv_conv1d_xproj's plan).
template <class TW, int kThreads>
__device__ __forceinline__ void copy_xproj_columns(const GemvArgs::XProj & x, int64_t c0, int owned, unsigned char * xw) {
    const int pieces = owned * int(sizeof(TW)) / 16;
    const int total = x.q * pieces;
    const char * base = static_cast<const char *>(x.w) + c0 * int64_t(sizeof(TW));
    for (int i = threadIdx.x; i < total; i += kThreads) {
        const int q = i / pieces, k = i - q * pieces;
        cp_async_16(xw + 16 * i, base + q * x.ldw * int64_t(sizeof(TW)) + 16 * k, true);
    }
    cp_async_commit();
}

// x_proj's partial sums over the block's channels: sums[q] += xw row q . u (u: the block's `owned` conv outputs
// as conv.y holds them; sums: the block's replica). A 16-byte piece a thread, the row's pieces added by shuffles
// in a fixed order; one float64 atomic add per row and block, so that the order the blocks arrive in changes a sum
// only below float64's precision (step_xproj.cuh).
template <class TW, int kThreads>
__device__ __forceinline__ void add_xproj_partials(const GemvArgs::XProj & x, double * sums, const unsigned char * xw, const float * u, int owned) {
    constexpr int V = 16 / int(sizeof(TW));
    const int pieces = owned / V;  // a power of two, at most 8 (plan)
    const int total = x.q * pieces;
    const int padded = (total + 31) / 32 * 32;  // whole warps take part in the shuffles
    for (int i = threadIdx.x; i < padded; i += kThreads) {
        float s = 0.0f;
        const int q = i / pieces, k = i - q * pieces;
        if (i < total) {
            const uint4 raw = *reinterpret_cast<const uint4 *>(xw + 16 * i);
            const TW * e = reinterpret_cast<const TW *>(&raw);
#pragma unroll
            for (int j = 0; j < V; ++j) s = fmaf(to_f32<TW>(e[j]), u[k * V + j], s);
        }
        for (int o = pieces / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (i < total && k == 0) atomicAdd(sums + q, double(s));
    }
}

template <class Tr>
__global__ void __launch_bounds__(Tr::kThreads, Tr::kMinBlocksPerSM) gemv_tiled_kernel(GemvArgs a) {
    using TW = typename Tr::W;
    constexpr int R = Tr::kRowsPerWarp, M = Tr::kRows, V = Tr::kVecElems, U = Tr::kUnroll, T = Tr::kTileK;
    using Conv = ConvOperands<M, Tr::kWarps * R, Tr::kThreads>;
    __shared__ __align__(16) float xs[M * T];
    __shared__ float partial[Tr::kWarps][R][M];
    __shared__ float conv_ops[Tr::kConv ? Conv::kCount : 1];
    constexpr int kNormSlots = Tr::kRowNorm ? int(kNormPartialsMax) : 1;
    constexpr int kNormPerThread = (kNormSlots + Tr::kThreads - 1) / Tr::kThreads;
    __shared__ float norm_part[kNormSlots];  // has_norm: row m's partial sums at m * count
    __shared__ float row_scale[M];
    __shared__ __align__(16) unsigned char xproj_w[Tr::kXProjBytes];  // kXProj: the block's columns of x_proj's weight
    __shared__ float xproj_u[Tr::kXProj ? Tr::kWarps * R : 1];       // kXProj: the block's conv outputs
    __shared__ float pre_ss[Tr::kPreNorm ? Tr::kWarps : 1];           // kPreNorm: each warp's sum of squares
    extern __shared__ uint4 w_staged[];  // kStage: staged vector j (row r) of thread t at (j * R + r) * kThreads + t

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int warps_n = a.warps_n, warps_k = Tr::kWarps / warps_n;
    const int64_t block_first = int64_t(blockIdx.x) * warps_n * R;  // the block's outputs: block_first + [0, warps_n * R)
    const int wn = warp % warps_n, wk = warp / warps_n;
    const int64_t n0 = (int64_t(blockIdx.x) * warps_n + wn) * R;
    const TW * rows_w[R];
    bool row_ok[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        row_ok[r] = n0 + r < a.out;
        rows_w[r] = static_cast<const TW *>(a.w) + (row_ok[r] ? n0 + r : 0) * a.ldw;
    }
    const int step = warps_k * 32;  // vectors between a lane's consecutive loads of one row
    const uint64_t w_policy = w_load_policy(a);
    uint4 wv[U][R];
    // The loads of U vectors of each of the R rows from vector v0 on, of the tile at column t0 (`vectors` of
    // them), W's in-range elements only (zeros elsewhere).
    const auto load_batch = [&](int64_t t0, int vectors, int v0) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int v = v0 + u * step;
#pragma unroll
            for (int r = 0; r < R; ++r)
                wv[u][r] = v < vectors && row_ok[r] ? load_w_vector<Tr>(rows_w[r], t0 + int64_t(v) * V, a.in, w_policy) : make_uint4(0u, 0u, 0u, 0u);
        }
    };
    [[maybe_unused]] bool staged = false;
    // kStage: the first tile's staged vectors (a.staged_vectors a lane and row, the batches after the registers' one) go
    // to shared memory, also before the wait, where no register holds them (each thread's own copies, read back by the
    // thread that made them: no barrier).
    if constexpr (Tr::kStage) {
        static_assert(Tr::kStageBatches <= kMaxStagedBatches, "the staged batches the build reads");
        if (a.early_w && a.staged_batches > 0) {  // issued before the registers' batch: fewer live registers
            const int tile = a.in < T ? a.in : T;
            const int vectors = (tile + V - 1) / V;
            // One copy at a time (not unrolled): the addresses of all eight at once spill the 80-register build.
            // Vector j of a lane's staged ones (row r) is the lane's vector U + j of the tile: at (j * R + r) * kThreads + t.
#pragma unroll 1
            for (int i = 0; i < a.staged_vectors * R; ++i) {
                const int j = i / R, r = i % R;
                const int v = wk * 32 + lane + (U + j) * step;
                const bool in_range = n0 + r < a.out && v < vectors;
                const int bytes = in_range ? int(sizeof(TW)) * min(V, tile - v * V) : 0;
                const TW * src = static_cast<const TW *>(a.w) + (in_range ? (n0 + r) * a.ldw + int64_t(v) * V : 0);
                cp_async_16_hinted(&w_staged[i * Tr::kThreads + threadIdx.x], src, bytes, w_policy);
            }
            cp_async_commit();
            staged = true;
        }
    }
    // W before the wait where the op just before does not write it (early_w; launch.cuh): the first batch of
    // the first tile streams while the previous kernel runs.
    bool early = false;
    if constexpr (Tr::kRows == 1) {
        if (a.early_w) {
            load_batch(0, ((a.in < T ? a.in : T) + V - 1) / V, wk * 32 + lane);
            early = true;
        }
    }
    // The conv operands are requested before the wait where the op just before does not write them
    // (early_conv), else right after it; either way they are stored after the first x tile's loads.
    float conv_regs[Conv::kPerThread];
    const auto load_conv_operands = [&] {
#pragma unroll
        for (int u = 0; u < Conv::kPerThread; ++u) {
            const int i = int(threadIdx.x) + u * Tr::kThreads;
            conv_regs[u] = i < Conv::kCount ? Conv::load(a, block_first, warps_n * R, i) : 0.0f;
        }
    };
    if constexpr (Tr::kConv) {
        if (a.early_conv) load_conv_operands();
    }
    // kPreNorm: the first tile's residual into xs before the wait where it may (the cp.async group before x_proj's).
    // (x is of W's dtype there: gemv_conv1d_pre_norm_unsupported.)
    const auto copy_residual = [&](int64_t t0, int tile, int tile_padded) { copy_residual_tile<TW, Tr::kThreads>(a, t0, tile, tile_padded, xs); };
    [[maybe_unused]] bool residual_early = false;
    if constexpr (Tr::kPreNorm) {
        if (a.pre.has_residual && a.pre.early_residual) {
            const int tile = a.in < T ? a.in : T;
            copy_residual(0, tile, (tile + V - 1) / V * V);
            residual_early = true;
        }
    }
    // kXProj: a block of conv channels (whole blocks are, by the plan) copies its columns of x_proj's weight into
    // shared memory, before the wait where the op just before does not write them; they are read after the last FMA.
    [[maybe_unused]] const bool xproj_block = Tr::kXProj && block_first >= a.conv.offset && block_first < a.conv.offset + a.conv.dim;
    if constexpr (Tr::kXProj) {
        if (xproj_block && a.xproj.early) copy_xproj_columns<TW, Tr::kThreads>(a.xproj, block_first - a.conv.offset, warps_n * R, xproj_w);
    }
    // kPreNorm: the norm's weight (every block reads all of it) asked into L2 while the previous kernel runs.
    if constexpr (Tr::kPreNorm) {
        if (a.pre.early)
            for (int64_t off = int64_t(threadIdx.x) * 128; off < a.pre.weight_bytes; off += int64_t(Tr::kThreads) * 128) prefetch_l2(a.pre.weight.p + off);
    }
    wait_for_producer();  // PDL-safe (launch.cuh): x, W and bias may come from the previous kernel
    allow_dependents();
    if constexpr (Tr::kConv) {
        if (!a.early_conv) load_conv_operands();
    }
    if constexpr (Tr::kXProj) {
        if (xproj_block && !a.xproj.early) copy_xproj_columns<TW, Tr::kThreads>(a.xproj, block_first - a.conv.offset, warps_n * R, xproj_w);
    }
    // The norm's partial sums (written by the kernel before): requested now, parked in shared memory with the
    // first x tile, added up after the last FMA.
    [[maybe_unused]] float norm_regs[kNormPerThread];
    if constexpr (Tr::kRowNorm) {
        const int total = a.rows * a.norm.count;
#pragma unroll
        for (int u = 0; u < kNormPerThread; ++u) {
            const int i = int(threadIdx.x) + u * Tr::kThreads;
            const int m = i / a.norm.count;
            norm_regs[u] = i < total ? a.norm.partials[m * a.norm.s0 + (i - m * a.norm.count)] : 0.0f;
        }
    }
    float acc[R][M];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int m = 0; m < M; ++m) acc[r][m] = 0.0f;
    [[maybe_unused]] float pre_sq = 0.0f;  // kPreNorm: the thread's sum of squares of the norm's input

    for (int64_t t0 = 0; t0 < a.in; t0 += T) {
        const int tile = a.in - t0 < T ? int(a.in - t0) : T;
        const int tile_padded = (tile + V - 1) / V * V;  // the last vector's tail reads zeros, never garbage
        const int vectors = tile_padded / V;
        int v0 = wk * 32 + lane;
        __syncthreads();  // the previous tile is no longer read
        if (!early || t0 > 0) load_batch(t0, vectors, v0);  // W needs no x: its first loads fly while x is staged
        if constexpr (Tr::kPreNorm) {
            if (a.pre.has_residual) {
                if (t0 > 0 || !residual_early) {
                    copy_residual(t0, tile, tile_padded);
                    cp_async_wait_all();
                } else if (Tr::kXProj && xproj_block && a.xproj.early) {
                    cp_async_wait_group<1>();  // x_proj's columns, copied after the residual, may still fly
                } else {
                    cp_async_wait_all();
                }
            }
        }
        // dependency point: inputs produced by the previous kernel are read from here on (x; see the warp
        // kernel on why the PDL wait stays at the top)
        if constexpr (Tr::kPreNorm) {  // x of W's dtype (gemv_conv1d_pre_norm_unsupported)
            pre_sq += stage_pre_norm_tile<TW, TW, Tr::kThreads, Tr::kPreRound>(a, t0, tile, tile_padded, xs);
        } else if (a.x_vec) {
            switch (a.x.dtype) {
                case int(DType::F16): stage_x_tile_vec<f16_t, Tr::kThreads, T, M>(a.x.p, a.x_s0, a.rows, t0, tile, tile_padded, xs); break;
                case int(DType::BF16): stage_x_tile_vec<bf16_t, Tr::kThreads, T, M>(a.x.p, a.x_s0, a.rows, t0, tile, tile_padded, xs); break;
                default: stage_x_tile_vec<float, Tr::kThreads, T, M>(a.x.p, a.x_s0, a.rows, t0, tile, tile_padded, xs); break;
            }
        } else {
            switch (a.x.dtype) {
                case int(DType::F16): stage_x_tile<f16_t, Tr::kThreads, T>(a.x.p, a.x_s0, a.x_s1, a.rows, t0, tile, tile_padded, xs); break;
                case int(DType::BF16): stage_x_tile<bf16_t, Tr::kThreads, T>(a.x.p, a.x_s0, a.x_s1, a.rows, t0, tile, tile_padded, xs); break;
                default: stage_x_tile<float, Tr::kThreads, T>(a.x.p, a.x_s0, a.x_s1, a.rows, t0, tile, tile_padded, xs); break;
            }
        }
        if (Tr::kConv && t0 == 0) {
#pragma unroll
            for (int u = 0; u < Conv::kPerThread; ++u) {
                const int i = int(threadIdx.x) + u * Tr::kThreads;
                if (i < Conv::kCount) conv_ops[i] = conv_regs[u];
            }
        }
        if constexpr (Tr::kRowNorm) {
            if (t0 == 0) {
#pragma unroll
                for (int u = 0; u < kNormPerThread; ++u) {
                    const int i = int(threadIdx.x) + u * Tr::kThreads;
                    if (i < kNormSlots) norm_part[i] = norm_regs[u];
                }
            }
        }
        __syncthreads();
        // The FMAs of the batch in wv (U vectors from v0 on), then the next batch's loads.
        const auto fma_batch = [&](int v0) {
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
        };
        if constexpr (Tr::kStage) {
            if (staged && t0 == 0) {  // the registers' batch, then the staged ones from shared memory (staged before the wait)
#pragma unroll
                for (int b = 0; b < Tr::kStageBatches; ++b) {
                    if (b < a.staged_batches) {
                        fma_batch(v0);
                        v0 += step * U;
                        if (b == 0) cp_async_wait_all();
#pragma unroll
                        for (int u = 0; u < U; ++u) {
                            const int j = b * U + u;  // past the staged vectors (a partial batch) the vector is past the tile: fma_batch stops there
#pragma unroll
                            for (int r = 0; r < R; ++r)
                                wv[u][r] = j < a.staged_vectors ? w_staged[(j * R + r) * Tr::kThreads + threadIdx.x] : make_uint4(0u, 0u, 0u, 0u);
                        }
                    }
                }
            }
        }
        while (v0 < vectors) {
            fma_batch(v0);
            v0 += step * U;
            if (v0 < vectors) load_batch(t0, vectors, v0);
        }
    }

#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int m = 0; m < M; ++m) {
            const float s = warp_sum(acc[r][m]);
            if (lane == 0) partial[warp][r][m] = s;
        }
    if constexpr (Tr::kPreNorm) {
        const float s = warp_sum(pre_sq);
        if (lane == 0) pre_ss[warp] = s;  // published by the barrier below
    }
    if constexpr (Tr::kRowNorm) {
        if (warp == 0) {  // published by the barrier below
            for (int m = 0; m < a.rows; ++m) {
                float sum = 0.0f;
                for (int j = lane; j < a.norm.count; j += 32) sum += norm_part[m * a.norm.count + j];
                sum = warp_sum(sum);
                if (lane == 0) row_scale[m] = 1.0f / sqrtf(sum * a.norm.inv_dim + a.norm.eps);
            }
        }
    }
    __syncthreads();
    // kPreNorm: every thread adds the warps' sums in the same order, so every block scales by the same factor.
    [[maybe_unused]] float in_scale = 1.0f;
    if constexpr (Tr::kPreNorm) {
        float t = 0.0f;
#pragma unroll
        for (int w = 0; w < Tr::kWarps; ++w) t += pre_ss[w];
        in_scale = 1.0f / sqrtf(t * a.pre.inv_dim + a.pre.eps);
    }
    // Warp w is split w / warps_n of team w % warps_n. (conv_ops was stored before the first tile's barrier.)
    if constexpr (Tr::kXProj) {
        reduce_splits_and_store<M>(a, &partial[0][0][0], R, R, warps_n, warps_k, 1, warps_n, [&](int m, int64_t n, float s) {
            xproj_u[n - block_first] = Conv::store(a, conv_ops, block_first, m, n, Tr::kPreNorm ? s * in_scale : s);
        });
        if (xproj_block) {  // uniform over the block
            cp_async_wait_all();
            __syncthreads();  // the conv outputs and every thread's copies of the weight's columns are in
            const int64_t replica = (block_first - a.conv.offset) / (warps_n * R) % a.xproj.replicas;
            add_xproj_partials<TW, Tr::kThreads>(a.xproj, a.xproj.sums + replica * a.xproj.stride, xproj_w, xproj_u, warps_n * R);
        }
    } else if constexpr (Tr::kConv)
        reduce_splits_and_store<M>(a, &partial[0][0][0], R, R, warps_n, warps_k, 1, warps_n,
                                   [&](int m, int64_t n, float s) { Conv::store(a, conv_ops, block_first, m, n, Tr::kPreNorm ? s * in_scale : s); });
    else
        reduce_splits_and_store<M>(a, &partial[0][0][0], R, R, warps_n, warps_k, 1, warps_n,
                                   [&](int m, int64_t n, float s) { store_output(a, m, n, Tr::kRowNorm ? s * row_scale[m] : s); });
    if constexpr (Tr::kRows == 1 && !Tr::kConv && !Tr::kRowNorm) clear_after_wait(a);  // the builds try_gemv takes at one row
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
    const uint64_t w_policy = w_load_policy(a);

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
            for (int r = 0; r < R; ++r) buf[u][r] = j < count && row_ok[r] ? load_w_vector<Tr>(rows_w[r], k, a.in, w_policy, a.w_vec) : make_uint4(0u, 0u, 0u, 0u);
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
    if (a.early_w) {
        // The op just before does not write W (launch.cuh, early weight reads): both batches load before
        // the PDL wait, while the previous kernel still runs.
        load_batch(batch_a, 0);
        load_batch(batch_b, U);
    } else {
        // Otherwise only an L2 prefetch of the first two batches of W before the PDL wait: a hint that
        // reads nothing into registers, so it is safe even if the previous kernel is still writing W (L2 is
        // the point of coherence; the loads after the wait see the final values). With PDL this moves the
        // first HBM round trip of W under the previous kernel's tail.
#pragma unroll
        for (int j = 0; j < 2 * U; ++j)
#pragma unroll
            for (int r = 0; r < R; ++r)
                if (j < count && row_ok[r]) prefetch_l2(rows_w[r] + int64_t(first + j * stride) * V);
    }
    wait_for_producer();  // PDL-safe (launch.cuh): x, W and bias may come from the previous kernel
    allow_dependents();

    if (!a.early_w) {
        load_batch(batch_a, 0);
        load_batch(batch_b, U);
    }
    // dependency point: inputs produced by the previous kernel are read from here on (x; without early_w
    // the W loads above come after the PDL wait too, because launch.cuh's contract lets any tensor, weights
    // included, be the previous op's output, but they find W in L2 when the prefetch before the wait ran early).
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
        if constexpr (M == 1) clear_after_wait(a);
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
    reduce_splits_and_store<M>(a, &partial[0][0][0], Tr::kMaxRowsPerWarp, groups * R, a.warps_n, a.warps_k, a.warps_k, 1,
                               [&](int m, int64_t n, float s) { store_output(a, m, n, s); });
    if constexpr (M == 1) clear_after_wait(a);
}

// ---- launch ----

enum class GemvVariant { Automatic, Tiled, Warp, Gemm };

// "gemm": no GEMV kernel; the linear takes the cuBLAS path (linear.cu) at any row count, to find where the
// tensor-core GEMM overtakes the CUDA-core GEMV at batched-decode row counts.
constexpr EnvChoice<GemvVariant> kVariants[] = {{"tiled", GemvVariant::Tiled}, {"warp", GemvVariant::Warp}, {"gemm", GemvVariant::Gemm}};

// MAMBA_CUDA_LINEAR_CONV: "fused" (the conv step in the GEMV's epilogue where it can run there) or
// "separate" (always the two ops), for the benchmark's comparison.
enum class LinearConv { Fused, Separate };
constexpr EnvChoice<LinearConv> kLinearConv[] = {{"fused", LinearConv::Fused}, {"separate", LinearConv::Separate}};

// Most outputs for which the warp kernel is the default (x_proj's 192 are; dt_proj's 5120 run as fast
// with either kernel, out_proj's 2560 faster tiled).
constexpr int64_t kWarpMaxOut = 1024;

// Most input features the warp kernel takes: it counts a row's vectors as int (in + V - 1) / V, which
// must not overflow for any vector width V <= 16. The tiled kernel walks the columns in int64 tiles and
// has no such limit below linear's INT32_MAX.
constexpr int64_t kWarpMaxIn = INT32_MAX - 16;

// MAMBA_CUDA_GEMV_VARIANT (one of kVariants' names) forces a kernel; read at each call so that the
// benchmark and the tests can switch it; any other value fails the call (INVALID_ARGUMENT) before a
// launch. Unset or empty: the warp kernel for up to two rows (x from L1 costs 2-4 B of L1 traffic per B
// of W there), few outputs and rows it can count, the tiled one otherwise.
GemvVariant forced_gemv_variant() { return env_choice("MAMBA_CUDA_GEMV_VARIANT", kVariants, GemvVariant::Automatic); }

// MAMBA_CUDA_GEMV_EVICT: "first" marks W's lines to leave L2 before other lines, "normal" gives them the
// default priority, for every GEMV; "conv" marks only the GEMVs with the conv step epilogue (the models'
// in_proj) and "plain" only the others, to tell the projections' shares apart. Unset, the context's setting
// (CudaState::weights_evict_first: evict-first inside the Mamba-1 step, normal elsewhere; see the top of this
// file). Read at each call like the variant; any other value fails the call (INVALID_ARGUMENT) before a launch.
enum class GemvEvict { Context, First, Normal, ConvOnly, PlainOnly };
constexpr EnvChoice<GemvEvict> kGemvEvict[] = {
    {"first", GemvEvict::First}, {"normal", GemvEvict::Normal}, {"conv", GemvEvict::ConvOnly}, {"plain", GemvEvict::PlainOnly}};
// MAMBA_CUDA_GEMV_STAGE: "auto" (or unset) stages W in shared memory where the caller asks for it (try_gemv's
// stage_weights) and the kernel can (launch_tiled): every vector of the first tile past the registers' batch; "one"
// (for comparison, its own build) only the second batch, with the 32 KB x tile; "off" never stages. Read at each call,
// any other value fails it.
enum class GemvStage { Auto, One, Off };
constexpr EnvChoice<GemvStage> kGemvStage[] = {{"auto", GemvStage::Auto}, {"one", GemvStage::One}, {"off", GemvStage::Off}};
// 0: no staging, 1: one batch, 2: the whole first tile.
int gemv_stage_mode() {
    switch (env_choice("MAMBA_CUDA_GEMV_STAGE", kGemvStage, GemvStage::Auto)) {
        case GemvStage::Off: return 0;
        case GemvStage::One: return 1;
        case GemvStage::Auto: break;
    }
    return 2;
}

// `conv`: the call runs the conv step epilogue (try_gemv_conv1d_update).
bool gemv_evict_first(const mamba_context & ctx, bool conv) {
    switch (env_choice("MAMBA_CUDA_GEMV_EVICT", kGemvEvict, GemvEvict::Context)) {
        case GemvEvict::First: return true;
        case GemvEvict::Normal: return false;
        case GemvEvict::ConvOnly: return conv;
        case GemvEvict::PlainOnly: return !conv;
        default: return ctx.cuda->weights_evict_first;
    }
}

// Where cuBLAS takes batched-decode rows from the GEMV kernels: from 2 rows where W has at least
// kGemmMinOut outputs (enough output tiles for the GEMM to fill the GPU), from kGemmAnyRows rows at any
// shape. Measured on an H200 (runs 22 and 24, graph replay, bf16 W and x, µs a call, GEMV / cuBLAS):
// mamba-2.8b in_proj 10240x2560 24.4 / 15.5 at 2 rows and 77.0 / 15.7 at 16; mamba-130m in_proj 3072x768
// 6.4 / 4.3 at 2 rows; dt_proj 5120x160 5.4 / 2.9 at 2 rows; with few outputs the GEMV keeps 2-4 rows
// (mamba-370m out_proj 1024x2048 5.1 / 7.9 at 4 rows, mamba-130m out_proj 4.3 / 5.5) and cuBLAS wins from
// 8 (7.9 / 5.5, 7.1 / 5.6; x_proj 192x5120 12.4 / 6.7). At one row the GEMV stays: cuBLAS was 4x slower on
// x_proj, and the decode steps fuse the conv step and dt_proj into GEMV-side kernels.
constexpr int64_t kGemmMinOut = 2048;
constexpr int64_t kGemmAnyRows = 8;

// Whether cuBLAS runs this linear as one tensor-core GEMM with no staging or epilogue pass (linear.cu): x
// and W of one 16-bit dtype, unit column strides, y float32 or of that dtype, no bias (the crossover was
// measured without one, and a bias costs linear() a second pass).
bool cublas_direct(const LinearParams & p) {
    const DType w = p.weight.dtype;
    if ((w != DType::BF16 && w != DType::F16) || p.x.dtype != w) return false;
    const int64_t K = p.in_features, N = p.out_features;
    const bool x_ok = (K <= 1 || p.x.stride[1] == 1) && (p.rows == 1 || p.x.stride[0] >= K);
    const bool y_ok = !p.bias && (p.y.dtype == DType::F32 || p.y.dtype == w) && (N <= 1 || p.y.stride[1] == 1) && (p.rows == 1 || p.y.stride[0] >= N);
    return x_ok && y_ok;
}

GemvVariant gemv_variant(const LinearParams & p) {
    const GemvVariant forced = forced_gemv_variant();
    if (forced != GemvVariant::Automatic) return forced;
    const int64_t rows = p.rows, in = p.in_features, out = p.out_features;
    if (rows >= 2 && (out >= kGemmMinOut || rows >= kGemmAnyRows) && cublas_direct(p)) return GemvVariant::Gemm;
    return rows <= 2 && out <= kWarpMaxOut && in <= kWarpMaxIn ? GemvVariant::Warp : GemvVariant::Tiled;
}


// A kStage build with a.staged_vectors vectors a lane and row of dynamic shared memory (over the 48 KB a block gets
// unasked with the x tile).
template <class Tr>
void launch_staged(mamba_context & ctx, const char * name, const GemvArgs & a, unsigned blocks) {
    const size_t smem = size_t(a.staged_vectors) * Tr::kRowsPerWarp * Tr::kThreads * 16;
    MAMBA_CUDA_CHECK(cudaFuncSetAttribute(gemv_tiled_kernel<Tr>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    launch_kernel(ctx, name, true, gemv_tiled_kernel<Tr>, dim3(blocks), dim3(Tr::kThreads), smem, a);
    MAMBA_CUDA_CHECK_LAUNCH(name);
}

template <class TW, int kRows>
void launch_tiled_rows(mamba_context & ctx, const GemvArgs & a, bool vec, unsigned blocks) {
    // The trace names tell the early loads apart: W (one row only), the conv operands (any row count).
    const bool early = kRows == 1 && a.early_w;
    if constexpr (kRows == 1 && sizeof(TW) == 2) {
        if (a.staged_batches > 0) {  // 16-bit W, early, with 16-byte loads, no epilogue (launch_tiled)
            if (a.stage_w == 2) launch_staged<TiledGemvTraits<TW, 1, true, false, false, false, false, 2, 2>>(ctx, "gemv_tiled_kernel early staged", a, blocks);
            else launch_staged<TiledGemvTraits<TW, 1, true, false, false, false, false, 2, 1>>(ctx, "gemv_tiled_kernel early staged one", a, blocks);
            return;
        }
    }
    if constexpr (kRows <= kNormMaxRows) {
        if (a.has_norm) {  // only with 16-byte W loads (try_gemv_row_norm)
            using Tr = TiledGemvTraits<TW, kRows, true, false, true>;
            launch_kernel(ctx, early ? "gemv_tiled_norm_kernel early" : "gemv_tiled_norm_kernel", true, gemv_tiled_kernel<Tr>, dim3(blocks), dim3(Tr::kThreads), 0, a);
            MAMBA_CUDA_CHECK_LAUNCH("gemv_tiled_norm_kernel");
            return;
        }
    }
    if constexpr (kRows == 1) {
        if (a.has_pre_norm) {  // with the conv epilogue, 16-byte W and x loads (gemv_conv1d_pre_norm), x_proj's fold or not
            const bool e = early || a.early_conv;
            if (a.has_xproj) {
                // One x vector a thread at a time: with two (one L2 round trip for the whole tile) this build spills
                // (~90 bytes at bf16), and measured slower (mamba-2.8b decode 2.071-2.072 against 2.059-2.060 ms/step).
                using Tr = TiledGemvTraits<TW, 1, true, true, false, true, true, 1>;
                launch_kernel(ctx, e ? "gemv_tiled_conv_xproj_pre_norm_kernel early" : "gemv_tiled_conv_xproj_pre_norm_kernel", true, gemv_tiled_kernel<Tr>,
                              dim3(blocks), dim3(Tr::kThreads), 0, a);
                MAMBA_CUDA_CHECK_LAUNCH("gemv_tiled_conv_xproj_pre_norm_kernel");
            } else {
                using Tr = TiledGemvTraits<TW, 1, true, true, false, false, true>;
                launch_kernel(ctx, e ? "gemv_tiled_conv_pre_norm_kernel early" : "gemv_tiled_conv_pre_norm_kernel", true, gemv_tiled_kernel<Tr>, dim3(blocks),
                              dim3(Tr::kThreads), 0, a);
                MAMBA_CUDA_CHECK_LAUNCH("gemv_tiled_conv_pre_norm_kernel");
            }
            return;
        }
        if (a.has_xproj) {  // with the conv epilogue and 16-byte W loads (gemv_conv1d_xproj)
            using Tr = TiledGemvTraits<TW, 1, true, true, false, true>;
            launch_kernel(ctx, early || a.early_conv ? "gemv_tiled_conv_xproj_kernel early" : "gemv_tiled_conv_xproj_kernel", true, gemv_tiled_kernel<Tr>,
                          dim3(blocks), dim3(Tr::kThreads), 0, a);
            MAMBA_CUDA_CHECK_LAUNCH("gemv_tiled_conv_xproj_kernel");
            return;
        }
    }
    // The epilogues above have builds for these row counts only; the plans never ask for more.
    if (a.has_norm || a.has_xproj || a.has_pre_norm) fail(MAMBA_STATUS_INTERNAL, "GEMV: an epilogue asked for at ", a.rows, " rows, which it has no build for");
    if (a.has_conv) {  // only with 16-byte W loads (try_gemv_conv1d_update)
        using Tr = TiledGemvTraits<TW, kRows, true, true>;
        launch_kernel(ctx, early || a.early_conv ? "gemv_tiled_conv_kernel early" : "gemv_tiled_conv_kernel", true, gemv_tiled_kernel<Tr>, dim3(blocks), dim3(Tr::kThreads), 0, a);
        MAMBA_CUDA_CHECK_LAUNCH("gemv_tiled_conv_kernel");
        return;
    }
    if (vec) {
        using Tr = TiledGemvTraits<TW, kRows, true>;
        launch_kernel(ctx, early ? "gemv_tiled_kernel early" : "gemv_tiled_kernel", true, gemv_tiled_kernel<Tr>, dim3(blocks), dim3(Tr::kThreads), 0, a);
    } else {
        using Tr = TiledGemvTraits<TW, kRows, false>;
        launch_kernel(ctx, early ? "gemv_tiled_kernel early" : "gemv_tiled_kernel", true, gemv_tiled_kernel<Tr>, dim3(blocks), dim3(Tr::kThreads), 0, a);
    }
    MAMBA_CUDA_CHECK_LAUNCH("gemv_tiled_kernel");
}

constexpr int kTiledRowsPerWarp = 4, kTiledWarps = 8;

// As many outputs per block as still leave enough blocks: big N gets 32 outputs per block (the x tile
// reused by all 8 warps), small N gets 4 outputs per block with the columns split 8 ways. Every block
// stages all of x (rows*in floats from L2), so with several rows one block per SM is the target
// (fewer x reloads), with one or two rows two (more loads in flight). At least min_warps_n output warps.
int tiled_warps_n(const mamba_context & ctx, const GemvArgs & a, int min_warps_n) {
    const int64_t want_blocks = (a.rows <= 2 ? 2 : 1) * int64_t(std::max(state_of(ctx).multiprocessors, 1));
    int warps_n = kTiledWarps;
    while (warps_n > min_warps_n && ceil_div(a.out, int64_t(warps_n) * kTiledRowsPerWarp) < want_blocks) warps_n /= 2;
    return warps_n;
}

template <class TW>
void launch_tiled(mamba_context & ctx, GemvArgs a, bool vec, int min_warps_n = 1) {
    a.warps_n = tiled_warps_n(ctx, a, min_warps_n);
    const unsigned blocks = unsigned(ceil_div(a.out, int64_t(a.warps_n) * kTiledRowsPerWarp));
    a.staged_batches = 0;
    a.staged_vectors = 0;
    // 16-bit W only: the float32 builds spill with the copies.
    if (sizeof(TW) == 2 && a.stage_w > 0 && a.rows == 1 && a.early_w && vec && !a.has_conv && !a.has_xproj && !a.has_pre_norm && !a.has_norm) {
        // The vectors a lane has in the first tile beyond the batch held in registers, up to the build's batches.
        const int batches = a.stage_w == 2 ? 2 : 1;
        const int64_t tile_k = a.stage_w == 2 ? TiledGemvTraits<TW, 1, true, false, false, false, false, 2, 2>::kTileK : TiledGemvTraits<TW, 1, true>::kTileK;
        const int unroll = TiledGemvTraits<TW, 1, true>::kUnroll;
        const int64_t vectors = ceil_div(std::min<int64_t>(a.in, tile_k), int64_t(TiledGemvTraits<TW, 1, true>::kVecElems));
        const int64_t lane_steps = ceil_div(vectors, int64_t(kTiledWarps / a.warps_n) * 32);
        // "one" stages its batch whole; the default exactly the vectors left, so that 3 blocks an SM fit.
        a.staged_vectors = int(std::max<int64_t>(0, std::min<int64_t>(lane_steps - unroll, int64_t(batches) * unroll)));
        if (batches == 1 && a.staged_vectors > 0) a.staged_vectors = unroll;
        a.staged_batches = int(ceil_div(int64_t(a.staged_vectors), int64_t(unroll)));
    }
    if (a.rows <= 1) launch_tiled_rows<TW, 1>(ctx, a, vec, blocks);
    else if (a.rows <= 2) launch_tiled_rows<TW, 2>(ctx, a, vec, blocks);
    else if (a.rows <= 4) launch_tiled_rows<TW, 4>(ctx, a, vec, blocks);
    else if (a.rows <= 8) launch_tiled_rows<TW, 8>(ctx, a, vec, blocks);
    else launch_tiled_rows<TW, 16>(ctx, a, vec, blocks);
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
    launch_kernel(ctx, a.early_w ? "gemv_warp_kernel early" : "gemv_warp_kernel", true, gemv_warp_kernel<Tr>, dim3(unsigned(p.blocks)), dim3(unsigned(32 * p.warps_per_block)), 0, a);
    MAMBA_CUDA_CHECK_LAUNCH("gemv_warp_kernel");
}

// Row buckets 1, 2 and 4. More rows (only when forced: the default takes the tiled kernel beyond two rows)
// run as one launch per 4 rows, each reading W again: correct, not fast, and fewer instantiations.
template <class TW, int kRowsPerGroup, int kUnroll, int kLoad>
void launch_warp(mamba_context & ctx, const GemvArgs & a) {
    // Before any launch: only a forced variant gets here with rows this long (gemv_variant).
    if (a.in > kWarpMaxIn)
        fail_argument("argument 'weight' has ", a.in, " input features; the warp GEMV kernel (MAMBA_CUDA_GEMV_VARIANT=warp) takes at most ",
                      kWarpMaxIn);
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
        case GemvVariant::Gemm:
        case GemvVariant::Automatic: fail(MAMBA_STATUS_INTERNAL, "GEMV variant not resolved");
    }
}

}  // namespace

namespace {

// The GEMV's arguments for a linear it can take (gemv_applies), no conv epilogue; vec: W allows 16-byte loads.
GemvArgs gemv_args(const LinearParams & p, bool & vec) {
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
    a.x_vec = (K <= 1 || a.x_s1 == 1) && aligned16(p.x.data) && (M == 1 || (a.x_s0 * x_elem) % 16 == 0);
    const size_t elem = dtype_size(p.weight.dtype);
    vec = aligned16(p.weight.data) && (a.ldw * int64_t(elem)) % 16 == 0;
    a.w_vec = vec;
    return a;
}

// The tiled kernel for a W of dtype w that allows 16-byte loads, at least min_warps_n output warps a block.
void launch_tiled_of(DType w, mamba_context & ctx, const GemvArgs & a, int min_warps_n = 1) {
    switch (w) {
        case DType::F32: launch_tiled<float>(ctx, a, true, min_warps_n); break;
        case DType::BF16: launch_tiled<bf16_t>(ctx, a, true, min_warps_n); break;
        default: launch_tiled<f16_t>(ctx, a, true, min_warps_n); break;
    }
}

bool gemv_applies(const LinearParams & p) {
    const int64_t M = p.rows, K = p.in_features, N = p.out_features;
    if (M < 1 || M > kGemvMaxRows || N < 1) return false;
    if (K > INT32_MAX || N > INT32_MAX) return false;
    if (p.weight.dtype != DType::F32 && p.weight.dtype != DType::BF16 && p.weight.dtype != DType::F16) return false;
    // W with a strided last axis is rejected by validation; guard anyway (the kernels read rows contiguously).
    return K <= 1 || p.weight.stride[1] == 1;
}

}  // namespace

bool try_gemv(mamba_context & ctx, const LinearParams & p, const ClearAfterWait * clear, bool stage_weights) {
    const bool evict_first = gemv_evict_first(ctx, false);  // read before any way out, so a misspelt value fails every call
    const int stage_mode = gemv_stage_mode();  // read before any way out, so a misspelt value fails every call
    const int stage = stage_weights ? stage_mode : 0;
    if (!gemv_applies(p)) return false;
    const GemvVariant variant = gemv_variant(p);
    if (variant == GemvVariant::Gemm) return false;
    bool vec = false;
    GemvArgs a = gemv_args(p, vec);
    // Decided once for the call: where a forced warp kernel runs more than 4 rows as several launches, each
    // later launch follows one of this op, which writes only y, and y never overlaps W (validate_linear).
    a.early_w = readable_before_wait(ctx, {&p.weight});
    a.w_evict_first = evict_first;
    a.stage_w = stage;
    if (clear != nullptr) {
        if (p.rows != 1) fail(MAMBA_STATUS_INTERNAL, "try_gemv: the clear after the wait is built into the one-row kernels only");
        a.clear = clear->data;
        a.clear_count = clear->count;
    }
    switch (p.weight.dtype) {
        case DType::F32: launch_gemv<float>(ctx, a, vec, variant); break;
        case DType::BF16: launch_gemv<bf16_t>(ctx, a, vec, variant); break;
        default: launch_gemv<f16_t>(ctx, a, vec, variant); break;
    }
    return true;
}

bool gemv_row_norm_applies(const LinearParams & p, int64_t partials_per_row) {
    const GemvVariant forced = forced_gemv_variant();
    if (forced == GemvVariant::Warp || forced == GemvVariant::Gemm || !gemv_applies(p) || gemv_variant(p) == GemvVariant::Gemm) return false;
    if (p.rows > kNormMaxRows) return false;
    bool vec = false;
    gemv_args(p, vec);
    return vec && partials_per_row >= 1 && p.rows * partials_per_row <= kNormPartialsMax;
}

bool try_gemv_row_norm(mamba_context & ctx, const LinearParams & p, const NormPartials & partials, int64_t dim, float eps) {
    const bool evict_first = gemv_evict_first(ctx, false);
    if (!gemv_row_norm_applies(p, partials.count) || dim < 1) return false;
    bool vec = false;
    GemvArgs a = gemv_args(p, vec);  // vec: gemv_row_norm_applies
    a.early_w = readable_before_wait(ctx, {&p.weight});
    a.w_evict_first = evict_first;
    a.has_norm = true;
    a.norm.partials = partials.data;
    a.norm.s0 = partials.row_stride;
    a.norm.count = int(partials.count);
    a.norm.inv_dim = float(1.0 / double(dim));
    a.norm.eps = eps;
    // The tiled kernel even where mamba_linear would take the warp kernel (as the conv epilogue does).
    launch_tiled_of(p.weight.dtype, ctx, a);
    return true;
}

namespace {

// The GEMV's arguments with the conv step epilogue; false where the epilogue cannot run. The epilogue lives in
// the tiled kernel's kConv builds; a forced warp kernel, wide filters, rows with no columns (no tile, so no
// staged conv operands), rows mamba_linear gives to cuBLAS and a W that does not allow 16-byte loads take the
// two ops. The switches are read first, so that a misspelt value fails every call, not only the fusable ones.
bool plan_gemv_conv(mamba_context & ctx, const LinearConv1dUpdateParams & p, GemvArgs & a) {
    const LinearParams & l = p.linear;
    const CausalConv1dUpdateParams & c = p.conv;
    const bool separate = env_choice("MAMBA_CUDA_LINEAR_CONV", kLinearConv, LinearConv::Fused) == LinearConv::Separate;
    const GemvVariant forced = forced_gemv_variant();
    const bool evict_first = gemv_evict_first(ctx, true);
    const bool forced_other = forced == GemvVariant::Warp || forced == GemvVariant::Gemm;
    if (separate || forced_other || !gemv_applies(l) || l.in_features < 1 || c.width > kConvFusedMaxWidth) return false;
    if (gemv_variant(l) == GemvVariant::Gemm) return false;
    bool vec = false;
    a = gemv_args(l, vec);
    if (!vec) return false;  // the epilogue is built for 16-byte W loads only
    a.early_w = readable_before_wait(ctx, {&l.weight});
    a.early_conv = readable_before_wait(ctx, {&c.conv_state, &c.weight, ptr(c.bias)});
    a.w_evict_first = evict_first;
    a.has_conv = c.dim > 0;
    GemvArgs::Conv & k = a.conv;
    k.state = any(c.conv_state);
    k.state_s0 = c.conv_state.stride[0];
    k.state_s1 = c.conv_state.stride[1];
    k.state_s2 = c.conv_state.stride[2];
    k.weight = any(c.weight);
    k.weight_s0 = c.weight.stride[0];
    k.weight_s1 = c.weight.stride[1];
    k.has_bias = c.bias.has_value();
    k.bias = any(c.bias);
    k.bias_s = c.bias ? c.bias->stride[0] : 0;
    k.y = any(c.y);
    k.y_s0 = c.y.stride[0];
    k.y_s1 = c.y.stride[1];
    k.offset = p.conv_offset;
    k.dim = c.dim;
    k.width = int(c.width);
    k.silu = c.silu;
    return true;
}

// The fewest output warps a block of the kXProj build may have: its x_proj columns must be whole 16-byte pieces.
int xproj_min_warps_n(DType w) { return std::max(1, 16 / int(dtype_size(w)) / kTiledRowsPerWarp); }

}  // namespace

bool try_gemv_conv1d_update(mamba_context & ctx, const LinearConv1dUpdateParams & p) {
    GemvArgs a{};
    if (!plan_gemv_conv(ctx, p, a)) return false;
    launch_tiled_of(p.linear.weight.dtype, ctx, a);  // 16-byte W loads: plan_gemv_conv
    return true;
}

bool gemv_runs_conv1d_update(mamba_context & ctx, const LinearConv1dUpdateParams & p) {
    GemvArgs a{};
    return plan_gemv_conv(ctx, p, a) && a.has_conv;
}

std::string gemv_conv1d_xproj_unsupported(mamba_context & ctx, const LinearConv1dUpdateParams & p, const LinearParams & x_proj, int64_t sums_capacity) {
    GemvArgs a{};
    if (p.linear.rows != 1) return cat("it takes batch 1, not ", p.linear.rows);
    if (!plan_gemv_conv(ctx, p, a) || !a.has_conv)
        return "in_proj does not run the conv step in its GEMV (MAMBA_CUDA_LINEAR_CONV=separate, a forced GEMV variant, a weight without 16-byte loads "
               "or a filter wider than 4)";
    const DType w = p.linear.weight.dtype;
    if (x_proj.weight.dtype != w)
        return cat("x_proj_weight is ", dtype_name(x_proj.weight.dtype), " and in_proj_weight ", dtype_name(w), "; the fold takes one dtype");
    if (x_proj.bias) return "x_proj has a bias";
    if (x_proj.in_features != p.conv.dim) return cat("x_proj takes ", x_proj.in_features, " inputs, not the ", p.conv.dim, " conv channels");
    const int64_t elem = int64_t(dtype_size(w)), q = x_proj.out_features;
    if (!aligned16(x_proj.weight.data) || (q > 1 && (x_proj.weight.stride[0] * elem) % 16 != 0))
        return "x_proj_weight's rows do not start on 16-byte boundaries";
    const int64_t owned = int64_t(tiled_warps_n(ctx, a, xproj_min_warps_n(w))) * kTiledRowsPerWarp;
    if (p.conv_offset % owned != 0 || p.conv.dim % owned != 0)
        return cat("the ", p.conv.dim, " conv channels from output ", p.conv_offset, " do not split into in_proj's blocks of ", owned, " outputs");
    if (q * owned * elem > kXProjSliceBytes)
        return cat("x_proj's ", q, " outputs over a block's ", owned, " channels take ", q * owned * elem, " bytes, more than the ", kXProjSliceBytes,
                   " the kernel has room for");
    if (xproj_replica_stride(q) > sums_capacity) return cat("x_proj has ", q, " outputs, more than the ", sums_capacity, " sums the context holds");
    return {};
}

namespace {

// The pre-norm's arguments: the GEMV reads the norm's input x (+ residual) in place of in_proj's x (the norm's output).
void add_pre_norm(mamba_context & ctx, const RmsNormParams & n, GemvArgs & a) {
    a.x = any(n.x);
    a.x_s0 = n.x.stride[0];
    a.x_s1 = n.x.stride[1];
    a.x_vec = true;  // gemv_conv1d_pre_norm_unsupported
    a.has_pre_norm = true;
    GemvArgs::PreNorm & q = a.pre;
    q.has_residual = n.residual.has_value();
    q.residual = any(n.residual);
    q.weight = any(n.weight);
    q.weight_bytes = n.hidden * int64_t(dtype_size(n.weight.dtype));
    q.residual_out = any(*n.residual_out);
    q.early = readable_before_wait(ctx, {&n.weight});
    q.early_residual = n.residual && readable_before_wait(ctx, {&*n.residual});
    q.inv_dim = float(1.0 / double(n.hidden));
    q.eps = n.eps;
}

}  // namespace

std::string gemv_conv1d_pre_norm_unsupported(mamba_context & ctx, const LinearConv1dUpdateParams & p, const RmsNormParams & n) {
    if (p.linear.rows != 1 || n.rows != 1) return cat("it takes batch 1, not ", p.linear.rows);
    GemvArgs a{};
    if (!plan_gemv_conv(ctx, p, a) || !a.has_conv)
        return "in_proj does not run the conv step in its GEMV (MAMBA_CUDA_LINEAR_CONV=separate, a forced GEMV variant, a weight without 16-byte loads "
               "or a filter wider than 4)";
    if (n.hidden != p.linear.in_features) return cat("the norm has ", n.hidden, " channels and in_proj ", p.linear.in_features, " inputs");
    const auto row_from_16_bytes = [&](const Tensor & t) {
        return aligned16(t.data) && (n.hidden <= 1 || t.stride[t.ndim - 1] == 1);
    };
    if (n.x.dtype != p.linear.weight.dtype || !row_from_16_bytes(n.x))
        return cat("x is not one contiguous ", dtype_name(p.linear.weight.dtype), " row from a 16-byte boundary (in_proj_weight's dtype)");
    if (n.weight.dtype != p.linear.weight.dtype || !row_from_16_bytes(n.weight))
        return cat("pre_norm_weight is not a contiguous ", dtype_name(p.linear.weight.dtype), " vector from a 16-byte boundary (in_proj_weight's dtype)");
    if (n.hidden % 4 != 0) return cat("the norm has ", n.hidden, " channels, not a multiple of 4");
    if (n.residual && (n.residual->dtype != DType::F32 || !row_from_16_bytes(*n.residual)))
        return "residual is not one contiguous float32 row from a 16-byte boundary";
    if (!n.residual_out || n.residual_out->dtype != DType::F32 || !row_from_16_bytes(*n.residual_out))
        return "residual_out is not one contiguous float32 row from a 16-byte boundary";
    return {};
}

void gemv_conv1d_pre_norm(mamba_context & ctx, const LinearConv1dUpdateParams & p, const RmsNormParams & n) {
    if (!gemv_conv1d_pre_norm_unsupported(ctx, p, n).empty()) fail(MAMBA_STATUS_INTERNAL, "gemv_conv1d_pre_norm: the fold does not apply");
    GemvArgs a{};
    plan_gemv_conv(ctx, p, a);
    add_pre_norm(ctx, n, a);
    launch_tiled_of(p.linear.weight.dtype, ctx, a);
}

void gemv_conv1d_xproj(mamba_context & ctx, const LinearConv1dUpdateParams & p, const LinearParams & x_proj, const XProjSums & sums, const RmsNormParams * pre_norm) {
    if (!gemv_conv1d_xproj_unsupported(ctx, p, x_proj, sums.capacity).empty() || sums.replicas < 1 || sums.replicas > kXProjMaxReplicas || sums.stride < x_proj.out_features ||
        sums.replicas * sums.stride > sums.capacity || (pre_norm && !gemv_conv1d_pre_norm_unsupported(ctx, p, *pre_norm).empty()))
        fail(MAMBA_STATUS_INTERNAL, "gemv_conv1d_xproj: the fold does not apply");
    GemvArgs a{};
    plan_gemv_conv(ctx, p, a);
    if (pre_norm) add_pre_norm(ctx, *pre_norm, a);
    a.has_xproj = true;
    a.xproj.w = x_proj.weight.data;
    a.xproj.ldw = x_proj.weight.stride[0];
    a.xproj.sums = sums.data;
    a.xproj.stride = sums.stride;
    a.xproj.replicas = sums.replicas;
    a.xproj.q = int(x_proj.out_features);
    a.xproj.early = readable_before_wait(ctx, {&x_proj.weight});
    launch_tiled_of(p.linear.weight.dtype, ctx, a, xproj_min_warps_n(p.linear.weight.dtype));
}

}  // namespace mamba::cuda
