// Mamba-2 SSD forward (mamba_ssd) by the chunked state-space-duality algorithm on tensor cores: the
// fallback where the chunk-parallel kernels (ssd_chunk_parallel.cu) do not fit the shared memory.
//
// One block owns (sequence, head, tile of kPT channels p) and walks the sequence in chunks of kQ = 64
// steps, the state S (dstate x kPT, float32) kept in shared memory from chunk to chunk. Because a block
// starts at its own sequence's first step, chunks never straddle packed sequences, the initial state is
// simply S's starting value and the final state its last one. Per chunk, with acum_t the inclusive
// cumulative sum of dt*A inside the chunk (float32):
//   G      = C B^T                                     (Q x Q, K = dstate)         tensor cores
//   M[t,s] = G[t,s] exp(acum_t - acum_s) dt_s, s <= t                              elementwise
//   y      = M X + exp(acum_t) (C S) + D x, then * silu(z)                          tensor cores
//   S     <- exp(acum_end) S + B^T Xw,  Xw[s,p] = x[s,p] dt_s exp(acum_end - acum_s) tensor cores
// (the output uses the state before the chunk, the update the one after; both read B, C and x once.)
// chunk_size only changes rounding (SsdParams), so the GPU chunk length is its own choice.
//
// Precision: bf16 x, B and C are exact tensor-core operands. The float32 operands built from them
// (M, Xw, S) are split into a bf16 high part and a bf16 low part (v = hi + lo to ~2^-17 relative) and
// multiplied twice, so products carry ~16 bits and the states match the float32 recurrence (the tests
// hold final states to 2e-4). Accumulation is float32.
//
// Bytes (bf16 B8 L2048 H80 P64 N128 G1): x, z, y 3 * 168 MB + B, C 8.4 MB (shared by the heads of a
// group, so mostly L2 hits) = 0.51 GB -> 0.12 ms at 4.2 TB/s. No workspace: states never leave the chip.
// FLOPs per chunk per block, in 16x16x16 MMAs (8192 FLOP each), kPT = 64, N = 128: G 80 (causal: 10
// of 16 tiles), y intra 10*4*2 = 80, y inter 4*4*8*2 = 256, state 8*4*4*2 = 256: 672 = 5.5 MFLOP
// (the hi/lo splits double the last three). B8: 640 blocks * 32 chunks = 113 GFLOP.
// Parallelism: one block of 16 warps per SM (shared memory: 184 KB at 64 channels and N 128, 123 KB
// at 32, 101 KB at 16; 512 threads cap registers at 128: 24-136 bytes of L1 spills for sm_90).
// Measured with 4 and 8 warps (1-2 per scheduler), a chunk took 17-22 us against ~2 us of tensor-core
// issue: the dependent shared-memory loads and MMAs of one warp were exposed, so the time followed the
// busiest warp's MMA count (G 80 + y/state 148 per 16 channels, spread over the warps). Hence 16 warps
// for every tile, and the channel tile chosen per problem: the narrowest of 16 and 32 whose blocks fit
// in one wave (B1 H24 P64: 96 blocks of 16 channels instead of 48 of 32; B1 H40: 80 of 32), else 64
// (G is then computed the fewest times: B8 H80 is 640 blocks, 5 waves). A narrower tile shortens the
// busiest warp less than in proportion (G and M are per block whatever the tile), so it is never
// taken when it costs a second wave.
// Expected on an H200 from the busiest warp's MMAs (42 instead of 84 at 64 channels; ~40 at 16
// instead of 94 at 32 with 4 warps): B8 H80 ~1.4-1.8 ms (was 2.70), B1 H80 ~0.3 ms (0.54), B1 H24
// ~0.25 ms (0.70).
// Those next steps (chunk states in parallel, mma.sync with register-resident fragments, G shared by
// the heads of a group) are ssd_chunk_parallel.cu, which takes every shape this kernel does where its
// shared memory fits; this kernel remains the fallback for devices or shapes where it does not.
// Choices: wmma (documented fragment API, no hand-written layouts) over shared memory staged per
// chunk; row pads (+8 bf16, +4 float) keep the 16-row fragment loads off a single bank.
#include <mma.h>

#include "ssd_chunked.cuh"
#include "ssd_host.cuh"

