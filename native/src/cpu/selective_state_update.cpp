// CPU decode step of the Mamba-1 recurrence. State rows (batch, channel, :) are contiguous over dstate in
// the usual layout, and so are A's rows and B, C, so the step is vectorized over the state axis; each
// task takes one batch row and a chunk of channels. With dt_proj_weight, dt of a channel is the dot
// product of its weight row with the batch row's low-rank input, vectorized over dt_rank, computed for
// every batch row in a pass before the update: each weight row is converted to float32 once per call (a
// chunk of rows at a time, reused by all batch rows while it is in cache), and so is each input row.
#include <algorithm>
#include <vector>

#include "core/context.h"
#include "cpu/convert.h"
#include "cpu/scan_tiles.h"
#include "cpu/scan_vec.h"
#include "ops/selective_scan.h"

namespace mamba::cpu {

namespace {

using namespace scan_vec;
using scan_tiles::load_tile;
using scan_tiles::store_tile;

// Channels per task (a multiple of every vector width).
constexpr int64_t kChunk = 64;
// Below this many state elements (or dt_proj products) waking other threads costs more than it saves. On a 2-core
// AVX-512 VM, 2^14 against the former 2^19: batch 1 of mamba-130m's 1536 x 16 state 12.0 -> 10.9 us, batch 8
// 81 -> 66 us (docs/performance.md).
constexpr int64_t kParallelMinElements = int64_t(1) << 14;
constexpr int64_t kMaxPaddedState = MAMBA_MAX_DSTATE + kWidth;

int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// Vectors in a state row of 16, the usual dstate of Mamba-1, unrolled at compile time.
constexpr int kStateVecs16 = 16 / kWidth;

// Advances one channel's state row h by one step and returns C . h. kVecs whole vectors, or `padded`
// floats when kVecs is 0.
template <int kVecs>
inline float step_row(float * h, const float * a, const float * b, const float * c, Vec dt2, Vec dx, int64_t padded) {
    const int64_t n_end = kVecs > 0 ? int64_t(kVecs) * kWidth : padded;
    Vec acc = set1(0.0f);
    for (int64_t n = 0; n < n_end; n += kWidth) {
        const Vec decay = exp2_fast(dt2 * load(a + n));
        const Vec hv = fmadd(decay, load(h + n), dx * load(b + n));
        store(h + n, hv);
        acc = fmadd(hv, load(c + n), acc);
    }
    return sum(acc);
}

// Projected dt of channels c0 .. c0 + count - 1 for every batch row, into dt_proj (batch, dim): their
// dt_proj_weight rows, converted to float32 once, times each batch row's low-rank input in dt_low
// (float32, (batch, rank_padded), zero-padded to a multiple of the vector width).
void project_dt(const SelectiveStateUpdateParams & p, const float * dt_low, int64_t rank_padded, int64_t c0, int64_t count, float * dt_proj) {
    const Tensor & W = *p.dt_proj_weight;
    std::vector<float> w(size_t(count * rank_padded), 0.0f);
    load_tile(W.dtype, element(W, {c0, 0}), count, p.dt_rank, W.stride[0], W.stride[1], w.data(), rank_padded);
    for (int64_t b = 0; b < p.batch; ++b) {
        const float * input = dt_low + b * rank_padded;
        for (int64_t c = 0; c < count; ++c) {
            const float * row = w.data() + c * rank_padded;
            Vec acc = set1(0.0f);
            for (int64_t r = 0; r < rank_padded; r += kWidth) acc = fmadd(load(row + r), load(input + r), acc);
            dt_proj[b * p.dim + c0 + c] = sum(acc);
        }
    }
}

// dt_proj: the projected dt (batch, dim) when dt_proj_weight is given (project_dt), else unused.
void update_chunk(const SelectiveStateUpdateParams & p, const float * bc, int64_t padded, const float * dt_proj, int64_t b, int64_t c0, int64_t count) {
    const int64_t N = p.dstate;
    const int64_t channels_per_group = p.dim / p.groups;
    alignas(64) float x[kChunk] = {}, dt[kChunk] = {}, z[kChunk] = {}, y[kChunk] = {}, d[kChunk] = {}, bias[kChunk] = {};
    alignas(64) float h[kMaxPaddedState] = {}, a[kMaxPaddedState] = {};

    load_tile(p.x.dtype, element(p.x, {b, c0}), 1, count, 0, p.x.stride[1], x, kChunk);
    if (p.dt_proj_weight) std::copy(dt_proj + b * p.dim + c0, dt_proj + b * p.dim + c0 + count, dt);
    else load_tile(p.dt.dtype, element(p.dt, {b, c0}), 1, count, 0, p.dt.stride[1], dt, kChunk);
    if (p.z) load_tile(p.z->dtype, element(*p.z, {b, c0}), 1, count, 0, p.z->stride[1], z, kChunk);
    if (p.D) load_tile(DType::F32, element(*p.D, {c0}), 1, count, 0, p.D->stride[0], d, kChunk);
    if (p.dt_bias) load_tile(DType::F32, element(*p.dt_bias, {c0}), 1, count, 0, p.dt_bias->stride[0], bias, kChunk);
    for (int64_t i = 0; i < kChunk; i += kWidth) {
        Vec v = load(dt + i) + load(bias + i);
        if (p.dt_softplus) v = scan_vec::softplus(v);
        store(dt + i, v);
    }

    // Rows used in place when they are contiguous whole vectors (the usual layout), else gathered into
    // zero-padded scratch: padding lanes decay by 1 and add 0.
    const bool in_place = p.state.stride[2] == 1 && p.A.stride[1] == 1 && N % kWidth == 0;
    float * state_row = reinterpret_cast<float *>(element(p.state, {b, c0, 0}));
    const float * a_row = reinterpret_cast<const float *>(element(p.A, {c0, 0}));
    for (int64_t c = 0; c < count; ++c, state_row += p.state.stride[1], a_row += p.A.stride[0]) {
        const int64_t g = (c0 + c) / channels_per_group;
        const float * bv = bc + (b * p.groups + g) * 2 * padded;
        const float * cv = bv + padded;
        float * hrow = in_place ? state_row : h;
        const float * arow = in_place ? a_row : a;
        if (!in_place) {
            load_tile(DType::F32, reinterpret_cast<const char *>(state_row), 1, N, 0, p.state.stride[2], h, padded);
            load_tile(DType::F32, reinterpret_cast<const char *>(a_row), 1, N, 0, p.A.stride[1], a, padded);
        }
        // exp(dt A) = 2^(dt log2(e) A)
        const Vec dt2 = set1(dt[c] * kLog2e), dx = set1(dt[c] * x[c]);
        const float dot = padded == kStateVecs16 * kWidth ? step_row<kStateVecs16>(hrow, arow, bv, cv, dt2, dx, padded)
                                                          : step_row<0>(hrow, arow, bv, cv, dt2, dx, padded);
        y[c] = dot + d[c] * x[c];
        if (!in_place) store_tile(DType::F32, reinterpret_cast<char *>(state_row), 1, N, 0, p.state.stride[2], h, padded);
    }

    if (p.z)
        for (int64_t i = 0; i < kChunk; i += kWidth) store(y + i, load(y + i) * silu(load(z + i)));
    store_tile(p.y.dtype, element(p.y, {b, c0}), 1, count, 0, p.y.stride[1], y, kChunk);
}

}  // namespace

void selective_state_update(mamba_context & ctx, const SelectiveStateUpdateParams & p) {
    const int64_t N = p.dstate;
    const int64_t padded = std::max<int64_t>(round_up(N, kWidth), kWidth);
    // B and C of every (batch, group) as float32 [B row | C row], zero-padded to whole vectors.
    std::vector<float> bc(size_t(p.batch * p.groups * 2 * padded), 0.0f);
    for (int64_t b = 0; b < p.batch; ++b) {
        for (int64_t g = 0; g < p.groups; ++g) {
            float * row = bc.data() + (b * p.groups + g) * 2 * padded;
            load_tile(p.B.dtype, element(p.B, {b, g, 0}), 1, N, 0, p.B.stride[2], row, padded);
            load_tile(p.C.dtype, element(p.C, {b, g, 0}), 1, N, 0, p.C.stride[2], row + padded, padded);
        }
    }
    // The low-rank dt input of every batch row as float32, zero-padded to whole vectors.
    const int64_t rank_padded = p.dt_proj_weight ? round_up(p.dt_rank, kWidth) : 0;
    std::vector<float> dt_low(size_t(p.batch * rank_padded), 0.0f);
    for (int64_t b = 0; p.dt_proj_weight && b < p.batch; ++b)
        load_tile(p.dt.dtype, element(p.dt, {b, 0}), 1, p.dt_rank, 0, p.dt.stride[1], dt_low.data() + b * rank_padded, rank_padded);
    const int64_t chunks = (p.dim + kChunk - 1) / kChunk;
    // The projected dt of every (batch row, channel), one task per chunk of weight rows.
    std::vector<float> dt_proj(p.dt_proj_weight ? size_t(p.batch * p.dim) : 0);
    if (p.dt_proj_weight) {
        const bool parallel_projection = p.batch * p.dim * p.dt_rank >= kParallelMinElements && ctx.num_threads > 1;
#pragma omp parallel for schedule(dynamic, 1) num_threads(ctx.num_threads) if (parallel_projection)
        for (int64_t chunk = 0; chunk < chunks; ++chunk) {
            const int64_t c0 = chunk * kChunk;
            project_dt(p, dt_low.data(), rank_padded, c0, std::min(kChunk, p.dim - c0), dt_proj.data());
        }
    }
    const int64_t tasks = p.batch * chunks;
    const bool parallel = p.batch * p.dim * N >= kParallelMinElements && ctx.num_threads > 1;
#pragma omp parallel for schedule(dynamic, 4) num_threads(ctx.num_threads) if (parallel)
    for (int64_t task = 0; task < tasks; ++task) {
        const int64_t b = task / chunks;
        const int64_t c0 = (task % chunks) * kChunk;
        update_chunk(p, bc.data(), padded, dt_proj.data(), b, c0, std::min(kChunk, p.dim - c0));
    }
}

}  // namespace mamba::cpu
