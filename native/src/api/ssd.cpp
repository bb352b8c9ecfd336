#include "ops/ssd.h"

#include <cmath>

#include "core/context.h"

namespace mamba {

namespace {

void check_dt_limit(float dt_min, float dt_max) {
    if (std::isnan(dt_min)) fail_argument("dt_min is NaN; use 0 for no lower limit");
    if (!(dt_max > 0.0f)) fail_argument("dt_max is ", dt_max, "; expected a positive limit (INFINITY for none)");
    if (dt_min > dt_max) fail_argument("dt_min (", dt_min, ") is greater than dt_max (", dt_max, ")");
}

void check_dstate(const char * name, int64_t dstate) {
    if (dstate < 1) fail_argument("argument '", name, "' has dstate 0; expected at least 1");
    if (dstate > MAMBA_MAX_DSTATE)
        fail(MAMBA_STATUS_UNSUPPORTED, "argument '", name, "' has dstate ", dstate, "; at most ", MAMBA_MAX_DSTATE, " is supported");
}

void check_groups(const char * name, int64_t groups, int64_t heads) {
    if (groups < 1) fail_argument("argument '", name, "' has 0 groups; expected at least 1");
    if (heads % groups != 0) fail_argument("argument '", name, "' has ", groups, " groups, which do not divide the ", heads, " heads");
}

// D is (heads) or (heads, headdim); returns whether it is per channel.
bool check_D(const Tensor & D, int64_t heads, int64_t headdim) {
    check_dtype("D", D, DType::F32);
    if (D.ndim == 2) {
        check_shape("D", D, {heads, headdim});
        return true;
    }
    check_shape("D", D, {heads});
    return false;
}

// Reads the (possibly strided, possibly device-resident) integer offsets to the host.
std::vector<int64_t> read_offsets(mamba_context & ctx, const Tensor & t) {
    const int64_t n = t.size(0);
    const size_t es = dtype_size(t.dtype);
    std::vector<char> host;
    const char * base = t.data;
    int64_t lo = 0;
    if (ctx.is_cuda()) {
        // Copy the span the view touches, then index it on the host.
        int64_t hi = 0;
        if (n > 0) (t.stride[0] < 0 ? lo : hi) = (n - 1) * t.stride[0];
        host.resize(size_t(hi - lo + 1) * es);
        MAMBA_CUDA_ONLY(cuda::memcpy(ctx, host.data(), t.data + lo * int64_t(es), host.size(), MAMBA_MEMCPY_DEVICE_TO_HOST));
        base = host.data();
    }
    std::vector<int64_t> out(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
        const char * p = base + (i * t.stride[0] - lo) * int64_t(es);
        out[size_t(i)] = t.dtype == DType::I32 ? int64_t(*reinterpret_cast<const int32_t *>(p)) : *reinterpret_cast<const int64_t *>(p);
    }
    return out;
}

void check_cu_seqlens(const std::vector<int64_t> & c, int64_t len) {
    if (c.empty()) fail_argument("argument 'cu_seqlens' is empty; expected (nseq + 1) offsets starting at 0");
    if (c[0] != 0) fail_argument("argument 'cu_seqlens' starts at ", c[0], "; expected 0");
    for (size_t i = 1; i < c.size(); ++i)
        if (c[i] <= c[i - 1])
            fail_argument("argument 'cu_seqlens' is not increasing: entry ", i, " is ", c[i], " after ", c[i - 1]);
    if (c.back() != len) fail_argument("argument 'cu_seqlens' ends at ", c.back(), "; expected the length ", len, " of 'x'");
}

// An output may alias an input exactly (same memory and layout), but not partially.
bool same_view(const Tensor & a, const Tensor & b) {
    if (a.data != b.data || a.dtype != b.dtype || a.ndim != b.ndim) return false;
    for (int i = 0; i < a.ndim; ++i)
        if (a.shape[i] != b.shape[i] || (a.shape[i] > 1 && a.stride[i] != b.stride[i])) return false;
    return true;
}

}  // namespace

SsdParams validate_ssd(mamba_context & ctx, const mamba_ssd_args & a) {
    SsdParams p;
    p.x = required(ctx, "x", a.x);
    check_floating("x", p.x);
    check_ndim("x", p.x, 4);
    p.batch = p.x.size(0);
    p.len = p.x.size(1);
    p.heads = p.x.size(2);
    p.headdim = p.x.size(3);

    p.dt = required(ctx, "dt", a.dt);
    check_floating("dt", p.dt);
    check_shape("dt", p.dt, {p.batch, p.len, p.heads});
    p.A = required(ctx, "A", a.A);
    check_dtype("A", p.A, DType::F32);
    check_shape("A", p.A, {p.heads});

    p.B = required(ctx, "B", a.B);
    check_floating("B", p.B);
    check_shape("B", p.B, {p.batch, p.len, -1, -1});
    p.groups = p.B.size(2);
    p.dstate = p.B.size(3);
    check_groups("B", p.groups, p.heads);
    check_dstate("B", p.dstate);
    p.C = required(ctx, "C", a.C);
    check_floating("C", p.C);
    check_shape("C", p.C, {p.batch, p.len, p.groups, p.dstate});

    if ((p.D = optional(ctx, "D", a.D))) p.D_per_channel = check_D(*p.D, p.heads, p.headdim);
    if ((p.z = optional(ctx, "z", a.z))) {
        check_floating("z", *p.z);
        check_shape("z", *p.z, {p.batch, p.len, p.heads, p.headdim});
    }
    if ((p.dt_bias = optional(ctx, "dt_bias", a.dt_bias))) {
        check_dtype("dt_bias", *p.dt_bias, DType::F32);
        check_shape("dt_bias", *p.dt_bias, {p.heads});
    }

    p.nseq = p.batch;
    if ((p.cu_seqlens = optional(ctx, "cu_seqlens", a.cu_seqlens))) {
        check_integer("cu_seqlens", *p.cu_seqlens);
        check_ndim("cu_seqlens", *p.cu_seqlens, 1);
        if (p.batch != 1) fail_argument("argument 'cu_seqlens' needs batch 1, but 'x' has batch ", p.batch);
        p.seq_starts = read_offsets(ctx, *p.cu_seqlens);
        check_cu_seqlens(p.seq_starts, p.len);
        p.nseq = int64_t(p.seq_starts.size()) - 1;
    }
    if ((p.initial_states = optional(ctx, "initial_states", a.initial_states))) {
        check_dtype("initial_states", *p.initial_states, DType::F32);
        check_shape("initial_states", *p.initial_states, {p.nseq, p.heads, p.headdim, p.dstate});
    }

    p.y = required(ctx, "y", a.y);
    check_floating("y", p.y);
    check_shape("y", p.y, {p.batch, p.len, p.heads, p.headdim});
    check_no_overlap("y", p.y, "x", p.x);
    check_no_overlap("y", p.y, "dt", p.dt);
    check_no_overlap("y", p.y, "B", p.B);
    check_no_overlap("y", p.y, "C", p.C);
    if (p.z) check_no_overlap("y", p.y, "z", *p.z);
    if ((p.final_states = optional(ctx, "final_states", a.final_states))) {
        const Tensor & f = *p.final_states;
        check_dtype("final_states", f, DType::F32);
        check_shape("final_states", f, {p.nseq, p.heads, p.headdim, p.dstate});
        check_no_overlap("final_states", f, "y", p.y);
        check_no_overlap("final_states", f, "x", p.x);
        check_no_overlap("final_states", f, "B", p.B);
        check_no_overlap("final_states", f, "C", p.C);
        check_no_overlap("final_states", f, "dt", p.dt);
        if (p.z) check_no_overlap("final_states", f, "z", *p.z);
        if (p.initial_states && !same_view(f, *p.initial_states)) check_no_overlap("final_states", f, "initial_states", *p.initial_states);
    }

    p.chunk_size = a.chunk_size == 0 ? 256 : a.chunk_size;
    if (p.chunk_size < 16 || p.chunk_size > 512 || (p.chunk_size & (p.chunk_size - 1)) != 0)
        fail_argument("chunk_size is ", a.chunk_size, "; expected a power of two from 16 to 512 (or 0 for 256)");
    check_dt_limit(a.dt_min, a.dt_max);
    p.dt_min = a.dt_min;
    p.dt_max = a.dt_max;
    p.dt_softplus = a.dt_softplus != 0;
    return p;
}

SsdStateUpdateParams validate_ssd_state_update(const mamba_context & ctx, const mamba_ssd_state_update_args & a) {
    SsdStateUpdateParams p;
    p.state = required(ctx, "state", a.state);
    check_dtype("state", p.state, DType::F32);
    check_ndim("state", p.state, 4);
    p.batch = p.state.size(0);
    p.heads = p.state.size(1);
    p.headdim = p.state.size(2);
    p.dstate = p.state.size(3);
    check_dstate("state", p.dstate);

    p.x = required(ctx, "x", a.x);
    check_floating("x", p.x);
    check_shape("x", p.x, {p.batch, p.heads, p.headdim});
    p.dt = required(ctx, "dt", a.dt);
    check_floating("dt", p.dt);
    check_shape("dt", p.dt, {p.batch, p.heads});
    p.A = required(ctx, "A", a.A);
    check_dtype("A", p.A, DType::F32);
    check_shape("A", p.A, {p.heads});
    p.B = required(ctx, "B", a.B);
    check_floating("B", p.B);
    check_shape("B", p.B, {p.batch, -1, p.dstate});
    p.groups = p.B.size(1);
    check_groups("B", p.groups, p.heads);
    p.C = required(ctx, "C", a.C);
    check_floating("C", p.C);
    check_shape("C", p.C, {p.batch, p.groups, p.dstate});

    if ((p.D = optional(ctx, "D", a.D))) p.D_per_channel = check_D(*p.D, p.heads, p.headdim);
    if ((p.z = optional(ctx, "z", a.z))) {
        check_floating("z", *p.z);
        check_shape("z", *p.z, {p.batch, p.heads, p.headdim});
    }
    if ((p.dt_bias = optional(ctx, "dt_bias", a.dt_bias))) {
        check_dtype("dt_bias", *p.dt_bias, DType::F32);
        check_shape("dt_bias", *p.dt_bias, {p.heads});
    }

    p.y = required(ctx, "y", a.y);
    check_floating("y", p.y);
    check_shape("y", p.y, {p.batch, p.heads, p.headdim});
    check_no_overlap("y", p.y, "state", p.state);
    check_no_overlap("y", p.y, "x", p.x);
    check_no_overlap("y", p.y, "dt", p.dt);
    check_no_overlap("y", p.y, "B", p.B);
    check_no_overlap("y", p.y, "C", p.C);
    if (p.z) check_no_overlap("y", p.y, "z", *p.z);
    check_no_overlap("state", p.state, "x", p.x);
    check_no_overlap("state", p.state, "B", p.B);
    check_no_overlap("state", p.state, "C", p.C);
    check_no_overlap("state", p.state, "dt", p.dt);
    if (p.z) check_no_overlap("state", p.state, "z", *p.z);

    check_dt_limit(a.dt_min, a.dt_max);
    p.dt_min = a.dt_min;
    p.dt_max = a.dt_max;
    p.dt_softplus = a.dt_softplus != 0;
    return p;
}

}  // namespace mamba

extern "C" mamba_status mamba_ssd(mamba_context * context, const mamba_ssd_args * args) {
    return MAMBA_GUARDED({
        mamba::check_not_null("context", context);
        mamba::check_not_null("args", args);
        const auto p = mamba::validate_ssd(*context, *args);
        if (p.nseq == 0 || p.heads == 0 || p.headdim == 0) return;
        if (context->is_cuda()) MAMBA_CUDA_ONLY(mamba::cuda::ssd(*context, p));
        else mamba::cpu::ssd(*context, p);
    });
}

extern "C" mamba_status mamba_ssd_state_update(mamba_context * context, const mamba_ssd_state_update_args * args) {
    return MAMBA_GUARDED({
        mamba::check_not_null("context", context);
        mamba::check_not_null("args", args);
        const auto p = mamba::validate_ssd_state_update(*context, *args);
        if (p.batch == 0 || p.heads == 0 || p.headdim == 0) return;
        if (context->is_cuda()) MAMBA_CUDA_ONLY(mamba::cuda::ssd_state_update(*context, p));
        else mamba::cpu::ssd_state_update(*context, p);
    });
}
