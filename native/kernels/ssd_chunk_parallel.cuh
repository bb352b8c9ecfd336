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
// The state kernel (MAMBA_CUDA_SSD_STATE = mma, pair, mma_rows, pair_rows, quad or quad32, read by the
// plan at each call; unset = Auto, an unknown name is an INVALID_ARGUMENT error). Auto picks mma or pair
// at launch from the grid and the SM count (ssd_chunk_parallel.cu); the _rows builds store S_in by 16-byte
// rows; quad / quad32 are the pair kernel with four heads of a group per block (16 channels and 8 warps /
// 32 channels and 16 warps). All share the workspace format with the output kernel.
enum class SsdCpStateKernel { Auto, Mma, Pair, MmaRows, PairRows, Quad, Quad32 };
// The output kernel's build (MAMBA_CUDA_SSD_OUTPUT; unset = mma8): mma8 (z / y as 4-byte accumulator-
// layout pairs), mma8_rows (16-byte rows), mma8_rows_early (16-byte rows, z loaded before phase B),
// mma8_merged (phase B over both strips at once), mma8_rows_merged (both changes).
enum class SsdCpOutputKernel { Mma8, Mma8Rows, Mma8RowsEarly, Mma8Merged, Mma8RowsMerged };

struct SsdCpPlan {
    bool use = false;
    size_t workspace_bytes = 0;
    SsdCpStateKernel state = SsdCpStateKernel::Auto;
    SsdCpOutputKernel output = SsdCpOutputKernel::Mma8;
};
SsdCpPlan plan_ssd_chunk_parallel(mamba_context & ctx, const SsdCpShape & shape);

// Runs the problem planned above with the plan's kernels; `workspace` holds plan.workspace_bytes (null
// when that is 0).
void run_ssd_chunk_parallel(mamba_context & ctx, const SsdCpPlan & plan, const SsdArgs & a, int64_t nseq, char * workspace);

}  // namespace mamba::cuda
