// Variant kernel `pair` of the contiguous channel path of the Mamba-1 selective scan (MAMBA_CUDA_SCAN_VARIANT):
// two channels per thread, interleaved step by step.
//
// Bytes and FLOPs are those of the main path (top of selective_scan_kernel.cuh). Why: the base kernel is
// latency bound (selective_scan_hoist.cuh says how it was measured); each warp's next instruction
// too often waits on its own chain. Two channels a thread give every instruction stream two independent
// copies of every chain (softplus, 2 x N exp2 and state FMAs, SiLU), and the block's B and C are read from
// shared memory once for both channels (4 instead of 8 LDS.128 a channel-step for N = 16).
// Design:
// - A block is one warp and 64 channels (thread t owns channels t and t + 32; the block sits in one group:
//   channel_scan_supported asks for groups of whole 128-channel blocks). B and C of a chunk are staged by
//   the warp, 2 16-byte pieces a thread for N = 16.
// - u, delta, z rows of both channels are copied into shared memory with 16-byte cp.async one chunk of 16
//   steps ahead (each thread its own rows: no barrier for them) and read back 16 bytes (8 steps) at a
//   time; y of 8 steps leaves with one 16-byte store a channel.
//   Shared memory per block: rows 2 x 3 x 64 x 32 bytes = 12 KB, B/C 4 KB (12 blocks: 192 KB an SM).
// - Registers: 2 x (N states + N scaled A) plus B/C values of a step: at most 168 registers a thread,
//   12 warps an SM (24 channels a lane an SM, against base's 16).
// - 16-bit types only (float32 rows would take twice the shared memory); float32 runs hoist instead.
// - Segments, masking and the B/C staging are base's (selective_scan_kernel.cuh).
#pragma once

#include "selective_scan_kernel.cuh"

