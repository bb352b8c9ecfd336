// The gated RMSNorm of a Mamba-2 decode step folded into the kernels on either side of it (mamba2_step.cu):
// out_proj(rmsnorm(g) * w) = rsqrt(mean(g^2) + eps) * out_proj(g * w) for one norm group, so the norm needs
// no kernel of its own. The state update stores g * w (g = y * silu(z), or y with the gate after the norm)
// and each block's sum of squares; out_proj's GEMV adds a row's sums and scales the row's outputs.
// Bytes: one float a state-update block more, and each out_proj block reads a row's sums from L2.
#pragma once

#include "common.cuh"
#include "ops/gated_rms_norm.h"
#include "ops/linear.h"
#include "ops/ssd.h"

namespace mamba::cuda {

// Per-row partial sums of squares: row m's `count` floats start at data + m * row_stride.
struct NormPartials {
    float * data = nullptr;
    int64_t row_stride = 0, count = 0;
};

// Most partial sums (rows times sums a row) the GEMV takes: they are staged in its shared memory.
constexpr int64_t kNormPartialsMax = 512;
// Most rows the GEMV scales (its row buckets 1, 2 and 4 have norm builds).
constexpr int kNormMaxRows = 4;

struct GatedNormFold {
    Tensor z;       // (batch, heads * headdim): the gate
    Tensor weight;  // (heads * headdim): the norm's weight
    bool norm_before_gate = false;
    NormPartials partials;  // (batch, heads * ceil(headdim / rows)): one sum per state-update block (rows: 64, 32 or 16, ssd_state_update.cu)
    Tensor partials_home;   // the scratch tensor whose memory holds them (recorded as written, launch.cuh)
};

// Whether the state update takes the state with 16-byte accesses (the folded norm's only build).
bool ssd_state_update_vectorized(const SsdStateUpdateParams & p);

// The state-update blocks of a row: one sum each.
int64_t ssd_state_update_blocks_per_row(mamba_context & ctx, const SsdStateUpdateParams & p);

// mamba_ssd_state_update (p without z) with the gated norm folded in: y = y_ssd * silu(z) * weight, rounded
// once (y_ssd as p.y would hold it), and the partial sums.
void ssd_state_update_fold_norm(mamba_context & ctx, const SsdStateUpdateParams & p, const GatedNormFold & fold);

// Whether try_gemv_row_norm runs for this linear with this many partial sums a row (reads MAMBA_CUDA_GEMV_VARIANT).
bool gemv_row_norm_applies(const LinearParams & p, int64_t partials_per_row);

// Row m of y = x W^T scaled by 1 / sqrt(sum(row m's partials) / dim + eps), then + bias, by the tiled GEMV
// kernel; returns false (having done nothing) where it cannot run: more than kNormMaxRows rows, rows mamba_linear
// gives to cuBLAS, a forced warp or gemm variant, a W that does not allow 16-byte loads, or more than
// kNormPartialsMax partial sums.
bool try_gemv_row_norm(mamba_context & ctx, const LinearParams & p, const NormPartials & partials, int64_t dim, float eps);

}  // namespace mamba::cuda
