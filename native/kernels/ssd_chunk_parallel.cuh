// Entry points of the chunk-parallel Mamba-2 SSD forward (ssd_chunk_parallel.cu).
#pragma once

#include "ssd_chunked.cuh"

namespace mamba::cuda {

// What the dispatch knows before the kernel arguments are built: enough to plan the workspace.
struct SsdCpShape {
    bool bf16_xbc;  // x, B and C all bfloat16
    bool packed;
    int64_t len, nseq, heads, headdim, dstate;
    int64_t groups;  // B/C groups (heads % groups == 0): the pair kernel's grid counts head pairs per group
};

// Whether the chunk-parallel path runs this problem, and the workspace it needs (chunk states, dt and
// its cumulative sums). The bytes must be carved from the same workspace as the op's other scratch.
// The state kernel (MAMBA_CUDA_SSD_STATE = pair or twopass, read by the plan at each call; unset = automatic,
// an unknown name is an INVALID_ARGUMENT error). The plan resolves the automatic choice from the grid and
// the SM count (ssd_chunk_parallel.cu): twopass (ssd_chunk_state_twopass.cu: every chunk's local state in
// parallel, then an elementwise carry; a workspace for the local states, float16 with a float32 tail, reserved by the plan)
// where the pair kernel's grid would have fewer than 4 blocks per SM and its local states take at most
// 256 MB, else pair; during a graph capture, pair unless twopass's part already fits the workspace.
// Forced twopass has no cap. There is one output
// kernel (lean, ssd_cp_output_lean.cuh; its builds are picked from the arguments); both state kernels
// share the workspace format with it.
enum class SsdCpStateKernel { Auto, Pair, TwoPass };

struct SsdCpPlan {
    bool use = false;
    size_t workspace_bytes = 0;
    SsdCpStateKernel state = SsdCpStateKernel::Auto;  // resolved (Pair or TwoPass) when use
};
SsdCpPlan plan_ssd_chunk_parallel(mamba_context & ctx, const SsdCpShape & shape);

// Runs the problem planned above with the plan's state kernel; `workspace` holds plan.workspace_bytes (null
// when that is 0).
void run_ssd_chunk_parallel(mamba_context & ctx, const SsdCpPlan & plan, const SsdArgs & a, int64_t nseq, char * workspace);

}  // namespace mamba::cuda
