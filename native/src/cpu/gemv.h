// Decode-sized linear layers (a few rows): bound by reading the weights, so the weights are streamed once
// in their stored dtype and converted in registers, with OpenMP over output features.
#pragma once

#include "ops/linear.h"

namespace mamba::cpu {

// At most this many rows go through the GEMV kernels; more go to BLAS (see linear.cpp). The value comes
// from the crossover benchmark (bench_linear.cpp); a build can override it to measure that crossover.
#ifndef MAMBA_GEMV_MAX_ROWS
#define MAMBA_GEMV_MAX_ROWS 12
#endif
constexpr int64_t kGemvMaxRows = MAMBA_GEMV_MAX_ROWS;

void linear_gemv(int num_threads, const LinearParams & p);

// n contiguous float32/float16/bfloat16 values to float32, vectorized like the kernels.
void widen_to_float(DType dtype, const void * src, int64_t n, float * out);

}  // namespace mamba::cpu
