// Mamba-2 decode step (mamba_ssd_state_update): one step of the SSD recurrence per (batch, head, row p):
//   dt = clamp(softplus(dt + dt_bias)); s[n] = exp(dt*A) * s[n] + dt*x[p]*B[n]; y[p] = sum_n C[n]*s[n] (+ D*x)(*silu(z)).
// Bytes: 2 * batch*heads*headdim*dstate*4 (the float32 state read once and written once dominates) + small
// vectors; at B64 H80 P64 N128 that is 335 MB, 80 us at the H200's 4.2 TB/s copy bandwidth.
// Design: a block of 8 warps owns 64 rows p of one (batch, head), a warp 8 rows, a lane 4 consecutive
// states (one float4, 16-byte load and store, streaming cache hints) of every 128. The 8 state loads
// per lane are issued before anything else, and the small vectors (B, C of the head's group, x and z of
// the block's rows, dt) are staged in shared memory by all threads at once while they are in flight, so
// that a warp's life is one memory round trip, not a chain of dependent scalar loads. Shapes the float4
// path cannot take (dstate % 4 != 0, strided or misaligned state) use element accesses, same structure.
// FLOPs: about 5 per state element.
//
// Variants (MAMBA_CUDA_SSD_UPDATE_VARIANT, read at each call, forces one; unset or unknown: the default):
// - "block" (default): the kernel above. Its bytes in flight per SM come in bursts: a block issues its 32 KB of loads,
//   then waits a full round trip, computes, stores and exits, and its successor starts from zero; with
//   5120 (batch, head) blocks at 3 per SM the grid runs in ~13 waves with a ramp and a drain each.
// - "persist", "persist4", "persist_wb": a persistent grid sized to the
//   resident blocks (SMs x blocks per SM) whose warps walk independent work items of R rows of one
//   (batch, head) (R = 8, or 4 for persist4) in a grid stride, with the next item's state loads issued
//   before the current item is computed and stored (register double buffering): every warp keeps 8-16
//   (persist4: 4-8) float4 per lane, 4-8 KB (2-4 KB) in flight at all times: persist 64-128 KB per SM
//   (<= 128 registers: 2 blocks of 8 warps), persist4 40-80 KB (<= 96 registers: 5 blocks of 4 warps,
//   more warps to hide the issue of the small loads), 1.5-4x the ~30 KB per SM that 4.2 TB/s x ~1 us
//   needs. No shared memory and no block barrier (each lane loads its own 4 B and C values, L1/L2 hits;
//   lane r holds row r's x and z), a row reduction of R + log2(32/R) shuffles instead of 5R, and a tail
//   of one item (~1 round trip) instead of a wave of blocks. The first item's state lines are
//   prefetched into L2 before the PDL wait. "persist_wb" stores with the default write-back policy
//   instead of st.global.cs (a check of the store hint). They take dstate <= 128 (one float4 per lane
//   and row: every Mamba-2 model) and fewer than 2^30 items; otherwise "block" runs.
// Measured on an H200 (B64 H80 P64 N128, float32 state, % of copy): block 76%, persist 74%, persist4 72%,
// persist_wb 68%; at B1 H80 and B16 H24 block is as fast or faster too. So "block" stays the default: the
// bursts modelled above are not what holds it below the copy rate.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "common.cuh"
#include "launch.cuh"
#include "ssd_host.cuh"
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
    int64_t batch, heads, headdim, dstate, heads_per_group;
    float dt_min, dt_max;
    bool softplus, clamp, has_D, D_per_channel, has_z, has_bias, vec;
};

template <bool kVecState>
struct SsdUpdateTraits {
    static constexpr bool kVec = kVecState;  // state rows 16-byte aligned with unit stride, dstate % 4 == 0
    static constexpr int kWarps = 8;
    static constexpr int kThreads = 32 * kWarps;
    static constexpr int kRowsPerWarp = 8;                      // 8 x 16 bytes of state in flight per lane
    static constexpr int kRowsPerBlock = kWarps * kRowsPerWarp;  // 64: one block per (batch, head) at headdim 64
    static constexpr int kStatesPerPass = 128;                   // 32 lanes x 4 consecutive states
    static constexpr int kMinBlocksPerSm = 3;                    // <= 85 registers: 24 warps, 96 KB of loads in flight per SM
};

