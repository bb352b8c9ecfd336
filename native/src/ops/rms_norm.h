// RMSNorm with fused residual add (mamba_rms_norm): validated arguments and the backend entry points.
#pragma once

#include <optional>

#include "core/tensor.h"

namespace mamba {

struct RmsNormParams {
    int64_t rows = 0, hidden = 0;
    Tensor x;
    std::optional<Tensor> residual;
    Tensor weight;
    Tensor y;
    std::optional<Tensor> residual_out;
    float eps = 0.0f;
};

RmsNormParams validate_rms_norm(const mamba_context & ctx, const mamba_rms_norm_args & args);

namespace cpu {
void rms_norm(mamba_context & ctx, const RmsNormParams & p);
}
namespace cuda {
void rms_norm(mamba_context & ctx, const RmsNormParams & p);
}

}  // namespace mamba
