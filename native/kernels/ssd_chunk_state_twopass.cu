// The chunk states of the chunk-parallel Mamba-2 SSD forward in two passes (state kernel `twopass` of
// ssd_chunk_parallel.cu: the automatic choice where the pair kernel's grid has fewer than 4 blocks per SM
// and these local states take at most 256 MB, or forced by MAMBA_CUDA_SSD_STATE=twopass). Same inputs and the same workspace outputs as the one-pass
// kernel there (pair): S_in float16 + a power-of-two scale per 16 rows,
// dt and acum per (slot, head), the final states float32; the output kernel cannot tell them apart.
//
// Why: the one-pass kernels walk a sequence's chunks serially inside one block (load, dt scan, barrier,
// MMAs, S_in store per chunk). At B1 L2048 H80 that is 160 blocks each walking 16 chunks (one partial
// wave, loads exposed: ~0.11 ms for ~21 MB); at B8 the per-chunk barrier dominates the pair kernel's
// stalls. Here every chunk is independent in pass 1 (16x the blocks), and the serial part left is an
// elementwise float32 carry (pass 2), one FMA per state element and chunk.
//
//   pass 1, ssd_twopass_local_kernel, block = (slot, head, 64 or 32 channels), 8 warps, one chunk:
//     dt (bias, softplus, limit) and acum by warp 0 (a 32-lane scan, 4 steps a lane)  -> dts, acums
//     w_s = dt_s exp(acum_end - acum_s);  L = (x w)^T B  from zero (mma.sync, x w split bf16 hi + lo, as
//     the one-pass kernels do, so L carries float32 precision)                         -> locals
//     stored float16 after a power-of-two scale per 16 rows (S_in's rule, f16_scale_exponent: the
//     tile's max |L| over its warps by one barrier), half the bytes of float32; float32 for the
//     chunks holding one of the sequence's last Q steps (its last chunk, and the one before where
//     the last is partial: at most 2 per sequence, `tail_locals`)
//   pass 2, ssd_twopass_carry_kernel, block = (16 channel rows, head, sequence), 8 floats a thread:
//     S = initial state (or 0); per chunk c of the sequence, in order:
//       S_in[c] = S (float16 after the block's power-of-two scale, its max |S| by one barrier),
//       S = exp(acum_end[c]) S + L[c]   (S float32; L[c] read as float16 times its scale, or float32)
//     the last S -> final_states.
// The state after chunk c is exp(acum_end) S_in + sum_s exp(acum_end - acum_s) dt_s x_s B_s^T, exactly
// the one-pass update (S *= exp(acum_end), then the same MMAs added); only float32 rounding order differs,
// plus one float16 rounding of each stored L.
// Precision of the float16 locals (tolerances of native/tests/test_ssd.cpp: y 4 eps(bf16) + 3e-4 = 0.016
// relative + absolute, final states 2e-4 + 2e-4 relative, elementwise): a rounded L[c] is off by at most
// 2^-11 of itself (float16's 11 bits; the power-of-two scale is exact, and values down to 2^-28 of the
// tile's max keep all 11 bits). S_in already takes one such rounding per chunk (its own storage), so its
// error at most doubles, from ~2^-11 relative: y, whose tolerance is ~30x that, stays within it. The
// final states would NOT: one float16 rounding is up to 2^-11 = 4.9e-4 relative, past 2e-4 + 2e-4 |S|
// for |S| >= ~0.7 (2^-12 of a |S| in [0.5, 1) is 0.81 of it). Hence the float32 tail: every chunk
// rounded to float16 ends at least Q steps before the sequence end, so its error reaches the final
// states multiplied by the decay over a whole chunk, exp(sum of Q dt*A) (<= e^-1.9 = 0.15 at the
// tests' slowest decay, dt = softplus(-3.5) = 0.03, A = -0.5, where |L| ~ 0.06: ~1e-5 absolute; e^-90
// at their typical dt*A of -0.7) -- the final states stay near their float32 accuracy. Zero tiles:
// f16_scale_exponent(0) = 0, scale 1, stored zeros (no inf/NaN); a non-finite max gives scale 1 and
// passes the inf/NaN through, as S_in does.
// Sequence boundaries: chunks restart at every sequence start (ssd_chunk_parallel.cu), so a chunk never
// straddles sequences; pass 1 zeroes steps past its sequence's end (dt 0, x and B 0: acum stays flat, so
// acum[Q - 1] is the chunk's total decay), and pass 2 walks one sequence per block from its own initial
// state. Every option of the one-pass kernels is covered (initial/final states, dt_bias, softplus, dt
// limits, groups, partial last chunks, packed sequences, strided or 16-byte rows).
//
// Bytes and FLOPs at bf16 B8 L2048 H80 P64 N128 G1 (128 slots, 10240 (slot, head) pairs):
//   pass 1: reads x 168 MB, B 4 MB (from L2 once per head: 336 MB of L2 reads), dt 2.6 MB; writes
//           locals 157 MB float16 (15 of 16 chunks) + 21 MB float32 (the last chunk of each sequence)
//           + 0.16 MB scales, dt/acum 10 MB: ~360 MB (was ~520 MB with float32 locals: 336 MB) ->
//           ~0.085 ms at 4.2 TB/s. MMAs hi + lo: 4 P N per
//           (step, head) = 43 GFLOP -> ~0.1 ms of mma.sync, overlapped across blocks (10240 blocks of
//           8 warps, 53 KB of shared memory, 3 resident per SM: <= 80 registers).
//   pass 2: reads locals 178 MB (was 336), writes S_in 168 MB: ~350 MB (was ~500) -> ~0.085 ms;
//           2560 blocks x 16 serial chunk steps, the next chunk's locals loaded during the current one.
//   Measured with float32 locals (Nsight Compute, B8): pass 1 wrote 326 MB, pass 2 read 336 + wrote 154
//   MB at 3.86 TB/s (bandwidth-bound on the locals): 0.318 + 0.136 ms. Float16 locals cut 158 MB from
//   each pass. B1: pass 1 1280 blocks (~10 per SM), writes locals 19.7 MB float16 + 2.6 MB float32
//   (was 42 MB); pass 2 320 blocks x 16 steps reads 22 MB (was 42) + writes S_in 21 MB.
// Measured on an H200 (bf16 L2048 H80 P64 N128 G1, output mma8, ms a call): B8 z twopass 1.016 / pair 1.051
// / mma 1.199 (kernels alone: local 0.318 + carry 0.136 against pair 0.46), B8 0.907 / 0.922 / 1.079, B1 z
// 0.181 / 0.243 / 0.226, B1 0.168 / 0.229 / 0.210. So twopass replaced the one-head mma kernel (removed)
// as the choice at small grids; at large ones pair stays, 1.5-3% slower but without the float32 locals
// (336 MB at B8 L2048 H80, ~1 GB at B4 L8192 H128; float16 since: 168 + 21 MB reserved (one float32
// chunk a sequence: L a multiple of 128), ~0.55 GB).
// Reserved for every slot (the float16 part of the tail chunks stays unused) plus the float32 tails:
// per (slot, head) 2 Pw Nw bytes, per (sequence, head) 4 Pw Nw more, twice that where a partial last
// chunk follows a full one. Sequences of one chunk therefore reserve 1.5x what float32 locals did;
// long ones about half.
// Not measured yet with the float16 locals: whether twopass should then also take B8 (automatic rule
// unchanged).
// The arithmetic per chunk mirrors the removed one-head mma state kernel (fragment layouts: mma_fragments.cuh);
// ptxas (CUDA 11.8), no spills: float32 locals, sm_80 / sm_90: pass 1 (3 blocks per SM asked; the k loop
// not unrolled: unrolled twice it spilled 16 B at that bound) N 128 / 64 channels 78 / 80 registers,
// N 128 / 32 and N 64 / 64 64 / 54, N 64 / 32 50 / 44; pass 2 64 / 56 (N 128) and 56 / 54 (N 64).
// Float16 locals, sm_80 / sm_90, no spills: pass 1 N 128 / 64 80 / 80, N 128 / 32 64 / 63, N 64 / 64
// 64 / 64, N 64 / 32 57 / 52; pass 2 47 / 48 (N 128), 46 / 47 (N 64). (With the chunk's dt scan as a
// helper taking the dt values already loaded, N 128 / 64 spilled 4-8 B at its 80-register bound; taking
// a dt functor, so each dt's product joins the sum as it is loaded, it does not.)
// The locals cannot share S_in's buffer (S_in of chunk c is written while pass 2 still needs the later
// chunks' locals), hence their own workspace (SsdTwoPassLocalsLayout, carved by the plan whenever it
// picks twopass).
// The slot numbering, process_dt, the float16 scale rule, the chunk's dt*A scan and the MMA wrappers are
// ssd_cp_common.cuh's, shared with ssd_chunk_parallel.cu.
#include "launch.cuh"
#include "mma_fragments.cuh"
#include "ssd_chunk_state_twopass.cuh"
#include "ssd_cp_common.cuh"

