#include "ops/gated_rms_norm.h"

#include "api/aliasing.h"
#include "core/context.h"

namespace mamba {

GatedRmsNormParams validate_gated_rms_norm(const mamba_context & ctx, const mamba_gated_rms_norm_args & a) {
    GatedRmsNormParams p;
    p.x = required(ctx, "x", a.x);
    check_floating("x", p.x);
    check_ndim("x", p.x, 2);
    p.rows = p.x.size(0);
    p.dim = p.x.size(1);
    p.z = optional(ctx, "z", a.z);
    if (p.z) {
        check_floating("z", *p.z);
        check_shape("z", *p.z, {p.rows, p.dim});
    }
    p.weight = required(ctx, "weight", a.weight);
    check_floating("weight", p.weight);
    check_shape("weight", p.weight, {p.dim});
    p.y = required(ctx, "y", a.y);
    check_floating("y", p.y);
    check_shape("y", p.y, {p.rows, p.dim});
    // A row is read whole before it is written, so y may be x (or z) itself, but no other overlap.
    check_same_or_disjoint("y", p.y, "x", p.x);
    if (p.z) check_same_or_disjoint("y", p.y, "z", *p.z);
    if (a.group_size < 0) fail_argument("group_size is ", a.group_size, "; expected 0 (one group) or a positive divisor of dim ", p.dim);
    p.group_size = a.group_size == 0 ? p.dim : a.group_size;
    if (p.dim > 0 && p.dim % p.group_size != 0)
        fail_argument("group_size ", p.group_size, " does not divide dim ", p.dim, " (argument 'x' has shape ", p.x.shape_string(), ")");
    if (!(a.eps >= 0.0f)) fail_argument("eps is ", a.eps, "; expected a non-negative number");
    p.eps = a.eps;
    p.norm_before_gate = a.norm_before_gate != 0;
    return p;
}

}  // namespace mamba

extern "C" mamba_status mamba_gated_rms_norm(mamba_context * context, const mamba_gated_rms_norm_args * args) {
    return MAMBA_GUARDED({
        mamba::check_not_null("context", context);
        mamba::check_not_null("args", args);
        const auto p = mamba::validate_gated_rms_norm(*context, *args);
        if (p.rows == 0 || p.dim == 0) return;
        if (context->is_cuda()) MAMBA_CUDA_ONLY(mamba::cuda::gated_rms_norm(*context, p));
        else mamba::cpu::gated_rms_norm(*context, p);
    });
}
