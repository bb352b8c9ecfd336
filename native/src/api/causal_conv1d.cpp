#include "ops/causal_conv1d.h"

#include "api/aliasing.h"
#include "core/context.h"

namespace mamba {

int64_t check_conv_weight(const char * name, const Tensor & weight, int64_t dim) {
    check_floating(name, weight);
    check_shape(name, weight, {dim, -1});
    const int64_t width = weight.size(1);
    if (width < 2 || width > kMaxConvWidth)
        fail(MAMBA_STATUS_UNSUPPORTED, "argument '", name, "' has width ", width, " (shape ", weight.shape_string(), "); supported widths are 2 to ",
             kMaxConvWidth);
    return width;
}

void check_conv_bias(const char * name, const std::optional<Tensor> & bias, int64_t dim) {
    if (!bias) return;
    check_floating(name, *bias);
    check_shape(name, *bias, {dim});
}

CausalConv1dParams validate_causal_conv1d(const mamba_context & ctx, const mamba_causal_conv1d_args & a) {
    CausalConv1dParams p;
    p.x = required(ctx, "x", a.x);
    check_floating("x", p.x);
    check_ndim("x", p.x, 3);
    p.batch = p.x.size(0);
    p.dim = p.x.size(1);
    p.len = p.x.size(2);
    p.weight = required(ctx, "weight", a.weight);
    p.width = check_conv_weight("weight", p.weight, p.dim);
    p.bias = optional(ctx, "bias", a.bias);
    check_conv_bias("bias", p.bias, p.dim);
    p.y = required(ctx, "y", a.y);
    check_floating("y", p.y);
    check_shape("y", p.y, {p.batch, p.dim, p.len});
    check_no_overlap("y", p.y, "x", p.x);
    p.initial_state = optional(ctx, "initial_state", a.initial_state);
    if (p.initial_state) {
        check_floating("initial_state", *p.initial_state);
        check_shape("initial_state", *p.initial_state, {p.batch, p.dim, p.width - 1});
        check_no_overlap("y", p.y, "initial_state", *p.initial_state);
    }
    p.final_state = optional(ctx, "final_state", a.final_state);
    if (p.final_state) {
        check_floating("final_state", *p.final_state);
        check_shape("final_state", *p.final_state, {p.batch, p.dim, p.width - 1});
        check_no_overlap("final_state", *p.final_state, "y", p.y);
        check_no_overlap("final_state", *p.final_state, "x", p.x);
        // Carrying the state across chunks of a long prompt in one buffer is the common use.
        if (p.initial_state) check_same_or_disjoint("final_state", *p.final_state, "initial_state", *p.initial_state);
    }
    p.silu = a.silu != 0;
    return p;
}

CausalConv1dUpdateParams validate_causal_conv1d_update(const mamba_context & ctx, const mamba_causal_conv1d_update_args & a) {
    CausalConv1dUpdateParams p;
    p.x = required(ctx, "x", a.x);
    check_floating("x", p.x);
    check_ndim("x", p.x, 2);
    p.batch = p.x.size(0);
    p.dim = p.x.size(1);
    p.weight = required(ctx, "weight", a.weight);
    p.width = check_conv_weight("weight", p.weight, p.dim);
    p.bias = optional(ctx, "bias", a.bias);
    check_conv_bias("bias", p.bias, p.dim);
    p.conv_state = required(ctx, "conv_state", a.conv_state);
    check_floating("conv_state", p.conv_state);
    check_shape("conv_state", p.conv_state, {p.batch, p.dim, p.width - 1});
    check_no_overlap("conv_state", p.conv_state, "x", p.x);
    p.y = required(ctx, "y", a.y);
    check_floating("y", p.y);
    check_shape("y", p.y, {p.batch, p.dim});
    check_no_overlap("y", p.y, "conv_state", p.conv_state);
    // Each channel's input is read before its output is written, so y may be x itself.
    check_same_or_disjoint("y", p.y, "x", p.x);
    p.silu = a.silu != 0;
    return p;
}

}  // namespace mamba

extern "C" mamba_status mamba_causal_conv1d(mamba_context * context, const mamba_causal_conv1d_args * args) {
    return MAMBA_GUARDED({
        mamba::check_not_null("context", context);
        mamba::check_not_null("args", args);
        const auto p = mamba::validate_causal_conv1d(*context, *args);
        // With len = 0 there is no output, but the final state (the initial one) is still produced.
        if (p.batch == 0 || p.dim == 0 || (p.len == 0 && !p.final_state)) return;
        if (context->is_cuda()) MAMBA_CUDA_ONLY(mamba::cuda::causal_conv1d(*context, p));
        else mamba::cpu::causal_conv1d(*context, p);
    });
}

extern "C" mamba_status mamba_causal_conv1d_update(mamba_context * context, const mamba_causal_conv1d_update_args * args) {
    return MAMBA_GUARDED({
        mamba::check_not_null("context", context);
        mamba::check_not_null("args", args);
        const auto p = mamba::validate_causal_conv1d_update(*context, *args);
        if (p.batch == 0 || p.dim == 0) return;
        if (context->is_cuda()) MAMBA_CUDA_ONLY(mamba::cuda::causal_conv1d_update(*context, p));
        else mamba::cpu::causal_conv1d_update(*context, p);
    });
}