namespace mamba::cuda {

static_assert(kSsdCpChunk == kSsdTwoPassChunk, "the two-pass state kernels use the chunk-parallel path's chunks and slots");

namespace {

constexpr int kQ = kSsdCpChunk;

// ---- pass 1: the local state of every chunk --------------------------------------------------------
//
// Block = (slot, head, kPT channels), 8 warps; warp = one 16-channel row tile x kNW states, kNT8 n8
// accumulators (8 at 64 channels and N 128: 16 independent MMAs per k step, hi and lo). Shared memory:
// B [Q][N + 8] and x [Q][kPT + 8] bf16 (padded rows: the 8 rows of an ldmatrix matrix on distinct bank
// quads), w [Q] float: 54 KB at N 128, 64 channels. One barrier: the copies (cp.async on 16-byte rows)
// and warp 0's dt scan overlap, then every warp runs its MMAs and stores its accumulators as float2.

template <int kStatePad, int kChannelTile>
struct SsdTwoPassLocalTraits {
    static constexpr int kN = kStatePad;      // dstate padded to 64 or 128
    static constexpr int kPT = kChannelTile;  // channels per block: 32 or 64
    static constexpr int kTP = kPT / 16;      // 16-channel row tiles
    static constexpr int kWarps = 8;
    static constexpr int kThreads = 32 * kWarps;
    static constexpr int kWarpsPerTile = kWarps / kTP;
    static constexpr int kNW = kN / kWarpsPerTile;  // states per warp
    static constexpr int kNT8 = kNW / 8;            // n8 accumulators per warp
    static constexpr int ldN = kN + 8;
    static constexpr int ldP = kPT + 8;
    static constexpr size_t oB = 0;
    static constexpr size_t oX = oB + align128(size_t(kQ) * ldN * 2);
    static constexpr size_t oW = oX + align128(size_t(kQ) * ldP * 2);
    static constexpr size_t oMax = oW + align128(size_t(kQ) * 4);  // [warp]: max |L| of the warp's part
    static constexpr size_t kSmemBytes = oMax + align128(size_t(kWarps) * 4);
    static_assert(kNT8 % 2 == 0 && kNT8 >= 2, "B fragments come two n8 tiles per ldmatrix");
    static_assert(kWarps % kTP == 0, "whole row tiles per warp group");
    static_assert(kThreads % (kN / 8) == 0 && kThreads % (kPT / 8) == 0, "a thread copies the same columns every round");
    static_assert(kQ == 128, "a lane of warp 0 scans 4 steps of the chunk");
};

template <class Tr>
__global__ void __launch_bounds__(Tr::kThreads, 3) ssd_twopass_local_kernel(SsdTwoPassArgs t) {
    const SsdArgs & a = t.a;
    constexpr int N = Tr::kN, PT = Tr::kPT, NT = Tr::kThreads, NT8 = Tr::kNT8;
    constexpr int ldN = Tr::ldN, ldP = Tr::ldP;
    namespace fr = frag;
    extern __shared__ __align__(128) unsigned char smem[];
    bf16_t * sB = reinterpret_cast<bf16_t *>(smem + Tr::oB);
    bf16_t * sX = reinterpret_cast<bf16_t *>(smem + Tr::oX);
    float * sW = reinterpret_cast<float *>(smem + Tr::oW);
    float * sMax = reinterpret_cast<float *>(smem + Tr::oMax);

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int64_t slot = blockIdx.x, h = blockIdx.y;
    const int64_t p0 = int64_t(blockIdx.z) * PT;
    int64_t seq, b, t0, t_end;
    if (!chunk_of_slot(t, slot, seq, b, t0, t_end)) return;  // an unused packed slot (uniform per block)
    const int64_t g = h / a.heads_per_group;
    const int64_t avail = t_end - t0;
    const int steps = avail < kQ ? int(avail) : kQ;
    const bf16_t * xg = reinterpret_cast<const bf16_t *>(a.x.p);
    const bf16_t * Bg = reinterpret_cast<const bf16_t *>(a.B.p);
    const bf16_t zero = __float2bfloat16_rn(0.0f);

    // B and x of the chunk (zeros past the sequence end, dstate and headdim).
    if (t.vec_bc) {
        const int n = tid % (N / 8) * 8;
        for (int k = tid / (N / 8); k < kQ; k += NT / (N / 8)) {
            const bool in = k < steps && n < a.dstate;
            cp_async_16(sB + k * ldN + n, in ? Bg + b * a.B_s[0] + (t0 + k) * a.B_s[1] + g * a.B_s[2] + n : Bg, in);
        }
    } else {
        for (int i = tid; i < kQ * N; i += NT) {
            const int k = i / N, n = i % N;
            sB[k * ldN + n] = (k < steps && n < a.dstate) ? Bg[b * a.B_s[0] + (t0 + k) * a.B_s[1] + g * a.B_s[2] + n * a.B_s[3]] : zero;
        }
    }
    if (t.vec_x) {
        const int pp = tid % (PT / 8) * 8;
        const int64_t p = p0 + pp;
        for (int k = tid / (PT / 8); k < kQ; k += NT / (PT / 8)) {
            const bool in = k < steps && p < a.headdim;
            cp_async_16(sX + k * ldP + pp, in ? xg + b * a.x_s[0] + (t0 + k) * a.x_s[1] + h * a.x_s[2] + p : xg, in);
        }
    } else {
        for (int i = tid; i < kQ * PT; i += NT) {
            const int k = i / PT, pp = i % PT;
            const int64_t p = p0 + pp;
            sX[k * ldP + pp] = (k < steps && p < a.headdim) ? xg[b * a.x_s[0] + (t0 + k) * a.x_s[1] + h * a.x_s[2] + p * a.x_s[3]] : zero;
        }
    }
    cp_async_commit();

    // Warp 0: dt and the inclusive cumulative sum of dt*A (lane: steps 4 lane .. 4 lane + 3), w_s, and
    // (the first channel tile only) dt and acum for the output kernel.
    if (warp == 0) {
        const float A = a.A[h * a.A_s];
        const float bias = a.has_bias ? a.dt_bias[h * a.bias_s] : 0.0f;
        float dt[4], acum[4];
        const auto dt_of = [&](int i) {
            const int k = lane * 4 + i;
            return k < steps ? process_dt(a, a.dt.load(b * a.dt_s[0] + (t0 + k) * a.dt_s[1] + h * a.dt_s[2]), bias) : 0.0f;
        };
        const float acum_end = warp_chunk_scan(dt_of, A, lane, dt, acum);
#pragma unroll
        for (int i = 0; i < 4; ++i) sW[lane * 4 + i] = dt[i] * __expf(acum_end - acum[i]);
        if (blockIdx.z == 0) {
            const int64_t at = (slot * a.heads + h) * kQ + lane * 4;
            *reinterpret_cast<float4 *>(t.dts + at) = make_float4(dt[0], dt[1], dt[2], dt[3]);
            *reinterpret_cast<float4 *>(t.acums + at) = make_float4(acum[0], acum[1], acum[2], acum[3]);
        }
    }
    cp_async_wait_all();
    __syncthreads();  // B, x and w are in

    // L = (x w)^T B: A operand x^T by ldmatrix.trans from x's rows, scaled by w, split hi + lo.
    const int tp = warp / Tr::kWarpsPerTile;               // the warp's 16-channel row tile
    const int n_w = (warp % Tr::kWarpsPerTile) * Tr::kNW;  // its first state
    float L[NT8][4];
#pragma unroll
    for (int nt = 0; nt < NT8; ++nt)
#pragma unroll
        for (int i = 0; i < 4; ++i) L[nt][i] = 0.0f;
#pragma unroll 1
    for (int kk = 0; kk < kQ / 16; ++kk) {
        uint32_t xa[4];  // x^T (p, s) = x[s][p]
        ldsm_x4_trans(xa, sX + (16 * kk + fr::ldsm_at_row(lane)) * ldP + 16 * tp + fr::ldsm_at_col(lane));
        const float2 w_lo = *reinterpret_cast<const float2 *>(sW + 16 * kk + fr::a_col(lane, 0, 0));  // steps 2c, 2c + 1
        const float2 w_hi = *reinterpret_cast<const float2 *>(sW + 16 * kk + fr::a_col(lane, 2, 0));  // steps 2c + 8, 2c + 9
        uint32_t ahi[4], alo[4];
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            const __nv_bfloat162 xv = *reinterpret_cast<const __nv_bfloat162 *>(&xa[r]);
            const float2 w = r / 2 == 0 ? w_lo : w_hi;
            split_pair(__low2float(xv) * w.x, __high2float(xv) * w.y, ahi[r], alo[r]);
        }
#pragma unroll
        for (int np = 0; np < NT8 / 2; ++np) {
            uint32_t fb[4];  // B (s, n) = B[s][n]
            ldsm_x4_trans(fb, sB + (16 * kk + fr::ldsm_b_row(lane)) * ldN + n_w + 16 * np + fr::ldsm_b_col(lane));
            mma_bf16(L[2 * np], ahi, fb[0], fb[1]);
            mma_bf16(L[2 * np + 1], ahi, fb[2], fb[3]);
            mma_bf16(L[2 * np], alo, fb[0], fb[1]);
            mma_bf16(L[2 * np + 1], alo, fb[2], fb[3]);
        }
    }

