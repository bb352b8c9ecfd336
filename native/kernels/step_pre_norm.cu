// The pre-norm fold's choice (step_pre_norm.cuh); its kernel is gemv.cu's tiled GEMV.
#include "step_pre_norm.cuh"

#include "launch.cuh"
#include "core/env_choice.h"

namespace mamba::cuda {

namespace {

enum class PreNormFold { Auto, Fused, Separate };
constexpr EnvChoice<PreNormFold> kPreNormFolds[] = {{"auto", PreNormFold::Auto}, {"fused", PreNormFold::Fused}, {"separate", PreNormFold::Separate}};

}  // namespace

const RmsNormParams * run_or_fold_pre_norm(mamba_context & ctx, const std::optional<RmsNormParams> & n, const LinearConv1dUpdateParams & in_proj,
                                           const std::string & also) {
    const PreNormFold choice = env_choice("MAMBA_CUDA_STEP_PRE_NORM", kPreNormFolds, PreNormFold::Auto);
    if (!n) return nullptr;
    std::string why = choice == PreNormFold::Separate ? std::string("not chosen") : gemv_conv1d_pre_norm_unsupported(ctx, in_proj, *n);
    if (why.empty()) why = also;
    if (choice == PreNormFold::Fused && !why.empty())
        fail(MAMBA_STATUS_UNSUPPORTED, "MAMBA_CUDA_STEP_PRE_NORM=fused, but the pre-norm cannot fold into in_proj: ", why);
    if (why.empty()) return &*n;
    rms_norm(ctx, *n);
    return nullptr;
}

void note_in_proj_writes(mamba_context & ctx, const LinearConv1dUpdateParams & in_proj, const RmsNormParams * folded) {
    if (folded) note_writes(ctx, {&in_proj.linear.y, &in_proj.conv.conv_state, &in_proj.conv.y, &*folded->residual_out});
    else note_writes(ctx, {&in_proj.linear.y, &in_proj.conv.conv_state, &in_proj.conv.y});
}

void step_in_proj(mamba_context & ctx, const LinearConv1dUpdateParams & in_proj, const RmsNormParams * folded) {
    if (!folded) {
        linear_conv1d_update(ctx, in_proj);  // records its own writes
        return;
    }
    gemv_conv1d_pre_norm(ctx, in_proj, *folded);
    note_in_proj_writes(ctx, in_proj, folded);
}

}  // namespace mamba::cuda
