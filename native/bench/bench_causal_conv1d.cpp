// Causal conv1d cases at mamba2-2.7b's conv width: 5376 channels (d_inner 5120 + B and C of 128 states),
// width 4, bf16, over the (batch, len, dim) memory a linear layer produces; and the decode step.
#include <memory>

#include "bench.h"

namespace {

constexpr int64_t kDim = 5376, kWidth = 4;

// A (batch, dim, len) view of (batch, len, dim) memory; owns the shape and strides it points to.
struct ChannelLastView {
    int64_t shape[3], strides[3];
    DLTensor dl;
};

std::shared_ptr<ChannelLastView> channel_last(mb::Bench & b, int64_t batch, int64_t dim, int64_t len, DLDataType dtype) {
    auto v = std::make_shared<ChannelLastView>();
    v->dl = *b.tensor({batch, len, dim}, dtype);
    v->shape[0] = batch, v->shape[1] = dim, v->shape[2] = len;
    v->strides[0] = len * dim, v->strides[1] = 1, v->strides[2] = dim;
    v->dl.shape = v->shape;
    v->dl.strides = v->strides;
    return v;
}

mb::Case prefill(int64_t batch, int64_t len) {
    return {"causal_conv1d bf16 B=" + std::to_string(batch) + " D=5376 L=" + std::to_string(len) + " K=4 silu (B,L,D) mem",
            [batch, len](mb::Bench & b, double & bytes, double & flops) {
                auto x = channel_last(b, batch, kDim, len, mb::kBF16), y = channel_last(b, batch, kDim, len, mb::kBF16);
                mamba_causal_conv1d_args a{};
                a.x = &x->dl;
                a.weight = b.tensor({kDim, kWidth}, mb::kBF16);
                a.bias = b.tensor({kDim}, mb::kBF16);
                a.y = &y->dl;
                a.final_state = b.tensor({batch, kDim, kWidth - 1}, mb::kBF16);
                a.silu = 1;
                bytes = double(batch * kDim * len) * (2 + 2);
                flops = double(batch * kDim * len) * (2 * kWidth + 5);
                return [&b, a, x, y] { mb::check(mamba_causal_conv1d(b.ctx(), &a), "mamba_causal_conv1d"); };
            }};
}

mb::Case decode(int64_t batch) {
    return {"causal_conv1d_update bf16 B=" + std::to_string(batch) + " D=5376 K=4 silu", [batch](mb::Bench & b, double & bytes, double & flops) {
                mamba_causal_conv1d_update_args a{};
                a.x = b.tensor({batch, kDim}, mb::kBF16);
                a.conv_state = b.tensor({batch, kDim, kWidth - 1}, mb::kBF16);
                a.weight = b.tensor({kDim, kWidth}, mb::kBF16);
                a.bias = b.tensor({kDim}, mb::kBF16);
                a.y = b.tensor({batch, kDim}, mb::kBF16);
                a.silu = 1;
                // x and y, the state read and written, the filters
                bytes = double(batch * kDim) * 2 * (2 + 2 * (kWidth - 1)) + double(kDim) * 2 * (kWidth + 1);
                flops = double(batch * kDim) * (2 * kWidth + 5);
                return [&b, a] { mb::check(mamba_causal_conv1d_update(b.ctx(), &a), "mamba_causal_conv1d_update"); };
            }};
}


const bool registered = [] {
    for (const mb::Case & c : {prefill(1, 512), prefill(4, 2048), decode(1), decode(16)}) mb::registry().push_back(c);
    return true;
}();

}  // namespace
