// Entry point of the two-pass chunk-state computation of the chunk-parallel SSD forward
// (ssd_chunk_state_twopass.cu), the state kernel `twopass` of ssd_chunk_parallel.cu
// (MAMBA_CUDA_SSD_STATE=twopass). It fills the same workspace (S_in float16 + scales, dt, acum) as the
// one-pass state kernel there (pair), for the same output kernel.
#pragma once

#include "ssd_chunked.cuh"

namespace mamba::cuda {

// Steps per chunk: must equal ssd_chunk_parallel.cu's kSsdCpChunk (checked there by a static_assert).
constexpr int kSsdTwoPassChunk = 128;

// The problem and the workspace views (layouts of ssd_chunk_parallel.cu's header comment), plus the
// local chunk states the first pass writes and the second reads: float16 after a power-of-two scale per
// 16 rows (S_in's format), except the chunks that hold one of a sequence's last kSsdTwoPassChunk steps
// (its last chunk, and the one before when the last is partial), kept float32 so that the final
// states see no float16 rounding that has not decayed over a whole chunk (ssd_chunk_state_twopass.cu).
struct SsdTwoPassArgs {
    SsdArgs a;
    f16_t * states;   // [slot][head][Pw][Nw]: S_in, float16 after its scale (written by pass 2)
    float * scales;   // [slot][head][Pw / 16]: the power-of-two scale of 16 rows of S_in (pass 2)
    float * dts;      // [slot][head][Q]: processed dt, 0 past the sequence end (pass 1)
    float * acums;    // [slot][head][Q]: inclusive cumulative sum of dt*A inside the chunk (pass 1)
    f16_t * locals;        // [slot][head][Pw][Nw]: the chunk's own state from a zero start, float16 after its scale (pass 1)
    float * local_scales;  // [slot][head][Pw / 16]: the power-of-two scale of 16 rows of locals (pass 1)
    float * tail_locals;   // [seq][tails][head][Pw][Nw]: the same, float32, for the sequence's last chunk (0)
                           // and the one before (1) where the last is partial (pass 1)
    int64_t tails;         // float32 chunks per sequence in tail_locals (SsdTwoPassLocalsLayout)
    int64_t Pw;       // headdim rounded up to 16
    int64_t chunks;   // chunks per batch row (unpacked)
    int64_t nseq;
    bool vec_bc, vec_x;  // 16-byte rows of B and x
};

// The local-state workspace of `slots` chunk slots and `nseq` sequences: where each part starts (bytes
// from its base, 128-byte aligned) and its total. One definition for the plan's size and the views.
// tails: float32 chunks per sequence, 2 where a partial last chunk may follow a full one (packed
// sequences, or an unpacked length past one chunk and not a multiple of it), else 1.
struct SsdTwoPassLocalsLayout {
    int64_t tails;
    size_t locals, local_scales, tail_locals, total;
    SsdTwoPassLocalsLayout(int64_t slots, int64_t nseq, bool packed, int64_t len, int64_t heads, int64_t headdim, int64_t dstate);
};
// Bytes of that workspace.
inline size_t ssd_twopass_locals_bytes(int64_t slots, int64_t nseq, bool packed, int64_t len, int64_t heads, int64_t headdim, int64_t dstate) {
    return SsdTwoPassLocalsLayout(slots, nseq, packed, len, heads, headdim, dstate).total;
}
// Dynamic shared memory of the larger of the two kernels (the plan checks it against the device).
size_t ssd_twopass_smem_bytes(int64_t headdim, int64_t dstate);
// Both passes; `slots` = the slot count of the workspace (0: only the final states are written).
void run_ssd_state_twopass(mamba_context & ctx, const SsdTwoPassArgs & t, int64_t slots);

}  // namespace mamba::cuda
