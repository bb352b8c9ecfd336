// Entry points of the chunk-parallel Mamba-2 SSD forward (ssd_chunk_parallel.cu).
#pragma once

#include "ssd_chunked.cuh"

namespace mamba::cuda {

// What the dispatch knows before the kernel arguments are built: enough to plan the workspace.
struct SsdCpShape {
    bool bf16_xbc;  // x, B and C all bfloat16
    bool packed;
    int64_t len, nseq, heads, headdim, dstate;
};

// Whether the chunk-parallel path runs this problem, and the workspace it needs (chunk states, dt and
// its cumulative sums). The bytes must be carved from the same workspace as the op's other scratch.
// The state kernel (MAMBA_CUDA_SSD_STATE = mma, pair or twopass, read by the plan at each call; unset =
// Auto, an unknown name is an INVALID_ARGUMENT error). Auto picks mma or pair at launch from the grid and
// the SM count (ssd_chunk_parallel.cu); twopass (ssd_chunk_state_twopass.cu: every chunk's local state in
// parallel, then an elementwise carry) only when forced, and it needs a float32 workspace for the local
// states. There is one output kernel (its gated and ungated instantiations are picked from the
// arguments); all state kernels share the workspace format with it.
enum class SsdCpStateKernel { Auto, Mma, Pair, TwoPass };
// The output kernel (MAMBA_CUDA_SSD_OUTPUT = mma8 or lean, read with the state kernel; unset = mma8): lean
// is mma8 with fewer instructions around the MMAs (ssd_cp_output_lean.cuh), same workspace and results.
enum class SsdCpOutputKernel { Mma8, Lean };

struct SsdCpPlan {
    bool use = false;
    size_t workspace_bytes = 0;
    SsdCpStateKernel state = SsdCpStateKernel::Auto;
    SsdCpOutputKernel output = SsdCpOutputKernel::Mma8;
};
SsdCpPlan plan_ssd_chunk_parallel(mamba_context & ctx, const SsdCpShape & shape);

// Runs the problem planned above with the plan's state kernel; `workspace` holds plan.workspace_bytes (null
// when that is 0).
void run_ssd_chunk_parallel(mamba_context & ctx, const SsdCpPlan & plan, const SsdArgs & a, int64_t nseq, char * workspace);

}  // namespace mamba::cuda
