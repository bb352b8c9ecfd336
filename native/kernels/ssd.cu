// Mamba-2 SSD (mamba_ssd); the decode step lives in ssd_state_update.cu.
//
// ssd with bf16 x, B, C and dstate <= 128 runs the chunk-parallel tensor-core kernels
// (ssd_chunk_parallel.cu), or the sequential chunked kernel (ssd_chunked.cu) on GPUs with too little
// shared memory for them; the kernels below handle every other case. MAMBA_CUDA_SSD_PATH (read at each
// call, before any work is queued) forces a path for the tests and the benchmark: "chunked" skips the
// chunk-parallel kernels, "parallel" the sequential chunked one, "auto" (or unset) is the order above; a
// shape the forced path cannot take runs on the kernels below, and another value is INVALID_ARGUMENT.
//
// ssd: the recurrence walked step by step with the state in registers (the rows kernel). A block owns
// (sequence, head, 32 rows of headdim); each warp 8 rows p and each lane 4 consecutive states (float4) of
// every 128, so one float4 of B and of C from shared memory serves 32 state updates. Chunks of 16 steps
// of B, C (shared by the head's rows), dt and x are staged in shared memory; y is reduced over the lanes
// through a small shared buffer. The result equals the chunked SSD (chunk_size only changes rounding).
// Bytes: batch*len*(heads*headdim*(x + z + y) + 2*groups*dstate + heads) (+ states).
// FLOPs: 6 per (t, h, p, n).
//
// Split rows: where those blocks (headdim tiles x heads x sequences) are fewer than the SMs hold (float32 x at batch 1:
// 48 blocks walk mamba2-130m's 2048 steps, one step after another), each sequence is cut into segments of whole
// 16-step chunks that run at once, in three kernels: (1) the summaries, every segment's recurrence from a zero state,
// without C or y, leaving its last state and the product of its decays in the workspace; (2) the combine, one thread
// a state element walking the segments: segment k's initial state is the one before it decayed by segment k - 1's
// product plus its summary, and the last one is the final state; (3) every segment from its initial state, writing y.
// The recurrence is walked twice, in parallel. MAMBA_CUDA_SSD_SEGMENTS: "auto" (or unset) plans the segments
// (plan_ssd_segments), "off" keeps one block a sequence, 2 to 64 force that many (for the tests and the benchmark).
// Bytes: the rows kernel's, with x, dt and B read twice, plus the segments' states written and read twice (combine)
// and once more (segments): 4 * segments * heads * headdim * dstate bytes each way per sequence. FLOPs: the rows
// kernel's plus the summaries' 4 per (t, h, p, n).
#include "common.cuh"
#include "core/env_choice.h"
#include "launch.cuh"
#include "ssd_host.cuh"
#include "ops/ssd.h"
#include "ssd_chunk_parallel.cuh"
#include "ssd_chunked.cuh"

