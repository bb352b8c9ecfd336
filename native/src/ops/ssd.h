// Mamba-2 SSD chunked scan (mamba_ssd) and its decode step (mamba_ssd_state_update).
#pragma once

#include <optional>
#include <vector>

#include "core/tensor.h"

namespace mamba {

struct SsdParams {
    int64_t batch = 0, len = 0, heads = 0, headdim = 0, groups = 1, dstate = 0, chunk_size = 256;
    int64_t nseq = 0;  // sequences: batch, or the count given by cu_seqlens
    Tensor x, dt, A, B, C;
    std::optional<Tensor> D;  // (heads) or (heads, headdim)
    bool D_per_channel = false;
    std::optional<Tensor> z, dt_bias, initial_states, cu_seqlens;
    // cu_seqlens read back to the host during validation (empty without packing).
    std::vector<int64_t> seq_starts;
    Tensor y;
    std::optional<Tensor> final_states;
    float dt_min = 0.0f, dt_max = 0.0f;
    bool dt_softplus = false;
};

struct SsdStateUpdateParams {
    int64_t batch = 0, heads = 0, headdim = 0, groups = 1, dstate = 0;
    Tensor state, x, dt, A, B, C;
    std::optional<Tensor> D;
    bool D_per_channel = false;
    std::optional<Tensor> z, dt_bias;
    Tensor y;
    float dt_min = 0.0f, dt_max = 0.0f;
    bool dt_softplus = false;
};

SsdParams validate_ssd(mamba_context & ctx, const mamba_ssd_args & args);
SsdStateUpdateParams validate_ssd_state_update(const mamba_context & ctx, const mamba_ssd_state_update_args & args);

namespace cpu {
void ssd(mamba_context & ctx, const SsdParams & p);
void ssd_state_update(mamba_context & ctx, const SsdStateUpdateParams & p);
}
namespace cuda {
void ssd(mamba_context & ctx, const SsdParams & p);
void ssd_state_update(mamba_context & ctx, const SsdStateUpdateParams & p);
}

}  // namespace mamba
