// mamba_linear_softplus's tensor-core kernel for a small inner dimension (linear_small_k.cu).
#pragma once

#include "common.cuh"
#include "ops/linear.h"

namespace mamba::cuda {

// Runs y = softplus(x W^T (+ bias)) (p.softplus must be set) on the small-K kernel when it applies (x and W
// both bfloat16 or both float16, K a multiple of 8 up to 160, x rows 16-byte aligned); returns false
// (having done nothing) otherwise.
bool try_linear_small_k(mamba_context & ctx, const LinearParams & p);

}  // namespace mamba::cuda