    // The local state, [Pw][N] rows of the (slot, head) (rows past headdim are zeros: x is). Rows of
    // the tile past Pw are not stored (64-channel blocks over a headdim of 80).
    const bool stored = p0 + 16 * tp < t.Pw;
    const int64_t row0 = p0 + 16 * tp;
    if (t_end - t0 < 2 * kQ) {
        // One of the sequence's last kQ steps is in this chunk: float32 (block-uniform branch).
        const int64_t tail = (t_end - 1 - t0) / kQ;  // 0: the last chunk, 1: the one before it
        if (stored) {
            float * Lg = t.tail_locals + (((seq * t.tails + tail) * a.heads + h) * t.Pw + row0) * N + n_w;
#pragma unroll
            for (int nt = 0; nt < NT8; ++nt)
#pragma unroll
                for (int rr = 0; rr < 2; ++rr)
                    *reinterpret_cast<float2 *>(Lg + fr::acc_row(lane, 2 * rr) * N + 8 * nt + fr::acc_col(lane, 0)) = make_float2(L[nt][2 * rr], L[nt][2 * rr + 1]);
        }
        return;
    }
    // Float16 after the power-of-two scale of the 16-row tile (S_in's rule): the tile's max |L| over
    // its kWarpsPerTile warps, one barrier.
    float m = 0.0f;
#pragma unroll
    for (int nt = 0; nt < NT8; ++nt)
#pragma unroll
        for (int i = 0; i < 4; ++i) m = fmaxf(m, fabsf(L[nt][i]));
    m = warp_max(m);
    if (lane == 0) sMax[warp] = m;
    __syncthreads();
    float tile_max = 0.0f;
#pragma unroll
    for (int w = 0; w < Tr::kWarpsPerTile; ++w) tile_max = fmaxf(tile_max, sMax[tp * Tr::kWarpsPerTile + w]);
    const int scale_exp = f16_scale_exponent(tile_max);
    const float inv_scale = ldexpf(1.0f, -scale_exp);
    if (stored) {
        if (warp % Tr::kWarpsPerTile == 0 && lane == 0) t.local_scales[(slot * a.heads + h) * (t.Pw / 16) + row0 / 16] = ldexpf(1.0f, scale_exp);
        f16_t * Lg = t.locals + ((slot * a.heads + h) * t.Pw + row0) * N + n_w;
#pragma unroll
        for (int nt = 0; nt < NT8; ++nt)
#pragma unroll
            for (int rr = 0; rr < 2; ++rr)
                *reinterpret_cast<__half2 *>(Lg + fr::acc_row(lane, 2 * rr) * N + 8 * nt + fr::acc_col(lane, 0)) =
                    __floats2half2_rn(L[nt][2 * rr] * inv_scale, L[nt][2 * rr + 1] * inv_scale);
    }
}

// ---- pass 2: the carry over a sequence's chunks ----------------------------------------------------
//
// Block = (16 channel rows, head, sequence); thread = 8 consecutive states of one row (two float4 of
// locals, one 16-byte row piece of S_in). Per chunk: one barrier for the block's max |S| (per-warp maxima
// in a parity buffer, so the next chunk's writes cannot overtake this chunk's reads), one float16 scale
// per 16 rows (the output kernel's unit), 16 bytes stored, 8 FMAs. The next chunk's locals and acum_end
// are loaded before this chunk's barrier, so a step costs about one barrier plus the stores.

template <int kStatePad>
struct SsdTwoPassCarryTraits {
    static constexpr int kN = kStatePad;
    static constexpr int kRows = 16;  // rows of one S_in scale
    static constexpr int kVec = 8;    // states per thread
    static constexpr int kThreads = kRows * kN / kVec;  // 256 at N 128, 128 at N 64
    static constexpr int kWarps = kThreads / 32;
    static_assert(kN % kVec == 0 && kThreads % 32 == 0, "whole warps of whole row pieces");
};

template <class Tr>
__global__ void __launch_bounds__(Tr::kThreads) ssd_twopass_carry_kernel(SsdTwoPassArgs t) {
    const SsdArgs & a = t.a;
    constexpr int N = Tr::kN, V = Tr::kVec, W = Tr::kWarps;
    __shared__ float sMax[2][W];
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int64_t tile = blockIdx.x, h = blockIdx.y, seq = blockIdx.z;
    const int r = tid * V / N, n0 = tid * V % N;
    const int64_t p = tile * Tr::kRows + r;
    const int64_t in_pair = p * N + n0;  // offset inside one (slot, head) [Pw][N] block
    int64_t b, t_begin, t_end;
    sequence_span(a, seq, b, t_begin, t_end);

    // The state, from the initial state (zeros past headdim and dstate). Initial and final states may
    // alias: each element is read here and written at the end by the same thread.
    float S[V];
#pragma unroll
    for (int i = 0; i < V; ++i) {
        const int64_t n = n0 + i;
        S[i] = a.has_init && p < a.headdim && n < a.dstate ? a.init[seq * a.init_s[0] + h * a.init_s[1] + p * a.init_s[2] + n * a.init_s[3]] : 0.0f;
    }

    float cur[V], nxt[V];
#pragma unroll
    for (int i = 0; i < V; ++i) cur[i] = nxt[i] = 0.0f;
    float cur_acum_end = 0.0f, nxt_acum_end = 0.0f;
    // The locals of the chunk starting at t0c: float16 times its tile's scale, or float32 for the
    // sequence's last chunk(s) (pass 1's rule).
    auto load = [&](int64_t t0c, float (&v)[V], float & acum_end) {
        const int64_t slot = slot_of(t, seq, t0c);
        if (t_end - t0c < 2 * kQ) {
            const int64_t tail = (t_end - 1 - t0c) / kQ;
            const float4 * Lg = reinterpret_cast<const float4 *>(t.tail_locals + ((seq * t.tails + tail) * a.heads + h) * t.Pw * N + in_pair);
#pragma unroll
            for (int j = 0; j < V / 4; ++j) {
                const float4 q = Lg[j];
                v[4 * j] = q.x;
                v[4 * j + 1] = q.y;
                v[4 * j + 2] = q.z;
                v[4 * j + 3] = q.w;
            }
        } else {
            const uint4 q = *reinterpret_cast<const uint4 *>(t.locals + (slot * a.heads + h) * t.Pw * N + in_pair);
            const float scale = t.local_scales[(slot * a.heads + h) * (t.Pw / 16) + tile];
            const uint32_t words[V / 2] = {q.x, q.y, q.z, q.w};
#pragma unroll
            for (int j = 0; j < V / 2; ++j) {
                const float2 f = __half22float2(*reinterpret_cast<const __half2 *>(&words[j]));
                v[2 * j] = f.x * scale;
                v[2 * j + 1] = f.y * scale;
            }
        }
        acum_end = t.acums[(slot * a.heads + h) * kQ + kQ - 1];  // flat past the sequence end
    };
    if (t_begin < t_end) load(t_begin, cur, cur_acum_end);

    int parity = 0;
    for (int64_t t0 = t_begin; t0 < t_end; t0 += kQ, parity ^= 1) {
        const int64_t slot = slot_of(t, seq, t0);
        if (t0 + kQ < t_end) load(t0 + kQ, nxt, nxt_acum_end);
        float m = 0.0f;
#pragma unroll
        for (int i = 0; i < V; ++i) m = fmaxf(m, fabsf(S[i]));
        m = warp_max(m);
        if (lane == 0) sMax[parity][warp] = m;
        __syncthreads();
        float block_max = 0.0f;
#pragma unroll
        for (int w = 0; w < W; ++w) block_max = fmaxf(block_max, sMax[parity][w]);
        const int scale_exp = f16_scale_exponent(block_max);
        const float inv_scale = ldexpf(1.0f, -scale_exp);
        if (tid == 0) t.scales[(slot * a.heads + h) * (t.Pw / 16) + tile] = ldexpf(1.0f, scale_exp);
        uint32_t packed[V / 2];
#pragma unroll
        for (int j = 0; j < V / 2; ++j) {
            const __half2 v = __floats2half2_rn(S[2 * j] * inv_scale, S[2 * j + 1] * inv_scale);
            packed[j] = *reinterpret_cast<const uint32_t *>(&v);
        }
        *reinterpret_cast<uint4 *>(t.states + (slot * a.heads + h) * t.Pw * N + in_pair) = make_uint4(packed[0], packed[1], packed[2], packed[3]);
        const float decay = __expf(cur_acum_end);
#pragma unroll
        for (int i = 0; i < V; ++i) S[i] = decay * S[i] + cur[i];
#pragma unroll
        for (int i = 0; i < V; ++i) cur[i] = nxt[i];
        cur_acum_end = nxt_acum_end;
    }

    if (a.has_fin) {
#pragma unroll
        for (int i = 0; i < V; ++i) {
            const int64_t n = n0 + i;
            if (p < a.headdim && n < a.dstate) a.fin[seq * a.fin_s[0] + h * a.fin_s[1] + p * a.fin_s[2] + n * a.fin_s[3]] = S[i];
        }
    }
}

// Channels per pass-1 block: 64, or 32 when headdim fits in 32 (less zero work on small heads).
bool narrow_channels(int64_t headdim) { return headdim <= 32; }

template <int kN, int kPT>
void launch_local(mamba_context & ctx, const SsdTwoPassArgs & t, int64_t slots) {
    using Tr = SsdTwoPassLocalTraits<kN, kPT>;
    const auto kernel = ssd_twopass_local_kernel<Tr>;
    MAMBA_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(Tr::kSmemBytes)));
    const dim3 grid(unsigned(slots), unsigned(t.a.heads), unsigned(ceil_div(t.a.headdim, int64_t(kPT))));
    launch_kernel(ctx, "ssd_twopass_local_kernel", false, kernel, grid, dim3(Tr::kThreads), Tr::kSmemBytes, t);
    MAMBA_CUDA_CHECK_LAUNCH("ssd_twopass_local_kernel");
}

