#include "ops/selective_scan.h"

#include "core/context.h"

namespace mamba {

namespace {

// The state size comes from one argument's shape; above MAMBA_MAX_DSTATE no backend has room for it.
void check_dstate(const char * name, const Tensor & t, int64_t dstate) {
    if (dstate < 1) fail_argument("argument '", name, "' has shape ", t.shape_string(), ": dstate must be at least 1");
    if (dstate > MAMBA_MAX_DSTATE)
        fail(MAMBA_STATUS_UNSUPPORTED, "argument '", name, "' has shape ", t.shape_string(), ": dstate ", dstate, " is above the largest supported, ",
             MAMBA_MAX_DSTATE);
}

// B/C of shape (batch, groups, dstate, len) or (batch, groups, dstate): channels are split evenly over groups.
int64_t check_groups(const char * name, const Tensor & t, int64_t dim) {
    const int64_t groups = t.size(1);
    if (groups < 1 || dim % groups != 0)
        fail_argument("argument '", name, "' has shape ", t.shape_string(), ": its ", groups, " groups do not divide dim ", dim, " evenly");
    return groups;
}

void check_disjoint(const char * out_name, const Tensor & out, std::initializer_list<std::pair<const char *, const Tensor *>> others) {
    for (const auto & [name, t] : others)
        if (t) check_no_overlap(out_name, out, name, *t);
}

bool same_view(const Tensor & a, const Tensor & b) {
    if (a.data != b.data || a.ndim != b.ndim) return false;
    for (int i = 0; i < a.ndim; ++i)
        if (a.shape[i] != b.shape[i] || (a.shape[i] > 1 && a.stride[i] != b.stride[i])) return false;
    return true;
}

}  // namespace

SelectiveScanParams validate_selective_scan(const mamba_context & ctx, const mamba_selective_scan_args & a) {
    SelectiveScanParams p;
    p.u = required(ctx, "u", a.u);
    check_floating("u", p.u);
    check_ndim("u", p.u, 3);
    p.batch = p.u.size(0);
    p.dim = p.u.size(1);
    p.len = p.u.size(2);
    p.delta = required(ctx, "delta", a.delta);
    check_floating("delta", p.delta);
    check_shape("delta", p.delta, {p.batch, p.dim, p.len});
    p.A = required(ctx, "A", a.A);
    check_dtype("A", p.A, DType::F32);
    check_shape("A", p.A, {p.dim, -1});
    p.dstate = p.A.size(1);
    check_dstate("A", p.A, p.dstate);
    p.B = required(ctx, "B", a.B);
    check_floating("B", p.B);
    if (p.B.ndim == 4) {
        check_shape("B", p.B, {p.batch, -1, p.dstate, p.len});
        p.groups = check_groups("B", p.B, p.dim);
        p.variable_bc = true;
    } else if (p.B.ndim == 2) {
        check_shape("B", p.B, {p.dim, p.dstate});
        p.groups = 1;
        p.variable_bc = false;
    } else {
        fail_argument("argument 'B' has shape ", p.B.shape_string(), ", expected (batch, groups, dstate, len) = (", p.batch, ", *, ", p.dstate,
                      ", ", p.len, ") or (dim, dstate) = (", p.dim, ", ", p.dstate, ")");
    }
    p.C = required(ctx, "C", a.C);
    check_floating("C", p.C);
    // C has B's kind: both input-dependent with the same groups, or both time-invariant.
    if (p.variable_bc) check_shape("C", p.C, {p.batch, p.groups, p.dstate, p.len});
    else check_shape("C", p.C, {p.dim, p.dstate});
    p.D = optional(ctx, "D", a.D);
    if (p.D) {
        check_dtype("D", *p.D, DType::F32);
        check_shape("D", *p.D, {p.dim});
    }
    p.z = optional(ctx, "z", a.z);
    if (p.z) {
        check_floating("z", *p.z);
        check_shape("z", *p.z, {p.batch, p.dim, p.len});
    }
    p.delta_bias = optional(ctx, "delta_bias", a.delta_bias);
    if (p.delta_bias) {
        check_dtype("delta_bias", *p.delta_bias, DType::F32);
        check_shape("delta_bias", *p.delta_bias, {p.dim});
    }
    p.initial_state = optional(ctx, "initial_state", a.initial_state);
    if (p.initial_state) {
        check_dtype("initial_state", *p.initial_state, DType::F32);
        check_shape("initial_state", *p.initial_state, {p.batch, p.dim, p.dstate});
    }
    p.y = required(ctx, "y", a.y);
    check_floating("y", p.y);
    check_shape("y", p.y, {p.batch, p.dim, p.len});
    p.final_state = optional(ctx, "final_state", a.final_state);
    if (p.final_state) {
        check_dtype("final_state", *p.final_state, DType::F32);
        check_shape("final_state", *p.final_state, {p.batch, p.dim, p.dstate});
    }
    p.delta_softplus = a.delta_softplus != 0;

    // Outputs are written while inputs are still being read: they must not share memory, except that
    // final_state may be exactly the initial_state view (each state is read before it is overwritten).
    check_disjoint("y", p.y,
                   {{"u", &p.u}, {"delta", &p.delta}, {"A", &p.A}, {"B", &p.B}, {"C", &p.C}, {"D", ptr(p.D)}, {"z", ptr(p.z)},
                    {"delta_bias", ptr(p.delta_bias)}, {"initial_state", ptr(p.initial_state)}, {"final_state", ptr(p.final_state)}});
    if (p.final_state) {
        check_disjoint("final_state", *p.final_state,
                       {{"u", &p.u}, {"delta", &p.delta}, {"A", &p.A}, {"B", &p.B}, {"C", &p.C}, {"D", ptr(p.D)}, {"z", ptr(p.z)},
                        {"delta_bias", ptr(p.delta_bias)}});
        if (p.initial_state && same_memory(*p.final_state, *p.initial_state) && !same_view(*p.final_state, *p.initial_state))
            fail_argument("arguments 'final_state' and 'initial_state' overlap in memory without being the same view");
    }
    return p;
}

SelectiveStateUpdateParams validate_selective_state_update(const mamba_context & ctx, const mamba_selective_state_update_args & a) {
    SelectiveStateUpdateParams p;
    p.state = required(ctx, "state", a.state);
    check_dtype("state", p.state, DType::F32);
    check_ndim("state", p.state, 3);
    p.batch = p.state.size(0);
    p.dim = p.state.size(1);
    p.dstate = p.state.size(2);
    check_dstate("state", p.state, p.dstate);
    p.x = required(ctx, "x", a.x);
    check_floating("x", p.x);
    check_shape("x", p.x, {p.batch, p.dim});
    // With the low-rank projection, dt is its (batch, dt_rank) input and dt_proj_weight gives dt_rank.
    p.dt_proj_weight = optional(ctx, "dt_proj_weight", a.dt_proj_weight);
    if (p.dt_proj_weight) {
        check_floating("dt_proj_weight", *p.dt_proj_weight);
        check_shape("dt_proj_weight", *p.dt_proj_weight, {p.dim, -1});
        p.dt_rank = p.dt_proj_weight->size(1);
        if (p.dt_rank < 1)
            fail_argument("argument 'dt_proj_weight' has shape ", p.dt_proj_weight->shape_string(), ": dt_rank must be at least 1");
    }
    p.dt = required(ctx, "dt", a.dt);
    check_floating("dt", p.dt);
    if (p.dt_proj_weight) {
        if (p.dt.ndim != 2 || p.dt.size(0) != p.batch || p.dt.size(1) != p.dt_rank)
            fail_argument("argument 'dt' has shape ", p.dt.shape_string(), ", expected (batch, dt_rank) = (", p.batch, ", ", p.dt_rank,
                          ") as 'dt_proj_weight' has shape ", p.dt_proj_weight->shape_string());
    } else {
        check_shape("dt", p.dt, {p.batch, p.dim});
    }
    p.A = required(ctx, "A", a.A);
    check_dtype("A", p.A, DType::F32);
    check_shape("A", p.A, {p.dim, p.dstate});
    p.B = required(ctx, "B", a.B);
    check_floating("B", p.B);
    check_shape("B", p.B, {p.batch, -1, p.dstate});
    p.groups = check_groups("B", p.B, p.dim);
    p.C = required(ctx, "C", a.C);
    check_floating("C", p.C);
    check_shape("C", p.C, {p.batch, p.groups, p.dstate});
    p.D = optional(ctx, "D", a.D);
    if (p.D) {
        check_dtype("D", *p.D, DType::F32);
        check_shape("D", *p.D, {p.dim});
    }
    p.z = optional(ctx, "z", a.z);
    if (p.z) {
        check_floating("z", *p.z);
        check_shape("z", *p.z, {p.batch, p.dim});
    }
    p.dt_bias = optional(ctx, "dt_bias", a.dt_bias);
    if (p.dt_bias) {
        check_dtype("dt_bias", *p.dt_bias, DType::F32);
        check_shape("dt_bias", *p.dt_bias, {p.dim});
    }
    p.y = required(ctx, "y", a.y);
    check_floating("y", p.y);
    check_shape("y", p.y, {p.batch, p.dim});
    p.dt_softplus = a.dt_softplus != 0;

    check_disjoint("state", p.state,
                   {{"x", &p.x}, {"dt", &p.dt}, {"A", &p.A}, {"B", &p.B}, {"C", &p.C}, {"D", ptr(p.D)}, {"z", ptr(p.z)},
                    {"dt_bias", ptr(p.dt_bias)}, {"dt_proj_weight", ptr(p.dt_proj_weight)}, {"y", &p.y}});
    check_disjoint("y", p.y,
                   {{"x", &p.x}, {"dt", &p.dt}, {"A", &p.A}, {"B", &p.B}, {"C", &p.C}, {"D", ptr(p.D)}, {"z", ptr(p.z)}, {"dt_bias", ptr(p.dt_bias)},
                    {"dt_proj_weight", ptr(p.dt_proj_weight)}});
    return p;
}

}  // namespace mamba

extern "C" mamba_status mamba_selective_scan(mamba_context * context, const mamba_selective_scan_args * args) {
    return MAMBA_GUARDED({
        mamba::check_not_null("context", context);
        mamba::check_not_null("args", args);
        const auto p = mamba::validate_selective_scan(*context, *args);
        // With len = 0 there is still a final state to write (the initial state, or zeros).
        if (p.batch == 0 || p.dim == 0 || (p.len == 0 && !p.final_state)) return;
        if (context->is_cuda()) MAMBA_CUDA_ONLY(mamba::cuda::selective_scan(*context, p));
        else mamba::cpu::selective_scan(*context, p);
    });
}

extern "C" mamba_status mamba_selective_state_update(mamba_context * context, const mamba_selective_state_update_args * args) {
    return MAMBA_GUARDED({
        mamba::check_not_null("context", context);
        mamba::check_not_null("args", args);
        const auto p = mamba::validate_selective_state_update(*context, *args);
        if (p.batch == 0 || p.dim == 0) return;
        if (context->is_cuda()) MAMBA_CUDA_ONLY(mamba::cuda::selective_state_update(*context, p));
        else mamba::cpu::selective_state_update(*context, p);
    });
}
