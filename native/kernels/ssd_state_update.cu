// Mamba-2 decode step (mamba_ssd_state_update): one step of the SSD recurrence per (batch, head, row p):
//   dt = clamp(softplus(dt + dt_bias)); s[n] = exp(dt*A) * s[n] + dt*x[p]*B[n]; y[p] = sum_n C[n]*s[n] (+ D*x)(*silu(z)).
// Bytes: 2 * batch*heads*headdim*dstate*4 (the float32 state read once and written once dominates) + small
// vectors; at B64 H80 P64 N128 that is 335 MB, 80 us at the H200's 4.2 TB/s copy bandwidth.
// Design: a block of 8 warps owns 64 rows p of one (batch, head), a warp 8 rows, a lane 4 consecutive
// states (one float4, 16-byte load and store, streaming cache hints) of every 128. The 8 state loads
// per lane are issued before anything else, and the small vectors (B, C of the head's group, x, z and D of
// the block's rows, dt) are staged in shared memory by all threads at once while they are in flight, so
// that a warp's life is one memory round trip, not a chain of dependent scalar loads. Shapes the float4
// path cannot take (dstate % 4 != 0, strided or misaligned state) use element accesses, same structure.
// Where blocks of 64 rows would be too few for the SMs (batch 1: mamba2-2.7b has 80 heads for 132 SMs), the
// float4 builds take 32 or 16 rows a block (4 or 2 a warp): more blocks, each with less work after its wait.
// Measured on an H200: the mamba2-2.7b 8-layer step chain 0.2521-0.2527 ms with 32 rows against 0.2720-0.2728
// with 64 (run 97), 0.2450-0.2458 with 16 against 0.2518-0.2521 with 32 (run 99); see rows_per_block.
// FLOPs: about 5 per state element.
//
// Measured on an H200 (B64 H80 P64 N128, float32 state): 76% of copy. Three persistent variants were
// measured and removed: a grid sized to the resident blocks whose warps walk work items of 8 (or 4) rows
// in a grid stride with the next item's state loads in flight (register double buffering, 64-128 KB per
// SM), with streaming or write-back stores: 74%, 72% and 68% of copy, and no faster at B1 H80 or B16 H24.
// So the bursts of this kernel's waves (a block loads, waits a round trip, computes, stores, exits) are
// not what holds it below the copy rate. Four more variants of this kernel were measured on an H200 and
// removed (B64 H80 P64 N128, % of copy; this kernel 75% in the same run): plain loads and write-back
// stores 65%; loads past L1 with an L2 evict-first hint on the store only 75%; half a head's rows per
// block (6 blocks/SM) 75%; 16 rows per warp (128 KB of loads in flight per SM) 74%. Neither the cache
// policy nor the bytes in flight nor the block length moves it.
//
// Folded gated norm (mamba_mamba2_step, step_norm.cuh; its own build, kFoldNorm, 16-byte state accesses only):
// y = rounded(out) * silu(z) * norm weight, and each block writes the sum of squares of its rows' normalized
// values (one float); out_proj's GEMV applies the row's scale. Extra bytes: z and the norm weight of the
// block's rows, one float out.
#include <cmath>

#include "common.cuh"
#include "core/env_choice.h"
#include "launch.cuh"
#include "ssd_host.cuh"
#include "step_norm.cuh"
#include "ops/ssd.h"

