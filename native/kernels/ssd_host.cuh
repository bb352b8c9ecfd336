// Host-side helpers shared by the Mamba-2 SSD forward (ssd.cu) and its decode step (ssd_state_update.cu).
#pragma once

#include <cmath>
#include <optional>
#include <utility>
#include <vector>

#include "common.cuh"

namespace mamba::cuda::ssd_host {

// dt_min = 0 with dt_max = +inf means no limit at all: a negative dt (no softplus) is used as it is.
inline bool dt_is_clamped(float dt_min, float dt_max) { return !(dt_min == 0.0f && std::isinf(dt_max) && dt_max > 0.0f); }

// The first N strides of t, in the fixed-size arrays the kernel argument structs carry.
template <int N>
void copy_strides(int64_t (&dst)[N], const Tensor & t) {
    for (int i = 0; i < N; ++i) dst[i] = t.stride[i];
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

}  // namespace mamba::cuda::ssd_host
