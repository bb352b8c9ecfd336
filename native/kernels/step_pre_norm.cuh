// The residual block's pre-norm folded into a decode step's in_proj (mamba_mamba1_step and mamba_mamba2_step with
// pre_norm_weight): at batch 1, in_proj's GEMV reads the norm's input x (+ residual) instead of its output, multiplies
// it by the norm's weight while staging it as its x tile, and scales its sums by 1 / sqrt(mean of squares + eps),
// which each block adds up from the same staged values, after its last FMA; block 0 stores x + residual into
// residual_out. One kernel a layer fewer (the add + RMSNorm between the blocks), and no launch gap or L2 round trip
// of its (1, hidden) output. The mixer's input is then not rounded to pre_normed's dtype, which is not written.
// The residual's first tile is copied into the x tile with cp.async before the PDL wait (the block before wrote it);
// x waits for the wait, as in the plain build. Bytes: those of the norm (x, residual and the weight read by every
// block from L2, residual_out written once); FLOPs: 4 * hidden per block.
// Measured on an H200 (bf16, batch 1, runs 81-82; ms/step, folded against MAMBA_CUDA_STEP_PRE_NORM=separate):
// mamba2-2.7b decode 2.237-2.238 against 2.275-2.282 (1.8%), mamba-2.8b 2.059-2.060 against 2.073-2.075 (0.6%).
#pragma once

#include <optional>
#include <string>

#include "common.cuh"
#include "ops/linear_conv1d_update.h"
#include "ops/rms_norm.h"

namespace mamba::cuda {

// Why in_proj + conv cannot take the norm, empty where it can: one row, the conv step in the GEMV, the norm's
// channels in_proj's inputs (a multiple of 4), x and the norm's weight of W's dtype, the residual (if any) and
// residual_out float32, each one contiguous row from a 16-byte boundary.
std::string gemv_conv1d_pre_norm_unsupported(mamba_context & ctx, const LinearConv1dUpdateParams & p, const RmsNormParams & n);

// in_proj with its conv step, reading the norm's input and normalizing it itself (INTERNAL where it does not apply).
void gemv_conv1d_pre_norm(mamba_context & ctx, const LinearConv1dUpdateParams & p, const RmsNormParams & n);

// The pre-norm the step's in_proj is to fold (null without one, or where it does not fold). MAMBA_CUDA_STEP_PRE_NORM
// (read at each call): "auto" or unset folds it where it can, "fused" does so or fails with UNSUPPORTED, naming the
// reason, "separate" never folds. Where it does not fold, the norm runs here as mamba_rms_norm does, before in_proj;
// `also` is why something else the fold needs cannot run (empty where it can).
const RmsNormParams * run_or_fold_pre_norm(mamba_context & ctx, const std::optional<RmsNormParams> & n, const LinearConv1dUpdateParams & in_proj,
                                           const std::string & also = {});

// Records what in_proj wrote for the next kernel's early reads (launch.cuh): its outputs, and residual_out where it
// folded the pre-norm (`folded`, from run_or_fold_pre_norm).
void note_in_proj_writes(mamba_context & ctx, const LinearConv1dUpdateParams & in_proj, const RmsNormParams * folded);

// A step's in_proj with its conv step: the GEMV that folds the pre-norm where `folded` is given, mamba_linear_conv1d_update
// otherwise; either way its writes are recorded.
void step_in_proj(mamba_context & ctx, const LinearConv1dUpdateParams & in_proj, const RmsNormParams * folded);

}  // namespace mamba::cuda
