#include "ops/linear_conv1d_update.h"

#include "core/context.h"

namespace mamba {

LinearConv1dUpdateParams validate_linear_conv1d_update(const mamba_context & ctx, const mamba_linear_conv1d_update_args & a) {
    LinearConv1dUpdateParams p;
    const mamba_linear_args linear{a.x, a.weight, a.bias, a.y};
    p.linear = validate_linear(ctx, linear);
    const LinearParams & l = p.linear;
    CausalConv1dUpdateParams & c = p.conv;
    c.batch = l.rows;
    c.weight = required(ctx, "conv_weight", a.conv_weight);
    check_ndim("conv_weight", c.weight, 2);
    c.dim = c.weight.size(0);
    c.width = check_conv_weight("conv_weight", c.weight, c.dim);
    if (a.conv_offset < 0 || a.conv_offset > l.out_features - c.dim)
        fail_argument("argument 'conv_offset' is ", a.conv_offset, ": the conv's ", c.dim, " channels (conv_weight's first dimension) from there pass y's ",
                      l.out_features, " columns");
    p.conv_offset = a.conv_offset;
    // The conv's input: y's columns [conv_offset, conv_offset + dim).
    c.x = l.y;
    c.x.data += a.conv_offset * l.y.stride[1] * int64_t(dtype_size(l.y.dtype));
    c.x.shape[1] = c.dim;
    c.bias = optional(ctx, "conv_bias", a.conv_bias);
    check_conv_bias("conv_bias", c.bias, c.dim);
    c.conv_state = required(ctx, "conv_state", a.conv_state);
    check_floating("conv_state", c.conv_state);
    check_shape("conv_state", c.conv_state, {l.rows, c.dim, c.width - 1});
    c.y = required(ctx, "conv_y", a.conv_y);
    check_floating("conv_y", c.y);
    check_shape("conv_y", c.y, {l.rows, c.dim});
    c.silu = a.silu != 0;
    // One kernel may write conv_state and conv_y while other blocks still read the projection's operands
    // and the filter, and write y.
    for (const auto & [name, written] : {std::pair<const char *, const Tensor *>{"conv_state", &c.conv_state}, {"conv_y", &c.y}}) {
        check_no_overlap(name, *written, "x", l.x);
        check_no_overlap(name, *written, "weight", l.weight);
        if (l.bias) check_no_overlap(name, *written, "bias", *l.bias);
        check_no_overlap(name, *written, "y", l.y);
        check_no_overlap(name, *written, "conv_weight", c.weight);
        if (c.bias) check_no_overlap(name, *written, "conv_bias", *c.bias);
    }
    check_no_overlap("conv_y", c.y, "conv_state", c.conv_state);
    // y is written while other blocks still read the filter.
    check_no_overlap("y", l.y, "conv_weight", c.weight);
    if (c.bias) check_no_overlap("y", l.y, "conv_bias", *c.bias);
    return p;
}

}  // namespace mamba

extern "C" mamba_status mamba_linear_conv1d_update(mamba_context * context, const mamba_linear_conv1d_update_args * args) {
    return MAMBA_GUARDED({
        mamba::check_not_null("context", context);
        mamba::check_not_null("args", args);
        const auto p = mamba::validate_linear_conv1d_update(*context, *args);
        if (p.linear.rows == 0 || p.linear.out_features == 0) return;
        if (context->is_cuda()) {
            MAMBA_CUDA_ONLY(mamba::cuda::linear_conv1d_update(*context, p));
        } else {
            mamba::cpu::linear(*context, p.linear);
            if (p.conv.dim > 0) mamba::cpu::causal_conv1d_update(*context, p.conv);
        }
    });
}
