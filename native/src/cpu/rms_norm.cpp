// CPU RMSNorm: one row per task; each row is converted to float32 scratch once, normalized, written back.
#include <cmath>
#include <vector>

#include "core/context.h"
#include "cpu/convert.h"
#include "ops/rms_norm.h"

namespace mamba::cpu {

void rms_norm(mamba_context & ctx, const RmsNormParams & p) {
    const int64_t H = p.hidden;
    std::vector<float> weight(static_cast<size_t>(H));
    load_floats(p.weight.dtype, p.weight.data, H, p.weight.stride[0], weight.data());

#pragma omp parallel num_threads(ctx.num_threads)
    {
        std::vector<float> r(static_cast<size_t>(H)), extra(static_cast<size_t>(H));
#pragma omp for schedule(static)
        for (int64_t row = 0; row < p.rows; ++row) {
            load_floats(p.x.dtype, element(p.x, {row, 0}), H, p.x.stride[1], r.data());
            if (p.residual) {
                load_floats(p.residual->dtype, element(*p.residual, {row, 0}), H, p.residual->stride[1], extra.data());
                for (int64_t i = 0; i < H; ++i) r[i] += extra[i];
            }
            if (p.residual_out) store_floats(p.residual_out->dtype, element(*p.residual_out, {row, 0}), H, p.residual_out->stride[1], r.data());
            // Sum in double for rows of many thousands of channels; it costs nothing next to the loads.
            double sum_sq = 0.0;
            for (int64_t i = 0; i < H; ++i) sum_sq += double(r[i]) * double(r[i]);
            const float inv = 1.0f / std::sqrt(float(sum_sq / double(H)) + p.eps);
            for (int64_t i = 0; i < H; ++i) extra[i] = r[i] * inv * weight[i];
            store_floats(p.y.dtype, element(p.y, {row, 0}), H, p.y.stride[1], extra.data());
        }
    }
}

}  // namespace mamba::cpu