namespace mamba::cuda {

using ssd_host::fill_shared_args;
using ssd_host::F32Params;

namespace {

// Rows kernel: each warp owns 8 rows p of a head and each lane 4 consecutive states (float4) of every
// 128, so one float4 of B and one of C from shared memory serve 8 rows (32 state updates). y_t[p] is
// reduced over the lanes through a small shared buffer (8 stores, 2 vector loads, 2 shuffles a step)
// instead of 8 full shuffle trees.
template <int kStateQuads>
struct SsdRowsTraits {
    static constexpr int kNQ = kStateQuads;   // float4 state groups per lane: dstate <= 128 * kNQ
    static constexpr int kNP = 128 * kNQ;     // padded dstate held in shared memory
    static constexpr int kRowsPerWarp = 8;
    static constexpr int kWarps = 4;
    static constexpr int kRows = kRowsPerWarp * kWarps;  // rows of headdim per block
    static constexpr int kThreads = 32 * kWarps;
    static constexpr int kChunk = 16;
};

// A sequence cut into segments (the split rows path): `states` holds a state (heads x headdim x dstate floats) and
// `decays` a product of decays a head, per (sequence, segment); the steps of segment k are [k, k + 1) * seg_len
// from the sequence's first (its last segment may be shorter or, for the packed sequences, empty).
struct SsdSplit {
    float * states;
    float * decays;
    int64_t seg_len, segments;
};

// What a rows-kernel block walks: a whole sequence (from the initial state, writing y and the final state), a segment's
// summary (from zero, writing its last state and decay product, no y) or a segment from its combined initial state
// (writing y only).
enum class RowsMode { Whole, Summary, Segment };

template <class Tr, RowsMode kMode>
__global__ void __launch_bounds__(Tr::kThreads) ssd_rows_kernel(SsdArgs a, SsdSplit split) {
    constexpr bool kY = kMode != RowsMode::Summary;
    constexpr int NQ = Tr::kNQ, NP = Tr::kNP, R = Tr::kRowsPerWarp, ROWS = Tr::kRows, CH = Tr::kChunk;
    __shared__ __align__(16) float s_B[CH][NP];
    __shared__ __align__(16) float s_C[CH][NP];
    __shared__ __align__(16) float s_x[CH][ROWS];
    __shared__ __align__(16) float s_red[Tr::kWarps][R][36];  // 36: conflict-free float4 reads
    __shared__ float s_y[CH][ROWS];
    __shared__ float s_dt[CH], s_decay[CH];

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t h = blockIdx.y;
    const int64_t seq = kMode == RowsMode::Whole ? int64_t(blockIdx.z) : int64_t(blockIdx.z) / split.segments;
    const int64_t segment = kMode == RowsMode::Whole ? 0 : int64_t(blockIdx.z) % split.segments;
    const int64_t row0 = int64_t(blockIdx.x) * ROWS;
    const int64_t g = h / a.heads_per_group;
    int64_t b, t_begin, t_end;
    sequence_span(a, seq, b, t_begin, t_end);
    if constexpr (kMode != RowsMode::Whole) {
        t_begin = min(t_begin + segment * split.seg_len, t_end);
        t_end = min(t_begin + split.seg_len, t_end);
    }
    // The segment's state slot (split rows): element (p, n) of this head at (p * dstate + n).
    [[maybe_unused]] float * const slot =
        kMode == RowsMode::Whole ? nullptr : split.states + ((seq * split.segments + segment) * a.heads + h) * a.headdim * a.dstate;
    const float A = a.A[h * a.A_s];
    const float bias = a.has_bias ? a.dt_bias[h * a.bias_s] : 0.0f;

    float4 st[R][NQ];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const int64_t p = row0 + warp * R + r;
#pragma unroll
        for (int q = 0; q < NQ; ++q) {
            float v[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int64_t n = q * 128 + lane * 4 + i;
                const bool in = p < a.headdim && n < a.dstate;
                if constexpr (kMode == RowsMode::Whole)
                    v[i] = (a.has_init && in) ? a.init[seq * a.init_s[0] + h * a.init_s[1] + p * a.init_s[2] + n * a.init_s[3]] : 0.0f;
                else if constexpr (kMode == RowsMode::Segment)
                    v[i] = in ? slot[p * a.dstate + n] : 0.0f;
                else
                    v[i] = 0.0f;
            }
            st[r][q] = make_float4(v[0], v[1], v[2], v[3]);
        }
    }

