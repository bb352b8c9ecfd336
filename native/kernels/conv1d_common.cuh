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

// The decode step's arguments (mamba_causal_conv1d_update; conv1d.cu's kernel and conv_xproj_step.cu's fold).
struct ConvUpdateArgs {
    AnyPtr x, state, weight, bias, y;
    int64_t x_s[2], s_s[3], w_s[2], b_s, y_s[2];
    int64_t batch, dim;
    int width;
    bool has_bias, silu;
};

inline ConvUpdateArgs bind_conv_update(const CausalConv1dUpdateParams & p) {
    ConvUpdateArgs a{};
    a.x = any(p.x);
    copy_strides(a.x_s, p.x);
    a.state = any(p.conv_state);
    copy_strides(a.s_s, p.conv_state);
    a.weight = any(p.weight);
    copy_strides(a.w_s, p.weight);
    a.has_bias = p.bias.has_value();
    if (a.has_bias) {
        a.bias = any(*p.bias);
        a.b_s = p.bias->stride[0];
    }
    a.y = any(p.y);
    copy_strides(a.y_s, p.y);
    a.batch = p.batch;
    a.dim = p.dim;
    a.width = int(p.width);
    a.silu = p.silu;
    return a;
}

// One (batch row, channel) of the decode step: y and the shifted state stored; returns y as its dtype holds it.
// kWidth is the filter width when it is known at compile time (the models' 4), else 0 (the run-time a.width, up to
// kMaxConvWidth): with a fixed width no load sits behind a bounds branch, so the weights, the state and x issue back
// to back and the step costs one memory round trip (at batch 1 that latency is the kernel's whole time). The bias,
// behind its own branch, comes last.
template <int kWidth>
__device__ __forceinline__ float conv_update_channel(const ConvUpdateArgs & a, int64_t b, int64_t d) {
    constexpr int kSlots = kWidth > 0 ? kWidth : int(kMaxConvWidth);
    const int width = kWidth > 0 ? kWidth : a.width;
    float w[kSlots], s[kSlots];  // s[k]: the input k steps into the window; the last is x
#pragma unroll
    for (int k = 0; k < kSlots; ++k) w[k] = k < width ? a.weight.load(d * a.w_s[0] + k * a.w_s[1]) : 0.0f;
#pragma unroll
    for (int k = 0; k < kSlots - 1; ++k) s[k] = k < width - 1 ? a.state.load(b * a.s_s[0] + d * a.s_s[1] + k * a.s_s[2]) : 0.0f;
    const float x = a.x.load(b * a.x_s[0] + d * a.x_s[1]);
    float acc = a.has_bias ? a.bias.load(d * a.b_s) : 0.0f;
#pragma unroll
    for (int k = 0; k < kSlots; ++k) {
        const float v = k < width - 1 ? s[k] : (k == width - 1 ? x : 0.0f);
        acc += w[k] * v;
    }
    if (a.silu) acc = silu_f(acc);
    a.y.store(b * a.y_s[0] + d * a.y_s[1], acc);
#pragma unroll
    for (int k = 0; k < kSlots - 1; ++k) {
        if (k < width - 2) a.state.store(b * a.s_s[0] + d * a.s_s[1] + k * a.s_s[2], s[k + 1]);
        else if (k == width - 2) a.state.store(b * a.s_s[0] + d * a.s_s[1] + k * a.s_s[2], x);
    }
    return a.y.rounded(acc);
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