namespace mamba::cuda {

namespace {

namespace wmma = nvcuda::wmma;

template <int kStatePad, int kChannelTile, int kWarpCount>
struct SsdChunkedTraits {
    static constexpr int kN = kStatePad;      // dstate padded to 64 or 128 (zeros beyond dstate)
    static constexpr int kPT = kChannelTile;  // channels p per block (16, 32 or 64)
    static constexpr int kQ = 64;             // steps per chunk
    // Warps per block, independent of the tile: every loop below strides by warps or threads. With one
    // block per SM (shared memory), more warps are what hides the shared-memory and MMA latencies.
    static constexpr int kWarps = kWarpCount;
    // y's float32 operands (M, S) as bf16 hi + lo (true) or hi only (false: half the y MMAs; a host
    // emulation of 2048 bf16 steps put y at 0.5 of the bf16 test tolerance that way, 0.2 with the split).
    // The state update always splits Xw: final states are held to 2e-4.
    static constexpr bool kSplitY = true;
    static constexpr int kThreads = 32 * kWarps;
    // Leading dimensions (elements) of the shared-memory matrices.
    static constexpr int ldN = kN + 8;    // bf16 rows of dstate (C, B)
    static constexpr int ldP = kPT + 8;   // bf16 rows of channels (x, Xw, S hi/lo)
    static constexpr int ldQ = kQ + 8;    // bf16 rows of steps (M hi/lo)
    static constexpr int ldPf = kPT + 4;  // float rows of channels (S, y parts)
    static constexpr int ldQf = kQ + 4;   // float rows of steps (G)
    // Byte offsets of the regions (each a multiple of 128).
    static constexpr size_t align(size_t v) { return (v + 127) / 128 * 128; }
    static constexpr size_t oC = 0;
    static constexpr size_t oB = oC + align(size_t(kQ) * ldN * 2);
    static constexpr size_t oX = oB + align(size_t(kQ) * ldN * 2);
    static constexpr size_t oXwHi = oX + align(size_t(kQ) * ldP * 2);
    static constexpr size_t oXwLo = oXwHi + align(size_t(kQ) * ldP * 2);
    static constexpr size_t oMHi = oXwLo + align(size_t(kQ) * ldP * 2);
    static constexpr size_t oMLo = oMHi + align(size_t(kQ) * ldQ * 2);
    static constexpr size_t oSHi = oMLo + align(size_t(kQ) * ldQ * 2);
    static constexpr size_t oSLo = oSHi + align(size_t(kN) * ldP * 2);
    static constexpr size_t oS = oSLo + align(size_t(kN) * ldP * 2);
    static constexpr size_t oWork = oS + align(size_t(kN) * ldPf * 4);  // G, then the two y parts
    static constexpr size_t kWorkBytes = size_t(kQ) * ldQf * 4 > size_t(2) * kQ * ldPf * 4 ? size_t(kQ) * ldQf * 4 : size_t(2) * kQ * ldPf * 4;
    static constexpr size_t oAcum = oWork + align(kWorkBytes);
    static constexpr size_t oDt = oAcum + align(kQ * 4);
    static constexpr size_t kSmemBytes = oDt + align(kQ * 4);
    static_assert(kQ == 64, "the cumulative sum gives each lane of one warp two steps");
    static_assert(kN % 16 == 0 && kPT % 16 == 0, "whole 16x16 tiles");
    static_assert(kWarps >= 2 && kWarps <= 16, "threadIdx.x < kQ covers the steps; 512 threads at most");
};

constexpr int kSsdChunkedWarps = 16;

using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16_t, wmma::row_major>;
using FragAT = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16_t, wmma::col_major>;
using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16_t, wmma::row_major>;
using FragBT = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16_t, wmma::col_major>;
using FragAcc = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

// The kernel's arguments: the problem plus whether B, C and x rows may be read 16 bytes (8 bf16) at a time.
struct SsdChunkedArgs {
    SsdArgs a;
    bool vec_bc, vec_x;
};

__device__ __forceinline__ void split_bf16(float v, bf16_t & hi, bf16_t & lo) {
    hi = __float2bfloat16_rn(v);
    lo = __float2bfloat16_rn(v - __bfloat162float(hi));
}

template <class Tr>
__global__ void __launch_bounds__(Tr::kThreads) ssd_chunked_kernel(SsdChunkedArgs args) {
    const SsdArgs & a = args.a;
    constexpr int N = Tr::kN, PT = Tr::kPT, Q = Tr::kQ, NW = Tr::kWarps, NT = Tr::kThreads;
    constexpr int ldN = Tr::ldN, ldP = Tr::ldP, ldQ = Tr::ldQ, ldPf = Tr::ldPf, ldQf = Tr::ldQf;
    extern __shared__ __align__(128) unsigned char smem[];
    bf16_t * sC = reinterpret_cast<bf16_t *>(smem + Tr::oC);      // [Q][ldN]  C of the chunk
    bf16_t * sB = reinterpret_cast<bf16_t *>(smem + Tr::oB);      // [Q][ldN]  B of the chunk
    bf16_t * sX = reinterpret_cast<bf16_t *>(smem + Tr::oX);      // [Q][ldP]  x of the chunk
    bf16_t * sXwHi = reinterpret_cast<bf16_t *>(smem + Tr::oXwHi);  // [Q][ldP]  Xw split
    bf16_t * sXwLo = reinterpret_cast<bf16_t *>(smem + Tr::oXwLo);
    bf16_t * sMHi = reinterpret_cast<bf16_t *>(smem + Tr::oMHi);  // [Q][ldQ]  M split
    bf16_t * sMLo = reinterpret_cast<bf16_t *>(smem + Tr::oMLo);
    bf16_t * sSHi = reinterpret_cast<bf16_t *>(smem + Tr::oSHi);  // [N][ldP]  S before the chunk, split
    bf16_t * sSLo = reinterpret_cast<bf16_t *>(smem + Tr::oSLo);
    float * sS = reinterpret_cast<float *>(smem + Tr::oS);        // [N][ldPf] the state
    float * sWork = reinterpret_cast<float *>(smem + Tr::oWork);  // G [Q][ldQf]; then y intra, y inter [Q][ldPf]
    float * sYIntra = sWork;
    float * sYInter = sWork + Q * ldPf;
    float * sAcum = reinterpret_cast<float *>(smem + Tr::oAcum);  // [Q] dt*A, then its inclusive cumsum
    float * sDt = reinterpret_cast<float *>(smem + Tr::oDt);      // [Q] processed dt (0 past the end)

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t h = blockIdx.y, seq = blockIdx.z;
    const int64_t p0 = int64_t(blockIdx.x) * PT;
    const int64_t g = h / a.heads_per_group;
    int64_t b, t_begin, t_end;
    sequence_span(a, seq, b, t_begin, t_end);
    const float A = a.A[h * a.A_s];
    const float bias = a.has_bias ? a.dt_bias[h * a.bias_s] : 0.0f;
    const bf16_t * xg = reinterpret_cast<const bf16_t *>(a.x.p);
    const bf16_t * Bg = reinterpret_cast<const bf16_t *>(a.B.p);
    const bf16_t * Cg = reinterpret_cast<const bf16_t *>(a.C.p);
    const bf16_t zero = __float2bfloat16_rn(0.0f);

    // The starting state (zeros past dstate and headdim, where they stay: B and x are zero there).
    for (int i = threadIdx.x; i < N * PT; i += NT) {
        const int n = i / PT, pp = i % PT;
        const int64_t p = p0 + pp;
        float v = 0.0f;
        if (a.has_init && n < a.dstate && p < a.headdim) v = a.init[seq * a.init_s[0] + h * a.init_s[1] + p * a.init_s[2] + n * a.init_s[3]];
        sS[n * ldPf + pp] = v;
    }

    // Register prefetch of the next chunk's B, C and x rows (16-byte paths only): issued right after a
    // chunk is staged, consumed at the next chunk's start, so the loads overlap a whole chunk's work.
    // Rounds per thread, rounded up; a round r of thread i covers element i + r * NT when that is below
    // the total (the guards are compile-time true when the total is a multiple of NT).
    constexpr int kTotBC = Q * (N / 8), kTotX = Q * (PT / 8), kTotEpi = Q * PT;
    constexpr int kVecBC = (kTotBC + NT - 1) / NT;  // uint4 of C (and of B) per thread
    constexpr int kVecX = (kTotX + NT - 1) / NT;    // uint4 of x per thread
    constexpr int kEpi = (kTotEpi + NT - 1) / NT;   // outputs per thread
    uint4 rC[kVecBC], rB[kVecBC], rX[kVecX];
    auto fetch = [&](int64_t tc) {  // the chunk starting at tc (nothing past t_end)
        const int64_t avail = t_end - tc;
        const uint4 none = make_uint4(0u, 0u, 0u, 0u);
        if (args.vec_bc) {
#pragma unroll
            for (int r = 0; r < kVecBC; ++r) {
                const int i = threadIdx.x + r * NT;
                const int k = i / (N / 8), n = i % (N / 8) * 8;
                const bool in = i < kTotBC && k < avail && n < a.dstate;
                const int64_t t = tc + k;
                rC[r] = in ? *reinterpret_cast<const uint4 *>(Cg + b * a.C_s[0] + t * a.C_s[1] + g * a.C_s[2] + n) : none;
                rB[r] = in ? *reinterpret_cast<const uint4 *>(Bg + b * a.B_s[0] + t * a.B_s[1] + g * a.B_s[2] + n) : none;
            }
        }
        if (args.vec_x) {
#pragma unroll
            for (int r = 0; r < kVecX; ++r) {
                const int i = threadIdx.x + r * NT;
                const int k = i / (PT / 8), pp = i % (PT / 8) * 8;
                const int64_t p = p0 + pp;
                const bool in = i < kTotX && k < avail && p < a.headdim;
                rX[r] = in ? *reinterpret_cast<const uint4 *>(xg + b * a.x_s[0] + (tc + k) * a.x_s[1] + h * a.x_s[2] + p) : none;
            }
        }
    };
    fetch(t_begin);

    for (int64_t t0 = t_begin; t0 < t_end; t0 += Q) {
        const int steps = t_end - t0 < Q ? int(t_end - t0) : Q;
        __syncthreads();  // the previous chunk's epilogue no longer reads shared memory

        // ---- load the chunk: C, B, x (zeros past the end), dt and dt*A ----
        if (args.vec_bc) {
            // dstate % 8 == 0 and unit n stride: whole 8-element groups, prefetched by fetch().
#pragma unroll
            for (int r = 0; r < kVecBC; ++r) {
                const int i = threadIdx.x + r * NT;
                if (i >= kTotBC) break;
                const int k = i / (N / 8), n = i % (N / 8) * 8;
                *reinterpret_cast<uint4 *>(sC + k * ldN + n) = rC[r];
                *reinterpret_cast<uint4 *>(sB + k * ldN + n) = rB[r];
            }
        } else {
            for (int i = threadIdx.x; i < Q * N; i += NT) {
                const int k = i / N, n = i % N;
                const bool in = k < steps && n < a.dstate;
                const int64_t t = t0 + k;
                sC[k * ldN + n] = in ? Cg[b * a.C_s[0] + t * a.C_s[1] + g * a.C_s[2] + n * a.C_s[3]] : zero;
                sB[k * ldN + n] = in ? Bg[b * a.B_s[0] + t * a.B_s[1] + g * a.B_s[2] + n * a.B_s[3]] : zero;
            }
        }
        if (args.vec_x) {
            // headdim % 8 == 0 and unit p stride (p0 is a multiple of 8), prefetched by fetch().
#pragma unroll
            for (int r = 0; r < kVecX; ++r) {
                const int i = threadIdx.x + r * NT;
                if (i >= kTotX) break;
                const int k = i / (PT / 8), pp = i % (PT / 8) * 8;
                *reinterpret_cast<uint4 *>(sX + k * ldP + pp) = rX[r];
            }
        } else {
            for (int i = threadIdx.x; i < Q * PT; i += NT) {
                const int k = i / PT, pp = i % PT;
                const int64_t p = p0 + pp;
                sX[k * ldP + pp] = (k < steps && p < a.headdim) ? xg[b * a.x_s[0] + (t0 + k) * a.x_s[1] + h * a.x_s[2] + p * a.x_s[3]] : zero;
            }
        }
        if (threadIdx.x < Q) {
            const int k = threadIdx.x;
            float dt = 0.0f;
            if (k < steps) {
                dt = a.dt.load(b * a.dt_s[0] + (t0 + k) * a.dt_s[1] + h * a.dt_s[2]) + bias;
                if (a.softplus) dt = softplus_mufu(dt);
                if (a.clamp) dt = fminf(fmaxf(dt, a.dt_min), a.dt_max);
            }
            sDt[k] = dt;
            sAcum[k] = dt * A;
        }
        // This chunk's z, read now and used by the epilogue, so that its latency overlaps the chunk.
        float zr[kEpi];
#pragma unroll
        for (int r = 0; r < kEpi; ++r) {
            const int i = threadIdx.x + r * NT;
            const int k = i / PT, pp = i % PT;
            const int64_t p = p0 + pp;
            zr[r] = (a.has_z && i < kTotEpi && k < steps && p < a.headdim) ? a.z.load(b * a.z_s[0] + (t0 + k) * a.z_s[1] + h * a.z_s[2] + p * a.z_s[3]) : 0.0f;
        }
        __syncthreads();
        fetch(t0 + Q);  // the registers were stashed before the barrier

        // ---- warp 0: inclusive cumsum of dt*A (two steps per lane); every warp: G = C B^T ----
        if (warp == 0) {
            const float v0 = sAcum[2 * lane], v1 = sAcum[2 * lane + 1];
            const float pair = v0 + v1;
            float incl = pair;
#pragma unroll
            for (int off = 1; off < 32; off *= 2) {
                const float o = __shfl_up_sync(0xffffffffu, incl, off);
                if (lane >= off) incl += o;
            }
            const float excl = incl - pair;
            sAcum[2 * lane] = excl + v0;
            sAcum[2 * lane + 1] = excl + v0 + v1;
        }
        // Tile (i, j) of G for j <= i only: M is zero above the diagonal.
        for (int idx = warp; idx < (Q / 16) * (Q / 16); idx += NW) {
            const int i = idx / (Q / 16), j = idx % (Q / 16);
            if (j > i) continue;
            FragAcc acc;
            wmma::fill_fragment(acc, 0.0f);
#pragma unroll 2
            for (int k = 0; k < N / 16; ++k) {
                FragA fc;
                FragBT fbt;  // B^T (n, s) = sB[s][n]: column-major from sB's rows
                wmma::load_matrix_sync(fc, sC + 16 * i * ldN + 16 * k, ldN);
                wmma::load_matrix_sync(fbt, sB + 16 * j * ldN + 16 * k, ldN);
                wmma::mma_sync(acc, fc, fbt, acc);
            }
            wmma::store_matrix_sync(sWork + 16 * i * ldQf + 16 * j, acc, ldQf, wmma::mem_row_major);
        }
        __syncthreads();

        // ---- elementwise: M, Xw and the state before the chunk, each split into bf16 hi + lo ----
        const float acum_end = sAcum[Q - 1];
        for (int i = threadIdx.x; i < Q * Q; i += NT) {
            const int t = i / Q, s = i % Q;
            float v = 0.0f;
            if (s <= t) v = sWork[t * ldQf + s] * __expf(sAcum[t] - sAcum[s]) * sDt[s];
            split_bf16(v, sMHi[t * ldQ + s], sMLo[t * ldQ + s]);
        }
        for (int i = threadIdx.x; i < Q * PT; i += NT) {
            const int s = i / PT, pp = i % PT;
            const float v = __bfloat162float(sX[s * ldP + pp]) * sDt[s] * __expf(acum_end - sAcum[s]);
            split_bf16(v, sXwHi[s * ldP + pp], sXwLo[s * ldP + pp]);
        }
        for (int i = threadIdx.x; i < N * PT; i += NT) {
            const int n = i / PT, pp = i % PT;
            split_bf16(sS[n * ldPf + pp], sSHi[n * ldP + pp], sSLo[n * ldP + pp]);
        }
        __syncthreads();

        // ---- tensor cores: y tiles (intra M X and inter C S kept apart: the latter is scaled per row
        // by exp(acum_t), which an opaque accumulator cannot be) and state tiles ----
        constexpr int kYTiles = (Q / 16) * (PT / 16);
        constexpr int kSTiles = (N / 16) * (PT / 16);
        for (int idx = warp; idx < kYTiles + kSTiles; idx += NW) {
            if (idx < kYTiles) {
                const int i = idx / (PT / 16), c = idx % (PT / 16);
                FragAcc intra, inter;
                wmma::fill_fragment(intra, 0.0f);
                wmma::fill_fragment(inter, 0.0f);
                for (int j = 0; j <= i; ++j) {
                    FragA mhi, mlo;
                    FragB fx;
                    wmma::load_matrix_sync(mhi, sMHi + 16 * i * ldQ + 16 * j, ldQ);
                    if constexpr (Tr::kSplitY) wmma::load_matrix_sync(mlo, sMLo + 16 * i * ldQ + 16 * j, ldQ);
                    wmma::load_matrix_sync(fx, sX + 16 * j * ldP + 16 * c, ldP);
                    wmma::mma_sync(intra, mhi, fx, intra);
                    if constexpr (Tr::kSplitY) wmma::mma_sync(intra, mlo, fx, intra);
                }
#pragma unroll 2
                for (int k = 0; k < N / 16; ++k) {
                    FragA fc;
                    FragB shi, slo;
                    wmma::load_matrix_sync(fc, sC + 16 * i * ldN + 16 * k, ldN);
                    wmma::load_matrix_sync(shi, sSHi + 16 * k * ldP + 16 * c, ldP);
                    if constexpr (Tr::kSplitY) wmma::load_matrix_sync(slo, sSLo + 16 * k * ldP + 16 * c, ldP);
                    wmma::mma_sync(inter, fc, shi, inter);
                    if constexpr (Tr::kSplitY) wmma::mma_sync(inter, fc, slo, inter);
                }
                wmma::store_matrix_sync(sYIntra + 16 * i * ldPf + 16 * c, intra, ldPf, wmma::mem_row_major);
                wmma::store_matrix_sync(sYInter + 16 * i * ldPf + 16 * c, inter, ldPf, wmma::mem_row_major);
            } else {
                const int st = idx - kYTiles;
                const int kn = st / (PT / 16), c = st % (PT / 16);
                FragAcc acc;
                float * tile = sS + 16 * kn * ldPf + 16 * c;
                wmma::load_matrix_sync(acc, tile, ldPf, wmma::mem_row_major);
                const float decay = __expf(acum_end);
#pragma unroll
                for (int e = 0; e < acc.num_elements; ++e) acc.x[e] *= decay;
#pragma unroll 2
                for (int j = 0; j < Q / 16; ++j) {
                    FragAT fbt;  // B^T (n, s) = sB[s][n]
                    FragB whi, wlo;
                    wmma::load_matrix_sync(fbt, sB + 16 * j * ldN + 16 * kn, ldN);
                    wmma::load_matrix_sync(whi, sXwHi + 16 * j * ldP + 16 * c, ldP);
                    wmma::load_matrix_sync(wlo, sXwLo + 16 * j * ldP + 16 * c, ldP);
                    wmma::mma_sync(acc, fbt, whi, acc);
                    wmma::mma_sync(acc, fbt, wlo, acc);
                }
                wmma::store_matrix_sync(tile, acc, ldPf, wmma::mem_row_major);
            }
        }
        __syncthreads();

        // ---- epilogue: y = intra + exp(acum_t) inter + D x, gated by silu(z), written once ----
#pragma unroll
        for (int r = 0; r < kEpi; ++r) {
            const int i = threadIdx.x + r * NT;  // the same element as zr[r]
            const int k = i / PT, pp = i % PT;
            const int64_t p = p0 + pp;
            if (i >= kTotEpi || k >= steps || p >= a.headdim) continue;
            const int64_t t = t0 + k;
            float out = sYIntra[k * ldPf + pp] + __expf(sAcum[k]) * sYInter[k * ldPf + pp];
            if (a.has_D) out += (a.D_per_channel ? a.D[h * a.D_s0 + p * a.D_s1] : a.D[h * a.D_s0]) * __bfloat162float(sX[k * ldP + pp]);
            if (a.has_z) out *= silu_f(zr[r]);
            a.y.store(b * a.y_s[0] + t * a.y_s[1] + h * a.y_s[2] + p * a.y_s[3], out);
        }
    }

    if (a.has_fin) {
        __syncthreads();  // the last state tiles are stored
        for (int i = threadIdx.x; i < N * PT; i += NT) {
            const int n = i / PT, pp = i % PT;
            const int64_t p = p0 + pp;
            if (n < a.dstate && p < a.headdim) a.fin[seq * a.fin_s[0] + h * a.fin_s[1] + p * a.fin_s[2] + n * a.fin_s[3]] = sS[n * ldPf + pp];
        }
    }
}

template <int kN, int kPT, int kWarps>
void launch_ssd_chunked(mamba_context & ctx, const SsdChunkedArgs & args, int64_t nseq) {
    const SsdArgs & a = args.a;
    using Tr = SsdChunkedTraits<kN, kPT, kWarps>;
    const auto kernel = ssd_chunked_kernel<Tr>;
    MAMBA_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(Tr::kSmemBytes)));
    const dim3 grid(unsigned(ceil_div(a.headdim, int64_t(kPT))), unsigned(a.heads), unsigned(nseq));
    count_queued(ctx);
    kernel<<<grid, Tr::kThreads, Tr::kSmemBytes, stream_of(ctx)>>>(args);
    MAMBA_CUDA_CHECK_LAUNCH("ssd_chunked_kernel");
}

