// Softmax (mamba_softmax) and token sampling (mamba_sample).
#pragma once

#include <optional>

#include "core/tensor.h"

namespace mamba {

struct SoftmaxParams {
    int64_t rows = 0, n = 0;
    Tensor x, y;
    bool log = false;
};

struct SampleParams {
    int64_t batch = 0, vocab = 0, history_len = 0;
    Tensor logits;
    std::optional<Tensor> history;
    Tensor tokens;
    uint64_t step = 0;
    mamba_sampling_params params{};
};

SoftmaxParams validate_softmax(const mamba_context & ctx, const DLTensor * x, DLTensor * y, int32_t log_softmax);
SampleParams validate_sample(const mamba_context & ctx, const mamba_sample_args & args);

namespace cpu {
void softmax(mamba_context & ctx, const SoftmaxParams & p);
void sample(mamba_context & ctx, const SampleParams & p);
}
namespace cuda {
void softmax(mamba_context & ctx, const SoftmaxParams & p);
void sample(mamba_context & ctx, const SampleParams & p);
}

}  // namespace mamba
