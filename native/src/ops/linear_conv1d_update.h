// A decode step's input projection with its conv step (mamba_linear_conv1d_update).
#pragma once

#include "ops/causal_conv1d.h"
#include "ops/linear.h"

namespace mamba {

struct LinearConv1dUpdateParams {
    LinearParams linear;
    CausalConv1dUpdateParams conv;  // conv.x: the columns [conv_offset, conv_offset + conv.dim) of linear.y
    int64_t conv_offset = 0;
};

LinearConv1dUpdateParams validate_linear_conv1d_update(const mamba_context & ctx, const mamba_linear_conv1d_update_args & args);

namespace cuda {
void linear_conv1d_update(mamba_context & ctx, const LinearConv1dUpdateParams & p);
}

}  // namespace mamba