namespace mamba::cuda {

using ssd_host::fill_shared_args;
using ssd_host::F32Params;

namespace {

struct SsdUpdateArgs {
    float * state;
    AnyPtr x, dt, B, C, z, y;
    const float *A, *D, *dt_bias;
    int64_t st_s[4], x_s[3], dt_s[2], B_s[3], C_s[3], z_s[3], y_s[3];
    int64_t A_s, D_s0, D_s1, bias_s;
    int64_t heads, headdim, dstate, heads_per_group;
    float dt_min, dt_max;
    bool softplus, clamp, has_D, D_per_channel, has_z, has_bias, vec;
    int release_at;  // where the block calls allow_dependents(): ReleaseAt, launch.cuh
    bool early;  // vec build: the first pass of the state, A, dt_bias and D load before the PDL wait (readable_before_wait, launch.cuh)
    // The gated RMSNorm folded in (kFoldNorm builds, step_norm.cuh; needs has_z): y = rounded(out) * silu(z) * norm_w, and
    // each block's sum of squares of the normalized values at norm_part[b * norm_part_s0 + h * gridDim.x + blockIdx.x].
    bool norm_before_gate;
    AnyPtr norm_w;
    int64_t norm_w_s, norm_part_s0;
    float * norm_part;
};

template <bool kVecState, bool kFoldNormV = false, int kRowsPerWarpV = 8>
struct SsdUpdateTraits {
    static constexpr bool kVec = kVecState;  // state rows 16-byte aligned with unit stride, dstate % 4 == 0
    static constexpr bool kFoldNorm = kFoldNormV;  // the folded gated norm (SsdUpdateArgs' norm fields; its own build, with kVec only)
    static constexpr int kWarps = 8;
    static constexpr int kThreads = 32 * kWarps;
    static constexpr int kRowsPerWarp = kRowsPerWarpV;          // 8 (or 4, 2) x 16 bytes of state in flight per lane
    static constexpr int kRowsPerBlock = kWarps * kRowsPerWarp;  // 64: one block per (batch, head) at headdim 64; 32: two; 16: four
    static constexpr int kStatesPerPass = 128;                   // 32 lanes x 4 consecutive states
    static constexpr int kMinBlocksPerSm = 3;                    // <= 85 registers: 24 warps, 96 KB of loads in flight per SM
};

// Block: (row block, head, batch); warp w owns rows p0 + Rw .. +R-1 (R = kRowsPerWarp), lane the 4 consecutive states
// n0 = 4*lane + 128*j. Order of work: (1) every lane issues the state loads of its R rows for the first
// pass; (2) while they are in flight the block stages B and C of its group and x, z, D of its rows in
// shared memory as float32 (one element per thread, all threads at once) and computes dt and the decay;
// (3) update, store, and accumulate y; later passes (dstate > 128) load, update and store in turn.
template <class Tr>
__global__ void __launch_bounds__(Tr::kThreads, Tr::kMinBlocksPerSm) ssd_state_update_kernel(SsdUpdateArgs a) {
    constexpr int R = Tr::kRowsPerWarp, RB = Tr::kRowsPerBlock, S = Tr::kStatesPerPass;
    extern __shared__ __align__(16) float bc_smem[];  // B[dstate], C[dstate]
    __shared__ float x_smem[RB], z_smem[RB], d_smem[RB];
    __shared__ float w_smem[Tr::kFoldNorm ? RB : 1], sq_smem[Tr::kFoldNorm ? Tr::kWarps : 1];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t b = blockIdx.z, h = blockIdx.y;
    const int64_t block_p0 = int64_t(blockIdx.x) * RB;
    const int64_t p0 = block_p0 + warp * R;
    const int64_t g = h / a.heads_per_group;
    const int64_t N = a.dstate;
    float * const head_state = a.state + b * a.st_s[0] + h * a.st_s[1];

    auto load_pass = [&](int64_t n0, float4 (&s)[R]) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const float * row = head_state + (p0 + r) * a.st_s[2];
            if (p0 + r >= a.headdim || n0 >= N) {
                s[r] = make_float4(0.f, 0.f, 0.f, 0.f);
            } else if (Tr::kVec) {
                s[r] = __ldcs(reinterpret_cast<const float4 *>(row + n0));  // read once: evict first
            } else {
                float v[4];
#pragma unroll
                for (int i = 0; i < 4; ++i) v[i] = n0 + i < N ? row[(n0 + i) * a.st_s[3]] : 0.0f;
                s[r] = make_float4(v[0], v[1], v[2], v[3]);
            }
        }
    };

