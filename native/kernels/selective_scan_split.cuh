// Kernel `split` of the Mamba-1 selective scan (MAMBA_CUDA_SCAN_VARIANT=split): two lanes per channel, each
// with half of the states, exchanging by shuffles. The default of the (b, l, d) rows path (below); on the
// contiguous channel path duo (selective_scan_lanes.cuh) is the default and split selectable.
// Measured on an H200 (bf16, ms): B8 D5120 L2048 N16 z bias softplus 0.703 (base 0.891, duo 0.612); B1
// D5120 L16384 1.132 (base 1.183, duo 1.030); tables in selective_scan_kernel.cuh, selective_scan_lanes.cuh.
// Rows path, segments: split plans them for one wave of its resident blocks (scan_thread_plan,
// selective_scan_dispatch.cuh), not two. Measured on an H200 (bf16, ms; all passed the scan tests; the rows
// kernel of the time, three barriers a tile: the current one's table is below), with
// split on the two-wave plan, split on the one-wave plan (now the default), and a removed duo rows kernel
// (duo's shared-memory lane pairing on these tiles, one barrier a tile) on the one-wave and two-wave plans:
//   (b, l, d) rows path      split 2w  split 1w  duo-rows 1w  duo-rows 2w  base
//   B1 D5120 L512            0.0603    0.0557    0.0645       0.0689       0.0660
//   B1 D5120 L2048           0.1636    0.1636    0.1825       0.1836       0.1634
//   B8 D5120 L2048 (1 seg)   0.6844    -         0.7609       -            0.7461
// The duo rows kernel, despite ~40% fewer instructions a tile, lost everywhere; the one-wave plan wins 8%
// on a 512-token piece and ties at 2048 (B8 needs no segments: the plans do not differ there).
//
// Bytes and FLOPs are those of the main path (top of selective_scan_kernel.cuh). Why: bf16 B8 D5120 is
// 40960 channels, 1280 warps with one channel a thread: 9.7 warps an SM, 2.4 a scheduler, whatever the
// occupancy limit. At 0.89 ms a warp spends about 825 cycles on a step of about 136 instructions: the
// kernel is bound by the latency of each warp's in-order stream Two lanes a
// channel double the warps (4.8 a scheduler) and halve each warp's work a step, without extra MUFU work:
// - Each lane owns N/2 states (h, scaled A in registers) and 8 of the chunk's 16 steps (lane 0 steps
//   0-7, lane 1 steps 8-15): it loads only its 16-byte piece of the u, delta, z rows (bf16), computes dt
//   and dt*u of its 8 steps (8 softplus a chunk instead of 16), and SiLU(z), D skip and y of its 8 steps.
// - Step k: dt and dt*u come from the owning lane (2 SHFL), each lane updates its N/2 states and its half
//   of the C contraction, one SHFL.XOR + FADD gives both lanes C.h.
// - Per channel-step: 16 exp2 + 4 MUFU as base; about 2 x 62 issue slots (2 x (5 N/2 state ops, half
//   the softplus and SiLU, 3 SHFL, N/8 + N/8 LDS.128)).
// - 128 threads (64 channels) a block; at most 96 registers (20 warps an SM: B8 D5120 needs 19.4).
//   dstate 5..16 (padded to 8 or 16); dstate <= 4 runs base.
// - Segments, masking and the B/C staging are base's (selective_scan_kernel.cuh).
#pragma once

#include "selective_scan_kernel.cuh"

