// A normalization and the linear layer that consumes it (mamba_norm_linear): validated arguments and the
// backend entry points.
#pragma once

#include <optional>

#include "ops/gated_rms_norm.h"
#include "ops/linear.h"
#include "ops/rms_norm.h"

namespace mamba {

struct NormLinearParams {
    // Exactly one is set; its y is linear.x.
    std::optional<RmsNormParams> rms;
    std::optional<GatedRmsNormParams> gated;
    LinearParams linear;
};

NormLinearParams validate_norm_linear(const mamba_context & ctx, const mamba_norm_linear_args & args);

namespace cpu {
void norm_linear(mamba_context & ctx, const NormLinearParams & p);
}
namespace cuda {
void norm_linear(mamba_context & ctx, const NormLinearParams & p);
}

}  // namespace mamba
