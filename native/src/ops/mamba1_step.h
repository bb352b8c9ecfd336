// A whole Mamba-1 mixer decode step (mamba_mamba1_step): the four ops it stands for, validated together.
#pragma once

#include "ops/linear.h"
#include "ops/linear_conv1d_update.h"
#include "ops/rms_norm.h"
#include "ops/selective_scan.h"

namespace mamba {

struct Mamba1StepParams {
    LinearConv1dUpdateParams in_proj;  // x -> xz, conv step -> xc
    LinearParams x_proj;               // xc -> xdbl
    SelectiveStateUpdateParams update; // dt_proj inside; z = xz's second half; -> y_inner
    LinearParams out_proj;             // y_inner -> y
    std::optional<RmsNormParams> pre_norm;  // x (+ residual) -> pre_normed, in_proj's input; the sum -> residual_out
    int64_t batch = 0, hidden = 0, inner = 0, rank = 0, dstate = 0, width = 0;
};

Mamba1StepParams validate_mamba1_step(const mamba_context & ctx, const mamba_mamba1_step_args & args);

namespace cuda {
void mamba1_step(mamba_context & ctx, const Mamba1StepParams & p);
}

}  // namespace mamba