// Block: (row block, head, batch); warp w owns rows p0 + 8w .. +7, lane the 4 consecutive states
// n0 = 4*lane + 128*j. Order of work: (1) every lane issues the state loads of its 8 rows for the first
// pass; (2) while they are in flight the block stages B and C of its group and x, z of its rows in
// shared memory as float32 (one element per thread, all threads at once) and computes dt and the decay;
// (3) update, store, and accumulate y; later passes (dstate > 128) load, update and store in turn.
template <class Tr>
__global__ void __launch_bounds__(Tr::kThreads, Tr::kMinBlocksPerSm) ssd_state_update_kernel(SsdUpdateArgs a) {
    constexpr int R = Tr::kRowsPerWarp, RB = Tr::kRowsPerBlock, S = Tr::kStatesPerPass;
    extern __shared__ __align__(16) float bc_smem[];  // B[dstate], C[dstate]
    __shared__ float x_smem[RB], z_smem[RB];
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

    // PDL-safe (launch.cuh): only index math above; the state and every input may come from the
    // previous kernel.
    wait_for_producer();
    allow_dependents();
    float4 s[R];
    load_pass(int64_t(lane) * 4, s);

    for (int64_t n = threadIdx.x; n < N; n += Tr::kThreads) {
        bc_smem[n] = a.B.load(b * a.B_s[0] + g * a.B_s[1] + n * a.B_s[2]);
        bc_smem[N + n] = a.C.load(b * a.C_s[0] + g * a.C_s[1] + n * a.C_s[2]);
    }
    if (threadIdx.x < RB) {
        const int64_t p = block_p0 + threadIdx.x;
        const bool ok = p < a.headdim;
        x_smem[threadIdx.x] = ok ? a.x.load(b * a.x_s[0] + h * a.x_s[1] + p * a.x_s[2]) : 0.0f;
        z_smem[threadIdx.x] = ok && a.has_z ? a.z.load(b * a.z_s[0] + h * a.z_s[1] + p * a.z_s[2]) : 0.0f;
    }
    float dt = a.dt.load(b * a.dt_s[0] + h * a.dt_s[1]);
    if (a.has_bias) dt += a.dt_bias[h * a.bias_s];
    if (a.softplus) dt = softplus_f(dt);
    if (a.clamp) dt = fminf(fmaxf(dt, a.dt_min), a.dt_max);
    const float decay = __expf(dt * a.A[h * a.A_s]);
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

#pragma unroll
    for (int r = 0; r < R; ++r) {
        const float total = warp_sum(acc[r]);
        const int64_t p = p0 + r;
        if (lane == r && p < a.headdim) {
            const float xv = x_smem[warp * R + r];
            float out = total;
            if (a.has_D) out += (a.D_per_channel ? a.D[h * a.D_s0 + p * a.D_s1] : a.D[h * a.D_s0]) * xv;
            if (a.has_z) out *= silu_f(z_smem[warp * R + r]);
            a.y.store(b * a.y_s[0] + h * a.y_s[1] + p * a.y_s[2], out);
        }
    }
}


// ---- persistent variant ----

template <bool kVecState, int kRows, bool kStreamStores>
struct SsdUpdatePersistentTraits {
    static constexpr bool kVec = kVecState;                  // as above
    static constexpr int kRowsPerWarp = kRows;               // rows of one (batch, head) per work item
    static constexpr bool kStreamingStores = kStreamStores;  // st.global.cs (evict first) or write-back
    // Two items of kRows float4 per lane in registers: 8 rows fit 128 registers (2 blocks of 8 warps, 16
    // warps per SM), 4 rows 96 (5 blocks of 4 warps, 20 warps per SM).
    static constexpr int kWarps = kRows >= 8 ? 8 : 4;
    static constexpr int kThreads = 32 * kWarps;
    static constexpr int kMinBlocksPerSm = kRows >= 8 ? 2 : 5;
    static_assert(kRows == 4 || kRows == 8, "the row reduction halves kRows down to one row per lane group");
};
// The whole of dstate in one float4 per lane and row.
constexpr int64_t kPersistentMaxDstate = 128;

// One work item in registers: the state of its rows at this lane's 4 states, B and C at those states,
// x and z of row `lane` (lanes < R), the raw dt, where its first row lies. valid = false past the end.
template <int R>
struct UpdateItem {
    float4 s[R];
    float B[4], C[4];
    float x, z, dt;
    float * row0;  // state of row p0 at this lane's first state
    int b, h, p0, rows;  // 32-bit: the host checks that items, batch and heads fit (fewer registers)
    bool valid;
};