    [[maybe_unused]] float decay_product = 1.0f;  // kMode == Summary: the segment's decays multiplied in step order
    for (int64_t t0 = t_begin; t0 < t_end; t0 += CH) {
        const int steps = t_end - t0 < CH ? int(t_end - t0) : CH;
        __syncthreads();  // the previous chunk's shared data is no longer read
        for (int i = threadIdx.x; i < CH * NP; i += blockDim.x) {
            const int k = i / NP, n = i % NP;
            const bool in = k < steps && n < a.dstate;
            const int64_t t = t0 + k;
            s_B[k][n] = in ? a.B.load(b * a.B_s[0] + t * a.B_s[1] + g * a.B_s[2] + n * a.B_s[3]) : 0.0f;
            if constexpr (kY) s_C[k][n] = in ? a.C.load(b * a.C_s[0] + t * a.C_s[1] + g * a.C_s[2] + n * a.C_s[3]) : 0.0f;
        }
        if (threadIdx.x < CH) {
            const int k = threadIdx.x;
            float dt = 0.0f, decay = 1.0f;
            if (k < steps) {
                dt = a.dt.load(b * a.dt_s[0] + (t0 + k) * a.dt_s[1] + h * a.dt_s[2]) + bias;
                if (a.softplus) dt = softplus_mufu(dt);
                if (a.clamp) dt = fminf(fmaxf(dt, a.dt_min), a.dt_max);
                decay = __expf(dt * A);
            }
            s_dt[k] = dt;
            s_decay[k] = decay;
        }
        for (int i = threadIdx.x; i < CH * ROWS; i += blockDim.x) {
            const int k = i / ROWS, rr = i % ROWS;
            const int64_t p = row0 + rr;
            s_x[k][rr] = (k < steps && p < a.headdim) ? a.x.load(b * a.x_s[0] + (t0 + k) * a.x_s[1] + h * a.x_s[2] + p * a.x_s[3]) : 0.0f;
        }
        __syncthreads();
        for (int k = 0; k < steps; ++k) {
            const float decay = s_decay[k], dt = s_dt[k];
            const float4 xa = *reinterpret_cast<const float4 *>(&s_x[k][warp * R]);
            const float4 xb = *reinterpret_cast<const float4 *>(&s_x[k][warp * R + 4]);
            const float dtx[R] = {dt * xa.x, dt * xa.y, dt * xa.z, dt * xa.w, dt * xb.x, dt * xb.y, dt * xb.z, dt * xb.w};
            float acc[R];
#pragma unroll
            for (int r = 0; r < R; ++r) acc[r] = 0.0f;
#pragma unroll
            for (int q = 0; q < NQ; ++q) {
                const float4 Bq = *reinterpret_cast<const float4 *>(&s_B[k][q * 128 + lane * 4]);
                const float4 Cq = kY ? *reinterpret_cast<const float4 *>(&s_C[k][q * 128 + lane * 4]) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    float4 & v = st[r][q];
                    v.x = decay * v.x + dtx[r] * Bq.x;
                    v.y = decay * v.y + dtx[r] * Bq.y;
                    v.z = decay * v.z + dtx[r] * Bq.z;
                    v.w = decay * v.w + dtx[r] * Bq.w;
                    if constexpr (kY) acc[r] += Cq.x * v.x + Cq.y * v.y + Cq.z * v.z + Cq.w * v.w;
                }
            }
            if constexpr (kY) {
                // Sum each row's 32 lane partials: lanes 4r..4r+3 add 8 partials each, then combine.
#pragma unroll
                for (int r = 0; r < R; ++r) s_red[warp][r][lane] = acc[r];
                __syncwarp();
                const int rr = lane / 4, part = lane % 4;
                const float4 v0 = *reinterpret_cast<const float4 *>(&s_red[warp][rr][part * 8]);
                const float4 v1 = *reinterpret_cast<const float4 *>(&s_red[warp][rr][part * 8 + 4]);
                float sum = (v0.x + v0.y) + (v0.z + v0.w) + (v1.x + v1.y) + (v1.z + v1.w);
                sum += __shfl_xor_sync(0xffffffffu, sum, 1);
                sum += __shfl_xor_sync(0xffffffffu, sum, 2);
                if (part == 0) s_y[k][warp * R + rr] = sum;
                __syncwarp();  // s_red is rewritten at the next step
            } else {
                decay_product *= decay;  // the summary: the state alone, and the segment's decay
            }
        }
        if constexpr (kY) {
            __syncthreads();
            for (int i = threadIdx.x; i < steps * ROWS; i += blockDim.x) {
                const int k = i / ROWS, rr = i % ROWS;
                const int64_t p = row0 + rr;
                if (p >= a.headdim) continue;
                const int64_t t = t0 + k;
                float out = s_y[k][rr];
                if (a.has_D) out += (a.D_per_channel ? a.D[h * a.D_s0 + p * a.D_s1] : a.D[h * a.D_s0]) * s_x[k][rr];
                if (a.has_z) out *= silu_f(a.z.load(b * a.z_s[0] + t * a.z_s[1] + h * a.z_s[2] + p * a.z_s[3]));
                a.y.store(b * a.y_s[0] + t * a.y_s[1] + h * a.y_s[2] + p * a.y_s[3], out);
            }
        }
    }
    if (kMode == RowsMode::Summary && blockIdx.x == 0 && threadIdx.x == 0) split.decays[(seq * split.segments + segment) * a.heads + h] = decay_product;
    if (kMode == RowsMode::Summary || (kMode == RowsMode::Whole && a.has_fin)) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const int64_t p = row0 + warp * R + r;
            if (p >= a.headdim) continue;
#pragma unroll
            for (int q = 0; q < NQ; ++q) {
                const float v[4] = {st[r][q].x, st[r][q].y, st[r][q].z, st[r][q].w};
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    const int64_t n = q * 128 + lane * 4 + i;
                    if (n >= a.dstate) continue;
                    if constexpr (kMode == RowsMode::Summary) slot[p * a.dstate + n] = v[i];
                    else a.fin[seq * a.fin_s[0] + h * a.fin_s[1] + p * a.fin_s[2] + n * a.fin_s[3]] = v[i];
                }
            }
        }
    }
}

