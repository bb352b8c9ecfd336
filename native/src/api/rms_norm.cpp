#include "ops/rms_norm.h"

#include "core/context.h"

namespace mamba {

RmsNormParams validate_rms_norm(const mamba_context & ctx, const mamba_rms_norm_args & a) {
    RmsNormParams p;
    p.x = required(ctx, "x", a.x);
    check_floating("x", p.x);
    check_ndim("x", p.x, 2);
    p.rows = p.x.size(0);
    p.hidden = p.x.size(1);
    p.weight = required(ctx, "weight", a.weight);
    check_floating("weight", p.weight);
    check_shape("weight", p.weight, {p.hidden});
    p.y = required(ctx, "y", a.y);
    check_floating("y", p.y);
    check_shape("y", p.y, {p.rows, p.hidden});
    p.residual = optional(ctx, "residual", a.residual);
    if (p.residual) {
        check_floating("residual", *p.residual);
        check_shape("residual", *p.residual, {p.rows, p.hidden});
    }
    p.residual_out = optional(ctx, "residual_out", a.residual_out);
    if (p.residual_out) {
        check_floating("residual_out", *p.residual_out);
        check_shape("residual_out", *p.residual_out, {p.rows, p.hidden});
        check_no_overlap("residual_out", *p.residual_out, "y", p.y);
    }
    if (!(a.eps >= 0.0f)) fail_argument("eps is ", a.eps, "; expected a non-negative number");
    p.eps = a.eps;
    return p;
}

}  // namespace mamba

extern "C" mamba_status mamba_rms_norm(mamba_context * context, const mamba_rms_norm_args * args) {
    return MAMBA_GUARDED({
        mamba::check_not_null("context", context);
        mamba::check_not_null("args", args);
        const auto p = mamba::validate_rms_norm(*context, *args);
        if (p.rows == 0 || p.hidden == 0) return;
        if (context->is_cuda()) MAMBA_CUDA_ONLY(mamba::cuda::rms_norm(*context, p));
        else mamba::cpu::rms_norm(*context, p);
    });
}
