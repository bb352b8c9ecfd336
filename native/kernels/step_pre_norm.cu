// The pre-norm fold's choice (step_pre_norm.cuh); its kernel is gemv.cu's tiled GEMV.
#include "step_pre_norm.cuh"

#include "core/env_choice.h"

namespace mamba::cuda {

namespace {

enum class PreNormFold { Auto, Fused, Separate };
constexpr EnvChoice<PreNormFold> kPreNormFolds[] = {{"auto", PreNormFold::Auto}, {"fused", PreNormFold::Fused}, {"separate", PreNormFold::Separate}};

}  // namespace

bool run_or_fold_pre_norm(mamba_context & ctx, const std::optional<RmsNormParams> & n, const LinearConv1dUpdateParams & in_proj, const std::string & also) {
    const PreNormFold choice = env_choice("MAMBA_CUDA_STEP_PRE_NORM", kPreNormFolds, PreNormFold::Auto);
    if (!n) return false;
    std::string why = choice == PreNormFold::Separate ? std::string("not chosen") : gemv_conv1d_pre_norm_unsupported(ctx, in_proj, *n);
    if (why.empty()) why = also;
    if (choice == PreNormFold::Fused && !why.empty())
        fail(MAMBA_STATUS_UNSUPPORTED, "MAMBA_CUDA_STEP_PRE_NORM=fused, but the pre-norm cannot fold into in_proj: ", why);
    if (why.empty()) return true;
    rms_norm(ctx, *n);
    return false;
}

}  // namespace mamba::cuda