    // With a.early the state's first pass, A, dt_bias and D, which the op just before does not write, load
    // before the PDL wait: the state's HBM round trip then overlaps the previous kernel.
    float4 s[R];
    float dt_bias = 0.0f, A_h = 0.0f, D_mine = 0.0f;
    const int64_t p_mine = block_p0 + threadIdx.x;  // the row whose x, z and D this thread stages
    auto load_state_and_parameters = [&] {
        load_pass(int64_t(lane) * 4, s);
        dt_bias = a.has_bias ? a.dt_bias[h * a.bias_s] : 0.0f;
        A_h = a.A[h * a.A_s];
        // D too: read after the update, it was a round trip on the way to y (loaded here: mamba2-2.7b step chain
        // 0.2762 against 0.2794 ms, run 96, H200).
        if (a.has_D && threadIdx.x < RB)
            D_mine = a.D_per_channel ? a.D[h * a.D_s0 + min(p_mine, a.headdim - 1) * a.D_s1] : a.D[h * a.D_s0];
    };
    const bool early = Tr::kVec && a.early;  // the element-wise build would spill with the loads held across the wait
    if (early) load_state_and_parameters();
    // PDL-safe (launch.cuh): only index math above, and under a.early the inputs the op just before does
    // not write; x, dt, B, C and z (the projection's outputs) may come from the previous kernel.
    if (a.release_at == int(ReleaseAt::BeforeWait)) allow_dependents();  // MAMBA_CUDA_UPDATE_RELEASE (launch.cuh)
    wait_for_producer();
    if (a.release_at == int(ReleaseAt::Start)) allow_dependents();
    if (!early) load_state_and_parameters();

    // Every small input is requested before any is used: loads at clamped (always valid) indices rather
    // than behind bounds branches, so that they issue together and overlap the state loads (at batch 1 the
    // kernel's time is these round trips). z, behind its own branch, goes last.
    const float dt_raw = a.dt.load(b * a.dt_s[0] + h * a.dt_s[1]);
    const int64_t n_first = min(int64_t(threadIdx.x), N - 1);
    const float B_first = a.B.load(b * a.B_s[0] + g * a.B_s[1] + n_first * a.B_s[2]);
    const float C_first = a.C.load(b * a.C_s[0] + g * a.C_s[1] + n_first * a.C_s[2]);
    const bool xz_valid = threadIdx.x < RB && p_mine < a.headdim;
    const float x_mine = a.x.load(b * a.x_s[0] + h * a.x_s[1] + min(p_mine, a.headdim - 1) * a.x_s[2]);
    const float z_mine = xz_valid && a.has_z ? a.z.load(b * a.z_s[0] + h * a.z_s[1] + p_mine * a.z_s[2]) : 0.0f;
    [[maybe_unused]] float w_mine = 0.0f;
    if constexpr (Tr::kFoldNorm) w_mine = xz_valid ? a.norm_w.load((h * a.headdim + p_mine) * a.norm_w_s) : 0.0f;
    if (threadIdx.x < N) {
        bc_smem[threadIdx.x] = B_first;
        bc_smem[N + threadIdx.x] = C_first;
    }
    for (int64_t n = threadIdx.x + Tr::kThreads; n < N; n += Tr::kThreads) {
        bc_smem[n] = a.B.load(b * a.B_s[0] + g * a.B_s[1] + n * a.B_s[2]);
        bc_smem[N + n] = a.C.load(b * a.C_s[0] + g * a.C_s[1] + n * a.C_s[2]);
    }
    if (threadIdx.x < RB) {
        x_smem[threadIdx.x] = xz_valid ? x_mine : 0.0f;
        d_smem[threadIdx.x] = D_mine;
        z_smem[threadIdx.x] = z_mine;
        if constexpr (Tr::kFoldNorm) w_smem[threadIdx.x] = w_mine;
    }
    float dt = dt_raw + dt_bias;
    if (a.softplus) dt = softplus_mufu(dt);
    if (a.clamp) dt = fminf(fmaxf(dt, a.dt_min), a.dt_max);
    const float decay = __expf(dt * A_h);
    __syncthreads();