namespace mamba::cuda::scan {

template <class T, int kStates>
struct PairScanTraits {
    static_assert(sizeof(T) == 2, "16-bit rows only");
    using Elem = T;
    static constexpr int kN = kStates;
    static constexpr int kChunk = 16;                     // steps per chunk: 32 bytes of a row
    static constexpr int kVec = 16 / int(sizeof(T));      // elements per 16-byte piece
    static constexpr int kPieces = kChunk / kVec;         // pieces per row and chunk
    // One warp a block (64 channels): B8 D5120 is 640 blocks, 4.8 an SM (with 64 threads, 320 blocks would
    // leave SMs with 2 or 3 blocks: a quarter lost to imbalance).
    static constexpr int kThreads = 32;
    static constexpr int kPerThread = 2;                  // channels a thread
    static constexpr int kChannels = kThreads * kPerThread;
    static constexpr int kMinBlocksPerSM = 12;            // 12 warps an SM: at most 168 registers
    static constexpr int kStagePieces = (2 * kN * kPieces + kThreads - 1) / kThreads;  // B/C pieces a thread stages
    static_assert(kChunk == ChannelScanTraits<T, kStates>::kChunk, "segments are cut in base's chunks");
};

template <class Tr, bool kSummary>
__global__ void __launch_bounds__(Tr::kThreads, Tr::kMinBlocksPerSM) selective_scan_pair_kernel(ScanArgs a) {
    using T = typename Tr::Elem;
    constexpr int N = Tr::kN, CH = Tr::kChunk, kVec = Tr::kVec, kPieces = Tr::kPieces, TH = Tr::kThreads, P = Tr::kPerThread;
    constexpr int kRows = kSummary ? N : 2 * N;      // B rows, then C rows
    constexpr int kRowTensors = kSummary ? 2 : 3;    // u, delta (, z)
    __shared__ __align__(16) float s_B[2][CH][N];
    __shared__ __align__(16) float s_C[kSummary ? 1 : 2][CH][N];
    __shared__ __align__(16) T s_rows[2][kRowTensors][Tr::kChannels][CH];

    const int tid = int(threadIdx.x);
    const int64_t b = blockIdx.y;
    const int64_t seg = blockIdx.z;
    const int64_t d_first = int64_t(blockIdx.x) * Tr::kChannels;
    const int64_t g = d_first / a.channels_per_group;  // the whole block is in one group
    const int64_t t_begin = seg * a.seg_len;
    const int64_t t_end = t_begin + a.seg_len < a.len ? t_begin + a.seg_len : a.len;
    const bool has_z = !kSummary && a.has_z;

    // This thread's channels: slot c is block channel tid + c * TH; idle ones shadow a real channel and never store.
    int64_t d[P];
    bool valid[P];
    const T * rows[P][3];
    T * yp[P];
    float A2[P][N], h[P][N];
    StepConsts consts[P];
    auto slot = [&](int64_t s, int n, int64_t dc) { return ((b * a.nseg + s) * N + n) * a.dim + dc; };
#pragma unroll
    for (int c = 0; c < P; ++c) {
        const int64_t d_raw = d_first + tid + c * TH;
        valid[c] = d_raw < a.dim;
        d[c] = valid[c] ? d_raw : a.dim - 1;
        rows[c][0] = reinterpret_cast<const T *>(a.u) + b * a.u_sb + d[c] * a.u_sd;
        rows[c][1] = reinterpret_cast<const T *>(a.delta) + b * a.dl_sb + d[c] * a.dl_sd;
        rows[c][2] = has_z ? reinterpret_cast<const T *>(a.z) + b * a.z_sb + d[c] * a.z_sd : nullptr;
        yp[c] = reinterpret_cast<T *>(a.y) + b * a.y_sb + d[c] * a.y_sd;
#pragma unroll
        for (int n = 0; n < N; ++n) {
            const bool in = n < a.dstate;
            A2[c][n] = in ? a.A[d[c] * a.A_sd + n * a.A_sn] * kLog2e : 0.0f;
            const float init = in && a.has_init ? a.init[b * a.init_sb + d[c] * a.init_sd + n * a.init_sn] : 0.0f;
            if constexpr (kSummary) {
                h[c][n] = 0.0f;
                // Slot 0 holds the initial state, read here, before the last pass may overwrite an aliased final state.
                if (seg == 0 && valid[c]) a.seg_state[slot(0, n, d[c])] = init;
            } else {
                h[c][n] = a.nseg > 1 ? a.seg_state[slot(seg, n, d[c])] : init;
            }
        }
        consts[c] = StepConsts{a.has_bias ? a.delta_bias[d[c] * a.bias_s] : 0.0f, a.has_D ? a.D[d[c] * a.D_s] : 0.0f, a.softplus, has_z};
    }

    // B/C staging as in base, kStagePieces 16-byte pieces a thread: piece i = tid + j * TH (< kRows * kPieces)
    // is piece i % kPieces of row i / kPieces.
    const T * Bp = reinterpret_cast<const T *>(a.B) + b * a.B_sb + g * a.B_sg;
    const T * Cp = reinterpret_cast<const T *>(a.C) + b * a.C_sb + g * a.C_sg;
    constexpr int SP = Tr::kStagePieces;
    RawChunk<T, kVec> stage_raw[SP];
    auto stage_piece = [&](int j) { return (tid + j * TH) % kPieces; };
    auto stage_n = [&](int j) {
        const int row = (tid + j * TH) / kPieces;
        return row < N ? row : row - N;
    };
    auto stage_c = [&](int j) { return (tid + j * TH) / kPieces >= N; };
    auto stager = [&](int j) { return tid + j * TH < kRows * kPieces; };
    auto stage_load = [&](int64_t t0) {
#pragma unroll
        for (int j = 0; j < SP; ++j) {
            if (!stager(j) || stage_n(j) >= a.dstate) continue;
            const T * src = (stage_c(j) ? Cp + stage_n(j) * a.C_sn : Bp + stage_n(j) * a.B_sn) + stage_piece(j) * kVec;
            const int64_t count = t_end - t0 - stage_piece(j) * kVec;
            stage_raw[j].template load<true>(src + t0, count < kVec ? int(count > 0 ? count : 0) : kVec, 1);
        }
    };
    auto stage_store = [&](int buf) {
#pragma unroll
        for (int j = 0; j < SP; ++j) {
            if (!stager(j)) continue;
            float(*dst)[N] = stage_c(j) ? s_C[buf] : s_B[buf];
            const bool in = stage_n(j) < a.dstate;
#pragma unroll
            for (int k = 0; k < kVec; ++k) dst[stage_piece(j) * kVec + k][stage_n(j)] = in ? stage_raw[j].at(k) : 0.0f;
        }
    };

    // Copies this thread's rows of the chunk at t0 into buffer buf; past the end: zeros.
    auto rows_fetch = [&](int64_t t0, int buf) {
        const int64_t left = t_end - t0;
        const int count = left < CH ? int(left) : CH;
#pragma unroll
        for (int c = 0; c < P; ++c) {
#pragma unroll
            for (int r = 0; r < kRowTensors; ++r) {
                if (r == 2 && !has_z) continue;
#pragma unroll
                for (int q = 0; q < kPieces; ++q) {
                    T * dst = &s_rows[buf][r][tid + c * TH][q * kVec];
                    if ((q + 1) * kVec <= count) {
                        cp_async_16(dst, rows[c][r] + t0 + q * kVec, true);
                    } else {
                        // A piece reaching past the end, element by element (what lies past the row end may not
                        // be addressable).
#pragma unroll
                        for (int e = 0; e < kVec; ++e) dst[e] = q * kVec + e < count ? rows[c][r][t0 + q * kVec + e] : from_f32<T>(0.0f);
                    }
                }
            }
        }
        cp_async_commit();
    };

    float dt_sum[P] = {};
    rows_fetch(t_begin, 0);
    stage_load(t_begin);
    stage_store(0);
    __syncthreads();
    int buf = 0;
    for (int64_t t0 = t_begin; t0 < t_end; t0 += CH, buf ^= 1) {
        const bool more = t0 + CH < t_end;
        const int steps = t_end - t0 < CH ? int(t_end - t0) : CH;
        cp_async_wait_all();  // this thread's own rows of this chunk have landed
        if (more) {
            rows_fetch(t0 + CH, buf ^ 1);
            stage_load(t0 + CH);
        }
        // One 16-byte piece (kVec steps) of every row at a time: 16-byte shared reads (a per-step 2-byte read
        // of 32-byte rows would be an 8-way bank conflict), y kept as floats and stored 16 bytes at a time.
#pragma unroll
        for (int q = 0; q < kPieces; ++q) {
            RawChunk<T, kVec> raw[P][kRowTensors];
#pragma unroll
            for (int c = 0; c < P; ++c) {
#pragma unroll
                for (int r = 0; r < kRowTensors; ++r) {
                    const uint4 v = (r == 2 && !has_z) ? make_uint4(0, 0, 0, 0) : *reinterpret_cast<const uint4 *>(&s_rows[buf][r][tid + c * TH][q * kVec]);
                    raw[c][r].w[0] = v.x, raw[c][r].w[1] = v.y, raw[c][r].w[2] = v.z, raw[c][r].w[3] = v.w;
                }
            }
            float out[P][kVec];
#pragma unroll
            for (int i = 0; i < kVec; ++i) {
                const int k = q * kVec + i;
                float dt[P], u[P];
#pragma unroll
                for (int c = 0; c < P; ++c) {
                    u[c] = raw[c][0].at(i);
                    dt[c] = step_dt(raw[c][1].at(i), consts[c], k < steps);  // past the end u reads 0
                    if constexpr (kSummary) dt_sum[c] += dt[c];
                }
                float Bv[N];
                shared_floats<N>(s_B[buf][k], Bv);
#pragma unroll
                for (int n = 0; n < N; ++n) {
#pragma unroll
                    for (int c = 0; c < P; ++c) h[c][n] = fmaf(ex2_mufu(dt[c] * A2[c][n]), h[c][n], (dt[c] * u[c]) * Bv[n]);
                }
                if constexpr (!kSummary) {
                    float Cv[N];
                    shared_floats<N>(s_C[buf][k], Cv);
#pragma unroll
                    for (int c = 0; c < P; ++c) {
                        float acc0 = fmaf(Cv[0], h[c][0], consts[c].Dv * u[c]), acc1 = Cv[1] * h[c][1];
#pragma unroll
                        for (int n = 2; n < N; n += 2) {
                            acc0 = fmaf(Cv[n], h[c][n], acc0);
                            if (n + 1 < N) acc1 = fmaf(Cv[n + 1], h[c][n + 1], acc1);
                        }
                        const float y = acc0 + acc1;
                        out[c][i] = has_z ? y * scan_silu(raw[c][2].at(i)) : y;
                    }
                }
            }
            if constexpr (!kSummary) {
#pragma unroll
                for (int c = 0; c < P; ++c) {
                    if (!valid[c]) continue;
                    if (steps == CH) {
                        store_floats<T, kVec>(yp[c] + t0 + q * kVec, out[c], true);
                    } else {
#pragma unroll
                        for (int i = 0; i < kVec; ++i)
                            if (q * kVec + i < steps) yp[c][t0 + q * kVec + i] = from_f32<T>(out[c][i]);
                    }
                }
            }
        }
        if (more) stage_store(buf ^ 1);
        __syncthreads();
    }
#pragma unroll
    for (int c = 0; c < P; ++c) {
        if (!valid[c]) continue;
        if constexpr (kSummary) {
#pragma unroll
            for (int n = 0; n < N; ++n) a.seg_state[slot(seg + 1, n, d[c])] = h[c][n];
            a.seg_dt_sum[(b * a.nseg + seg) * a.dim + d[c]] = dt_sum[c];
        } else if (a.has_fin && seg == a.nseg - 1) {
#pragma unroll
            for (int n = 0; n < N; ++n)
                if (n < a.dstate) a.fin[b * a.fin_sb + d[c] * a.fin_sd + n * a.fin_sn] = h[c][n];
        }
    }
}

template <class Tr>
void launch_pair_scan(mamba_context & ctx, const ScanArgs & a, int64_t batch) {
    launch_segmented_scan<Tr::kN>(ctx, a, batch, Tr::kChannels, Tr::kThreads, selective_scan_pair_kernel<Tr, true>, selective_scan_pair_kernel<Tr, false>);
}

}  // namespace mamba::cuda::scan
