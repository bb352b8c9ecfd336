// CPU gated RMSNorm: one row per task, converted to float32 scratch once; the gate, the per-group sum
// of squares and the scaling are separate vectorized passes over that scratch.
#include <cmath>
#include <vector>

#include "core/context.h"
#include "cpu/convert.h"
#include "cpu/vec_math.h"
#include "ops/gated_rms_norm.h"

namespace mamba::cpu {

namespace {

constexpr int64_t kMinParallelElements = 1 << 14;

// out[i] = v[i] * inv_rms(v over its group) * weight[i], one group after another.
void normalize_groups(const float * v, const float * weight, int64_t dim, int64_t group_size, float eps, float * out) {
    for (int64_t g0 = 0; g0 < dim; g0 += group_size) {
        // Double accumulation keeps the mean exact to float precision for groups of many thousands.
        double sum_sq = 0.0;
#pragma omp simd reduction(+ : sum_sq)
        for (int64_t i = g0; i < g0 + group_size; ++i) sum_sq += double(v[i]) * double(v[i]);
        const float inv = 1.0f / std::sqrt(float(sum_sq / double(group_size)) + eps);
#pragma omp simd
        for (int64_t i = g0; i < g0 + group_size; ++i) out[i] = v[i] * inv * weight[i];
    }
}

}  // namespace

void gated_rms_norm(mamba_context & ctx, const GatedRmsNormParams & p) {
    const int64_t D = p.dim;
    std::vector<float> weight(static_cast<size_t>(D));
    load_floats(p.weight.dtype, p.weight.data, D, p.weight.stride[0], weight.data());

#pragma omp parallel num_threads(ctx.num_threads) if (p.rows * D >= kMinParallelElements)
    {
        std::vector<float> x(static_cast<size_t>(D)), gate(static_cast<size_t>(D)), y(static_cast<size_t>(D));
#pragma omp for schedule(static)
        for (int64_t row = 0; row < p.rows; ++row) {
            load_floats(p.x.dtype, element(p.x, {row, 0}), D, p.x.stride[1], x.data());
            if (p.z) {
                load_floats(p.z->dtype, element(*p.z, {row, 0}), D, p.z->stride[1], gate.data());
                float * g = gate.data();
#pragma omp simd
                for (int64_t i = 0; i < D; ++i) g[i] = silu_fast(g[i]);
            }
            float * xs = x.data();
            const float * g = gate.data();
            if (p.z && !p.norm_before_gate) {
#pragma omp simd
                for (int64_t i = 0; i < D; ++i) xs[i] *= g[i];
            }
            normalize_groups(xs, weight.data(), D, p.group_size, p.eps, y.data());
            if (p.z && p.norm_before_gate) {
                float * ys = y.data();
#pragma omp simd
                for (int64_t i = 0; i < D; ++i) ys[i] *= g[i];
            }
            store_floats(p.y.dtype, element(p.y, {row, 0}), D, p.y.stride[1], y.data());
        }
    }
}

}  // namespace mamba::cpu
