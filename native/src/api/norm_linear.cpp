#include "ops/norm_linear.h"

#include "core/context.h"

namespace mamba {

namespace {

// Runs a validation step, prefixing its error message with the part of the arguments it checks.
template <class F>
auto within(const char * part, F && validate) -> decltype(validate()) {
    try {
        return validate();
    } catch (const Error & e) {
        throw Error(e.status(), cat(part, ": ", e.what()));
    }
}

}  // namespace

NormLinearParams validate_norm_linear(const mamba_context & ctx, const mamba_norm_linear_args & a) {
    if ((a.rms_norm == nullptr) == (a.gated_rms_norm == nullptr))
        fail_argument("exactly one of 'rms_norm' and 'gated_rms_norm' must be set; ",
                      a.rms_norm == nullptr ? "neither is" : "both are");
    NormLinearParams p;
    const DLTensor * normed = nullptr;
    if (a.rms_norm) {
        p.rms = within("rms_norm", [&] { return validate_rms_norm(ctx, *a.rms_norm); });
        normed = a.rms_norm->y;
    } else {
        p.gated = within("gated_rms_norm", [&] { return validate_gated_rms_norm(ctx, *a.gated_rms_norm); });
        normed = a.gated_rms_norm->y;
    }
    mamba_linear_args linear{};
    linear.x = normed;
    linear.weight = a.weight;
    linear.bias = a.bias;
    linear.y = a.y;
    // The linear's x is the norm's y (validated above as the norm's output).
    p.linear = within("linear", [&] { return validate_linear(ctx, linear); });
    // y and the norm's outputs are written while every other tensor of the call is still being read.
    const Tensor & y = p.linear.y;
    if (p.rms) {
        check_no_overlap("y", y, "rms_norm.x", p.rms->x);
        check_no_overlap("y", y, "rms_norm.weight", p.rms->weight);
        if (p.rms->residual) check_no_overlap("y", y, "rms_norm.residual", *p.rms->residual);
        if (p.rms->residual_out) {
            check_no_overlap("y", y, "rms_norm.residual_out", *p.rms->residual_out);
            check_no_overlap("rms_norm.residual_out", *p.rms->residual_out, "weight", p.linear.weight);
            if (p.linear.bias) check_no_overlap("rms_norm.residual_out", *p.rms->residual_out, "bias", *p.linear.bias);
        }
    } else {
        check_no_overlap("y", y, "gated_rms_norm.x", p.gated->x);
        check_no_overlap("y", y, "gated_rms_norm.weight", p.gated->weight);
        if (p.gated->z) check_no_overlap("y", y, "gated_rms_norm.z", *p.gated->z);
    }
    const char * normed_name = p.rms ? "rms_norm.y" : "gated_rms_norm.y";
    check_no_overlap(normed_name, p.linear.x, "weight", p.linear.weight);
    if (p.linear.bias) check_no_overlap(normed_name, p.linear.x, "bias", *p.linear.bias);
    return p;
}

}  // namespace mamba

extern "C" mamba_status mamba_norm_linear(mamba_context * context, const mamba_norm_linear_args * args) {
    return MAMBA_GUARDED({
        mamba::check_not_null("context", context);
        mamba::check_not_null("args", args);
        const auto p = mamba::validate_norm_linear(*context, *args);
        if (p.linear.rows == 0) return;
        if (context->is_cuda()) MAMBA_CUDA_ONLY(mamba::cuda::norm_linear(*context, p));
        else mamba::cpu::norm_linear(*context, p);
    });
}
