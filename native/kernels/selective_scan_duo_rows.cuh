// Kernel `duo_rows` of the Mamba-1 scan's (b, l, d) rows path (MAMBA_CUDA_SCAN_VARIANT=duo_rows or
// duo_rows_2w; not the default: split is, until a GPU run compares them): duo's lane pairing
// (selective_scan_lanes.cuh) on split_rows' cp.async tiles (selective_scan_split.cuh), cut to one
// barrier a tile.
//
// Bytes and FLOPs are the main path's (top of selective_scan_kernel.cuh): bf16 B1 D5120 L2048 N16 moves
// 84 MB (20 us at 4.2 TB/s) and needs 168 M exp2 (40 us at the MUFU rate) per pass; it is bound by issue
// and shared-memory traffic, not by HBM. What split_rows spends a tile (16 steps) per lane and what this
// kernel does instead:
// - split_rows: 3 __syncthreads (tile landed, B/C converted to float, y tile written); here 1: B and C
//   of the next tile are loaded into registers (element by element, coalesced) while the current tile
//   runs and stored as float [step][state] at the end of it (as duo); the y tile of tile i is stored
//   (16-byte stores) after the barrier of tile i+1, by the thread that then copies tile i+2 into the same
//   buffer piece (same piece mapping, so the read comes before the overwrite in that thread's order).
// - split_rows: 3 SHFL a step (dt, dt*u from the owner; the C.h halves by SHFL.XOR); here none, as duo:
//   phase 1 writes (dt, dt*u) of a lane's steps (STS.64 each) and D*u (2 STS.128) to the channel's row,
//   phase 2 reads (dt, dt*u) of two steps per LDS.128 and writes the lane's partial C.h of four steps per
//   STS.128, phase 3 adds both lanes' partials (4 LDS.128) to D*u.
// - Column reads of the tile: lane `half` owns the odd or even steps (k = 2i + half), not a block of 8,
//   and tile rows are padded by 16 elements, so that the two lanes of a channel read rows k and k+1,
//   which fall in disjoint banks (bf16: row stride 40 words, a warp's 16 channels 8 words; float32: 80
//   and 16): no bank conflicts on the 24 column reads and 8 column writes a lane makes per tile.
// - Per lane and step: 8 FMUL + 8 MUFU + 8 FMUL + 8 FFMA for h, 8 FFMA for C.h, 4.5 LDS.128, and half of
//   a step's softplus, SiLU and tile traffic; no SHFL.
// - Segments (batch * dim small): with duo_rows the sequence is cut for ONE wave of resident blocks
//   (5 blocks an SM), not two as split: at B1 D5120 L2048 that is 8 segments of 256 steps (560 summary
//   blocks, 640 scan blocks, each <= one wave of 660) instead of 13 of 160 (1.5 waves per pass, the
//   second one a third full), and fewer segments to carry (combine_segments). duo_rows_2w runs this kernel
//   with split's plan and split_1w split_rows with this plan, to separate the kernel from the plan in a
//   comparison.
// - Compiled (CUDA 11.8, sm_90, bf16 and f16): N16 96 registers, 16 bytes spilled (4 LDL a tile, outside
//   the step loop), N8 96 / 0, summaries 96 / 0; SASS of a tile's loop body per lane: 1493 instructions
//   (split_rows 2460: no SHFL, far fewer IMAD/LEA/ISETP of addresses), summary 967 (split_rows 1480).
// - 128 threads (64 channels) a block, launch bounds 5 blocks an SM (at most 96 registers). Shared memory
//   a block (bf16 N16): tiles 2 x 3 x 16 x 80 x 2 B = 15 KB, B/C floats 4 KB, (dt, dt*u, D*u) rows 13 KB,
//   partials 9 KB: 41 KB, 5 blocks fit an SM's 228 KB.
// - 16-bit types only: the float32 tiles double and 5 blocks would not fit (static shared memory is also
//   capped at 48 KB a block); float32 calls, and dstate <= 4, run split or base instead (the dispatch
//   and the segment plan both follow duo_rows_supported).
// - Any length (tiles past the end read zeros, dt = 0 there, y not stored), any dim a multiple of 16
//   bytes (tiles past dim read zeros and are not stored), groups, z, D, delta_bias, softplus on/off,
//   initial/final state and segments exactly as split_rows.
#pragma once

