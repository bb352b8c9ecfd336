// Gated, grouped RMSNorm of Mamba-2 (mamba_gated_rms_norm).
#pragma once

#include <optional>

#include "core/tensor.h"

namespace mamba {

struct GatedRmsNormParams {
    int64_t rows = 0, dim = 0, group_size = 0;
    Tensor x;
    std::optional<Tensor> z;
    Tensor weight;
    Tensor y;
    float eps = 0.0f;
    bool norm_before_gate = false;
};

GatedRmsNormParams validate_gated_rms_norm(const mamba_context & ctx, const mamba_gated_rms_norm_args & args);

namespace cpu {
void gated_rms_norm(mamba_context & ctx, const GatedRmsNormParams & p);
}
namespace cuda {
void gated_rms_norm(mamba_context & ctx, const GatedRmsNormParams & p);
}

}  // namespace mamba
