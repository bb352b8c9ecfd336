// Decode-sized linear layers (a few rows): bound by reading the weights, so the weights are streamed once
// in their stored dtype and converted in registers, with OpenMP over output features.
#pragma once

#include "ops/linear.h"

namespace mamba::cpu {

// At most this many rows go through the GEMV kernels; more go to BLAS (see linear.cpp).
constexpr int64_t kGemvMaxRows = 8;

void linear_gemv(int num_threads, const LinearParams & p);

}  // namespace mamba::cpu
