// Decode-sized mamba_linear (few rows) on CUDA: see gemv.cu.
#pragma once

#include "common.cuh"
#include "ops/linear_conv1d_update.h"

namespace mamba::cuda {

// Largest row count the GEMV kernels take. Each element of W feeds `rows` FMAs: at 16 rows and bfloat16 W
// that is 8 FMA (16 FLOP) per byte of W, the H200's CUDA-core rate per byte of HBM bandwidth (67 TFLOP/s /
// 4.2 TB/s = 16 FLOP/B) in theory; measured, the kernels fall well short of the bandwidth floor from 2 rows
// (16% of copy at 16 rows on mamba-2.8b's in_proj), so batched rows of 16-bit W go to cuBLAS
// already (gemv.cu's gemv_variant), and more rows always do.
constexpr int64_t kGemvMaxRows = 16;

// A float64 range that a GEMV zeroes at its end, past its PDL wait: the kernel before it, which reads the range last, has
// then completed, and the kernel after it finds zeros (mamba1_step.cu: x_proj's sums, cleared for the next step).
struct ClearAfterWait {
    double * data = nullptr;
    int64_t count = 0;
};

// Runs y = x W^T (+ bias) with a GEMV kernel when one applies and is the better choice (rows <=
// kGemvMaxRows, not a shape gemv_variant gives to cuBLAS), zeroing `clear` (when given; one row only) at its end; returns false
// (having done nothing) otherwise. stage_weights: the op just before moves little of HBM's bandwidth, so at one row the
// kernel also copies the second batch of each lane's W into shared memory before its PDL wait, beyond what registers
// hold (gemv.cu, "Staged W"; MAMBA_CUDA_GEMV_STAGE=off declines).
bool try_gemv(mamba_context & ctx, const LinearParams & p, const ClearAfterWait * clear = nullptr, bool stage_weights = false);

// The same with the conv step run on the outputs of p.conv's range before they are stored (the tiled
// kernel's epilogue), when the GEMV applies, W allows 16-byte loads, there is at least one input feature,
// the filter is at most 4 wide, mamba_linear would not give the rows to cuBLAS and neither switch
// (MAMBA_CUDA_GEMV_VARIANT=warp or gemm, MAMBA_CUDA_LINEAR_CONV=separate) asks otherwise; returns false
// (having done nothing) otherwise. The
// tiled kernel runs even where mamba_linear would pick the warp kernel (up to 2 rows, few outputs).
bool try_gemv_conv1d_update(mamba_context & ctx, const LinearConv1dUpdateParams & p);

// Whether try_gemv_conv1d_update would run p's conv step in the GEMV (launching nothing).
bool gemv_runs_conv1d_update(mamba_context & ctx, const LinearConv1dUpdateParams & p);

// While it lives, the GEMVs that `ctx` runs load W evict-first in L2 unless MAMBA_CUDA_GEMV_EVICT says
// otherwise (CudaState::weights_evict_first); the previous setting comes back on every way out.
class EvictFirstWeights {
public:
    explicit EvictFirstWeights(mamba_context & ctx) : state_(*ctx.cuda), saved_(state_.weights_evict_first) { state_.weights_evict_first = true; }
    ~EvictFirstWeights() { state_.weights_evict_first = saved_; }
    EvictFirstWeights(const EvictFirstWeights &) = delete;
    EvictFirstWeights & operator=(const EvictFirstWeights &) = delete;

private:
    CudaState & state_;
    bool saved_;
};

}  // namespace mamba::cuda
