// Host code the causal conv1d kernels share (conv1d.cu, conv1d_tiled.cu): binding a call's tensors to kernel arguments
// and picking the build of its dtype, filter width and options.
#pragma once

#include <cstdint>

#include "common.cuh"
#include "ops/causal_conv1d.h"

namespace mamba::cuda {

// Points the arguments every forward kernel takes at the filters, the bias and the initial state.
template <class Args>
void bind_filters_and_initial_state(const CausalConv1dParams & p, Args & a) {
    a.weight = any(p.weight);
    copy_strides(a.w_s, p.weight);
    if (p.bias) {
        a.bias = any(*p.bias);
        a.b_s = p.bias->stride[0];
    }
    a.has_init = p.initial_state.has_value();
    if (a.has_init) {
        a.init = any(*p.initial_state);
        copy_strides(a.i_s, *p.initial_state);
    }
}

// The arguments of the channels-contiguous kernels: x and y by batch and step strides (unit channel stride), the
// filters, the states, dim and len.
template <class Args>
void bind_channel_last_call(const CausalConv1dParams & p, Args & a) {
    a.x = p.x.data;
    a.y = p.y.data;
    a.x_batch = p.x.stride[0];
    a.x_step = p.x.stride[2];
    a.y_batch = p.y.stride[0];
    a.y_step = p.y.stride[2];
    bind_filters_and_initial_state(p, a);
    a.has_final = p.final_state.has_value();
    if (a.has_final) {
        a.fin = any(*p.final_state);
        copy_strides(a.f_s, *p.final_state);
    }
    a.dim = p.dim;
    a.len = p.len;
}

// A channels-contiguous view whose rows (steps) start on 16-byte boundaries, so that vec channels load as one vector.
inline bool vector_friendly(const Tensor & t, int64_t vec) {
    return t.stride[1] == 1 && aligned16(t.data) && t.stride[0] % vec == 0 && t.stride[2] % vec == 0;
}

template <class Launch, class T, int Width, class... Args>
void launch_conv_options(bool silu, bool bias, Args &... args) {
    if (silu) bias ? Launch::template run<T, Width, true, true>(args...) : Launch::template run<T, Width, true, false>(args...);
    else bias ? Launch::template run<T, Width, false, true>(args...) : Launch::template run<T, Width, false, false>(args...);
}

// Calls Launch::run<T, Width, Silu, Bias>(args...) for the build of the dtype (float32, float16, bfloat16), the filter
// width (2, 3, else 4) and the options; false, launching nothing, for another dtype.
template <class Launch, class... Args>
bool launch_conv_build(DType dtype, int width, bool silu, bool bias, Args &... args) {
    const auto widths = [&](auto type) {
        using T = decltype(type);
        switch (width) {
            case 2: launch_conv_options<Launch, T, 2>(silu, bias, args...); break;
            case 3: launch_conv_options<Launch, T, 3>(silu, bias, args...); break;
            default: launch_conv_options<Launch, T, 4>(silu, bias, args...); break;
        }
    };
    switch (dtype) {
        case DType::F32: widths(float{}); return true;
        case DType::F16: widths(f16_t{}); return true;
        case DType::BF16: widths(bf16_t{}); return true;
        default: return false;
    }
}

}  // namespace mamba::cuda