// The three channel tiles for one padded dstate: 16 warps each (one block per SM either way).
template <int kN>
void launch_ssd_chunked_tile(mamba_context & ctx, const SsdChunkedArgs & args, int64_t nseq, int tile) {
    if (tile == 64) launch_ssd_chunked<kN, 64, kSsdChunkedWarps>(ctx, args, nseq);
    else if (tile == 32) launch_ssd_chunked<kN, 32, kSsdChunkedWarps>(ctx, args, nseq);
    else launch_ssd_chunked<kN, 16, kSsdChunkedWarps>(ctx, args, nseq);
}

}  // namespace

bool try_ssd_chunked(mamba_context & ctx, const SsdArgs & a, int64_t nseq) {
    const bool bf16 = a.x.dtype == int(DType::BF16) && a.B.dtype == int(DType::BF16) && a.C.dtype == int(DType::BF16);
    if (!bf16 || a.dstate < 1 || a.dstate > 128 || a.heads > 65535 || nseq > 65535) return false;
    int sms = 0, smem_optin = 0;
    MAMBA_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, ctx.device_id));
    MAMBA_CUDA_CHECK(cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, ctx.device_id));
    const bool small_state = a.dstate <= 64;
    // The widest tile needs the most shared memory; narrower ones are chosen only when they fit too.
    auto tile_bytes = [&](int tile) {
        if (small_state) return tile == 64 ? SsdChunkedTraits<64, 64, kSsdChunkedWarps>::kSmemBytes : tile == 32 ? SsdChunkedTraits<64, 32, kSsdChunkedWarps>::kSmemBytes : SsdChunkedTraits<64, 16, kSsdChunkedWarps>::kSmemBytes;
        return tile == 64 ? SsdChunkedTraits<128, 64, kSsdChunkedWarps>::kSmemBytes : tile == 32 ? SsdChunkedTraits<128, 32, kSsdChunkedWarps>::kSmemBytes : SsdChunkedTraits<128, 16, kSsdChunkedWarps>::kSmemBytes;
    };
    if (tile_bytes(16) > size_t(smem_optin)) return false;  // GPUs with less shared memory keep the recurrence kernels
    if (nseq == 0) return true;
    // 16-byte loads need 16-byte aligned rows: unit last stride, every other stride and the extent a
    // multiple of 8 elements, an aligned base.
    using ssd_host::rows_of_8;
    SsdChunkedArgs args{a, rows_of_8(a.B, a.B_s, 3, a.dstate) && rows_of_8(a.C, a.C_s, 3, a.dstate), rows_of_8(a.x, a.x_s, 3, a.headdim)};
    // Tile choice: a block's time is set by its busiest warp, which a narrower tile shortens less than
    // in proportion (G = C B^T and the elementwise M are per block, whatever the tile), while a second
    // wave of blocks doubles the time. So: the narrowest tile whose blocks still fit in one wave (one
    // block per SM), else the widest (B*H large: G is computed the fewest times).
    int tile = 64;
    for (int cand : {16, 32}) {
        if (nseq * a.heads * ceil_div(a.headdim, int64_t(cand)) <= int64_t(sms) && tile_bytes(cand) <= size_t(smem_optin)) {
            tile = cand;
            break;
        }
    }
    if (tile == 64 && tile_bytes(64) > size_t(smem_optin)) tile = tile_bytes(32) <= size_t(smem_optin) ? 32 : 16;
    if (small_state) launch_ssd_chunked_tile<64>(ctx, args, nseq, tile);
    else launch_ssd_chunked_tile<128>(ctx, args, nseq, tile);
    return true;
}

}  // namespace mamba::cuda
