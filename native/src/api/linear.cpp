#include "ops/linear.h"

#include <cstdlib>

#include "core/context.h"

namespace mamba {

LinearParams validate_linear(const mamba_context & ctx, const mamba_linear_args & a, bool softplus) {
    LinearParams p;
    p.softplus = softplus;
    p.x = required(ctx, "x", a.x);
    check_floating("x", p.x);
    check_ndim("x", p.x, 2);
    check_last_axis_contiguous("x", p.x);
    p.rows = p.x.size(0);
    p.in_features = p.x.size(1);
    p.weight = required(ctx, "weight", a.weight);
    check_floating("weight", p.weight);
    check_ndim("weight", p.weight, 2);
    check_shape("weight", p.weight, {-1, p.in_features});
    check_last_axis_contiguous("weight", p.weight);
    p.out_features = p.weight.size(0);
    p.bias = optional(ctx, "bias", a.bias);
    if (p.bias) {
        check_floating("bias", *p.bias);
        check_shape("bias", *p.bias, {p.out_features});
    }
    p.y = required(ctx, "y", a.y);
    check_floating("y", p.y);
    check_shape("y", p.y, {p.rows, p.out_features});
    check_last_axis_contiguous("y", p.y);
    if (p.rows > 1 && p.out_features > 0 && std::abs(p.y.stride[0]) < p.out_features)
        fail_argument("argument 'y' has row stride ", p.y.stride[0], " shorter than its ", p.out_features, " features: its rows overlap");
    // y is written while x, weight and bias are still being read.
    check_no_overlap("y", p.y, "x", p.x);
    check_no_overlap("y", p.y, "weight", p.weight);
    if (p.bias) check_no_overlap("y", p.y, "bias", *p.bias);
    return p;
}

}  // namespace mamba

namespace {

void run_linear(mamba_context * context, const mamba_linear_args * args, bool softplus) {
    mamba::check_not_null("context", context);
    mamba::check_not_null("args", args);
    const auto p = mamba::validate_linear(*context, *args, softplus);
    if (p.rows == 0 || p.out_features == 0) return;
    if (context->is_cuda()) MAMBA_CUDA_ONLY(mamba::cuda::linear(*context, p));
    else mamba::cpu::linear(*context, p);
}

}  // namespace

extern "C" mamba_status mamba_linear(mamba_context * context, const mamba_linear_args * args) {
    return MAMBA_GUARDED({ run_linear(context, args, false); });
}

extern "C" mamba_status mamba_linear_softplus(mamba_context * context, const mamba_linear_args * args) {
    return MAMBA_GUARDED({ run_linear(context, args, true); });
}