// The split rows' combine: one thread a state element (seq, h, p, n). Walking the segments in order, it replaces each
// summary with the segment's initial state (the initial state for segment 0, else the previous one decayed by the
// previous segment's product plus its summary) and writes what follows the last segment as the final state. The
// initial and final states may alias: each thread reads its element before it writes it.
__global__ void __launch_bounds__(256) ssd_split_combine_kernel(SsdArgs a, SsdSplit split, int64_t nseq) {
    const int64_t per_seq = a.heads * a.headdim * a.dstate;
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= nseq * per_seq) return;
    const int64_t seq = i / per_seq, e = i - seq * per_seq;
    const int64_t h = e / (a.headdim * a.dstate), p = e / a.dstate % a.headdim, n = e % a.dstate;
    float s = a.has_init ? a.init[seq * a.init_s[0] + h * a.init_s[1] + p * a.init_s[2] + n * a.init_s[3]] : 0.0f;
    for (int64_t k = 0; k < split.segments; ++k) {
        float * at = split.states + (seq * split.segments + k) * per_seq + e;
        const float summary = *at;
        *at = s;
        s = split.decays[(seq * split.segments + k) * a.heads + h] * s + summary;
    }
    if (a.has_fin) a.fin[seq * a.fin_s[0] + h * a.fin_s[1] + p * a.fin_s[2] + n * a.fin_s[3]] = s;
}

enum class SsdPath { Auto, Chunked, Parallel };

constexpr EnvChoice<SsdPath> kSsdPaths[] = {{"auto", SsdPath::Auto}, {"chunked", SsdPath::Chunked}, {"parallel", SsdPath::Parallel}};

// MAMBA_CUDA_SSD_SEGMENTS: 0 plans (plan_ssd_segments), 1 keeps whole sequences, more forces that many segments.
constexpr EnvChoice<int> kSsdSegments[] = {{"auto", 0}, {"off", 1}, {"2", 2}, {"4", 4}, {"8", 8}, {"16", 16}, {"32", 32}, {"64", 64}};
// The shortest segment the plan makes, in steps, and a block's fixed cost (its state's load and store, the combine's
// share) in steps' worth of walking, for the plan below.
constexpr int64_t kSsdMinSegmentSteps = 64;
constexpr int64_t kSsdSegmentCostSteps = 32;

// Segments a sequence for `blocks` whole-sequence blocks of `len` steps (the longest sequence's) on `slots` resident
// blocks of the segments kernel: the fewest waves of the shortest segments, a wave taking (a segment's steps + the
// fixed cost); segments of at least kSsdMinSegmentSteps steps. mamba2-130m at batch 1 (48 blocks of 2048 steps, 792
// slots on an H200): 16 segments of 128 steps, one wave.
int64_t plan_ssd_segments(int64_t blocks, int64_t len, int64_t slots) {
    constexpr int64_t kChunk = SsdRowsTraits<1>::kChunk;
    int64_t best = 1, best_cost = INT64_MAX;
    for (int64_t s = 1; s <= std::max<int64_t>(1, len / kSsdMinSegmentSteps); ++s) {
        const int64_t seg_len = ceil_div(ceil_div(len, s), kChunk) * kChunk, used = ceil_div(len, seg_len);
        const int64_t cost = ceil_div(blocks * used, std::max<int64_t>(slots, 1)) * (seg_len + kSsdSegmentCostSteps);
        if (cost < best_cost) best = used, best_cost = cost;
    }
    return best;
}

