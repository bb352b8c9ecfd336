// CPU selective scan (Mamba-1). Work is split into tasks of one batch row and a block of kBlock channels
// of one group; each task keeps its states h[n][channel] in float32 scratch and walks time in tiles:
// a tile of u, delta, z (and B, C) is converted to float32, the recurrence runs vectorized across the
// block's channels, and the tile of y is converted back. Inputs of any dtype and any strides are read
// only through the tile loads.
#include <algorithm>
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
using scan_tiles::store_tile;

// Channels per task: a multiple of every vector width. Lanes past the end of a group are padded
// with zeros (u = 0 keeps their state at 0) and never stored.
constexpr int64_t kBlock = 16;
constexpr int kVecs = int(kBlock) / kWidth;

// Time steps per tile: B and C tiles of steps x dstate floats stay within L1.
int64_t tile_steps(int64_t dstate) { return std::clamp<int64_t>(2048 / std::max<int64_t>(dstate, 1), 8, 64); }

// Per-thread float32 scratch, carved out of one allocation made before the parallel region.
struct Scratch {
    float *h, *a2, *b_fixed, *c_fixed, *u, *delta, *dt, *z, *y, *b_tile, *c_tile, *d, *bias;

    static int64_t floats(int64_t dstate, int64_t steps) { return 4 * dstate * kBlock + 5 * steps * kBlock + 2 * steps * dstate + 2 * kBlock; }

    Scratch(float * base, int64_t dstate, int64_t steps) {
        float * p = base;
        auto take = [&p](int64_t n) {
            float * r = p;
            p += n;
            return r;
        };
        h = take(dstate * kBlock);
        a2 = take(dstate * kBlock);
        b_fixed = take(dstate * kBlock);
        c_fixed = take(dstate * kBlock);
        u = take(steps * kBlock);
        delta = take(steps * kBlock);
        dt = take(steps * kBlock);
        z = take(steps * kBlock);
        y = take(steps * kBlock);
        b_tile = take(steps * dstate);
        c_tile = take(steps * dstate);
        d = take(kBlock);
        bias = take(kBlock);
    }
};

// One block's recurrence over `steps` time steps of the current tile.
// h = exp(dt A) h + dt u B_t;  y = C_t . h + D u, times silu(z).
template <bool kVariableBC>
void recurrence(const Scratch & s, int64_t steps, int64_t dstate, bool has_z) {
    Vec d[kVecs];
    for (int v = 0; v < kVecs; ++v) d[v] = load(s.d + v * kWidth);
    for (int64_t t = 0; t < steps; ++t) {
        Vec dt[kVecs], u[kVecs], du[kVecs], acc[kVecs];
        for (int v = 0; v < kVecs; ++v) {
            dt[v] = load(s.dt + t * kBlock + v * kWidth);
            u[v] = load(s.u + t * kBlock + v * kWidth);
            du[v] = dt[v] * u[v];
            acc[v] = d[v] * u[v];
        }
        for (int64_t n = 0; n < dstate; ++n) {
            float * h = s.h + n * kBlock;
            const float * a2 = s.a2 + n * kBlock;
            if constexpr (kVariableBC) {
                const Vec b = set1(s.b_tile[t * dstate + n]), c = set1(s.c_tile[t * dstate + n]);
                for (int v = 0; v < kVecs; ++v) {
                    const Vec decay = exp2_fast(dt[v] * load(a2 + v * kWidth));
                    const Vec hv = fmadd(decay, load(h + v * kWidth), du[v] * b);
                    store(h + v * kWidth, hv);
                    acc[v] = fmadd(hv, c, acc[v]);
                }
            } else {
                const float * b = s.b_fixed + n * kBlock;
                const float * c = s.c_fixed + n * kBlock;
                for (int v = 0; v < kVecs; ++v) {
                    const Vec decay = exp2_fast(dt[v] * load(a2 + v * kWidth));
                    const Vec hv = fmadd(decay, load(h + v * kWidth), du[v] * load(b + v * kWidth));
                    store(h + v * kWidth, hv);
                    acc[v] = fmadd(hv, load(c + v * kWidth), acc[v]);
                }
            }
        }
        for (int v = 0; v < kVecs; ++v) {
            if (has_z) acc[v] = acc[v] * silu(load(s.z + t * kBlock + v * kWidth));
            store(s.y + t * kBlock + v * kWidth, acc[v]);
        }
    }
}

// dt = delta + bias, softplus(dt) when asked, for a tile of steps x kBlock.
void delta_to_dt(const Scratch & s, int64_t steps, bool softplus_on) {
    for (int64_t t = 0; t < steps; ++t) {
        for (int v = 0; v < kVecs; ++v) {
            Vec x = load(s.delta + t * kBlock + v * kWidth) + load(s.bias + v * kWidth);
            if (softplus_on) x = scan_vec::softplus(x);
            store(s.dt + t * kBlock + v * kWidth, x);
        }
    }
}

