// mamba_mamba2_step on CUDA: in_proj with its conv step (one GEMV kernel), then the state update, the gated
// RMSNorm and out_proj. Where it can, the norm is folded into the kernels on either side of it
// (step_norm.cuh): three kernels a layer instead of four, and one launch gap and one L2 round trip of the
// (batch, inner) activations fewer. Bytes and FLOPs: those of the ops (gemv.cu, ssd_state_update.cu).
#include <string>

#include "common.cuh"
#include "gemv.cuh"
#include "launch.cuh"
#include "step_norm.cuh"
#include "step_pre_norm.cuh"
#include "core/env_choice.h"
#include "ops/causal_conv1d.h"
#include "ops/mamba2_step.h"

namespace mamba::cuda {

namespace {

// MAMBA_CUDA_MAMBA2_STEP: "auto" (or unset) folds the norm where it can at batch 1, "fused" wherever it can
// (up to kNormMaxRows rows) and fails elsewhere, "separate" runs the four ops.
enum class Step2Kernels { Auto, Fused, Separate };
constexpr EnvChoice<Step2Kernels> kStep2Kernels[] = {{"auto", Step2Kernels::Auto}, {"fused", Step2Kernels::Fused}, {"separate", Step2Kernels::Separate}};

// Where the partial sums go (normed's memory, which the folded step does not otherwise use); the reason the
// norm cannot be folded, empty where it can. Unforced ("auto"), one row only: at 4 rows the folded step
// measured slower than the four kernels (mamba2-130m decode at batch 4 on an H200: 0.505 against 0.471
// ms/step, run 72), at one row faster (0.402 against 0.446; mamba2-2.7b 2.27 against 2.32).
std::string plan_folded_norm(mamba_context & ctx, const Mamba2StepParams & p, bool forced, NormPartials & parts) {
    if (!forced && p.batch > 1) return cat("batch ", p.batch, ": unforced, the norm folds at batch 1 only");
    const GatedRmsNormParams & n = p.norm;
    if (n.group_size != n.dim) return cat("the norm has ", n.dim / n.group_size, " groups; folding takes one");
    if (!n.z) return "the norm has no gate";
    const Tensor & home = n.y;
    const size_t elem = dtype_size(home.dtype);
    if ((reinterpret_cast<uintptr_t>(home.data) & 3u) != 0 || (n.dim > 1 && home.stride[1] != 1) || (int64_t(elem) * home.stride[0]) % 4 != 0 ||
        (p.batch > 1 && home.stride[0] < n.dim))
        return "'normed' is not contiguous rows of whole floats";
    if (!ssd_state_update_vectorized(p.update)) return "the SSM state does not allow 16-byte accesses (aligned rows, dstate a multiple of 4)";
    parts.count = ssd_state_update_blocks_per_row(ctx, p.update);
    if (parts.count * 4 > n.dim * int64_t(elem)) return "'normed' has no room for the state update's sums of squares";
    parts.data = home.ptr<float>();
    parts.row_stride = int64_t(elem) * home.stride[0] / 4;
    if (!gemv_row_norm_applies(p.out_proj, parts.count))
        return cat("out_proj's GEMV does not take ", p.batch, " rows of ", parts.count,
                   " sums of squares (more than ", kNormMaxRows, " rows, rows mamba_linear gives to cuBLAS, a forced GEMV variant, a weight without 16-byte loads, or over ",
                   kNormPartialsMax, " sums)");
    return {};
}

}  // namespace

void mamba2_step(mamba_context & ctx, const Mamba2StepParams & p) {
    const Step2Kernels choice = env_choice("MAMBA_CUDA_MAMBA2_STEP", kStep2Kernels, Step2Kernels::Auto);
    update_release_point(ReleaseAt::Start);  // read by the state update; a misspelt value fails here, before any launch
    NormPartials parts;
    const std::string why = choice == Step2Kernels::Separate ? std::string("not chosen") : plan_folded_norm(ctx, p, choice == Step2Kernels::Fused, parts);
    if (choice == Step2Kernels::Fused && !why.empty())
        fail(MAMBA_STATUS_UNSUPPORTED, "MAMBA_CUDA_MAMBA2_STEP=fused, but the norm cannot be folded into the step's kernels: ", why);
    step_in_proj(ctx, p.in_proj, run_or_fold_pre_norm(ctx, p.pre_norm, p.in_proj));
    if (!why.empty()) {
        ssd_state_update(ctx, p.update);
        gated_rms_norm(ctx, p.norm);
        linear(ctx, p.out_proj);
        return;
    }
    GatedNormFold fold;
    fold.z = *p.norm.z;
    fold.weight = p.norm.weight;
    fold.norm_before_gate = p.norm.norm_before_gate;
    fold.partials = parts;
    fold.partials_home = p.norm.y;
    ssd_state_update_fold_norm(ctx, p.update, fold);
    // out_proj reads the state update's output (gated and times the norm's weight), not normed, which holds the sums.
    LinearParams out_proj = p.out_proj;
    out_proj.x = p.norm.x;
    if (!try_gemv_row_norm(ctx, out_proj, parts, p.inner, p.norm.eps)) fail(MAMBA_STATUS_INTERNAL, "mamba2_step: out_proj's GEMV refused the folded norm");
    note_writes(ctx, {&out_proj.y});
}

}  // namespace mamba::cuda