// The segments kernel's resident blocks on the device (its registers bound them: 6 an SM at dstate <= 128 on an H200).
int64_t ssd_segment_slots(mamba_context & ctx, int64_t dstate) {
    int per_sm = 0;
    if (dstate <= 128)
        MAMBA_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, ssd_rows_kernel<SsdRowsTraits<1>, RowsMode::Segment>,
                                                                       SsdRowsTraits<1>::kThreads, 0));
    else
        MAMBA_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, ssd_rows_kernel<SsdRowsTraits<2>, RowsMode::Segment>,
                                                                       SsdRowsTraits<2>::kThreads, 0));
    return int64_t(std::max(per_sm, 1)) * std::max(state_of(ctx).multiprocessors, 1);
}

template <int NQ>
void launch_ssd_rows(mamba_context & ctx, const SsdArgs & a, int64_t nseq, const SsdSplit & split) {
    using Tr = SsdRowsTraits<NQ>;
    if (nseq > 65535 || a.heads > 65535) fail(MAMBA_STATUS_UNSUPPORTED, "ssd on CUDA supports at most 65535 sequences and heads");
    const unsigned tiles = unsigned(ceil_div(a.headdim, Tr::kRows));
    if (split.segments <= 1) {
        launch_kernel(ctx, "ssd_rows_kernel", false, ssd_rows_kernel<Tr, RowsMode::Whole>, dim3(tiles, unsigned(a.heads), unsigned(nseq)),
                      dim3(Tr::kThreads), 0, a, split);
        MAMBA_CUDA_CHECK_LAUNCH("ssd_rows_kernel");
        return;
    }
    const dim3 grid(tiles, unsigned(a.heads), unsigned(nseq * split.segments));
    launch_kernel(ctx, "ssd_rows_kernel summaries", false, ssd_rows_kernel<Tr, RowsMode::Summary>, grid, dim3(Tr::kThreads), 0, a, split);
    MAMBA_CUDA_CHECK_LAUNCH("ssd_rows_kernel summaries");
    const int64_t elements = nseq * a.heads * a.headdim * a.dstate;
    launch_kernel(ctx, "ssd_split_combine_kernel", false, ssd_split_combine_kernel, dim3(unsigned(ceil_div(elements, int64_t(256)))), dim3(256), 0,
                  a, split, nseq);
    MAMBA_CUDA_CHECK_LAUNCH("ssd_split_combine_kernel");
    launch_kernel(ctx, "ssd_rows_kernel segments", false, ssd_rows_kernel<Tr, RowsMode::Segment>, grid, dim3(Tr::kThreads), 0, a, split);
    MAMBA_CUDA_CHECK_LAUNCH("ssd_rows_kernel segments");
}

}  // namespace

