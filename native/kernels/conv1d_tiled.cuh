// The prefill conv over channels-contiguous views through shared memory (conv1d_tiled.cu).
#pragma once

#include "ops/causal_conv1d.h"

struct mamba_context;

namespace mamba::cuda {

// Runs mamba_causal_conv1d's forward pass on the tiled kernel and returns true where it applies (one dtype of
// 16-bit or float32 x and y, unit channel stride, 16-byte aligned rows, dim whole 16-byte vectors, width 2-4, len > 0,
// a call large enough for blocks of several chunks, MAMBA_CUDA_CONV_KERNEL not "runs"); else returns false and
// launches nothing.
bool try_causal_conv1d_tiled(mamba_context & ctx, const CausalConv1dParams & p);

}  // namespace mamba::cuda
