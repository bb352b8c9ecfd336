// Decode-sized mamba_linear (few rows) on CUDA: see gemv.cu.
#pragma once

#include "common.cuh"
#include "ops/linear_conv1d_update.h"

namespace mamba::cuda {

// Largest row count the GEMV kernel takes. Each element of W feeds `rows` FMAs: at 16 rows and
// bfloat16 W that is 8 FMA (16 FLOP) per byte of W, which is the H200's CUDA-core rate per byte of HBM
// bandwidth (67 TFLOP/s / 4.2 TB/s = 16 FLOP/B). Up to 16 rows the kernel therefore stays near the
// bandwidth floor; beyond that a tensor-core GEMM (cuBLAS) is the better tool.
constexpr int64_t kGemvMaxRows = 16;

// Runs y = x W^T (+ bias) with the GEMV kernel when it applies (rows <= kGemvMaxRows); returns false
// (having done nothing) otherwise.
bool try_gemv(mamba_context & ctx, const LinearParams & p);

// The same with the conv step run on the outputs of p.conv's range before they are stored (the tiled
// kernel's epilogue), when the GEMV applies, W allows 16-byte loads, there is at least one input feature,
// the filter is at most 4 wide and neither switch (MAMBA_CUDA_GEMV_VARIANT=warp,
// MAMBA_CUDA_LINEAR_CONV=separate) asks otherwise; returns false (having done nothing) otherwise. The
// tiled kernel runs even where mamba_linear would pick the warp kernel (up to 2 rows, few outputs).
bool try_gemv_conv1d_update(mamba_context & ctx, const LinearConv1dUpdateParams & p);

}  // namespace mamba::cuda