void ssd(mamba_context & ctx, const SsdParams & p) {
    // len = 0 still runs: the kernel then copies the initial states (or zeros) to the final ones.
    if (p.heads == 0 || p.headdim == 0) return;
    if (p.initial_states && p.initial_states->dtype != DType::F32) fail(MAMBA_STATUS_UNSUPPORTED, "argument 'initial_states' must be float32 on CUDA");
    if (p.final_states && p.final_states->dtype != DType::F32) fail(MAMBA_STATUS_UNSUPPORTED, "argument 'final_states' must be float32 on CUDA");
    const SsdPath path = env_choice("MAMBA_CUDA_SSD_PATH", kSsdPaths, SsdPath::Auto);
    F32Params f32;
    // The chunk-parallel path's chunk states share the workspace with the parameter copies.
    const SsdCpShape cp_shape{p.x.dtype == DType::BF16 && p.B.dtype == DType::BF16 && p.C.dtype == DType::BF16, p.cu_seqlens.has_value(),
                              p.len, p.cu_seqlens ? p.nseq : p.batch, p.heads, p.headdim, p.dstate, p.groups};
    SsdCpPlan cp_plan = plan_ssd_chunk_parallel(ctx, cp_shape);  // planned anyway: it checks MAMBA_CUDA_SSD_STATE
    // The chunk-parallel output kernel forms C S_in^T in float16 and scales it by exp(acum_t); a dt that can
    // fall below zero (no softplus and no non-negative lower limit) lets acum rise inside a chunk, which
    // amplifies that rounding past the bf16 tolerance (2x at L40 H4 in the tests), so such calls take the
    // chunked kernel, which meets it.
    const bool dt_may_be_negative = !p.dt_softplus && !(ssd_host::dt_is_clamped(p.dt_min, p.dt_max) && p.dt_min >= 0.0f);
    if (path == SsdPath::Chunked || dt_may_be_negative) cp_plan.use = false;
    // The rows kernels' segments (split rows), planned where the call will reach them: neither tensor-core path takes
    // it (try_ssd_chunked takes bf16 x, B and C with dstate <= 128 unless MAMBA_CUDA_SSD_PATH=parallel).
    const int forced_segments = env_choice("MAMBA_CUDA_SSD_SEGMENTS", kSsdSegments, 0);
    const int64_t nseq = p.cu_seqlens ? p.nseq : p.batch;
    const bool chunked_may_take = path != SsdPath::Parallel && cp_shape.bf16_xbc && p.dstate >= 1 && p.dstate <= 128;
    SsdSplit split{nullptr, nullptr, 0, 1};
    if (!cp_plan.use && !chunked_may_take && nseq > 0 && p.len > 0) {
        constexpr int64_t kChunk = SsdRowsTraits<1>::kChunk;
        const int64_t blocks = ceil_div(p.headdim, int64_t(SsdRowsTraits<1>::kRows)) * p.heads * nseq;
        const int64_t wanted = forced_segments > 0 ? forced_segments : plan_ssd_segments(blocks, p.len, ssd_segment_slots(ctx, p.dstate));
        if (wanted > 1 && nseq * wanted <= 65535) {
            split.seg_len = ceil_div(ceil_div(p.len, wanted), kChunk) * kChunk;  // whole chunks
            split.segments = ceil_div(p.len, split.seg_len);
        }
    }
    const size_t split_states = size_t(nseq * split.segments * p.heads * p.headdim * p.dstate) * 4, split_decays = size_t(nseq * split.segments * p.heads) * 4;
    SsdArgs a{};
    const size_t extra = cp_plan.use ? cp_plan.workspace_bytes : split.segments > 1 ? split_states + 256 + split_decays : 0;
    const size_t cp_offset = fill_shared_args(ctx, f32, p, a, extra);
    if (split.segments > 1) {
        split.states = reinterpret_cast<float *>(f32.ws + cp_offset);
        split.decays = reinterpret_cast<float *>(f32.ws + cp_offset + (split_states + 255) / 256 * 256);
    }
    a.has_init = p.initial_states.has_value();
    if (a.has_init) {
        a.init = p.initial_states->ptr<float>();
        copy_strides(a.init_s, *p.initial_states);
    }
    a.has_fin = p.final_states.has_value();
    if (a.has_fin) {
        a.fin = p.final_states->ptr<float>();
        copy_strides(a.fin_s, *p.final_states);
    }
    a.packed = p.cu_seqlens.has_value();
    if (a.packed) {
        a.cu_seqlens = p.cu_seqlens->data;
        a.cu_dtype = int(p.cu_seqlens->dtype);
        a.cu_stride = p.cu_seqlens->stride[0];
    }
    a.len = p.len;
    // The initial and final states may alias: each lane reads its states before the scan and writes
    // the same elements after it, so no other thread observes the overwrite.
    if (cp_plan.use) {
        // chunk-parallel on tensor cores (ssd_chunk_parallel.cu)
        run_ssd_chunk_parallel(ctx, cp_plan, a, nseq, cp_plan.workspace_bytes > 0 ? f32.ws + cp_offset : nullptr);
    } else if (path != SsdPath::Parallel && try_ssd_chunked(ctx, a, nseq)) {
        // done on tensor cores by the chunked algorithm (ssd_chunked.cu)
    } else if (p.dstate <= 128) {
        launch_ssd_rows<1>(ctx, a, nseq, split);
    } else {
        launch_ssd_rows<2>(ctx, a, nseq, split);
    }
}

}  // namespace mamba::cuda
