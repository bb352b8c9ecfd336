#include "ops/mamba2_step.h"

#include <string>
#include <utility>
#include <vector>

#include "api/step_parts.h"
#include "core/context.h"
#include "core/dl_view.h"

namespace mamba {

Mamba2StepParams validate_mamba2_step(const mamba_context & ctx, const mamba_mamba2_step_args & a) {
    Mamba2StepParams p;
    // The sizes the scratch views need: inner from norm_weight, heads from A, dstate from ssm_state, the
    // conv's channels from conv_weight, the batch from x.
    const Tensor x = required(ctx, "x", a.x);
    check_ndim("x", x, 2);
    const Tensor norm_w = required(ctx, "norm_weight", a.norm_weight);
    check_ndim("norm_weight", norm_w, 1);
    const Tensor A = required(ctx, "A", a.A);
    check_ndim("A", A, 1);
    const Tensor ssm = required(ctx, "ssm_state", a.ssm_state);
    check_ndim("ssm_state", ssm, 4);
    const Tensor conv_w = required(ctx, "conv_weight", a.conv_weight);
    check_ndim("conv_weight", conv_w, 2);
    p.batch = x.size(0);
    p.hidden = x.size(1);
    p.inner = norm_w.size(0);
    p.heads = A.size(0);
    p.dstate = ssm.size(3);
    p.conv_dim = conv_w.size(0);
    p.width = conv_w.size(1);
    if (p.inner < 1) fail_argument("argument 'norm_weight' has shape ", norm_w.shape_string(), ": inner (its length) must be at least 1");
    if (p.heads < 1 || p.inner % p.heads != 0)
        fail_argument("argument 'A' has shape ", A.shape_string(), ": its length (heads) must divide inner = ", p.inner, " (norm_weight's length)");
    p.headdim = p.inner / p.heads;
    if (p.dstate < 1 || p.conv_dim <= p.inner || (p.conv_dim - p.inner) % (2 * p.dstate) != 0)
        fail_argument("argument 'conv_weight' has shape ", conv_w.shape_string(), ": its first dimension must be inner + 2 * groups * dstate (inner = ",
                      p.inner, ", dstate = ", p.dstate, ") for some groups >= 1");
    p.groups = (p.conv_dim - p.inner) / (2 * p.dstate);
    const int64_t proj_width = p.inner + p.conv_dim + p.heads;
    const Tensor proj = required(ctx, "proj", a.proj);
    check_shape("proj", proj, {p.batch, proj_width});
    const Tensor xbc = required(ctx, "xbc", a.xbc);
    check_shape("xbc", xbc, {p.batch, p.conv_dim});

    p.pre_norm = validate_pre_norm(ctx, a);
    mamba_linear_conv1d_update_args in{};
    in.x = p.pre_norm ? a.pre_normed : a.x;
    in.weight = a.in_proj_weight;
    in.bias = a.in_proj_bias;
    in.y = a.proj;
    in.conv_offset = p.inner;
    in.conv_state = a.conv_state;
    in.conv_weight = a.conv_weight;
    in.conv_bias = a.conv_bias;
    in.conv_y = a.xbc;
    in.silu = 1;
    p.in_proj = in_part("in_proj (mamba_linear_conv1d_update)", [&] { return validate_linear_conv1d_update(ctx, in); });

    // z, dt: columns of proj; x, B, C: columns of xbc.
    const int64_t ps0 = proj.stride[0], ps1 = proj.stride[1], xs0 = xbc.stride[0], xs1 = xbc.stride[1];
    const int64_t gn = p.groups * p.dstate;
    const DLView z(a.proj, {p.batch, p.inner}, {ps0, ps1}, 0);
    const DLView dt(a.proj, {p.batch, p.heads}, {ps0, ps1}, (p.inner + p.conv_dim) * ps1);
    const DLView xs(a.xbc, {p.batch, p.heads, p.headdim}, {xs0, p.headdim * xs1, xs1}, 0);
    const DLView B(a.xbc, {p.batch, p.groups, p.dstate}, {xs0, p.dstate * xs1, xs1}, p.inner * xs1);
    const DLView C(a.xbc, {p.batch, p.groups, p.dstate}, {xs0, p.dstate * xs1, xs1}, (p.inner + gn) * xs1);
    const Tensor y_inner = required(ctx, "y_inner", a.y_inner);
    check_shape("y_inner", y_inner, {p.batch, p.inner});
    DLView y3(a.y_inner, {p.batch, p.heads, p.headdim}, {y_inner.stride[0], p.headdim * y_inner.stride[1], y_inner.stride[1]}, 0);
    mamba_ssd_state_update_args up{};
    up.state = a.ssm_state;
    up.x = &xs.dl;
    up.dt = &dt.dl;
    up.A = a.A;
    up.B = &B.dl;
    up.C = &C.dl;
    up.D = a.D;
    up.dt_bias = a.dt_bias;
    up.y = &y3.dl;
    up.dt_min = a.dt_min;
    up.dt_max = a.dt_max;
    up.dt_softplus = 1;
    p.update = in_part("the state update (mamba_ssd_state_update)", [&] { return validate_ssd_state_update(ctx, up); });

    mamba_gated_rms_norm_args nm{};
    nm.x = a.y_inner;
    nm.z = &z.dl;
    nm.weight = a.norm_weight;
    nm.y = a.normed;
    nm.group_size = a.norm_group_size;
    nm.eps = a.eps;
    nm.norm_before_gate = a.norm_before_gate;
    p.norm = in_part("the gated norm (mamba_gated_rms_norm)", [&] { return validate_gated_rms_norm(ctx, nm); });

    const mamba_linear_args out{a.normed, a.out_proj_weight, a.out_proj_bias, a.y};
    p.out_proj = in_part("out_proj (mamba_linear)", [&] { return validate_linear(ctx, out); });
    if (p.out_proj.out_features != p.hidden)
        fail_argument("argument 'out_proj_weight' has shape ", p.out_proj.weight.shape_string(), ": it must have hidden = ", p.hidden,
                      " outputs (x's second dimension)");

    // Written tensors against everything the step reads and against each other.
    NamedTensors written = {
        {"conv_state", &p.in_proj.conv.conv_state}, {"ssm_state", &p.update.state}, {"y", &p.out_proj.y}, {"proj", &p.in_proj.linear.y},
        {"xbc", &p.in_proj.conv.y},                 {"y_inner", &p.norm.x},         {"normed", &p.norm.y}};
    NamedTensors read = {
        {"x", p.pre_norm ? &p.pre_norm->x : &p.in_proj.linear.x}, {"in_proj_weight", &p.in_proj.linear.weight}, {"conv_weight", &p.in_proj.conv.weight},
        {"A", &p.update.A},         {"norm_weight", &p.norm.weight},               {"out_proj_weight", &p.out_proj.weight}};
    if (p.in_proj.linear.bias) read.emplace_back("in_proj_bias", &*p.in_proj.linear.bias);
    if (p.in_proj.conv.bias) read.emplace_back("conv_bias", &*p.in_proj.conv.bias);
    if (p.update.dt_bias) read.emplace_back("dt_bias", &*p.update.dt_bias);
    if (p.update.D) read.emplace_back("D", &*p.update.D);
    if (p.out_proj.bias) read.emplace_back("out_proj_bias", &*p.out_proj.bias);
    add_pre_norm_tensors(p.pre_norm, written, read);
    check_written_apart(written, read);
    return p;
}

}  // namespace mamba

extern "C" mamba_status mamba_mamba2_step(mamba_context * context, const mamba_mamba2_step_args * args) {
    return MAMBA_GUARDED({
        mamba::check_not_null("context", context);
        mamba::check_not_null("args", args);
        const auto p = mamba::validate_mamba2_step(*context, *args);
        if (p.batch == 0) return;
        if (context->is_cuda()) {
            MAMBA_CUDA_ONLY(mamba::cuda::mamba2_step(*context, p));
        } else {
            if (p.pre_norm) mamba::cpu::rms_norm(*context, *p.pre_norm);
            mamba::cpu::linear(*context, p.in_proj.linear);
            mamba::cpu::causal_conv1d_update(*context, p.in_proj.conv);
            mamba::cpu::ssd_state_update(*context, p.update);
            mamba::cpu::gated_rms_norm(*context, p.norm);
            mamba::cpu::linear(*context, p.out_proj);
        }
    });
}
