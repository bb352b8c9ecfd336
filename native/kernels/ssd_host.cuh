// Host-side helpers shared by the Mamba-2 SSD forward (ssd.cu and its chunked kernels) and its decode step (ssd_state_update.cu).
#pragma once

#include <cmath>
#include <optional>
#include <utility>
#include <vector>

#include "common.cuh"

namespace mamba::cuda::ssd_host {

// dt_min = 0 with dt_max = +inf means no limit at all: a negative dt (no softplus) is used as it is.
inline bool dt_is_clamped(float dt_min, float dt_max) { return !(dt_min == 0.0f && std::isinf(dt_max) && dt_max > 0.0f); }

// Whether the tensor's innermost dimension (index `outer`) is contiguous and `extent` long, a whole number of 8-element
// (16-byte for 16-bit types) vectors, with every outer stride a multiple of 8 and the data 16-byte aligned: rows the
// kernels read as whole vectors.
inline bool rows_of_8(const AnyPtr & t, const int64_t * strides, int outer, int64_t extent) {
    bool ok = aligned16(t.p) && strides[outer] == 1 && extent % 8 == 0;
    for (int i = 0; i < outer; ++i) ok = ok && strides[i] % 8 == 0;
    return ok;
}

// Float32 parameter tensors are read directly; anything else is converted into the workspace.
struct F32Params {
    WorkspaceCarver carver;
    std::vector<std::pair<const Tensor *, size_t>> todo;
    void plan(const std::optional<Tensor> & t) {
        if (t && t->dtype != DType::F32) todo.push_back({&*t, carver.add(size_t(t->numel()) * 4)});
    }
    void plan(const Tensor & t) {
        if (t.dtype != DType::F32) todo.push_back({&t, carver.add(size_t(t.numel()) * 4)});
    }
    char * ws = nullptr;
    void run(mamba_context & ctx) { ws = carver.take(ctx); }
    Tensor get(mamba_context & ctx, const Tensor & t) {
        for (auto & [src, off] : todo)
            if (src == &t) {
                Tensor v = contiguous_like(ws + off, DType::F32, t);
                copy_tensor(ctx, t, v);
                return v;
            }
        return t;
    }
};

// Fills what the forward's and the decode step's kernel arguments share (x, dt, B, C, y, z, A, D,
// dt_bias, the sizes and the dt transform) from the op's parameters. A, D and dt_bias that are not
// float32 are converted into f32's workspace, which must outlive the launch. extra_bytes more are
// carved from the same workspace (one allocation, so a larger request never moves the parameter
// copies, and a captured graph reuses it); returns their offset from f32.ws.
template <class Args, class Params>
size_t fill_shared_args(mamba_context & ctx, F32Params & f32, const Params & p, Args & a, size_t extra_bytes = 0) {
    f32.plan(p.A);
    f32.plan(p.D);
    f32.plan(p.dt_bias);
    const size_t extra_offset = extra_bytes > 0 ? f32.carver.add(extra_bytes) : 0;
    f32.run(ctx);
    a.x = any(p.x);
    copy_strides(a.x_s, p.x);
    a.dt = any(p.dt);
    copy_strides(a.dt_s, p.dt);
    a.B = any(p.B);
    copy_strides(a.B_s, p.B);
    a.C = any(p.C);
    copy_strides(a.C_s, p.C);
    a.y = any(p.y);
    copy_strides(a.y_s, p.y);
    a.has_z = p.z.has_value();
    if (a.has_z) {
        a.z = any(*p.z);
        copy_strides(a.z_s, *p.z);
    }
    const Tensor A = f32.get(ctx, p.A);
    a.A = A.ptr<float>();
    a.A_s = A.stride[0];
    a.has_D = p.D.has_value();
    a.D_per_channel = p.D_per_channel;
    if (a.has_D) {
        const Tensor D = f32.get(ctx, *p.D);
        a.D = D.ptr<float>();
        a.D_s0 = D.stride[0];
        a.D_s1 = D.ndim > 1 ? D.stride[1] : 0;
    }
    a.has_bias = p.dt_bias.has_value();
    if (a.has_bias) {
        const Tensor bias = f32.get(ctx, *p.dt_bias);
        a.dt_bias = bias.ptr<float>();
        a.bias_s = bias.stride[0];
    }
    a.heads = p.heads;
    a.headdim = p.headdim;
    a.dstate = p.dstate;
    a.heads_per_group = p.heads / p.groups;
    a.dt_min = p.dt_min;
    a.dt_max = p.dt_max;
    a.softplus = p.dt_softplus;
    a.clamp = dt_is_clamped(p.dt_min, p.dt_max);
    return extra_offset;
}

}  // namespace mamba::cuda::ssd_host