// t[first + i*step] for i < count (else 0) as floats, with one dtype switch for the four.
__device__ __forceinline__ void load4(const AnyPtr & t, int64_t first, int64_t step, int64_t count, float (&out)[4]) {
    auto take = [&](auto tag) {
        using T = decltype(tag);
        const T * p = reinterpret_cast<const T *>(t.p) + first;
#pragma unroll
        for (int i = 0; i < 4; ++i) out[i] = i < count ? to_f32<T>(p[i * step]) : 0.0f;
    };
    switch (t.dtype) {
        case int(DType::F16): take(f16_t{}); break;
        case int(DType::BF16): take(bf16_t{}); break;
        default: take(float{}); break;
    }
}

template <class Tr>
__device__ __forceinline__ void load_item(const SsdUpdateArgs & a, int item, int items, int row_groups, int lane, UpdateItem<Tr::kRowsPerWarp> & it) {
    constexpr int R = Tr::kRowsPerWarp;
    it.valid = item < items;  // warp-uniform
    if (!it.valid) return;
    const int bh = item / row_groups, heads = int(a.heads);
    it.p0 = (item - bh * row_groups) * R;
    it.h = bh % heads;
    it.b = bh / heads;
    it.rows = min(R, int(a.headdim) - it.p0);
    const int64_t g = it.h / int(a.heads_per_group), n0 = int64_t(lane) * 4, left = a.dstate - n0;
    it.row0 = a.state + it.b * a.st_s[0] + it.h * a.st_s[1] + it.p0 * a.st_s[2] + n0 * a.st_s[3];
    const float * row = it.row0;
#pragma unroll
    for (int r = 0; r < R; ++r, row += a.st_s[2]) {
        if (r >= it.rows || left <= 0) {
            it.s[r] = make_float4(0.f, 0.f, 0.f, 0.f);
        } else if (Tr::kVec) {
            it.s[r] = __ldcs(reinterpret_cast<const float4 *>(row));  // read once: evict first
        } else {
            float v[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) v[i] = i < left ? row[i * a.st_s[3]] : 0.0f;
            it.s[r] = make_float4(v[0], v[1], v[2], v[3]);
        }
    }
    load4(a.B, it.b * a.B_s[0] + g * a.B_s[1] + n0 * a.B_s[2], a.B_s[2], left, it.B);
    load4(a.C, it.b * a.C_s[0] + g * a.C_s[1] + n0 * a.C_s[2], a.C_s[2], left, it.C);
    const bool own_row = lane < it.rows;
    const int64_t p = it.p0 + lane;
    it.x = own_row ? a.x.load(it.b * a.x_s[0] + it.h * a.x_s[1] + p * a.x_s[2]) : 0.0f;
    it.z = own_row && a.has_z ? a.z.load(it.b * a.z_s[0] + it.h * a.z_s[1] + p * a.z_s[2]) : 0.0f;
    it.dt = a.dt.load(it.b * a.dt_s[0] + it.h * a.dt_s[1]);
}

// Sums v[r] over the warp for every r < R and returns row `lane`'s sum (lanes < R): R/2 + R/4 + ... + 1
// exchanges that each keep half the rows (after them lane l holds a partial of row l / (32/R)), then a
// butterfly over the 32/R lanes sharing a row, then one gather: R + log2(32/R) shuffles instead of 5R.
template <int R>
__device__ __forceinline__ float warp_sum_rows(float (&v)[R], int lane) {
    int offset = 16;
#pragma unroll
    for (int half = R / 2; half >= 1; half /= 2, offset /= 2) {
        const bool upper = (lane & offset) != 0;
#pragma unroll
        for (int i = 0; i < half; ++i) {
            const float keep = upper ? v[i + half] : v[i], give = upper ? v[i] : v[i + half];
            v[i] = keep + __shfl_xor_sync(0xffffffffu, give, offset);
        }
    }
#pragma unroll
    for (; offset >= 1; offset /= 2) v[0] += __shfl_xor_sync(0xffffffffu, v[0], offset);
    return __shfl_sync(0xffffffffu, v[0], (lane * (32 / R)) & 31);
}

