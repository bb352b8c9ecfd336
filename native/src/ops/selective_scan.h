// Mamba-1 selective scan (mamba_selective_scan) and its decode step (mamba_selective_state_update).
#pragma once

#include <optional>

#include "core/tensor.h"

namespace mamba {

struct SelectiveScanParams {
    int64_t batch = 0, dim = 0, len = 0, dstate = 0, groups = 1;
    bool variable_bc = true;  // B/C are (batch, groups, dstate, len); false: (dim, dstate)
    Tensor u, delta, A, B, C;
    std::optional<Tensor> D, z, delta_bias, initial_state;
    Tensor y;
    std::optional<Tensor> final_state;
    bool delta_softplus = false;
};

struct SelectiveStateUpdateParams {
    int64_t batch = 0, dim = 0, dstate = 0, groups = 1;
    int64_t dt_rank = 0;  // > 0 when dt_proj_weight is given: dt is then (batch, dt_rank)
    Tensor state, x, dt, A, B, C;
    std::optional<Tensor> D, z, dt_bias, dt_proj_weight;
    Tensor y;
    bool dt_softplus = false;
};

SelectiveScanParams validate_selective_scan(const mamba_context & ctx, const mamba_selective_scan_args & args);
SelectiveStateUpdateParams validate_selective_state_update(const mamba_context & ctx, const mamba_selective_state_update_args & args);

namespace cpu {
void selective_scan(mamba_context & ctx, const SelectiveScanParams & p);
void selective_state_update(mamba_context & ctx, const SelectiveStateUpdateParams & p);
}
namespace cuda {
void selective_scan(mamba_context & ctx, const SelectiveScanParams & p);
void selective_state_update(mamba_context & ctx, const SelectiveStateUpdateParams & p);
}

}  // namespace mamba
