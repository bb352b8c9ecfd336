// CPU selective scan (Mamba-1). Work is split into tasks of one batch row and a stripe of channels of
// one group; each task keeps its states h[n][channel] in float32 scratch and walks time in tiles:
// a tile of u, delta, z (and B, C) is converted to float32, the recurrence runs vectorized across
// channels, and the tile of y is converted back. Inputs of any dtype and any strides are read
// only through the tile loads.
#include <algorithm>
#include <cstdlib>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/context.h"
#include "cpu/convert.h"
#include "cpu/scan_tiles.h"
#include "cpu/scan_vec.h"
#include "ops/selective_scan.h"

namespace mamba::cpu {

namespace {

using namespace scan_vec;
using scan_tiles::load_tile;
using scan_tiles::prefetch_tile;
using scan_tiles::store_tile;

// The recurrence runs on blocks of kBlock channels (a multiple of every vector width). A task is a
// stripe of up to kMaxBlocksPerTask such blocks of one group: wide tiles turn the reads of a
// (batch, len, dim) layout into runs of whole cache lines instead of one line per step. Lanes past the
// end of a group are padded with zeros (u = 0 keeps their state at 0) and never stored.
constexpr int64_t kBlock = 16;
constexpr int kVecs = int(kBlock) / kWidth;
constexpr int64_t kMaxBlocksPerTask = 8;
// State-element updates (batch x dim x len x dstate) from which a call is split over threads.
constexpr int64_t kParallelMinWork = int64_t(1) << 19;

// Time steps per tile: tiles of steps x width floats of at most 16 KiB, B and C tiles of steps x dstate
// at most 16 KiB each.
int64_t tile_steps(int64_t width, int64_t dstate) {
    return std::clamp<int64_t>(std::min(4096 / width, 4096 / std::max<int64_t>(dstate, 1)), 8, 256);
}

// Per-thread float32 scratch, carved out of one allocation made before the parallel region. Every
// [..][channel] array has `width` floats per row.
struct Scratch {
    int64_t width;
    float *h, *a2, *b_fixed, *c_fixed, *u, *delta, *dt, *z, *y, *b_tile, *c_tile, *d, *bias;

    static int64_t floats(int64_t width, int64_t dstate, int64_t steps) { return (4 * dstate + 5 * steps + 2) * width + 2 * steps * dstate; }