template <class Tr>
__device__ __forceinline__ void update_item(const SsdUpdateArgs & a, int lane, UpdateItem<Tr::kRowsPerWarp> & it) {
    constexpr int R = Tr::kRowsPerWarp;
    if (!it.valid) return;
    float dt = it.dt;
    if (a.has_bias) dt += a.dt_bias[it.h * a.bias_s];
    if (a.softplus) dt = softplus_f(dt);
    if (a.clamp) dt = fminf(fmaxf(dt, a.dt_min), a.dt_max);
    const float decay = __expf(dt * a.A[it.h * a.A_s]);
    const int64_t left = a.dstate - int64_t(lane) * 4;
    float acc[R];
    float * row = it.row0;
#pragma unroll
    for (int r = 0; r < R; ++r, row += a.st_s[2]) {
        const float dtx = dt * __shfl_sync(0xffffffffu, it.x, r);
        float4 & s = it.s[r];
        s.x = decay * s.x + dtx * it.B[0];
        s.y = decay * s.y + dtx * it.B[1];
        s.z = decay * s.z + dtx * it.B[2];
        s.w = decay * s.w + dtx * it.B[3];
        acc[r] = it.C[0] * s.x + it.C[1] * s.y + it.C[2] * s.z + it.C[3] * s.w;
        if (r >= it.rows || left <= 0) continue;
        if (Tr::kVec) {
            if (Tr::kStreamingStores) __stcs(reinterpret_cast<float4 *>(row), s);  // written once: stream out
            else *reinterpret_cast<float4 *>(row) = s;
        } else {
            const float v[4] = {s.x, s.y, s.z, s.w};
#pragma unroll
            for (int i = 0; i < 4; ++i)
                if (i < left) row[i * a.st_s[3]] = v[i];
        }
    }
    // Lane r owns row r's x and z: it finishes y there.
    const float total = warp_sum_rows<R>(acc, lane);
    if (lane < it.rows) {
        const int64_t p = it.p0 + lane;
        float out = total;
        if (a.has_D) out += (a.D_per_channel ? a.D[it.h * a.D_s0 + p * a.D_s1] : a.D[it.h * a.D_s0]) * it.x;
        if (a.has_z) out *= silu_f(it.z);
        a.y.store(it.b * a.y_s[0] + it.h * a.y_s[1] + p * a.y_s[2], out);
    }
}

// Grid: at most the resident blocks; warp w of the grid takes items w, w + W, w + 2W, ... (W = warps in
// the grid), item = ((b * heads + h) * row_groups + row group), so a block's 8 warps start on 8
// neighbouring row groups (contiguous state). While item i is updated and stored, item i + W's loads are
// in flight (two register buffers, alternating, so that nothing is copied between them).
template <class Tr>
__global__ void __launch_bounds__(Tr::kThreads, Tr::kMinBlocksPerSm) ssd_state_update_persistent_kernel(SsdUpdateArgs a) {
    constexpr int R = Tr::kRowsPerWarp;
    const int lane = threadIdx.x % 32;
    const int stride = int(gridDim.x) * Tr::kWarps;
    const int row_groups = int((a.headdim + R - 1) / R);
    const int items = int(a.batch * a.heads) * row_groups;
    int item = int(blockIdx.x) * Tr::kWarps + int(threadIdx.x) / 32;
    if (Tr::kVec && item < items) {
        // L2 prefetch of the first item's rows before the PDL wait (allowed: launch.cuh), one 128-byte line
        // per lane and pass.
        const int bh = item / row_groups, p0 = (item - bh * row_groups) * R;
        const int lines = int((a.dstate + 31) / 32);
        const float * head_state = a.state + int64_t(bh / int(a.heads)) * a.st_s[0] + int64_t(bh % int(a.heads)) * a.st_s[1];
        for (int i = lane; i < R * lines; i += 32) {
            const int r = i / lines;
            if (p0 + r < a.headdim) prefetch_l2(head_state + (p0 + r) * a.st_s[2] + (i - r * lines) * 32);
        }
    }
    wait_for_producer();
    allow_dependents();
    UpdateItem<R> even, odd;
    load_item<Tr>(a, item, items, row_groups, lane, even);
    // items + stride < 2^31 (host): no overflow.
    while (item < items) {
        load_item<Tr>(a, item + stride, items, row_groups, lane, odd);
        update_item<Tr>(a, lane, even);
        item += stride;
        if (item >= items) break;
        load_item<Tr>(a, item + stride, items, row_groups, lane, even);
        update_item<Tr>(a, lane, odd);
        item += stride;
    }
}

enum class SsdUpdateVariant { Block, Persist, Persist4, PersistWriteBack };

struct NamedUpdateVariant {
    const char * name;
    SsdUpdateVariant variant;
};
constexpr NamedUpdateVariant kUpdateVariants[] = {{"block", SsdUpdateVariant::Block},
                                                  {"persist", SsdUpdateVariant::Persist},
                                                  {"persist4", SsdUpdateVariant::Persist4},
                                                  {"persist_wb", SsdUpdateVariant::PersistWriteBack}};