void scan_block(const SelectiveScanParams & p, const Scratch & s, int64_t steps_per_tile, int64_t b, int64_t g, int64_t c0, int64_t count) {
    const int64_t N = p.dstate;
    // Zero the padding lanes of everything the recurrence reads.
    std::fill(s.h, s.h + N * kBlock, 0.0f);
    std::fill(s.a2, s.a2 + N * kBlock, 0.0f);
    std::fill(s.u, s.u + steps_per_tile * kBlock, 0.0f);
    std::fill(s.delta, s.delta + steps_per_tile * kBlock, 0.0f);
    std::fill(s.z, s.z + steps_per_tile * kBlock, 0.0f);
    std::fill(s.d, s.d + kBlock, 0.0f);
    std::fill(s.bias, s.bias + kBlock, 0.0f);

    // Per-channel constants, transposed to [n][channel]. A is pre-scaled by log2(e) for exp2.
    load_tile(DType::F32, element(p.A, {c0, 0}), N, count, p.A.stride[1], p.A.stride[0], s.a2, kBlock);
    for (int64_t i = 0; i < N * kBlock; ++i) s.a2[i] *= kLog2e;
    if (!p.variable_bc) {
        std::fill(s.b_fixed, s.b_fixed + N * kBlock, 0.0f);
        std::fill(s.c_fixed, s.c_fixed + N * kBlock, 0.0f);
        load_tile(p.B.dtype, element(p.B, {c0, 0}), N, count, p.B.stride[1], p.B.stride[0], s.b_fixed, kBlock);
        load_tile(p.C.dtype, element(p.C, {c0, 0}), N, count, p.C.stride[1], p.C.stride[0], s.c_fixed, kBlock);
    }
    if (p.D) load_tile(DType::F32, element(*p.D, {c0}), 1, count, 0, p.D->stride[0], s.d, kBlock);
    if (p.delta_bias) load_tile(DType::F32, element(*p.delta_bias, {c0}), 1, count, 0, p.delta_bias->stride[0], s.bias, kBlock);
    if (p.initial_state) {
        const Tensor & h0 = *p.initial_state;
        load_tile(DType::F32, element(h0, {b, c0, 0}), N, count, h0.stride[2], h0.stride[1], s.h, kBlock);
    }

    for (int64_t t0 = 0; t0 < p.len; t0 += steps_per_tile) {
        const int64_t steps = std::min(steps_per_tile, p.len - t0);
        load_tile(p.u.dtype, element(p.u, {b, c0, t0}), steps, count, p.u.stride[2], p.u.stride[1], s.u, kBlock);
        load_tile(p.delta.dtype, element(p.delta, {b, c0, t0}), steps, count, p.delta.stride[2], p.delta.stride[1], s.delta, kBlock);
        if (p.z) load_tile(p.z->dtype, element(*p.z, {b, c0, t0}), steps, count, p.z->stride[2], p.z->stride[1], s.z, kBlock);
        if (p.variable_bc) {
            load_tile(p.B.dtype, element(p.B, {b, g, 0, t0}), steps, N, p.B.stride[3], p.B.stride[2], s.b_tile, N);
            load_tile(p.C.dtype, element(p.C, {b, g, 0, t0}), steps, N, p.C.stride[3], p.C.stride[2], s.c_tile, N);
        }
        delta_to_dt(s, steps, p.delta_softplus);
        if (p.variable_bc) recurrence<true>(s, steps, N, p.z.has_value());
        else recurrence<false>(s, steps, N, p.z.has_value());
        store_tile(p.y.dtype, element(p.y, {b, c0, t0}), steps, count, p.y.stride[2], p.y.stride[1], s.y, kBlock);
    }

    if (p.final_state) {
        const Tensor & hT = *p.final_state;
        store_tile(DType::F32, element(hT, {b, c0, 0}), N, count, hT.stride[2], hT.stride[1], s.h, kBlock);
    }
}

}  // namespace

void selective_scan(mamba_context & ctx, const SelectiveScanParams & p) {
    const int64_t channels_per_group = p.dim / p.groups;
    const int64_t blocks_per_group = (channels_per_group + kBlock - 1) / kBlock;
    const int64_t tasks = p.batch * p.groups * blocks_per_group;
    const int64_t steps = tile_steps(p.dstate);
    const int threads = int(std::max<int64_t>(1, std::min<int64_t>(ctx.num_threads, tasks)));
    const int64_t per_thread = Scratch::floats(p.dstate, steps) + 16;  // + 64 bytes between threads' scratch
    std::vector<float> scratch(size_t(per_thread * threads));

#pragma omp parallel num_threads(threads)
    {
        int thread = 0;
#ifdef _OPENMP
        thread = omp_get_thread_num();
#endif
        const Scratch s(scratch.data() + thread * per_thread, p.dstate, steps);
#pragma omp for schedule(static)
        for (int64_t task = 0; task < tasks; ++task) {
            const int64_t b = task / (p.groups * blocks_per_group);
            const int64_t g = (task / blocks_per_group) % p.groups;
            const int64_t block = task % blocks_per_group;
            const int64_t first = block * kBlock;
            const int64_t count = std::min(kBlock, channels_per_group - first);
            scan_block(p, s, steps, b, g, g * channels_per_group + first, count);
        }
    }
}

}  // namespace mamba::cpu
