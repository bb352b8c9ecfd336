// A whole Mamba-2 mixer decode step (mamba_mamba2_step): the four ops it stands for, validated together.
#pragma once

#include "ops/gated_rms_norm.h"
#include "ops/linear.h"
#include "ops/linear_conv1d_update.h"
#include "ops/rms_norm.h"
#include "ops/ssd.h"

namespace mamba {

struct Mamba2StepParams {
    LinearConv1dUpdateParams in_proj;  // x -> proj, conv step on xBC -> xbc
    SsdStateUpdateParams update;       // x, B, C = xbc's columns, dt = proj's; -> y_inner
    GatedRmsNormParams norm;           // y_inner, z = proj's first inner columns -> normed
    LinearParams out_proj;             // normed -> y
    std::optional<RmsNormParams> pre_norm;  // x (+ residual) -> pre_normed, in_proj's input; the sum -> residual_out
    int64_t batch = 0, hidden = 0, inner = 0, heads = 0, headdim = 0, groups = 0, dstate = 0, width = 0, conv_dim = 0;
};

Mamba2StepParams validate_mamba2_step(const mamba_context & ctx, const mamba_mamba2_step_args & args);

namespace cuda {
void mamba2_step(mamba_context & ctx, const Mamba2StepParams & p);
}

}  // namespace mamba