// MAMBA_CUDA_SSD_UPDATE_VARIANT (one of kUpdateVariants' names) forces a kernel; read at each call so
// that the benchmark and the tests can switch it. The persistent kernels take dstate <= 128 only.
SsdUpdateVariant ssd_update_variant(int64_t dstate) {
    SsdUpdateVariant v = SsdUpdateVariant::Block;
    if (const char * env = std::getenv("MAMBA_CUDA_SSD_UPDATE_VARIANT"))
        for (const NamedUpdateVariant & named : kUpdateVariants)
            if (std::strcmp(env, named.name) == 0) v = named.variant;
    return dstate > kPersistentMaxDstate ? SsdUpdateVariant::Block : v;
}

template <int kRows, bool kStreamStores>
void launch_persistent(mamba_context & ctx, const SsdUpdateArgs & a) {
    auto launch = [&](auto traits) {
        using Tr = decltype(traits);
        // As many warps as fit, then as few as still take the same number of rounds, so that every warp
        // walks the same number of items (no last round with a fraction of the warps).
        const int64_t items = a.batch * a.heads * ceil_div(a.headdim, int64_t(kRows));
        const int64_t resident_warps = int64_t(std::max(state_of(ctx).multiprocessors, 1)) * Tr::kMinBlocksPerSm * Tr::kWarps;
        const int64_t rounds = ceil_div(items, resident_warps);
        const unsigned blocks = unsigned(ceil_div(ceil_div(items, rounds), int64_t(Tr::kWarps)));
        launch_kernel(ctx, "ssd_state_update_persistent_kernel", true, ssd_state_update_persistent_kernel<Tr>, dim3(blocks), dim3(Tr::kThreads), 0, a);
    };
    if (a.vec) launch(SsdUpdatePersistentTraits<true, kRows, kStreamStores>{});
    else launch(SsdUpdatePersistentTraits<false, kRows, kStreamStores>{});
    MAMBA_CUDA_CHECK_LAUNCH("ssd_state_update_persistent_kernel");
}

}  // namespace

void ssd_state_update(mamba_context & ctx, const SsdStateUpdateParams & p) {
    if (p.batch == 0 || p.heads == 0 || p.headdim == 0) return;
    if (p.state.dtype != DType::F32) fail(MAMBA_STATUS_UNSUPPORTED, "argument 'state' must be float32 on CUDA");
    F32Params f32;
    SsdUpdateArgs a{};
    fill_shared_args(ctx, f32, p, a);
    a.batch = p.batch;
    a.state = p.state.ptr<float>();
    copy_strides(a.st_s, p.state);
    const auto st = p.state;
    a.vec = (reinterpret_cast<uintptr_t>(st.data) & 15u) == 0 && st.stride[3] == 1 && p.dstate % 4 == 0 && st.stride[0] % 4 == 0 &&
            st.stride[1] % 4 == 0 && st.stride[2] % 4 == 0;
    // The persistent kernels index items in 32 bits (items + grid warps < 2^31).
    const bool items_fit_int = p.batch * p.heads * ceil_div(p.headdim, int64_t(4)) < (int64_t(1) << 30);
    switch (items_fit_int ? ssd_update_variant(p.dstate) : SsdUpdateVariant::Block) {
        case SsdUpdateVariant::Persist: return launch_persistent<8, true>(ctx, a);
        case SsdUpdateVariant::Persist4: return launch_persistent<4, true>(ctx, a);
        case SsdUpdateVariant::PersistWriteBack: return launch_persistent<8, false>(ctx, a);
        case SsdUpdateVariant::Block: break;
    }
    if (p.batch > 65535 || p.heads > 65535) fail(MAMBA_STATUS_UNSUPPORTED, "ssd_state_update on CUDA supports at most 65535 batch rows and heads");
    // B and C of one group as float32 in shared memory.
    const size_t bc_bytes = size_t(2 * p.dstate) * sizeof(float);
    if (bc_bytes > size_t(state_of(ctx).max_smem_per_block) || bc_bytes > 48 * 1024)
        fail(MAMBA_STATUS_UNSUPPORTED, "ssd_state_update on CUDA supports dstate up to 6144");
    using Vec = SsdUpdateTraits<true>;
    using Gen = SsdUpdateTraits<false>;
    const dim3 grid(unsigned(ceil_div(p.headdim, Vec::kRowsPerBlock)), unsigned(p.heads), unsigned(p.batch));
    if (a.vec) launch_kernel(ctx, "ssd_state_update_kernel", true, ssd_state_update_kernel<Vec>, grid, dim3(Vec::kThreads), bc_bytes, a);
    else launch_kernel(ctx, "ssd_state_update_kernel", true, ssd_state_update_kernel<Gen>, grid, dim3(Gen::kThreads), bc_bytes, a);
    MAMBA_CUDA_CHECK_LAUNCH("ssd_state_update_kernel");
}

}  // namespace mamba::cuda
