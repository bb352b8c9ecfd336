// Dense layers: mamba_linear and mamba_embedding.
#pragma once

#include <optional>

#include "core/tensor.h"

namespace mamba {

struct LinearParams {
    int64_t rows = 0, in_features = 0, out_features = 0;
    Tensor x, weight;
    std::optional<Tensor> bias;
    Tensor y;
    bool softplus = false;  // y = softplus(x W^T + bias) (mamba_linear_softplus)
};

struct EmbeddingParams {
    int64_t count = 0, vocab = 0, hidden = 0;
    Tensor ids, table, y;
};

LinearParams validate_linear(const mamba_context & ctx, const mamba_linear_args & args, bool softplus = false);
EmbeddingParams validate_embedding(const mamba_context & ctx, const mamba_embedding_args & args);

namespace cpu {
void linear(mamba_context & ctx, const LinearParams & p);
void embedding(mamba_context & ctx, const EmbeddingParams & p);
}
namespace cuda {
void linear(mamba_context & ctx, const LinearParams & p);
void embedding(mamba_context & ctx, const EmbeddingParams & p);
}

}  // namespace mamba