template <int kN>
void launch_carry(mamba_context & ctx, const SsdTwoPassArgs & t) {
    using Tr = SsdTwoPassCarryTraits<kN>;
    const auto kernel = ssd_twopass_carry_kernel<Tr>;
    const dim3 grid(unsigned(t.Pw / Tr::kRows), unsigned(t.a.heads), unsigned(t.nseq));
    launch_kernel(ctx, "ssd_twopass_carry_kernel", false, kernel, grid, dim3(Tr::kThreads), 0, t);
    MAMBA_CUDA_CHECK_LAUNCH("ssd_twopass_carry_kernel");
}

template <int kN>
void run_padded(mamba_context & ctx, const SsdTwoPassArgs & t, int64_t slots) {
    if (slots > 0) {
        if (narrow_channels(t.a.headdim)) launch_local<kN, 32>(ctx, t, slots);
        else launch_local<kN, 64>(ctx, t, slots);
    }
    launch_carry<kN>(ctx, t);  // also with no chunk at all: the final states are the initial ones
}

}  // namespace

SsdTwoPassLocalsLayout::SsdTwoPassLocalsLayout(int64_t slots, int64_t nseq, bool packed, int64_t len, int64_t heads, int64_t headdim,
                                               int64_t dstate) {
    tails = packed || (len > kQ && len % kQ != 0) ? 2 : 1;
    const size_t pw = size_t(ceil_div(headdim, 16) * 16), n = size_t(state_pad(dstate));
    const size_t pairs = size_t(slots) * size_t(heads);
    locals = 0;
    local_scales = locals + align128(pairs * pw * n * 2);
    tail_locals = local_scales + align128(pairs * (pw / 16) * 4);
    total = tail_locals + align128(size_t(nseq) * size_t(tails) * size_t(heads) * pw * n * 4);
}

size_t ssd_twopass_smem_bytes(int64_t headdim, int64_t dstate) {
    const bool narrow = narrow_channels(headdim);
    if (dstate <= 64) return narrow ? SsdTwoPassLocalTraits<64, 32>::kSmemBytes : SsdTwoPassLocalTraits<64, 64>::kSmemBytes;
    return narrow ? SsdTwoPassLocalTraits<128, 32>::kSmemBytes : SsdTwoPassLocalTraits<128, 64>::kSmemBytes;
}

void run_ssd_state_twopass(mamba_context & ctx, const SsdTwoPassArgs & t, int64_t slots) {
    if (t.a.dstate <= 64) run_padded<64>(ctx, t, slots);
    else run_padded<128>(ctx, t, slots);
}

}  // namespace mamba::cuda