#include "selective_scan_lanes.cuh"

namespace mamba::cuda::scan {

template <class T>
constexpr bool duo_rows_supported() {
    return sizeof(T) == 2;
}

template <class T, int kStates>
struct DuoRowsScanTraits {
    using Elem = T;
    static constexpr int kN = kStates;
    static constexpr int kLanes = 2;
    static constexpr int kLaneStates = kN / kLanes;                 // NL
    static constexpr int kChunk = 16;                               // steps per tile
    static constexpr int kLaneSteps = kChunk / kLanes;              // LS: steps 2i + lane
    static constexpr int kThreads = 128;
    static constexpr int kChannels = kThreads / kLanes;             // tile width
    static constexpr int kMinBlocksPerSM = 5;
    static constexpr int kResidentThreads = kThreads * kMinBlocksPerSM;
    static constexpr int kVec = 16 / int(sizeof(T));                // elements per 16-byte piece
    static constexpr int kRowStride = kChannels + 16;               // a tile row, padded (see the header)
    static constexpr int kRowPieces = kChannels / kVec;             // pieces per step of a tile
    static constexpr int kPiecesPerThread = kChunk * kRowPieces / kThreads;
    // A channel's row of floats: (dt, dt*u) of every step, then D*u grouped by owning lane; 13 float4s
    // (odd) so that a warp's 16 channels spread over the banks.
    static constexpr int kDtStride = 3 * kChunk + 4;
    // A channel's partial C.h: one row of 16 per lane (each grouped by owning lane); 9 float4s a channel.
    static constexpr int kPartRow = kChunk;
    static constexpr int kPartStride = kLanes * kPartRow + 4;
    static_assert(duo_rows_supported<T>(), "16-bit types only (shared memory, see the header)");
    static_assert(kLaneStates % 4 == 0, "a lane's B/C of a step are whole float4s");
    static_assert(kChunk * kRowPieces % kThreads == 0, "tile pieces split evenly over the threads");
    static_assert((kRowStride * int(sizeof(T))) % 16 == 0, "16-byte aligned tile rows");
    static_assert(2 * kChunk * kN % kThreads == 0, "B/C elements split evenly over the threads");
    static_assert(kChunk == ChannelScanTraits<T, kStates>::kChunk, "segments are cut in base's chunks");
};

template <class Tr, bool kSummary>
__global__ void __launch_bounds__(Tr::kThreads, Tr::kMinBlocksPerSM) selective_scan_duo_rows_kernel(ScanArgs a) {
    using T = typename Tr::Elem;
    constexpr int N = Tr::kN, NL = Tr::kLaneStates, CH = Tr::kChunk, LS = Tr::kLaneSteps, TH = Tr::kThreads, TC = Tr::kChannels;
    constexpr int VEC = Tr::kVec, RS = Tr::kRowStride;
    constexpr int kBCRows = kSummary ? 1 : 2;                  // B, then C
    constexpr int kStagePerThread = kBCRows * CH * N / TH;     // B/C elements a thread stages per tile
    __shared__ __align__(16) T s_u[2][CH][RS];                 // u tile; y is written over it
    __shared__ __align__(16) T s_dl[2][CH][RS];
    __shared__ __align__(16) T s_z[kSummary ? 1 : 2][kSummary ? 1 : CH][RS];
    __shared__ __align__(16) float s_B[2][CH * N];
    __shared__ __align__(16) float s_C[kSummary ? 1 : 2][kSummary ? 4 : CH * N];
    __shared__ __align__(16) float s_dt[TC][Tr::kDtStride];
    __shared__ __align__(16) float s_part[kSummary ? 1 : TC][kSummary ? 4 : Tr::kPartStride];

    const int tid = int(threadIdx.x);
    const int lane = tid & 1;  // which states, and which steps (2i + lane) of the tile
    const int col = tid >> 1;  // this channel's column of the tile
    const int64_t b = blockIdx.y;
    const int64_t seg = blockIdx.z;
    const int64_t d_first = int64_t(blockIdx.x) * TC;
    const int64_t d_raw = d_first + col;
    const bool channel_valid = d_raw < a.dim;
    const int64_t d = channel_valid ? d_raw : a.dim - 1;  // idle lanes shadow a real channel; they never store
    const int64_t g = d_first / a.channels_per_group;     // the whole block is in one group
    const int64_t t_begin = seg * a.seg_len;
    const int64_t t_end = t_begin + a.seg_len < a.len ? t_begin + a.seg_len : a.len;
    const bool has_z = !kSummary && a.has_z;

    // Tile bases at the block's first channel (unit channel stride).
    const T * ub = reinterpret_cast<const T *>(a.u) + b * a.u_sb + d_first;
    const T * db = reinterpret_cast<const T *>(a.delta) + b * a.dl_sb + d_first;
    const T * zb = has_z ? reinterpret_cast<const T *>(a.z) + b * a.z_sb + d_first : nullptr;
    T * yb = reinterpret_cast<T *>(a.y) + b * a.y_sb + d_first;
    const T * Bp = reinterpret_cast<const T *>(a.B) + b * a.B_sb + g * a.B_sg;
    const T * Cp = reinterpret_cast<const T *>(a.C) + b * a.C_sb + g * a.C_sg;

    auto slot = [&](int64_t s, int n) { return ((b * a.nseg + s) * N + n) * a.dim + d; };
    float A2[NL], h[NL];
#pragma unroll
    for (int j = 0; j < NL; ++j) {
        const int n = lane * NL + j;
        const bool valid = n < a.dstate;
        A2[j] = valid ? a.A[d * a.A_sd + n * a.A_sn] * kLog2e : 0.0f;
        const float init = valid && a.has_init ? a.init[b * a.init_sb + d * a.init_sd + n * a.init_sn] : 0.0f;
        if constexpr (kSummary) {
            h[j] = 0.0f;
            // Slot 0 holds the initial state, read here, before the last pass may overwrite an aliased final state.
            if (seg == 0 && channel_valid) a.seg_state[slot(0, n)] = init;
        } else {
            h[j] = a.nseg > 1 ? a.seg_state[slot(seg, n)] : init;
        }
    }
    const StepConsts consts{a.has_bias ? a.delta_bias[d * a.bias_s] : 0.0f, a.has_D ? a.D[d * a.D_s] : 0.0f, a.softplus, has_z};

    // Issues the 16-byte copies of the u, delta (and z) tile at t0 into buffer buf. Steps past the segment
    // end and channels past dim (dim is a multiple of VEC: a piece is all in or all out) read as zeros.
    auto tile_load = [&](int buf, int64_t t0) {
#pragma unroll
        for (int j = 0; j < Tr::kPiecesPerThread; ++j) {
            const int p = tid + j * TH;
            const int k = p / Tr::kRowPieces, ch = (p % Tr::kRowPieces) * VEC;
            const bool in = t0 + k < t_end && d_first + ch < a.dim;
            const int64_t t = in ? t0 + k : t_begin;  // a valid address even when nothing is read
            const int c = in ? ch : 0;
            cp_async_16(&s_u[buf][k][ch], ub + t * a.u_st + c, in);
            cp_async_16(&s_dl[buf][k][ch], db + t * a.dl_st + c, in);
            if (has_z) cp_async_16(&s_z[kSummary ? 0 : buf][kSummary ? 0 : k][ch], zb + t * a.z_st + c, in);
        }
    };
    // Stores the y tile at t0 (written over buffer buf's u tile) with 16-byte stores; same piece mapping
    // as tile_load, so a thread reads its pieces before it copies the next tile over them.
    auto y_tile_store = [&](int buf, int64_t t0) {
        const int64_t steps = t_end - t0;
#pragma unroll
        for (int j = 0; j < Tr::kPiecesPerThread; ++j) {
            const int p = tid + j * TH;
            const int k = p / Tr::kRowPieces, ch = (p % Tr::kRowPieces) * VEC;
            if (k < steps && d_first + ch < a.dim)
                *reinterpret_cast<uint4 *>(yb + (t0 + k) * a.y_st + ch) = *reinterpret_cast<const uint4 *>(&s_u[buf][k][ch]);
        }
    };
    // B (and C) of the tile at t0, element e = tid + i * TH of [B|C][step][state], loaded one tile ahead
    // into registers (a warp reads two steps' contiguous rows) and stored as float at the end of a tile.
    T bc_raw[kStagePerThread];
    auto bc_load = [&](int64_t t0) {
#pragma unroll
        for (int i = 0; i < kStagePerThread; ++i) {
            const int e = tid + i * TH;
            const int n = e % N, k = (e / N) % CH;
            const bool is_c = e >= CH * N;
            const bool in = n < a.dstate && t0 + k < t_end;
            bc_raw[i] = in ? (is_c ? Cp[n * a.C_sn + (t0 + k) * a.C_st] : Bp[n * a.B_sn + (t0 + k) * a.B_st]) : from_f32<T>(0.0f);
        }
    };
    auto bc_store = [&](int buf) {
#pragma unroll
        for (int i = 0; i < kStagePerThread; ++i) {
            const int e = tid + i * TH;
            const int r = e % (CH * N);
            if (e >= CH * N) s_C[kSummary ? 0 : buf][kSummary ? 0 : r] = to_f32<T>(bc_raw[i]);
            else s_B[buf][r] = to_f32<T>(bc_raw[i]);
        }
    };

    float * dt_row = s_dt[col];
    float * part = s_part[kSummary ? 0 : col];
    float dt_sum = 0.0f;
    tile_load(0, t_begin);
    cp_async_commit();
    bc_load(t_begin);
    bc_store(0);
    int buf = 0;
    int64_t t0 = t_begin;
    for (; t0 < t_end; t0 += CH, buf ^= 1) {
        // The tile at t0 has landed and its B/C floats are stored, for every thread; every thread is done
        // with the tile before (its y written over the other buffer, its rows of s_dt and s_part read).
        cp_async_wait_all();
        __syncthreads();
        if constexpr (!kSummary) {
            if (t0 != t_begin) y_tile_store(buf ^ 1, t0 - CH);
        }
        const bool more = t0 + CH < t_end;
        if (more) {
            tile_load(buf ^ 1, t0 + CH);
            cp_async_commit();
            bc_load(t0 + CH);
        }
        const int64_t steps = t_end - t0;
        // Phase 1: dt, dt * u and D * u of this lane's steps (past the end: dt = 0, u reads as zero).
        {
            float skip[LS];
#pragma unroll
            for (int i = 0; i < LS; ++i) {
                const int k = 2 * i + lane;
                const float u = to_f32<T>(s_u[buf][k][col]);
                const float dt = step_dt(to_f32<T>(s_dl[buf][k][col]), consts, k < steps);
                *reinterpret_cast<float2 *>(dt_row + 2 * k) = make_float2(dt, dt * u);
                skip[i] = consts.Dv * u;
                if constexpr (kSummary) dt_sum += dt;
            }
            if constexpr (!kSummary) store_shared<LS>(dt_row + 2 * CH + LS * lane, skip);
        }
        __syncwarp();
        // Phase 2: every step: (dt, dt*u) of two steps a load, this lane's NL states of B and C, its
        // partial C.h into its part row grouped by the step's owner (even steps, then odd steps).
        {
            const float * Bs = s_B[buf];
            const float * Cs = s_C[kSummary ? 0 : buf];
            float dd[4], Bg[NL], Cg[NL], acc[8];
#pragma unroll
            for (int k = 0; k < CH; ++k) {
                if (k % 2 == 0) shared_load<4>(dt_row + 2 * k, dd);
                shared_load<NL>(Bs + k * N + lane * NL, Bg);
                if constexpr (!kSummary) shared_load<NL>(Cs + k * N + lane * NL, Cg);
                const float dt = dd[2 * (k % 2)], du = dd[2 * (k % 2) + 1];
#pragma unroll
                for (int j = 0; j < NL; ++j) h[j] = fmaf(ex2_mufu(dt * A2[j]), h[j], du * Bg[j]);
                if constexpr (!kSummary) {
                    float acc0 = Cg[0] * h[0], acc1 = Cg[1] * h[1];
#pragma unroll
                    for (int j = 2; j < NL; j += 2) {
                        acc0 = fmaf(Cg[j], h[j], acc0);
                        acc1 = fmaf(Cg[j + 1], h[j + 1], acc1);
                    }
                    acc[k % 8] = acc0 + acc1;
                    // Steps k-6, k-4, k-2, k share an owner: 4 partials at once.
                    if (k % 8 >= 6) {
                        const int owner = k % 2;
                        const float4 v = make_float4(acc[owner], acc[owner + 2], acc[owner + 4], acc[owner + 6]);
                        *reinterpret_cast<float4 *>(part + lane * Tr::kPartRow + owner * LS + (k - 6 - owner) / 2) = v;
                    }
                }
            }
        }
        // Phase 3: y of this lane's steps: D * u plus both lanes' partials, gated by SiLU(z), written
        // over its own u entries (only this lane reads them).
        if constexpr (!kSummary) {
            __syncwarp();
            float y[LS];
            shared_load<LS>(dt_row + 2 * CH + LS * lane, y);
#pragma unroll
            for (int q = 0; q < Tr::kLanes; ++q) {
                float p[LS];
                shared_load<LS>(part + q * Tr::kPartRow + lane * LS, p);
#pragma unroll
                for (int i = 0; i < LS; ++i) y[i] += p[i];
            }
#pragma unroll
            for (int i = 0; i < LS; ++i) {
                const int k = 2 * i + lane;
                const float gated = has_z ? y[i] * scan_silu(to_f32<T>(s_z[buf][k][col])) : y[i];
                s_u[buf][k][col] = from_f32<T>(gated);
            }
        }
        if (more) bc_store(buf ^ 1);
    }
    if constexpr (!kSummary) {
        // The last tile's y (in the buffer of the last iteration).
        __syncthreads();
        y_tile_store(buf ^ 1, t0 - CH);
    }
    if constexpr (kSummary) dt_sum += __shfl_xor_sync(0xffffffffu, dt_sum, 1);  // both lanes' steps
    if (!channel_valid) return;
    if constexpr (kSummary) {
#pragma unroll
        for (int j = 0; j < NL; ++j) a.seg_state[slot(seg + 1, lane * NL + j)] = h[j];
        if (lane == 0) a.seg_dt_sum[(b * a.nseg + seg) * a.dim + d] = dt_sum;
    } else if (a.has_fin && seg == a.nseg - 1) {
#pragma unroll
        for (int j = 0; j < NL; ++j)
            if (lane * NL + j < a.dstate) a.fin[b * a.fin_sb + d * a.fin_sd + (lane * NL + j) * a.fin_sn] = h[j];
    }
}

template <class Tr>
void launch_duo_rows_scan(mamba_context & ctx, const ScanArgs & a, int64_t batch) {
    const auto summary = selective_scan_duo_rows_kernel<Tr, true>;
    const auto scan = selective_scan_duo_rows_kernel<Tr, false>;
    // 5 blocks of 41 KB need nearly all of an SM's 228 KB as shared memory: ask for the largest carveout
    // rather than rely on the driver's choice (the one-wave segment plan counts on 5 resident blocks).
    MAMBA_CUDA_CHECK(cudaFuncSetAttribute(summary, cudaFuncAttributePreferredSharedMemoryCarveout, int(cudaSharedmemCarveoutMaxShared)));
    MAMBA_CUDA_CHECK(cudaFuncSetAttribute(scan, cudaFuncAttributePreferredSharedMemoryCarveout, int(cudaSharedmemCarveoutMaxShared)));
    launch_segmented_scan<Tr::kN>(ctx, a, batch, Tr::kChannels, Tr::kThreads, summary, scan);
}

}  // namespace mamba::cuda::scan