namespace mamba::cuda::scan {

template <class T, int kStates>
struct SplitScanTraits {
    using Elem = T;
    static constexpr int kN = kStates;
    static constexpr int kLaneStates = kStates / 2;           // states a lane
    static_assert(kLaneStates % 4 == 0, "a lane's B/C are whole float4s");
    static constexpr int kChunk = 16;                         // steps per chunk
    static constexpr int kLaneSteps = kChunk / 2;             // steps a lane owns per chunk
    static constexpr int kVec = 16 / int(sizeof(T));          // elements per 16-byte piece
    static constexpr int kPieces = kChunk / kVec;             // B/C pieces per row and chunk
    static constexpr int kThreads = 128;
    static constexpr int kChannels = kThreads / 2;
    // 20 warps an SM (at most 96 registers; at 80 the N16 kernel spills 96 bytes): B8 D5120 is 19.4 an SM.
    static constexpr int kMinBlocksPerSM = 5;
    static_assert(kChunk == ChannelScanTraits<T, kStates>::kChunk, "segments are cut in base's chunks");
    static_assert(2 * kN * kPieces <= kThreads, "B/C staging needs one thread per 16-byte piece");
};

template <class Tr, bool kSummary>
__global__ void __launch_bounds__(Tr::kThreads, Tr::kMinBlocksPerSM) selective_scan_split_kernel(ScanArgs a) {
    segmented_pass_entry();
    using T = typename Tr::Elem;
    using Raw = RawChunk<T, Tr::kLaneSteps>;
    constexpr int N = Tr::kN, NL = Tr::kLaneStates, CH = Tr::kChunk, LS = Tr::kLaneSteps, kVec = Tr::kVec, kPieces = Tr::kPieces;
    constexpr int kRows = kSummary ? N : 2 * N;  // B rows, then C rows
    constexpr unsigned kFull = 0xffffffffu;
    __shared__ __align__(16) float s_B[2][CH][N];
    __shared__ __align__(16) float s_C[kSummary ? 1 : 2][CH][N];

    const int tid = int(threadIdx.x);
    const int half = tid & 1;                          // which states and which steps of the chunk
    const int pair_base = (tid & 31) & ~1;             // lane of this channel's half 0 in the warp
    const int64_t b = blockIdx.y;
    const int64_t seg = blockIdx.z;
    const int64_t d_first = int64_t(blockIdx.x) * Tr::kChannels;
    const int64_t d_raw = d_first + tid / 2;
    const bool channel_valid = d_raw < a.dim;
    const int64_t d = channel_valid ? d_raw : a.dim - 1;  // idle lanes shadow a real channel; they never store
    const int64_t g = d_first / a.channels_per_group;     // the whole block is in one group
    const int64_t t_begin = seg * a.seg_len;
    const int64_t t_end = t_begin + a.seg_len < a.len ? t_begin + a.seg_len : a.len;
    const bool has_z = !kSummary && a.has_z;

    // This lane's steps of a chunk start at half * LS.
    const T * up = reinterpret_cast<const T *>(a.u) + b * a.u_sb + d * a.u_sd + half * LS;
    const T * dp = reinterpret_cast<const T *>(a.delta) + b * a.dl_sb + d * a.dl_sd + half * LS;
    const T * zp = has_z ? reinterpret_cast<const T *>(a.z) + b * a.z_sb + d * a.z_sd + half * LS : nullptr;
    T * yp = reinterpret_cast<T *>(a.y) + b * a.y_sb + d * a.y_sd + half * LS;
    const T * Bp = reinterpret_cast<const T *>(a.B) + b * a.B_sb + g * a.B_sg;
    const T * Cp = reinterpret_cast<const T *>(a.C) + b * a.C_sb + g * a.C_sg;

    auto slot = [&](int64_t s, int n) { return ((b * a.nseg + s) * N + n) * a.dim + d; };
    float A2[NL], h[NL];
#pragma unroll
    for (int j = 0; j < NL; ++j) {
        const int n = half * NL + j;
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

    // B/C staging as in base: thread i < kRows * kPieces loads 16 bytes (piece i % kPieces) of row i / kPieces.
    const int stage_row = tid / kPieces, stage_piece = tid % kPieces;
    const bool stager = tid < kRows * kPieces;
    const int stage_n = stage_row < N ? stage_row : stage_row - N;
    const bool stage_c = stage_row >= N;
    const bool stage_valid = stager && stage_n < a.dstate;
    const T * stage_ptr = (stage_c ? Cp + stage_n * a.C_sn : Bp + stage_n * a.B_sn) + stage_piece * kVec;
    RawChunk<T, kVec> stage_raw;
    auto stage_load = [&](int64_t t0) {
        const int64_t count = t_end - t0 - stage_piece * kVec;
        if (stage_valid) stage_raw.template load<true>(stage_ptr + t0, count < kVec ? int(count > 0 ? count : 0) : kVec, 1);
    };
    auto stage_store = [&](int buf) {
        if (!stager) return;
        float(*dst)[N] = stage_c ? s_C[buf] : s_B[buf];
#pragma unroll
        for (int k = 0; k < kVec; ++k) dst[stage_piece * kVec + k][stage_n] = stage_valid ? stage_raw.at(k) : 0.0f;
    };

    // This lane's steps of the rows, one chunk ahead; past the end they read as zeros.
    Raw u_next{}, dl_next{}, z_next{};
    auto own_count = [&](int64_t t0) {
        const int64_t left = t_end - t0 - half * LS;
        return left < LS ? int(left > 0 ? left : 0) : LS;
    };
    auto row_load = [&](int64_t t0) {
        const int count = own_count(t0);
        u_next.template load<true>(up + t0, count, 1);
        dl_next.template load<true>(dp + t0, count, 1);
        if (has_z) z_next.template load<true>(zp + t0, count, 1);
    };

    float dt_sum = 0.0f;
    row_load(t_begin);
    stage_load(t_begin);
    stage_store(0);
    __syncthreads();
    int buf = 0;
    for (int64_t t0 = t_begin; t0 < t_end; t0 += CH, buf ^= 1) {
        const Raw uu = u_next, dl = dl_next, zz = z_next;
        const bool more = t0 + CH < t_end;
        const int mine = own_count(t0);
        if (more) {
            row_load(t0 + CH);
            stage_load(t0 + CH);
        }
        // Phase 1: dt and dt * u of this lane's steps (past the end: dt = 0, u reads as zero).
        float dt_own[LS], du_own[LS];
#pragma unroll
        for (int i = 0; i < LS; ++i) {
            dt_own[i] = step_dt(dl.at(i), consts, i < mine);
            du_own[i] = dt_own[i] * uu.at(i);
            if constexpr (kSummary) dt_sum += dt_own[i];
        }
        // Phase 2: every step, dt and dt * u from the lane that owns it; C.h of the step kept by its owner.
        float acc_own[LS] = {};
#pragma unroll
        for (int k = 0; k < CH; ++k) {
            const int owner = pair_base + k / LS;
            const float dt = __shfl_sync(kFull, dt_own[k % LS], owner);
            const float du = __shfl_sync(kFull, du_own[k % LS], owner);
            float Bv[NL];
            shared_floats<NL>(&s_B[buf][k][half * NL], Bv);
#pragma unroll
            for (int j = 0; j < NL; ++j) h[j] = fmaf(ex2_mufu(dt * A2[j]), h[j], du * Bv[j]);
            if constexpr (!kSummary) {
                float Cv[NL];
                shared_floats<NL>(&s_C[buf][k][half * NL], Cv);
                float acc0 = Cv[0] * h[0], acc1 = Cv[1] * h[1];
#pragma unroll
                for (int j = 2; j < NL; j += 2) {
                    acc0 = fmaf(Cv[j], h[j], acc0);
                    acc1 = fmaf(Cv[j + 1], h[j + 1], acc1);
                }
                const float part = acc0 + acc1;
                const float acc = part + __shfl_xor_sync(kFull, part, 1);
                if (k / LS == half) acc_own[k % LS] = acc;  // a select: k is a compile-time constant
            }
        }
        // Phase 3: D skip, SiLU(z) gate and y of this lane's steps.
        if constexpr (!kSummary) {
            float out[LS];
#pragma unroll
            for (int i = 0; i < LS; ++i) {
                const float y = fmaf(consts.Dv, uu.at(i), acc_own[i]);
                out[i] = has_z ? y * scan_silu(zz.at(i)) : y;
            }
            if (channel_valid) {
                if (mine == LS) {
                    store_floats<T, LS>(yp + t0, out, true);
                } else {
#pragma unroll
                    for (int i = 0; i < LS; ++i)
                        if (i < mine) yp[t0 + i] = from_f32<T>(out[i]);
                }
            }
        }
        if (more) stage_store(buf ^ 1);
        __syncthreads();
    }
    if constexpr (kSummary) dt_sum += __shfl_xor_sync(kFull, dt_sum, 1);  // both halves' steps
    if (!channel_valid) return;
    if constexpr (kSummary) {
#pragma unroll
        for (int j = 0; j < NL; ++j) a.seg_state[slot(seg + 1, half * NL + j)] = h[j];
        if (half == 0) a.seg_dt_sum[(b * a.nseg + seg) * a.dim + d] = dt_sum;
    } else if (a.has_fin && seg == a.nseg - 1) {
#pragma unroll
        for (int j = 0; j < NL; ++j)
            if (half * NL + j < a.dstate) a.fin[b * a.fin_sb + d * a.fin_sd + (half * NL + j) * a.fin_sn] = h[j];
    }
}

template <class Tr>
void launch_split_scan(mamba_context & ctx, const ScanArgs & a, int64_t batch) {
    launch_segmented_scan<Tr::kN>(ctx, a, batch, Tr::kChannels, Tr::kThreads, selective_scan_split_kernel<Tr, true>, selective_scan_split_kernel<Tr, false>);
}

// ---- split on (b, l, d) buffers: the rows path with two lanes a channel ------------------------------
// The model's views (see selective_scan_rows_kernel): tiles of CH steps x 32 channels of u, delta (and z)
// copied into shared memory with 16-byte cp.async, double buffered; B and C rows of the next tile loaded
// into registers while a tile runs and stored converted to float into the other of two buffers after it;
// y written over the u tile and stored with 16-byte stores at the start of the next tile. The compute is
// split's: lanes 2c and 2c+1 own channel c of the tile, each half of its states; lane `half` reads u,
// delta, z of steps half*8..half*8+7 of the tile's column, computes their dt, dt*u and y; dt and dt*u of
// every step reach the other lane by SHFL, C.h halves meet by one SHFL.XOR.
// One __syncthreads a tile: at its top, the tile has landed and every thread is done with the other
// buffers. The kernel before this one took three a tile in the final pass (two in the summaries): B/C were
// copied raw and converted behind a barrier, and y stored behind another. Measured on an H200 (bf16, ms,
// run 162) against it and against 64-channel blocks (128 threads, 5 an SM; 32-channel blocks hold as many
// warps, 10 an SM):
//   (b, l, d) rows path                    3 barriers, 128 thr  1 barrier, 128  1 barrier, 64 (kept)
//   B1 D5120 L2048, dt given (2.8b model)  0.1438-0.1445        0.1404          0.1378
//   B1 D5120 L2048, bias and softplus      0.1586-0.1592        0.1546          0.1510
//   B1 D5120 L512                          0.0516-0.0528        0.0512          0.0500
//   B8 D5120 L2048                         0.6842-0.6850        0.6605          0.6319
// (32-channel blocks with three barriers lost: 0.1471 dt given, 0.7077 at B8.)
// Bytes and FLOPs are the main path's (top of selective_scan_kernel.cuh). Shared memory per block: 2 x 16
// x 32 x 3 elements + 2 x 2 x 16 x N floats: 10 KB for bf16 N16, 16 KB for float32. 64 threads (32
// channels) a block, at most 96 registers (10 blocks an SM; ptxas, CUDA 11.8, sm_90: the 16-bit N16 dt-given
// summaries and the float32 N8 final passes spill 4-12 bytes, with the B/C registers held over a tile);
// dstate 5..16.
template <class T, int kStates>
struct SplitRowsScanTraits {
    using Elem = T;
    static constexpr int kN = kStates;
    static constexpr int kLaneStates = kStates / 2;
    static_assert(kLaneStates % 4 == 0, "a lane's B/C are whole float4s");
    static constexpr int kChunk = 16;                                // steps per tile
    static constexpr int kLaneSteps = kChunk / 2;                    // steps a lane owns per tile
    static constexpr int kThreads = 64;
    static constexpr int kChannels = kThreads / 2;                   // tile width
    static constexpr int kMinBlocksPerSM = 10;                       // 20 warps an SM, at most 96 registers
    static constexpr int kVec = 16 / int(sizeof(T));                 // elements per 16-byte piece
    static constexpr int kRowPieces = kChannels / kVec;              // pieces per step of a tile
    static constexpr int kTilePieces = kChunk * kRowPieces;          // pieces per tile and tensor
    static constexpr int kPiecesPerThread = kTilePieces / kThreads;
    static constexpr int kBCRowPieces = kN * int(sizeof(T)) / 16;    // pieces per step of B
    static_assert(kTilePieces % kThreads == 0, "tile pieces split evenly over the threads");
    static_assert(kBCRowPieces >= 1, "B/C rows are whole 16-byte pieces");
    static_assert(kChunk == ChannelScanTraits<T, kStates>::kChunk, "segments are cut in base's chunks");
};

// kDtGiven: the call has neither a delta bias nor a softplus (mamba_linear_softplus made dt), so the build
// leaves both out: about 15% fewer instructions a tile in the summaries and 12% in the final pass, 16 fewer
// MUFU ops (H200, bf16 B1 D5120 L2048: 0.1439 against 0.1590 ms with bias and softplus; gpu-results.md run 160).
template <class Tr, bool kSummary, bool kDtGiven>
__global__ void __launch_bounds__(Tr::kThreads, Tr::kMinBlocksPerSM) selective_scan_split_rows_kernel(ScanArgs a) {
    segmented_pass_entry();
    using T = typename Tr::Elem;
    constexpr int N = Tr::kN, NL = Tr::kLaneStates, CH = Tr::kChunk, LS = Tr::kLaneSteps, TH = Tr::kThreads, TC = Tr::kChannels, VEC = Tr::kVec;
    constexpr int kBCRows = kSummary ? 1 : 2;                        // B, and C in the final pass
    constexpr int kBCPieces = kBCRows * CH * Tr::kBCRowPieces;       // 16-byte pieces of B/C a tile
    constexpr int kBCPerThread = (kBCPieces + TH - 1) / TH;
    constexpr unsigned kFull = 0xffffffffu;
    __shared__ __align__(16) T s_u[2][CH][TC];  // u tile; y is written over it
    __shared__ __align__(16) T s_dl[2][CH][TC];
    __shared__ __align__(16) T s_z[kSummary ? 1 : 2][CH][TC];
    __shared__ __align__(16) float s_Bf[2][CH][N];  // B, C of a tile as float32, double buffered
    __shared__ __align__(16) float s_Cf[kSummary ? 1 : 2][kSummary ? 1 : CH][N];

    const int tid = int(threadIdx.x);
    const int half = tid & 1;               // which states and which steps of the tile
    const int col = tid >> 1;               // this channel's column of the tile
    const int pair_base = (tid & 31) & ~1;  // lane of this channel's half 0 in the warp
    const int64_t b = blockIdx.y;
    const int64_t seg = blockIdx.z;
    const int64_t d_first = int64_t(blockIdx.x) * TC;
    const int64_t d_raw = d_first + col;
    const bool channel_valid = d_raw < a.dim;
    const int64_t d = channel_valid ? d_raw : a.dim - 1;  // idle lanes shadow a real channel; they never store
    const int64_t g = d_first / a.channels_per_group;     // the whole block is in one group
    const int64_t t_begin = seg * a.seg_len;
    const int64_t t_end = t_begin + a.seg_len < a.len ? t_begin + a.seg_len : a.len;

    // Tile bases at the block's first channel (unit channel stride).
    const T * ub = reinterpret_cast<const T *>(a.u) + b * a.u_sb + d_first;
    const T * db = reinterpret_cast<const T *>(a.delta) + b * a.dl_sb + d_first;
    const bool has_z = !kSummary && a.has_z;
    const T * zb = has_z ? reinterpret_cast<const T *>(a.z) + b * a.z_sb + d_first : nullptr;
    T * yb = reinterpret_cast<T *>(a.y) + b * a.y_sb + d_first;
    const T * Bp = reinterpret_cast<const T *>(a.B) + b * a.B_sb + g * a.B_sg;
    const T * Cp = reinterpret_cast<const T *>(a.C) + b * a.C_sb + g * a.C_sg;

    auto slot = [&](int64_t s, int n) { return ((b * a.nseg + s) * N + n) * a.dim + d; };
    float A2[NL], h[NL];
#pragma unroll
    for (int j = 0; j < NL; ++j) {
        const int n = half * NL + j;
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

    // Issues the copies of the u, delta (and z) tiles at t0 into buffer buf. Steps past the segment end and
    // channels past dim (dim is a multiple of VEC, so a piece is all in or all out) read as zeros.
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
            if (has_z) cp_async_16(&s_z[buf][k][ch], zb + t * a.z_st + c, in);
        }
    };

    // Piece p of a tile's B (then C) rows is VEC states of one step; its thread loads it into registers
    // (bc_load) and stores it converted (bc_store). Past the end or past dstate: zeros.
    struct BCPiece {
        int k, first;  // step in the tile, first state
        bool is_c, exists;
    };
    auto bc_piece = [&](int j) {  // the thread's j-th piece
        const int p = tid + j * TH;
        return BCPiece{(p / Tr::kBCRowPieces) % CH, (p % Tr::kBCRowPieces) * VEC, p >= CH * Tr::kBCRowPieces, kBCPieces % TH == 0 || p < kBCPieces};
    };
    RawChunk<T, VEC> bc_raw[kBCPerThread];
    auto bc_load = [&](int64_t t0) {
#pragma unroll
        for (int j = 0; j < kBCPerThread; ++j) {
            const BCPiece q = bc_piece(j);
            if (!q.exists) break;
            const int64_t t = t0 + q.k;
            if (a.rows_bc_vec) {
                const T * src = (q.is_c ? Cp + t * a.C_st : Bp + t * a.B_st) + q.first;
                bc_raw[j].template load<true>(src, t < t_end ? VEC : 0, 1);
            } else {
                const T * src = q.is_c ? Cp + t * a.C_st + q.first * a.C_sn : Bp + t * a.B_st + q.first * a.B_sn;
                const int64_t left = a.dstate - q.first;
                const int count = t < t_end ? (left < VEC ? int(left > 0 ? left : 0) : VEC) : 0;
                bc_raw[j].template load<false>(src, count, q.is_c ? a.C_sn : a.B_sn);
            }
        }
    };
    auto bc_store = [&](int buf) {
#pragma unroll
        for (int j = 0; j < kBCPerThread; ++j) {
            const BCPiece q = bc_piece(j);
            if (!q.exists) break;
            float * dst = q.is_c ? &s_Cf[kSummary ? 0 : buf][q.k][q.first] : &s_Bf[buf][q.k][q.first];
#pragma unroll
            for (int e = 0; e < VEC / 4; ++e)
                reinterpret_cast<float4 *>(dst)[e] =
                    make_float4(bc_raw[j].at(4 * e), bc_raw[j].at(4 * e + 1), bc_raw[j].at(4 * e + 2), bc_raw[j].at(4 * e + 3));
        }
    };
    // The block stores the y tile at t0, written over the u tile in buffer buf.
    auto store_y = [&](int buf, int64_t t0) {
        const int steps = t_end - t0 < CH ? int(t_end - t0) : CH;
#pragma unroll
        for (int j = 0; j < Tr::kPiecesPerThread; ++j) {
            const int p = tid + j * TH;
            const int k = p / Tr::kRowPieces, ch = (p % Tr::kRowPieces) * VEC;
            if (k < steps && d_first + ch < a.dim)
                *reinterpret_cast<uint4 *>(yb + (t0 + k) * a.y_st + ch) = *reinterpret_cast<const uint4 *>(&s_u[buf][k][ch]);
        }
    };

    float dt_sum = 0.0f;
    tile_load(0, t_begin);
    cp_async_commit();
    bc_load(t_begin);
    bc_store(0);
    int buf = 0;
    int64_t last_t0 = t_begin;
    for (int64_t t0 = t_begin; t0 < t_end; t0 += CH, buf ^= 1) {
        // The tile at t0 has landed for every thread, and every thread is done with the other buffer.
        cp_async_wait_all();
        __syncthreads();
        // The previous tile's y, before the copies into its buffer (a thread stores exactly the pieces it
        // copies next, so its loads of them come first).
        if constexpr (!kSummary)
            if (t0 > t_begin) store_y(buf ^ 1, t0 - CH);
        last_t0 = t0;
        const bool more = t0 + CH < t_end;
        if (more) {
            tile_load(buf ^ 1, t0 + CH);
            cp_async_commit();
            bc_load(t0 + CH);
        }
        const int steps = t_end - t0 < CH ? int(t_end - t0) : CH;
        const float(*Bf)[N] = s_Bf[buf];
        const float(*Cf)[N] = s_Cf[kSummary ? 0 : buf];
        // Phase 1: dt and dt * u of this lane's steps (past the end: dt = 0, u reads as zero).
        float u_own[LS], dt_own[LS], du_own[LS];
#pragma unroll
        for (int i = 0; i < LS; ++i) {
            const int k = half * LS + i;
            u_own[i] = to_f32<T>(s_u[buf][k][col]);
            const float delta = to_f32<T>(s_dl[buf][k][col]);
            if constexpr (kDtGiven) dt_own[i] = k < steps ? delta : 0.0f;
            else dt_own[i] = step_dt(delta, consts, k < steps);
            du_own[i] = dt_own[i] * u_own[i];
            if constexpr (kSummary) dt_sum += dt_own[i];
        }
        // Phase 2: every step, dt and dt * u from the lane that owns it; C.h of the step kept by its owner.
        float acc_own[LS] = {};
#pragma unroll
        for (int k = 0; k < CH; ++k) {
            const int owner = pair_base + k / LS;
            const float dt = __shfl_sync(kFull, dt_own[k % LS], owner);
            const float du = __shfl_sync(kFull, du_own[k % LS], owner);
            float Bv[NL];
            shared_floats<NL>(&Bf[k][half * NL], Bv);
#pragma unroll
            for (int j = 0; j < NL; ++j) h[j] = fmaf(ex2_mufu(dt * A2[j]), h[j], du * Bv[j]);
            if constexpr (!kSummary) {
                float Cv[NL];
                shared_floats<NL>(&Cf[k][half * NL], Cv);
                float acc0 = Cv[0] * h[0], acc1 = Cv[1] * h[1];
#pragma unroll
                for (int j = 2; j < NL; j += 2) {
                    acc0 = fmaf(Cv[j], h[j], acc0);
                    acc1 = fmaf(Cv[j + 1], h[j + 1], acc1);
                }
                const float part = acc0 + acc1;
                const float acc = part + __shfl_xor_sync(kFull, part, 1);
                if (k / LS == half) acc_own[k % LS] = acc;  // a select: k is a compile-time constant
            }
        }
        // Phase 3: D skip, SiLU(z) gate and y of this lane's steps, written over its u entries (only this
        // lane reads them); the block stores the y tile behind the next barrier.
        if constexpr (!kSummary) {
#pragma unroll
            for (int i = 0; i < LS; ++i) {
                const int k = half * LS + i;
                const float y = fmaf(consts.Dv, u_own[i], acc_own[i]);
                const float gated = has_z ? y * scan_silu(to_f32<T>(s_z[buf][k][col])) : y;
                s_u[buf][k][col] = from_f32<T>(gated);
            }
        }
        if (more) bc_store(buf ^ 1);
    }
    if constexpr (!kSummary) {
        __syncthreads();
        store_y(buf ^ 1, last_t0);
    }
    if constexpr (kSummary) dt_sum += __shfl_xor_sync(kFull, dt_sum, 1);  // both halves' steps
    if (!channel_valid) return;
    if constexpr (kSummary) {
#pragma unroll
        for (int j = 0; j < NL; ++j) a.seg_state[slot(seg + 1, half * NL + j)] = h[j];
        if (half == 0) a.seg_dt_sum[(b * a.nseg + seg) * a.dim + d] = dt_sum;
    } else if (a.has_fin && seg == a.nseg - 1) {
#pragma unroll
        for (int j = 0; j < NL; ++j)
            if (half * NL + j < a.dstate) a.fin[b * a.fin_sb + d * a.fin_sd + (half * NL + j) * a.fin_sn] = h[j];
    }
}

template <class Tr>
void launch_split_rows_scan(mamba_context & ctx, const ScanArgs & a, int64_t batch) {
    if (!a.softplus && !a.has_bias)
        launch_segmented_scan<Tr::kN>(ctx, a, batch, Tr::kChannels, Tr::kThreads, selective_scan_split_rows_kernel<Tr, true, true>,
                                      selective_scan_split_rows_kernel<Tr, false, true>);
    else
        launch_segmented_scan<Tr::kN>(ctx, a, batch, Tr::kChannels, Tr::kThreads, selective_scan_split_rows_kernel<Tr, true, false>,
                                      selective_scan_split_rows_kernel<Tr, false, false>);
}

}  // namespace mamba::cuda::scan
