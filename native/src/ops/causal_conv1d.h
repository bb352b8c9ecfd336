// Causal depthwise conv1d (mamba_causal_conv1d) and its one-token update (mamba_causal_conv1d_update).
#pragma once

#include <optional>

#include "core/tensor.h"

namespace mamba {

constexpr int64_t kMaxConvWidth = 8;

struct CausalConv1dParams {
    int64_t batch = 0, dim = 0, len = 0, width = 0;
    Tensor x;              // (batch, dim, len)
    Tensor weight;         // (dim, width)
    std::optional<Tensor> bias;           // (dim)
    std::optional<Tensor> initial_state;  // (batch, dim, width - 1)
    Tensor y;              // (batch, dim, len)
    std::optional<Tensor> final_state;    // (batch, dim, width - 1)
    bool silu = false;
};

struct CausalConv1dUpdateParams {
    int64_t batch = 0, dim = 0, width = 0;
    Tensor x;           // (batch, dim)
    Tensor conv_state;  // (batch, dim, width - 1)
    Tensor weight;      // (dim, width)
    std::optional<Tensor> bias;
    Tensor y;           // (batch, dim)
    bool silu = false;
};

// The filter checks both conv ops (and the fused linear + conv step) share; `name` is the argument's name.
// weight (dim, width) with 2 <= width <= kMaxConvWidth; returns width.
int64_t check_conv_weight(const char * name, const Tensor & weight, int64_t dim);
void check_conv_bias(const char * name, const std::optional<Tensor> & bias, int64_t dim);

CausalConv1dParams validate_causal_conv1d(const mamba_context & ctx, const mamba_causal_conv1d_args & args);
CausalConv1dUpdateParams validate_causal_conv1d_update(const mamba_context & ctx, const mamba_causal_conv1d_update_args & args);

namespace cpu {
void causal_conv1d(mamba_context & ctx, const CausalConv1dParams & p);
void causal_conv1d_update(mamba_context & ctx, const CausalConv1dUpdateParams & p);
}
namespace cuda {
void causal_conv1d(mamba_context & ctx, const CausalConv1dParams & p);
void causal_conv1d_update(mamba_context & ctx, const CausalConv1dUpdateParams & p);
}

}  // namespace mamba
