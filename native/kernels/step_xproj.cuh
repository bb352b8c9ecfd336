// x_proj folded into a Mamba-1 decode step's in_proj (mamba1_step.cu): at batch 1, each block of in_proj's GEMV
// that owns conv channels multiplies its conv outputs (as xc holds them) by its columns of x_proj's weight, copied
// into shared memory while W streams, and adds the q partial sums into float64 sums in the context; the state
// update reads dt_low, B and C from those sums (rounded as xdbl would hold them) instead of xdbl, and out_proj's GEMV
// zeroes them at its end for the next step (or, with MAMBA_CUDA_MAMBA1_SUMS_CLEAR=update, the update's last block
// does: mamba1_step.cu). One kernel a layer fewer, and no x_proj launch gap.
// Bytes: x_proj's weight once (as the separate GEMV reads it), q float64 atomic adds per in_proj block of conv
// channels, replicas * q float64 reads per state-update block; FLOPs: those of x_proj.
// Contention: the blocks of conv channels take `replicas` copies of the sums in turn (MAMBA_CUDA_MAMBA1_XPROJ_REPLICAS,
// default 4), so that each address sees a quarter of the adds. Measured on an H200 (mamba-2.8b, bf16, batch 1, run
// 76): decode 2.086-2.095 ms/step with 4 copies, 2.106-2.112 with 8, 2.123-2.132 with 1, 2.161-2.174 with x_proj
// as its own kernel (MAMBA_CUDA_MAMBA1_XPROJ=separate).
// Order: a float64 sum of float32 partials is exact while their magnitudes span less than about 2^21, and then the
// order the blocks add in changes nothing; where they span more, it changes the sum's last float64 bits, far below
// the float32 (and 16-bit) rounding of what the state update reads, so a step repeats its result except in the
// rare case that such a difference straddles a rounding boundary.
#pragma once

#include <string>

#include "common.cuh"
#include "ops/linear.h"
#include "ops/linear_conv1d_update.h"
#include "ops/rms_norm.h"
#include "ops/selective_scan.h"

namespace mamba::cuda {

// The context's sums (CudaState::xproj_sums): `capacity` float64 values, then the state update's arrival count;
// all zero between steps. `replicas` copies of the q sums, `stride` values apart: in_proj's blocks of conv channels
// take them in turn, so that fewer atomic adds queue on each address, and the state update adds them up in order.
// arrivals null: the state update neither counts nor clears (the kernel after it clears the sums).
// Batched decode (conv_xproj_step.cu) keeps `rows` such sets in CudaState::xproj_partials, row b's replicas from
// data + b * row_stride, one replica a cluster of the conv step's blocks, stored rather than added to.
struct XProjSums {
    double * data = nullptr;
    unsigned * arrivals = nullptr;
    int64_t capacity = 0;
    int replicas = 1;
    int64_t stride = 0;
    int rows = 1;
    int64_t row_stride = 0;

    // The values from data on that the sums take up (the batch-1 sums are all zero between steps; the batched ones are
    // written whole every step).
    int64_t extent() const { return int64_t(rows - 1) * row_stride + int64_t(replicas) * stride; }
};

// Most replicas (the state update adds a value's copies with all their loads in flight).
constexpr int kXProjMaxReplicas = 8;

// Most batch rows of the fold into the conv step (conv_xproj_step.cu); from 2 rows in_proj is cuBLAS's GEMM.
constexpr int kXProjMaxRows = 16;

// A replica's values start on a 128-byte line, so replicas share no line.
inline int64_t xproj_replica_stride(int64_t q) { return (q + 15) / 16 * 16; }

// Shared memory the GEMV's kXProj build holds a block's columns of x_proj's weight in (q * channels * element size).
constexpr int64_t kXProjSliceBytes = 28 * 1024;

// Why x_proj cannot fold into this in_proj + conv step, empty where it can: one row, the conv step in the GEMV, x_proj
// of in_proj's weight dtype with 16-byte aligned rows, no bias and the conv channels as inputs, whole GEMV blocks of
// conv channels, a weight slice that fits kXProjSliceBytes and at most `sums_capacity` outputs.
std::string gemv_conv1d_xproj_unsupported(mamba_context & ctx, const LinearConv1dUpdateParams & p, const LinearParams & x_proj, int64_t sums_capacity);

// in_proj with its conv step, adding x_proj's sums of its conv output into `sums` (zero before; INTERNAL where the
// fold does not apply, or where the replicas do not fit the capacity).
// With pre_norm, the residual block's norm folded in as well (step_pre_norm.cuh; INTERNAL where it does not apply).
void gemv_conv1d_xproj(mamba_context & ctx, const LinearConv1dUpdateParams & p, const LinearParams & x_proj, const XProjSums & sums,
                       const RmsNormParams * pre_norm = nullptr);

// Why x_proj cannot fold into the conv step of a batched decode (2 to kXProjMaxRows rows), empty where it can: in_proj's
// GEMV does not run the conv step itself, x_proj has no bias, takes the conv channels as inputs and has 16-byte aligned
// rows of whole 16-byte pieces, a block's columns fit the kernel's shared memory, and every row's replica of the q sums
// fits `sums_capacity`.
std::string conv1d_xproj_unsupported(mamba_context & ctx, const LinearConv1dUpdateParams & p, const LinearParams & x_proj, int64_t sums_capacity);

// The clusters the conv step's blocks make for this call, each of which writes one replica of every row's sums.
int conv1d_xproj_clusters(const LinearConv1dUpdateParams & p, const LinearParams & x_proj);

// The conv step of p.conv (in_proj's GEMM already run), storing each row's x_proj sums of the conv output, one replica
// a cluster (sums.replicas == conv1d_xproj_clusters), in `sums` (INTERNAL where the fold does not apply, or where the
// replicas do not fit the capacity). Every value is written: nothing needs zeroing before or after.
void conv1d_xproj(mamba_context & ctx, const LinearConv1dUpdateParams & p, const LinearParams & x_proj, const XProjSums & sums);

// Why the state update cannot read its dt_low, B and C from the sums, empty where it can: the fused dt_proj, at most
// kXProjMaxRows batch rows, one group, and the state, A and dt_proj's weight rows all allowing 16-byte accesses (its one
// build for it).
std::string selective_state_update_sums_unsupported(const SelectiveStateUpdateParams & p);

// mamba_selective_state_update with dt_low, B and C (p.dt, p.B, p.C: xdbl's columns, not read) taken from the sums
// (sums.rows == p.batch) as xdbl's dtype would round them; with sums.arrivals, the last block to finish zeroes the sums
// and the count; without, the sums are left for the next kernel to clear.
void selective_state_update_from_sums(mamba_context & ctx, const SelectiveStateUpdateParams & p, const XProjSums & sums);

}  // namespace mamba::cuda
