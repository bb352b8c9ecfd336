// Causal conv1d cases at mamba2-2.7b's conv width: 5376 channels (d_inner 5120 + B and C of 128 states),
// width 4, bf16, over the (batch, len, dim) memory a linear layer produces; mamba-2.8b's prefill calls (x the first
// half of in_proj's rows); and the decode step.
#include <memory>

#include "bench.h"

namespace {

constexpr int64_t kDim = 5376, kWidth = 4;

// A (batch, dim, len) view of (batch, len, row) memory (row >= dim: the first dim of each row); owns the shape and
// strides it points to.
struct ChannelLastView {
    int64_t shape[3], strides[3];
    DLTensor dl;
};

std::shared_ptr<ChannelLastView> channel_last(mb::Bench & b, int64_t batch, int64_t dim, int64_t len, DLDataType dtype, int64_t row = 0) {
    if (row == 0) row = dim;
    auto v = std::make_shared<ChannelLastView>();
    v->dl = *b.tensor({batch, len, row}, dtype);
    v->shape[0] = batch, v->shape[1] = dim, v->shape[2] = len;
    v->strides[0] = len * row, v->strides[1] = 1, v->strides[2] = row;
    v->dl.shape = v->shape;
    v->dl.strides = v->strides;
    return v;
}

// x of `dim` channels in rows of x_row elements (the prefill's in_proj output: mamba-2.8b's x half, 5120 of 10240),
// y contiguous.
mb::Case prefill(int64_t batch, int64_t len, int64_t dim = kDim, int64_t x_row = 0) {
    const std::string rows = x_row > 0 ? " x in rows of " + std::to_string(x_row) : " (B,L,D) mem";
    return {"causal_conv1d bf16 B=" + std::to_string(batch) + " D=" + std::to_string(dim) + " L=" + std::to_string(len) + " K=4 silu" + rows,
            [batch, len, dim, x_row](mb::Bench & b, double & bytes, double & flops) {
                auto x = channel_last(b, batch, dim, len, mb::kBF16, x_row), y = channel_last(b, batch, dim, len, mb::kBF16);
                mamba_causal_conv1d_args a{};
                a.x = &x->dl;
                a.weight = b.tensor({dim, kWidth}, mb::kBF16);
                a.bias = b.tensor({dim}, mb::kBF16);
                a.y = &y->dl;
                a.final_state = b.tensor({batch, dim, kWidth - 1}, mb::kBF16);
                a.silu = 1;
                bytes = double(batch * dim * len) * (2 + 2);
                flops = double(batch * dim * len) * (2 * kWidth + 5);
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
    // The narrow models' widths (mamba-130m's 1536 and mamba-370m's 2048 channels of in_proj's rows) at two prompt lengths.
    for (const mb::Case & c : {prefill(1, 512), prefill(4, 2048), prefill(1, 2048, 5120, 10240), prefill(8, 2048, 5120, 10240), prefill(1, 512, 1536, 3072),
                               prefill(1, 2048, 1536, 3072), prefill(1, 1024, 2048, 4096), prefill(1, 2048, 2048, 4096), decode(1), decode(16)})
        mb::registry().push_back(c);
    return true;
}();

}  // namespace