    float dtx[R], acc[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        dtx[r] = dt * x_smem[warp * R + r];
        acc[r] = 0.0f;
    }
    for (int64_t n0 = int64_t(lane) * 4;; ) {
        float Bn[4], Cn[4];
        if (Tr::kVec) {
            // dstate % 4 == 0 here, so a pass is either wholly inside or wholly past the end.
            const float4 bv = n0 < N ? *reinterpret_cast<const float4 *>(bc_smem + n0) : make_float4(0.f, 0.f, 0.f, 0.f);
            const float4 cv = n0 < N ? *reinterpret_cast<const float4 *>(bc_smem + N + n0) : make_float4(0.f, 0.f, 0.f, 0.f);
            Bn[0] = bv.x, Bn[1] = bv.y, Bn[2] = bv.z, Bn[3] = bv.w;
            Cn[0] = cv.x, Cn[1] = cv.y, Cn[2] = cv.z, Cn[3] = cv.w;
        } else {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                Bn[i] = n0 + i < N ? bc_smem[n0 + i] : 0.0f;
                Cn[i] = n0 + i < N ? bc_smem[N + n0 + i] : 0.0f;
            }
        }
#pragma unroll
        for (int r = 0; r < R; ++r) {
            s[r].x = decay * s[r].x + dtx[r] * Bn[0];
            s[r].y = decay * s[r].y + dtx[r] * Bn[1];
            s[r].z = decay * s[r].z + dtx[r] * Bn[2];
            s[r].w = decay * s[r].w + dtx[r] * Bn[3];
            acc[r] += Cn[0] * s[r].x + Cn[1] * s[r].y + Cn[2] * s[r].z + Cn[3] * s[r].w;
            if (n0 >= N || p0 + r >= a.headdim) continue;
            float * row = head_state + (p0 + r) * a.st_s[2];
            if (Tr::kVec) {
                __stcs(reinterpret_cast<float4 *>(row + n0), s[r]);  // written once: stream out
            } else {
                const float v[4] = {s[r].x, s[r].y, s[r].z, s[r].w};
#pragma unroll
                for (int i = 0; i < 4; ++i)
                    if (n0 + i < N) row[(n0 + i) * a.st_s[3]] = v[i];
            }
        }
        n0 += S;
        if (n0 - int64_t(lane) * 4 >= N) break;  // warp-uniform: the pass start lies past the end
        load_pass(n0, s);
    }

    [[maybe_unused]] float sq = 0.0f;  // kFoldNorm: the square of this lane's normalized value (lane r holds row p0 + r)
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const float total = warp_sum(acc[r]);
        const int64_t p = p0 + r;
        if (lane == r && p < a.headdim) {
            const float xv = x_smem[warp * R + r];
            float out = total;
            if (a.has_D) out += d_smem[warp * R + r] * xv;
            if constexpr (Tr::kFoldNorm) {
                // What the separate norm reads: y as y_inner holds it, gated in float32.
                const float yr = a.y.rounded(out);
                const float gated = yr * silu_f(z_smem[warp * R + r]);
                sq = a.norm_before_gate ? yr * yr : gated * gated;
                out = gated * w_smem[warp * R + r];
            } else if (a.has_z) {
                out *= silu_f(z_smem[warp * R + r]);
            }
            a.y.store(b * a.y_s[0] + h * a.y_s[1] + p * a.y_s[2], out);
        }
    }
    if constexpr (Tr::kFoldNorm) {
        sq = warp_sum(sq);
        if (lane == 0) sq_smem[warp] = sq;
        __syncthreads();
        if (threadIdx.x == 0) {
            float block_sq = 0.0f;
#pragma unroll
            for (int w = 0; w < Tr::kWarps; ++w) block_sq += sq_smem[w];
            a.norm_part[b * a.norm_part_s0 + h * int64_t(gridDim.x) + blockIdx.x] = block_sq;
        }
    }
}


}  // namespace

