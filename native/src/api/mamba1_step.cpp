#include "ops/mamba1_step.h"

#include <string>
#include <utility>
#include <vector>

#include "api/step_parts.h"
#include "core/context.h"
#include "core/dl_view.h"

namespace mamba {

Mamba1StepParams validate_mamba1_step(const mamba_context & ctx, const mamba_mamba1_step_args & a) {
    Mamba1StepParams p;
    // The sizes the scratch views need: rank from dt_proj_weight, dstate from A, the batch from x.
    const Tensor x = required(ctx, "x", a.x);
    check_ndim("x", x, 2);
    const Tensor dt_w = required(ctx, "dt_proj_weight", a.dt_proj_weight);
    check_ndim("dt_proj_weight", dt_w, 2);
    const Tensor A = required(ctx, "A", a.A);
    check_ndim("A", A, 2);
    const Tensor conv_w = required(ctx, "conv_weight", a.conv_weight);
    check_ndim("conv_weight", conv_w, 2);
    p.batch = x.size(0);
    p.hidden = x.size(1);
    p.inner = conv_w.size(0);
    p.width = conv_w.size(1);
    p.rank = dt_w.size(1);
    p.dstate = A.size(1);
    const Tensor xz = required(ctx, "xz", a.xz);
    check_shape("xz", xz, {p.batch, 2 * p.inner});
    const Tensor xdbl = required(ctx, "xdbl", a.xdbl);
    check_shape("xdbl", xdbl, {p.batch, p.rank + 2 * p.dstate});
    if (p.rank < 1) fail_argument("argument 'dt_proj_weight' has shape ", dt_w.shape_string(), ": the rank (its second dimension) must be at least 1");

    p.pre_norm = validate_pre_norm(ctx, a);
    mamba_linear_conv1d_update_args in{};
    in.x = p.pre_norm ? a.pre_normed : a.x;
    in.weight = a.in_proj_weight;
    in.bias = a.in_proj_bias;
    in.y = a.xz;
    in.conv_offset = 0;
    in.conv_state = a.conv_state;
    in.conv_weight = a.conv_weight;
    in.conv_bias = a.conv_bias;
    in.conv_y = a.xc;
    in.silu = 1;
    p.in_proj = in_part("in_proj (mamba_linear_conv1d_update)", [&] { return validate_linear_conv1d_update(ctx, in); });
    if (p.in_proj.conv.dim != p.inner || p.in_proj.linear.out_features != 2 * p.inner)
        fail_argument("argument 'in_proj_weight' has shape ", p.in_proj.linear.weight.shape_string(), ": it must have 2 * inner = ", 2 * p.inner,
                      " outputs (inner = conv_weight's first dimension)");

    const mamba_linear_args xp{a.xc, a.x_proj_weight, nullptr, a.xdbl};
    p.x_proj = in_part("x_proj (mamba_linear)", [&] { return validate_linear(ctx, xp); });

    // dt_low, B and C: columns of xdbl; z: the second half of xz.
    const int64_t s0 = xdbl.stride[0], s1 = xdbl.stride[1];
    const DLView dt_low(a.xdbl, {p.batch, p.rank}, {s0, s1}, 0);
    const DLView B(a.xdbl, {p.batch, 1, p.dstate}, {s0, p.dstate * s1, s1}, p.rank * s1);
    const DLView C(a.xdbl, {p.batch, 1, p.dstate}, {s0, p.dstate * s1, s1}, (p.rank + p.dstate) * s1);
    const DLView z(a.xz, {p.batch, p.inner}, {xz.stride[0], xz.stride[1]}, p.inner * xz.stride[1]);
    mamba_selective_state_update_args up{};
    up.state = a.ssm_state;
    up.x = a.xc;
    up.dt = &dt_low.dl;
    up.A = a.A;
    up.B = &B.dl;
    up.C = &C.dl;
    up.D = a.D;
    up.z = &z.dl;
    up.dt_bias = a.dt_bias;
    up.y = a.y_inner;
    up.dt_softplus = 1;
    up.dt_proj_weight = a.dt_proj_weight;
    p.update = in_part("the state update (mamba_selective_state_update)", [&] { return validate_selective_state_update(ctx, up); });

    const mamba_linear_args out{a.y_inner, a.out_proj_weight, a.out_proj_bias, a.y};
    p.out_proj = in_part("out_proj (mamba_linear)", [&] { return validate_linear(ctx, out); });
    if (p.out_proj.out_features != p.hidden)
        fail_argument("argument 'out_proj_weight' has shape ", p.out_proj.weight.shape_string(), ": it must have hidden = ", p.hidden,
                      " outputs (x's second dimension)");

    // Written tensors against everything the step reads and against each other.
    NamedTensors written = {
        {"conv_state", &p.in_proj.conv.conv_state}, {"ssm_state", &p.update.state}, {"y", &p.out_proj.y}, {"xz", &p.in_proj.linear.y},
        {"xc", &p.in_proj.conv.y},                  {"xdbl", &p.x_proj.y},          {"y_inner", &p.update.y}};
    NamedTensors read = {
        {"x", p.pre_norm ? &p.pre_norm->x : &p.in_proj.linear.x},           {"in_proj_weight", &p.in_proj.linear.weight}, {"conv_weight", &p.in_proj.conv.weight},
        {"x_proj_weight", &p.x_proj.weight},  {"dt_proj_weight", &*p.update.dt_proj_weight}, {"A", &p.update.A},
        {"out_proj_weight", &p.out_proj.weight}};
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

extern "C" mamba_status mamba_mamba1_step(mamba_context * context, const mamba_mamba1_step_args * args) {
    return MAMBA_GUARDED({
        mamba::check_not_null("context", context);
        mamba::check_not_null("args", args);
        const auto p = mamba::validate_mamba1_step(*context, *args);
        if (p.batch == 0) return;
        if (context->is_cuda()) {
            MAMBA_CUDA_ONLY(mamba::cuda::mamba1_step(*context, p));
        } else {
            if (p.pre_norm) mamba::cpu::rms_norm(*context, *p.pre_norm);
            mamba::cpu::linear(*context, p.in_proj.linear);
            mamba::cpu::causal_conv1d_update(*context, p.in_proj.conv);
            mamba::cpu::linear(*context, p.x_proj);
            mamba::cpu::selective_state_update(*context, p.update);
            mamba::cpu::linear(*context, p.out_proj);
        }
    });
}