    Scratch(float * base, int64_t w, int64_t dstate, int64_t steps) : width(w) {
        float * p = base;
        auto take = [&p](int64_t n) {
            float * r = p;
            p += n;
            return r;
        };
        h = take(dstate * width);
        a2 = take(dstate * width);
        b_fixed = take(dstate * width);
        c_fixed = take(dstate * width);
        u = take(steps * width);
        delta = take(steps * width);
        dt = take(steps * width);
        z = take(steps * width);
        y = take(steps * width);
        b_tile = take(steps * dstate);
        c_tile = take(steps * dstate);
        d = take(width);
        bias = take(width);
    }
};

// The recurrence of the block of channels starting at `first` over `steps` steps of the current tile:
// h = exp(dt A) h + dt u B_t;  y = C_t . h + D u, times silu(z).
template <bool kVariableBC>
void recurrence(const Scratch & s, int64_t first, int64_t steps, int64_t dstate, bool has_z) {
    const int64_t ld = s.width;
    Vec d[kVecs];
    for (int v = 0; v < kVecs; ++v) d[v] = load(s.d + first + v * kWidth);
    for (int64_t t = 0; t < steps; ++t) {
        const int64_t row = t * ld + first;
        Vec dt[kVecs], du[kVecs], acc[kVecs];
        for (int v = 0; v < kVecs; ++v) {
            dt[v] = load(s.dt + row + v * kWidth);
            const Vec u = load(s.u + row + v * kWidth);
            du[v] = dt[v] * u;
            acc[v] = d[v] * u;
        }
        for (int64_t n = 0; n < dstate; ++n) {
            float * h = s.h + n * ld + first;
            const float * a2 = s.a2 + n * ld + first;
            if constexpr (kVariableBC) {
                const Vec b = set1(s.b_tile[t * dstate + n]), c = set1(s.c_tile[t * dstate + n]);
                for (int v = 0; v < kVecs; ++v) {
                    const Vec decay = exp2_fast(dt[v] * load(a2 + v * kWidth));
                    const Vec hv = fmadd(decay, load(h + v * kWidth), du[v] * b);
                    store(h + v * kWidth, hv);
                    acc[v] = fmadd(hv, c, acc[v]);
                }
            } else {
                const float * b = s.b_fixed + n * ld + first;
                const float * c = s.c_fixed + n * ld + first;
                for (int v = 0; v < kVecs; ++v) {
                    const Vec decay = exp2_fast(dt[v] * load(a2 + v * kWidth));
                    const Vec hv = fmadd(decay, load(h + v * kWidth), du[v] * load(b + v * kWidth));
                    store(h + v * kWidth, hv);
                    acc[v] = fmadd(hv, load(c + v * kWidth), acc[v]);
                }
            }
        }
        for (int v = 0; v < kVecs; ++v) {
            if (has_z) acc[v] = acc[v] * silu(load(s.z + row + v * kWidth));
            store(s.y + row + v * kWidth, acc[v]);
        }
    }
}

// dt = delta + bias, softplus(dt) when asked, for a tile of steps x width.
void delta_to_dt(const Scratch & s, int64_t steps, bool softplus_on) {
    for (int64_t t = 0; t < steps; ++t) {
        for (int64_t c = 0; c < s.width; c += kWidth) {
            Vec x = load(s.delta + t * s.width + c) + load(s.bias + c);
            if (softplus_on) x = scan_vec::softplus(x);
            store(s.dt + t * s.width + c, x);
        }
    }
}

// One task: batch row b, channels [c0, c0 + count) of group g.
void scan_stripe(const SelectiveScanParams & p, const Scratch & s, int64_t steps_per_tile, int64_t b, int64_t g, int64_t c0, int64_t count) {
    const int64_t N = p.dstate, W = s.width;
    // Zero the padding lanes of everything the recurrence reads.
    std::fill(s.h, s.h + N * W, 0.0f);
    std::fill(s.a2, s.a2 + N * W, 0.0f);
    std::fill(s.u, s.u + steps_per_tile * W, 0.0f);
    std::fill(s.delta, s.delta + steps_per_tile * W, 0.0f);
    std::fill(s.z, s.z + steps_per_tile * W, 0.0f);
    std::fill(s.d, s.d + W, 0.0f);
    std::fill(s.bias, s.bias + W, 0.0f);

    // Per-channel constants, transposed to [n][channel]. A is pre-scaled by log2(e) for exp2.
    load_tile(DType::F32, element(p.A, {c0, 0}), N, count, p.A.stride[1], p.A.stride[0], s.a2, W);
    for (int64_t i = 0; i < N * W; ++i) s.a2[i] *= kLog2e;
    if (!p.variable_bc) {
        std::fill(s.b_fixed, s.b_fixed + N * W, 0.0f);
        std::fill(s.c_fixed, s.c_fixed + N * W, 0.0f);
        load_tile(p.B.dtype, element(p.B, {c0, 0}), N, count, p.B.stride[1], p.B.stride[0], s.b_fixed, W);
        load_tile(p.C.dtype, element(p.C, {c0, 0}), N, count, p.C.stride[1], p.C.stride[0], s.c_fixed, W);
    }
    if (p.D) load_tile(DType::F32, element(*p.D, {c0}), 1, count, 0, p.D->stride[0], s.d, W);
    if (p.delta_bias) load_tile(DType::F32, element(*p.delta_bias, {c0}), 1, count, 0, p.delta_bias->stride[0], s.bias, W);
    if (p.initial_state) {
        const Tensor & h0 = *p.initial_state;
        load_tile(DType::F32, element(h0, {b, c0, 0}), N, count, h0.stride[2], h0.stride[1], s.h, W);
    }

    for (int64_t t0 = 0; t0 < p.len; t0 += steps_per_tile) {
        const int64_t steps = std::min(steps_per_tile, p.len - t0);
        load_tile(p.u.dtype, element(p.u, {b, c0, t0}), steps, count, p.u.stride[2], p.u.stride[1], s.u, W);
        load_tile(p.delta.dtype, element(p.delta, {b, c0, t0}), steps, count, p.delta.stride[2], p.delta.stride[1], s.delta, W);
        if (p.z) load_tile(p.z->dtype, element(*p.z, {b, c0, t0}), steps, count, p.z->stride[2], p.z->stride[1], s.z, W);
        if (p.variable_bc) {
            load_tile(p.B.dtype, element(p.B, {b, g, 0, t0}), steps, N, p.B.stride[3], p.B.stride[2], s.b_tile, N);
            load_tile(p.C.dtype, element(p.C, {b, g, 0, t0}), steps, N, p.C.stride[3], p.C.stride[2], s.c_tile, N);
        }
        delta_to_dt(s, steps, p.delta_softplus);
        if (t0 + steps < p.len) {
            // The next tile's inputs arrive while this one's recurrence runs.
            const int64_t t1 = t0 + steps, next = std::min(steps_per_tile, p.len - t1);
            prefetch_tile(p.u.dtype, element(p.u, {b, c0, t1}), next, count, p.u.stride[2], p.u.stride[1]);
            prefetch_tile(p.delta.dtype, element(p.delta, {b, c0, t1}), next, count, p.delta.stride[2], p.delta.stride[1]);
            if (p.z) prefetch_tile(p.z->dtype, element(*p.z, {b, c0, t1}), next, count, p.z->stride[2], p.z->stride[1]);
        }
        for (int64_t first = 0; first < count; first += kBlock) {
            if (p.variable_bc) recurrence<true>(s, first, steps, N, p.z.has_value());
            else recurrence<false>(s, first, steps, N, p.z.has_value());
        }
        store_tile(p.y.dtype, element(p.y, {b, c0, t0}), steps, count, p.y.stride[2], p.y.stride[1], s.y, W);
    }

    if (p.final_state) {
        const Tensor & hT = *p.final_state;
        store_tile(DType::F32, element(hT, {b, c0, 0}), N, count, hT.stride[2], hT.stride[1], s.h, W);
    }
}

}  // namespace

void selective_scan(mamba_context & ctx, const SelectiveScanParams & p) {
    const int64_t channels_per_group = p.dim / p.groups;
    const int64_t blocks_per_group = (channels_per_group + kBlock - 1) / kBlock;
    // When time is the closer axis ((batch, dim, len) row-major) one block per task with long time tiles
    // reads each channel's steps in long runs; when channels are ((batch, len, dim) views), the widest
    // stripes that still leave a few tasks per thread for balance.
    const bool time_contiguous = std::llabs(p.u.stride[2]) < std::llabs(p.u.stride[1]);
    int64_t blocks_per_task = time_contiguous ? 1 : kMaxBlocksPerTask;
    while (blocks_per_task > 1 && p.batch * p.groups * ((blocks_per_group + blocks_per_task - 1) / blocks_per_task) < 3 * int64_t(ctx.num_threads))
        blocks_per_task /= 2;
    while (blocks_per_task / 2 >= blocks_per_group) blocks_per_task /= 2;  // no wider than a group
    const int64_t width = blocks_per_task * kBlock;
    const int64_t tasks_per_group = (blocks_per_group + blocks_per_task - 1) / blocks_per_task;
    const int64_t tasks = p.batch * p.groups * tasks_per_group;
    const int64_t steps = tile_steps(width, p.dstate);
    // Below about 0.3 ms of work on one core, waking more threads costs more than it saves.
    const bool parallel = p.batch * p.dim * p.len * p.dstate >= kParallelMinWork;
    const int threads = parallel ? int(std::max<int64_t>(1, std::min<int64_t>(ctx.num_threads, tasks))) : 1;
    const int64_t per_thread = Scratch::floats(width, p.dstate, steps) + 16;  // + 64 bytes between threads' scratch
    std::vector<float> scratch(size_t(per_thread * threads));

#pragma omp parallel num_threads(threads)
    {
        int thread = 0;
#ifdef _OPENMP
        thread = omp_get_thread_num();
#endif
        const Scratch s(scratch.data() + thread * per_thread, width, p.dstate, steps);
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < tasks; ++task) {
            const int64_t b = task / (p.groups * tasks_per_group);
            const int64_t g = (task / tasks_per_group) % p.groups;
            const int64_t first = (task % tasks_per_group) * width;
            const int64_t count = std::min(width, channels_per_group - first);
            scan_stripe(p, s, steps, b, g, g * channels_per_group + first, count);
        }
    }
}

}  // namespace mamba::cpu