namespace {

// Builds of the 16-byte kernel by rows of a head per block: 8 rows a warp (64 a block), 4 (32) or 2 (16).
template <bool kFoldNorm, int kRowsPerBlock>
using VecTraits = SsdUpdateTraits<true, kFoldNorm, kRowsPerBlock / SsdUpdateTraits<true>::kWarps>;
constexpr int kWideRows = SsdUpdateTraits<true>::kRowsPerBlock;

// MAMBA_CUDA_SSD_UPDATE_ROWS: rows of a head per block in the 16-byte builds. "auto" (or unset) from W, the
// blocks of 64 rows: 64 where W >= 4 x SMs, 32 where W >= SMs, 16 below. Fewer rows a block mean more blocks
// for the state's bytes and less work after each block's wait, but each block stages B and C again. Measured
// on an H200 (132 SMs, run 100, ms/step of decode): mamba2-2.7b (80 heads) at batch 1 16 rows 2.021-2.025,
// 32 2.082, 64 2.242 (8 rows: 2.104-2.124); at batch 2 32 rows 2.670, 64 2.707, 16 2.750-2.758; at batch 4
// 32 rows 2.934, 64 2.961, 16 3.058-3.065; mamba2-130m (24 heads) at batch 1 16 rows 0.333-0.336, 32 0.358;
// the kernel alone at B64 H80 (5120 blocks of 64) 0.094 ms with 64 rows, 0.101-0.103 with 32. "64", "32" or
// "16" forces one. The element-wise build takes 64 always. With the gated norm folded (mamba_mamba2_step), the
// per-block sums of squares must fit out_proj's kNormPartialsMax: past it the step keeps the norm separate.
enum class UpdateRows { Auto, Rows64, Rows32, Rows16 };
constexpr EnvChoice<UpdateRows> kUpdateRows[] = {
    {"auto", UpdateRows::Auto}, {"64", UpdateRows::Rows64}, {"32", UpdateRows::Rows32}, {"16", UpdateRows::Rows16}};

int rows_per_block(mamba_context & ctx, const SsdStateUpdateParams & p) {
    if (!ssd_state_update_vectorized(p)) return kWideRows;
    switch (env_choice("MAMBA_CUDA_SSD_UPDATE_ROWS", kUpdateRows, UpdateRows::Auto)) {
    case UpdateRows::Rows64: return 64;
    case UpdateRows::Rows32: return 32;
    case UpdateRows::Rows16: return 16;
    case UpdateRows::Auto: break;
    }
    const int64_t wide_blocks = p.batch * p.heads * ceil_div(p.headdim, int64_t(kWideRows));
    const int64_t sms = state_of(ctx).multiprocessors;
    return wide_blocks >= 4 * sms ? 64 : wide_blocks >= sms ? 32 : 16;
}

// The 16-byte build for `rows`; the trace names it "ssd_state_update[_norm]_kernel", with " 32 rows" or " 16 rows"
// below 64 and " early" where the loads go before the wait.
template <bool kFoldNorm>
void launch_vec(mamba_context & ctx, int rows, dim3 grid, size_t bc_bytes, const SsdUpdateArgs & a) {
    static constexpr const char * kNames[2][3][2] = {
        {{"ssd_state_update_kernel", "ssd_state_update_kernel early"},
         {"ssd_state_update_kernel 32 rows", "ssd_state_update_kernel 32 rows early"},
         {"ssd_state_update_kernel 16 rows", "ssd_state_update_kernel 16 rows early"}},
        {{"ssd_state_update_norm_kernel", "ssd_state_update_norm_kernel early"},
         {"ssd_state_update_norm_kernel 32 rows", "ssd_state_update_norm_kernel 32 rows early"},
         {"ssd_state_update_norm_kernel 16 rows", "ssd_state_update_norm_kernel 16 rows early"}}};
    const int build = rows == 64 ? 0 : rows == 32 ? 1 : 2;
    const char * name = kNames[kFoldNorm][build][a.early ? 1 : 0];
    const dim3 block(SsdUpdateTraits<true>::kThreads);
    if (build == 0) launch_kernel(ctx, name, true, ssd_state_update_kernel<VecTraits<kFoldNorm, 64>>, grid, block, bc_bytes, a);
    else if (build == 1) launch_kernel(ctx, name, true, ssd_state_update_kernel<VecTraits<kFoldNorm, 32>>, grid, block, bc_bytes, a);
    else launch_kernel(ctx, name, true, ssd_state_update_kernel<VecTraits<kFoldNorm, 16>>, grid, block, bc_bytes, a);
}

// Launches the update; `fold` (may be null) folds the gated RMSNorm in (step_norm.cuh).
void launch_state_update(mamba_context & ctx, const SsdStateUpdateParams & p, const GatedNormFold * fold) {
    if (p.batch == 0 || p.heads == 0 || p.headdim == 0) return;
    // Every check before any work is queued (fill_shared_args converts parameters on the stream): a
    // rejected call leaves the stream, y and the state as they were.
    if (p.state.dtype != DType::F32) fail(MAMBA_STATUS_UNSUPPORTED, "argument 'state' must be float32 on CUDA");
    if (p.batch > 65535 || p.heads > 65535)
        fail(MAMBA_STATUS_UNSUPPORTED, "ssd_state_update on CUDA supports at most 65535 batch rows and 65535 heads (has batch ", p.batch, ", heads ",
             p.heads, ")");
    // B and C of one group as float32 in shared memory.
    const size_t bc_bytes = size_t(2 * p.dstate) * sizeof(float);
    if (bc_bytes > size_t(state_of(ctx).max_smem_per_block) || bc_bytes > 48 * 1024)
        fail(MAMBA_STATUS_UNSUPPORTED, "ssd_state_update on CUDA supports dstate up to 6144");
    const int rows = rows_per_block(ctx, p);  // reads MAMBA_CUDA_SSD_UPDATE_ROWS, which may be rejected
    const ReleaseAt release_at = update_release_point(ReleaseAt::Start);  // may be rejected too
    F32Params f32;
    SsdUpdateArgs a{};
    fill_shared_args(ctx, f32, p, a);
    a.state = p.state.ptr<float>();
    copy_strides(a.st_s, p.state);
    a.vec = ssd_state_update_vectorized(p);
    a.release_at = int(release_at);
    using Gen = SsdUpdateTraits<false>;
    const dim3 grid(unsigned(ceil_div(p.headdim, int64_t(rows))), unsigned(p.heads), unsigned(p.batch));
    // After fill_shared_args: a conversion it queued just before makes the loads wait (launch.cuh).
    const bool previous_recorded = writes_recorded(ctx);  // before this op's launch (note_update_writes)
    a.early = readable_before_wait(ctx, {&p.state, &p.A, ptr(p.dt_bias), ptr(p.D)});
    if (fold) {
        // z gates the output only through the norm here (has_z in the kFoldNorm build).
        const Tensor & z = fold->z;
        a.z = any(z);
        a.z_s[0] = z.stride[0];
        a.z_s[1] = p.headdim * z.stride[1];
        a.z_s[2] = z.stride[1];
        a.has_z = true;
        a.norm_before_gate = fold->norm_before_gate;
        a.norm_w = any(fold->weight);
        a.norm_w_s = fold->weight.stride[0];
        a.norm_part = fold->partials.data;
        a.norm_part_s0 = fold->partials.row_stride;
        launch_vec<true>(ctx, rows, grid, bc_bytes, a);
    } else if (a.vec) {
        launch_vec<false>(ctx, rows, grid, bc_bytes, a);
    } else {
        launch_kernel(ctx, "ssd_state_update_kernel", true, ssd_state_update_kernel<Gen>, grid, dim3(Gen::kThreads), bc_bytes, a);
    }
    MAMBA_CUDA_CHECK_LAUNCH("ssd_state_update_kernel");
    note_update_writes(ctx, release_at, previous_recorded, {&p.y, &p.state, fold ? &fold->partials_home : nullptr});
}

}  // namespace

void ssd_state_update(mamba_context & ctx, const SsdStateUpdateParams & p) { launch_state_update(ctx, p, nullptr); }

int64_t ssd_state_update_blocks_per_row(mamba_context & ctx, const SsdStateUpdateParams & p) {
    return p.heads * ceil_div(p.headdim, int64_t(rows_per_block(ctx, p)));
}

bool ssd_state_update_vectorized(const SsdStateUpdateParams & p) {
    const auto & st = p.state;
    return aligned16(st.data) && st.stride[3] == 1 && p.dstate % 4 == 0 && st.stride[0] % 4 == 0 && st.stride[1] % 4 == 0 &&
           st.stride[2] % 4 == 0;
}

void ssd_state_update_fold_norm(mamba_context & ctx, const SsdStateUpdateParams & p, const GatedNormFold & fold) {
    if (p.z || !ssd_state_update_vectorized(p)) fail(MAMBA_STATUS_INTERNAL, "ssd_state_update_fold_norm: the update has its own z or an unaligned state");
    launch_state_update(ctx, p, &fold);
}

}  // namespace mamba::cuda
