// CPU Mamba-2 decode step: one task per (batch, head) updates its (headdim x dstate) state in place,
//   S = exp(dt A) S + dt x B^T,  y = S C + D x,  y *= silu(z).
// The work is a few multiply-adds per state element, so it is plain loops over float32 rows.
#include <algorithm>
#include <vector>

#include <omp.h>

#include "core/context.h"
#include "cpu/convert.h"
#include "cpu/ssd_common.h"
#include "ops/ssd.h"

namespace mamba::cpu {

void ssd_state_update(mamba_context & ctx, const SsdStateUpdateParams & p) {
    const int64_t P = p.headdim, N = p.dstate, heads_per_group = p.heads / p.groups;
    const DtTransform transform(p.dt_softplus, p.dt_min, p.dt_max);
    const int64_t tasks = p.batch * p.heads;
    const bool state_rows_contiguous = p.state.stride[3] == 1;

    // Scratch for every thread, allocated before the parallel region so an allocation failure is an error
    // status rather than an exception escaping OpenMP.
    const int threads = std::max(1, int(ctx.num_threads));
    const size_t per_thread = size_t(3 * P + 3 * N);
    std::vector<float> scratch(per_thread * size_t(threads));

#pragma omp parallel num_threads(threads) if (tasks * P * N > 32768)
    {
        float * base = scratch.data() + per_thread * size_t(omp_get_thread_num());
        float *x = base, *y = x + P, *z = y + P, *b = z + P, *c = b + N, *row = c + N;
#pragma omp for schedule(static)
        for (int64_t task = 0; task < tasks; ++task) {
            const int64_t bi = task / p.heads, h = task % p.heads, g = h / heads_per_group;
            const float A = *reinterpret_cast<const float *>(element(p.A, {h}));
            const float bias = p.dt_bias ? *reinterpret_cast<const float *>(element(*p.dt_bias, {h})) : 0.0f;
            const float dt = transform(load_float(p.dt.dtype, element(p.dt, {bi, h})), bias);
            const float dA = std::exp(dt * A);
            load_floats(p.x.dtype, element(p.x, {bi, h, 0}), P, p.x.stride[2], x);
            load_floats(p.B.dtype, element(p.B, {bi, g, 0}), N, p.B.stride[2], b);
            load_floats(p.C.dtype, element(p.C, {bi, g, 0}), N, p.C.stride[2], c);
            // Row i of the head's state is i * stride[2] elements past row 0 (no per-row index arithmetic).
            float * const state_rows = reinterpret_cast<float *>(element(p.state, {bi, h, 0, 0}));
            for (int64_t i = 0; i < P; ++i) {
                float * s = state_rows + i * p.state.stride[2];
                if (!state_rows_contiguous) {
                    load_floats(DType::F32, s, N, p.state.stride[3], row);
                    s = row;
                }
                const float dtx = dt * x[i];
                // Eight partial sums let the compiler vectorize the dot product without reassociating.
                float partial[8] = {};
                int64_t n = 0;
                for (; n + 8 <= N; n += 8) {
                    for (int j = 0; j < 8; ++j) {
                        const float v = dA * s[n + j] + dtx * b[n + j];
                        s[n + j] = v;
                        partial[j] += v * c[n + j];
                    }
                }
                for (; n < N; ++n) {
                    const float v = dA * s[n] + dtx * b[n];
                    s[n] = v;
                    partial[0] += v * c[n];
                }
                const float acc = ((partial[0] + partial[1]) + (partial[2] + partial[3])) + ((partial[4] + partial[5]) + (partial[6] + partial[7]));
                if (!state_rows_contiguous) store_floats(DType::F32, state_rows + i * p.state.stride[2], N, p.state.stride[3], row);
                y[i] = acc;
            }
            if (p.D) {
                if (p.D_per_channel) {
                    for (int64_t i = 0; i < P; ++i) y[i] += *reinterpret_cast<const float *>(element(*p.D, {h, i})) * x[i];
                } else {
                    const float d = *reinterpret_cast<const float *>(element(*p.D, {h}));
                    for (int64_t i = 0; i < P; ++i) y[i] += d * x[i];
                }
            }
            if (p.z) {
                load_floats(p.z->dtype, element(*p.z, {bi, h, 0}), P, p.z->stride[2], z);
                multiply_by_silu(y, z, P);  // the SiLU of mamba_ssd, so a decode step matches prefill
            }
            store_floats(p.y.dtype, element(p.y, {bi, h, 0}), P, p.y.stride[2], y);
        }
    }
}

}  // namespace mamba::cpu
