// The output kernel of the chunk-parallel SSD ("lean": the removed mma8 kernel with fewer instructions
// around the same MMAs; the only output kernel since it measured faster at every shape, B8 z 0.840 against
// 1.018 ms, B1 z 0.188 against 0.224: ssd_chunk_parallel.cu's header). Part of ssd_chunk_parallel.cu:
// included there inside its anonymous namespace, after SsdCpOutputTraits, whose block layout, phases and
// counts it shares (that section's comment); helpers from ssd_cp_common.cuh. Bytes and
// MMAs are the same as mma8's (x, z, S_in, y 4 x 168 MB and 1088 MMAs m16n8k16 per block-head at bf16
// B8 L2048 H80 P64 N128); only the work around the MMAs changes, since mma8 is instruction-bound
// (Nsight Compute on an H200, B8 z: ~52 K instructions per (head, chunk) for ~2.3 K HMMA; IMAD, FMUL,
// ISETP, SEL, BRA and the per-element decay mask dominate):
//   * The decay exp(acum_t - acum_s) of phase B is factored at b = 16 st, the first row of the strip:
//     exp(acum_t - acum_b) exp(acum_b - acum_s) (acum falls with t: both factors <= 1 when A <= 0 and
//     dt >= 0, the same product otherwise; with a negative dt, allowed without softplus, acum can rise and
//     fall inside a chunk, and a factor can overflow float32 where the product would not: beyond e^88
//     within 128 steps, a range the float32 recurrence itself barely holds). The column factor dt_s exp(acum_b - acum_s) is a per-head table in shared
//     memory (7 strips x 128 columns, 4 exps a thread per head), so an off-diagonal M tile is G times one
//     float2 a column pair (8 FMUL a lane, no exp, no mask); the row factor r_t = exp(acum_t - acum_b)
//     multiplies the accumulators once per strip, after its off-diagonal tiles and before its diagonal
//     tile (which keeps the per-element masked exp, 2 of a warp's 9 tiles). Phase A scales its rows by
//     exp(acum_b) instead of exp(acum_t), so r_t turns it into exp(acum_t) too.
//   * The off-diagonal tiles are walked by a loop that is not unrolled (warp-dependent trip count): one
//     copy of the body, no per-tile break branches of an unrolled walk.
//   * kFull (the launch decides): no packed sequences, len a multiple of the chunk, headdim a multiple of
//     64, dstate = the padded dstate, and every tensor on its 16-byte-row path. Then every chunk is full
//     and every channel and state is real: bounds checks, the slot search and the generic
//     (element-by-element) paths compile away. Other calls take the general build (the same math, the
//     runtime checks of mma8).
//   * The gate is compile-time: the launch picks kEarlyZ = has_z, so the z code exists only in the z build.
//   * D of the block's 64 channels goes to shared memory once per head (0 without D): the epilogue adds
//     D x with one float2 load and two FMAs, no per-element D branches or global loads.
//   * The z build walks strip_hi first and stores it, then loads strip_lo's z (prefetched to L2 a head
//     ahead) and walks strip_lo: 8 z registers live, not 16. The quad transposes of z and y are butterfly
//     rounds (quad_transpose_bfly) instead of lane-indexed register picks.
//   Shared memory: mma8's plus the 3.5 KB column-factor table and 256 B of D (N 128: 111.5 KB; two blocks
//   still fit an SM). ptxas sm_90 (CUDA 11.8, --use_fast_math), 128 registers, spills N 128 / N 64: full
//   builds 0 / 0 with and without z; general builds without z 0 / 4 B, with z 64 / 8 B (mma8: 8 / 4 B
//   without z, 80 / 76 B with z). SASS of the full z build: ~1.55 K instructions in the head loop, the
//   off-diagonal tile loop ~70 instructions for its 8 HMMA (7 of a warp's 9 tiles); expected ~2 K
//   instructions a warp per head against mma8's ~6.5 K (52 K per (head, chunk), Nsight Compute).

// A transpose inside a quad (in: v[j] = word q of item j, q = lane % 4; out: v[j] = word j of
// item q; its own inverse) as two butterfly rounds, no lane-indexed register picks: round 1 transposes
// the 2 x 2 blocks (lanes q, q ^ 1), round 2 swaps the off-diagonal blocks (lanes q, q ^ 2). Four
// shuffles and selects on the lane's bits, against three shuffles and ~20 selects and branches.
__device__ __forceinline__ void quad_transpose_bfly(uint32_t (&v)[4], int lane) {
#pragma unroll
    for (int round = 0; round < 2; ++round) {
        const int d = 1 << round;  // register and lane distance
        const bool upper = (lane & d) != 0;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            if (j & d) continue;  // pairs (j, j + d)
            // The lower lane sends its v[j + d] and receives into it, the upper lane the same with v[j].
            const uint32_t got = __shfl_xor_sync(0xffffffffu, upper ? v[j] : v[j + d], d);
            v[j] = upper ? got : v[j];
            v[j + d] = upper ? v[j + d] : got;
        }
    }
}

template <int kStatePad, bool kEarlyZArg, bool kFullArg>
struct SsdCpOutputLeanTraits : SsdCpOutputTraits<kStatePad, kEarlyZArg> {
    using Base = SsdCpOutputTraits<kStatePad, kEarlyZArg>;
    static constexpr bool kFull = kFullArg;
    static constexpr bool kHasZ = kEarlyZArg;  // launched with kEarlyZ = has_z
    // Column factors dt_s exp(acum_{16 st} - acum_s) for strips st = 1 .. 7, columns s < 16 st.
    static constexpr int kDecayFloats = (Base::kStrips - 1) * Base::kQ;
    static constexpr size_t oDecay = Base::kSmemBytes;
    // D of the block's channels for the head (0 without D and past headdim): the epilogue's D x branch-free.
    static constexpr size_t oDvec = oDecay + align128(size_t(kDecayFloats) * 4);
    static constexpr size_t kSmemBytes = oDvec + align128(size_t(Base::kPT) * 4);
    static_assert(kSmemBytes * 2 + 2048 <= 228 * 1024, "two blocks fit an H100/H200 SM");
    static_assert(Base::kThreads % Base::kQ == 0, "a thread fills the same column of every strip");
    static_assert((Base::kQ * (kStatePad / 8)) % Base::kThreads == 0 && (Base::kPT * (kStatePad / 8)) % Base::kThreads == 0 &&
                      (Base::kQ * (Base::kPT / 8)) % Base::kThreads == 0,
                  "the 16-byte copies of C/B, S_in and x in whole rounds of the block");
};

template <class Tr>
__global__ void __launch_bounds__(Tr::kThreads, Tr::kMinBlocks) ssd_cp_output_lean_kernel(SsdCpArgs c) {
    const SsdArgs & a = c.a;
    constexpr int N = Tr::kN, Q = Tr::kQ, PT = Tr::kPT, PW = Tr::kPW, NT = Tr::kThreads, KN = Tr::kKN, NT8 = Tr::kNT;
    constexpr int ldN = Tr::ldN, ldP = Tr::ldP, GF = int(Tr::kGTileFloats);
    constexpr bool kFull = Tr::kFull, kHasZ = Tr::kHasZ;
    namespace fr = frag;
    extern __shared__ __align__(128) unsigned char smem[];
    bf16_t * sC = reinterpret_cast<bf16_t *>(smem + Tr::oC);
    f16_t * sC16 = reinterpret_cast<f16_t *>(smem + Tr::oC);
    float * sCscale = reinterpret_cast<float *>(smem + Tr::oCscale);
    float * sG = reinterpret_cast<float *>(smem + Tr::oG);
    f16_t * sS = reinterpret_cast<f16_t *>(smem + Tr::oS);
    bf16_t * sX = reinterpret_cast<bf16_t *>(smem + Tr::oX);
    bf16_t * sB = reinterpret_cast<bf16_t *>(smem + Tr::oS);
    float * sDecay = reinterpret_cast<float *>(smem + Tr::oDecay);
    float * sDvec = reinterpret_cast<float *>(smem + Tr::oDvec);
    auto small = [&](int buf) { return smem + Tr::oSmall + size_t(buf) * Tr::kSmallBytes; };
    // The compile-time answers of the full build (the general build asks the arguments).
    const bool vec_bc = kFull || c.vec_bc, vec_x = kFull || c.vec_x, vec_zy = kFull || c.vec_zy;
    auto channel_in = [&](int64_t p) { return kFull || p < a.headdim; };
    auto state_in = [&](int n) { return kFull || n < a.dstate; };

    int64_t seq, b, t0, t_end;
    const int64_t slot = blockIdx.x;
    if constexpr (kFull) {
        seq = slot / c.chunks;
        b = seq;
        t0 = (slot - seq * c.chunks) * Q;
        t_end = t0 + Q;
    } else {
        if (!chunk_of_slot(c, slot, seq, b, t0, t_end)) return;  // a slot no chunk uses (packed)
    }
    const int steps = kFull ? Q : (t_end - t0 < Q ? int(t_end - t0) : Q);
    auto step_in = [&](int t) { return kFull || t < steps; };
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int64_t g = blockIdx.y / c.head_tiles, ht = blockIdx.y % c.head_tiles;
    const int64_t h_first = g * a.heads_per_group + ht * c.heads_per_block;
    const int64_t rest = a.heads_per_group - ht * c.heads_per_block;
    const int nh = int(rest < c.heads_per_block ? rest : c.heads_per_block);
    const int64_t p0 = int64_t(blockIdx.z) * PT;
    const bf16_t * xg = reinterpret_cast<const bf16_t *>(a.x.p);
    const bf16_t * Bg = reinterpret_cast<const bf16_t *>(a.B.p);
    const bf16_t * Cg = reinterpret_cast<const bf16_t *>(a.C.p);
    const bf16_t zero = __float2bfloat16_rn(0.0f);
    const int pair = warp % Tr::kPairs;
    const int strip_lo = pair, strip_hi = Tr::kStrips - 1 - pair;
    const int pw0 = (warp / Tr::kPairs) * PW;  // the warp's first channel in the block

    // ---- C and B of the chunk (zeros past the end and past dstate) ----
    if (vec_bc) {
        const int n = tid % (N / 8) * 8;
        const bf16_t * Crow = Cg + b * a.C_s[0] + t0 * a.C_s[1] + g * a.C_s[2] + n;
        const bf16_t * Brow = Bg + b * a.B_s[0] + t0 * a.B_s[1] + g * a.B_s[2] + n;
#pragma unroll
        for (int i = 0; i < Q * (N / 8) / NT; ++i) {  // a fixed count: no loop test on the thread index
            const int k = tid / (N / 8) + i * (NT / (N / 8));
            const bool in = step_in(k) && state_in(n);
            cp_async_16(sC + k * ldN + n, in ? Crow + k * a.C_s[1] : Cg, in);
            cp_async_16(sB + k * ldN + n, in ? Brow + k * a.B_s[1] : Bg, in);
        }
        cp_async_commit();
    } else {
        for (int i = tid; i < Q * N; i += NT) {
            const int k = i / N, n = i % N;
            const bool in = k < steps && n < a.dstate;
            const int64_t t = t0 + k;
            sC[k * ldN + n] = in ? Cg[b * a.C_s[0] + t * a.C_s[1] + g * a.C_s[2] + n * a.C_s[3]] : zero;
            sB[k * ldN + n] = in ? Bg[b * a.B_s[0] + t * a.B_s[1] + g * a.B_s[2] + n * a.B_s[3]] : zero;
        }
    }

    // S_in of head h, its scales, dt and acum (into small buffer buf): one cp.async group.
    auto stage_state = [&](int64_t h, int buf) {
        const f16_t * S = c.states + ((slot * a.heads + h) * c.Pw + p0) * N;
        const int n = tid % (N / 8) * 8;
#pragma unroll
        for (int i = 0; i < PT * (N / 8) / NT; ++i) {
            const int pp = tid / (N / 8) + i * (NT / (N / 8));
            const bool in = channel_in(p0 + pp);
            cp_async_16(sS + pp * ldN + n, in ? S + pp * N + n : c.states, in);
        }
        unsigned char * sm = small(buf);
        const int64_t pr = (slot * a.heads + h) * Q;
        if (tid < Q / 4) cp_async_16(sm + Tr::sDt + tid * 16, c.dts + pr + tid * 4, true);
        else if (tid < Q / 2) cp_async_16(sm + Tr::sAcum + (tid - Q / 4) * 16, c.acums + pr + (tid - Q / 4) * 4, true);
        else if (tid < Q / 2 + PT / 16) {
            const int i = tid - Q / 2;
            reinterpret_cast<float *>(sm + Tr::sScale)[i] = kFull || p0 + 16 * i < c.Pw ? c.scales[(slot * a.heads + h) * (c.Pw / 16) + p0 / 16 + i] : 1.0f;
        }
        cp_async_commit();
    };
    // x of head h: one cp.async group (plain stores on the generic path).
    auto stage_x = [&](int64_t h) {
        if (vec_x) {
            const int pp = tid % (PT / 8) * 8;
            const int64_t p = p0 + pp;
            const bf16_t * xrow = xg + b * a.x_s[0] + t0 * a.x_s[1] + h * a.x_s[2] + p;
#pragma unroll
            for (int i = 0; i < Q * (PT / 8) / NT; ++i) {
                const int s = tid / (PT / 8) + i * (NT / (PT / 8));
                const bool in = step_in(s) && channel_in(p);
                cp_async_16(sX + s * ldP + pp, in ? xrow + s * a.x_s[1] : xg, in);
            }
        } else {
            for (int i = tid; i < Q * PT; i += NT) {
                const int s = i / PT, pp = i % PT;
                const int64_t p = p0 + pp;
                sX[s * ldP + pp] = (s < steps && p < a.headdim) ? xg[b * a.x_s[0] + (t0 + s) * a.x_s[1] + h * a.x_s[2] + p * a.x_s[3]] : zero;
            }
        }
        cp_async_commit();
    };
    // x, S_in and z of head hn towards L2 a phase ahead of their use (as mma8).
    auto prefetch_head = [&](int64_t hn) {
        if (!channel_in(p0)) return;
        {
            const int64_t rows = kFull ? PT : (c.Pw - p0 < PT ? c.Pw - p0 : PT);
            if (tid < rows * N * 2 / 128)
                prefetch_l2(reinterpret_cast<const char *>(c.states + ((slot * a.heads + hn) * c.Pw + p0) * N) + tid * 128);
        }
        if (vec_x && step_in(tid) && tid < Q) prefetch_l2(xg + b * a.x_s[0] + (t0 + tid) * a.x_s[1] + hn * a.x_s[2] + p0);
        if (kHasZ && vec_zy && channel_in(p0 + pw0)) {
            const int t = lane < 16 ? 16 * strip_lo + lane : 16 * strip_hi + lane - 16;
            if (step_in(t)) prefetch_l2(reinterpret_cast<const bf16_t *>(a.z.p) + b * a.z_s[0] + (t0 + t) * a.z_s[1] + hn * a.z_s[2] + p0 + pw0);
        }
    };
    prefetch_head(h_first);
    cp_async_wait_all();
    __syncthreads();

    // ---- G = C B^T: 36 tiles over the warps, stored in the accumulator layout (as mma8) ----
#pragma unroll 1
    for (int t = warp; t < Tr::kTri; t += Tr::kWarps) {
        int st = 0;
        while ((st + 1) * (st + 2) / 2 <= t) ++st;
        const int jt = t - st * (st + 1) / 2;
        float acc[2][2][4];  // [k parity][n8 half]: two chains per n8 half
#pragma unroll
        for (int u = 0; u < 2; ++u)
#pragma unroll
            for (int q = 0; q < 2; ++q)
#pragma unroll
                for (int e = 0; e < 4; ++e) acc[u][q][e] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < KN; ++kk) {
            uint32_t fa[4], fb[4];
            ldsm_x4(fa, sC + (16 * st + fr::ldsm_a_row(lane)) * ldN + 16 * kk + fr::ldsm_a_col(lane));
            ldsm_x4(fb, sB + (16 * jt + fr::ldsm_bt_row(lane)) * ldN + 16 * kk + fr::ldsm_bt_col(lane));
            mma_bf16(acc[kk % 2][0], fa, fb[0], fb[1]);
            mma_bf16(acc[kk % 2][1], fa, fb[2], fb[3]);
        }
#pragma unroll
        for (int q = 0; q < 2; ++q)
            *reinterpret_cast<float4 *>(sG + t * GF + q * 128 + lane * 4) =
                make_float4(acc[0][q][0] + acc[1][q][0], acc[0][q][1] + acc[1][q][1], acc[0][q][2] + acc[1][q][2], acc[0][q][3] + acc[1][q][3]);
    }
    __syncthreads();  // G is complete; B (under S_in and x) and C are no longer read as bf16

    // ---- C rows as float16, each divided by a power of two (its scale joins exp(acum)) ----
#pragma unroll 1
    for (int r = warp; r < Q; r += Tr::kWarps) {
        constexpr int E = N / 32;
        float v[E], m = 0.0f;
#pragma unroll
        for (int e = 0; e < E; ++e) {
            v[e] = __bfloat162float(sC[r * ldN + lane + 32 * e]);
            m = fmaxf(m, fabsf(v[e]));
        }
        const int scale_exp = f16_scale_exponent(warp_max(m));
        const float inv = ldexpf(1.0f, -scale_exp);
#pragma unroll
        for (int e = 0; e < E; ++e) sC16[r * ldN + lane + 32 * e] = __float2half_rn(v[e] * inv);
        if (lane == 0) sCscale[r] = ldexpf(1.0f, scale_exp);
    }
    stage_state(h_first, 0);

    const int gl = lane / 4;  // accumulator rows gl and gl + 8 of a strip
    const int q4 = lane % 4;
    const int col2 = fr::acc_col(lane, 0);  // the lane's first column of an n8 tile
#pragma unroll 1
    for (int j = 0; j < nh; ++j) {
        const int64_t h = h_first + j;
        const int buf = j & 1;
        cp_async_wait_all();
        __syncthreads();  // S_in(h) and its dt/acum are in; every warp is done with x(h - 1) and the decay table
        stage_x(h);
        if (j + 1 < nh) prefetch_head(h + 1);
        const unsigned char * sm = small(buf);
        const float * sDt = reinterpret_cast<const float *>(sm + Tr::sDt);
        const float * sAcum = reinterpret_cast<const float *>(sm + Tr::sAcum);
        const float * sSscale = reinterpret_cast<const float *>(sm + Tr::sScale);

        // Column factors of this head (read in phase B, after the next barrier).
        {
            const int s = tid % Q;
            const float as = sAcum[s], ds = sDt[s];
#pragma unroll
            for (int st = 1 + tid / Q; st < Tr::kStrips; st += NT / Q)
                if (s < 16 * st) sDecay[(st - 1) * Q + s] = __expf(sAcum[16 * st] - as) * ds;
            if (tid < PT) {
                const int64_t p = p0 + tid;
                sDvec[tid] = a.has_D && channel_in(p) ? a.D[h * a.D_s0 + (a.D_per_channel ? p * a.D_s1 : 0)] : 0.0f;
            }
        }

        // ---- phase A: acc = exp(acum_b) scale_t (C16 S_in^T), b = the strip's first row ----
        float acc[2][NT8][4];
#pragma unroll
        for (int si = 0; si < 2; ++si)
#pragma unroll
            for (int nt = 0; nt < NT8; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e) acc[si][nt][e] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < KN; ++kk) {
            uint32_t fa[2][4];
            ldsm_x4(fa[0], sC16 + (16 * strip_lo + fr::ldsm_a_row(lane)) * ldN + 16 * kk + fr::ldsm_a_col(lane));
            ldsm_x4(fa[1], sC16 + (16 * strip_hi + fr::ldsm_a_row(lane)) * ldN + 16 * kk + fr::ldsm_a_col(lane));
#pragma unroll
            for (int np = 0; np < NT8 / 2; ++np) {
                uint32_t fb[4];  // S_in^T (n, p) = sS[p][n]
                ldsm_x4(fb, sS + (pw0 + 16 * np + fr::ldsm_bt_row(lane)) * ldN + 16 * kk + fr::ldsm_bt_col(lane));
#pragma unroll
                for (int si = 0; si < 2; ++si) {
                    mma_f16(acc[si][2 * np], fa[si], fb[0], fb[1]);
                    mma_f16(acc[si][2 * np + 1], fa[si], fb[2], fb[3]);
                }
            }
        }
#pragma unroll
        for (int si = 0; si < 2; ++si) {
            const int st = si == 0 ? strip_lo : strip_hi;
            const int t_a = 16 * st + gl;
            const float eb = __expf(sAcum[16 * st]);
            const float row_a = eb * sCscale[t_a], row_b = eb * sCscale[t_a + 8];
#pragma unroll
            for (int nt = 0; nt < NT8; ++nt) {
                const float cs = sSscale[(pw0 + 8 * nt) / 16];
                acc[si][nt][0] *= row_a * cs;
                acc[si][nt][1] *= row_a * cs;
                acc[si][nt][2] *= row_b * cs;
                acc[si][nt][3] *= row_b * cs;
            }
        }

        cp_async_wait_all();
        __syncthreads();  // x(h) and the decay table are in; every warp is done with S_in(h)
        if (j + 1 < nh) stage_state(h + 1, buf ^ 1);

        // z of the warp's rows as 16-byte pieces ([strip][row gl + 8 rr]: channels pw0 + 8 q4 .. + 7). The
        // z build loads strip_hi's before phase B and stores that strip first (its long walk hides the
        // loads), then loads strip_lo's: 8 z registers live at a time, not 16 (mma8 spilled there).
        auto load_z_row = [&](int si, int rr) {
            const int t = 16 * (si == 0 ? strip_lo : strip_hi) + gl + 8 * rr;
            const int64_t p = p0 + pw0 + 8 * q4;
            uint4 v = make_uint4(0u, 0u, 0u, 0u);
            if (step_in(t) && channel_in(p))
                v = *reinterpret_cast<const uint4 *>(reinterpret_cast<const bf16_t *>(a.z.p) + b * a.z_s[0] + (t0 + t) * a.z_s[1] + h * a.z_s[2] + p);
            return v;
        };
        // z rows of strip si (zeros without z or off the row path).
        auto load_z_strip = [&](int si, uint4 (&zs)[2]) {
#pragma unroll
            for (int rr = 0; rr < 2; ++rr) zs[rr] = kHasZ && vec_zy ? load_z_row(si, rr) : make_uint4(0u, 0u, 0u, 0u);
        };

        // ---- epilogue of strip si from the accumulators: + D x, gate, store as 16-byte row pieces ----
        auto store_strip = [&](int si, const float (&ac)[NT8][4], const uint4 (&zs)[2]) {
            bf16_t * yh = reinterpret_cast<bf16_t *>(a.y.p) + b * a.y_s[0] + t0 * a.y_s[1] + h * a.y_s[2] + p0 + pw0 + 8 * q4;
#pragma unroll
            for (int rr = 0; rr < 2; ++rr) {
                const int t = 16 * (si == 0 ? strip_lo : strip_hi) + gl + 8 * rr;
                uint32_t zw[4] = {zs[rr].x, zs[rr].y, zs[rr].z, zs[rr].w};
                if (kHasZ) quad_transpose_bfly(zw, lane);  // zw[nt]: channels pw0 + 8 nt + 2 q4, + 1
                uint32_t yw[4];
#pragma unroll
                for (int nt = 0; nt < NT8; ++nt) {
                    const int pp = pw0 + 8 * nt + 2 * q4;
                    float v[2] = {ac[nt][2 * rr], ac[nt][2 * rr + 1]};
                    const __nv_bfloat162 z2 = *reinterpret_cast<const __nv_bfloat162 *>(&zw[nt]);
                    {
                        const __nv_bfloat162 x2 = *reinterpret_cast<const __nv_bfloat162 *>(sX + t * ldP + pp);
                        const float2 d2 = *reinterpret_cast<const float2 *>(sDvec + pp);
                        v[0] += d2.x * __low2float(x2);
                        v[1] += d2.y * __high2float(x2);
                    }
                    if (kHasZ) {
                        v[0] *= silu_f(__low2float(z2));
                        v[1] *= silu_f(__high2float(z2));
                    }
                    const __nv_bfloat162 y2 = __floats2bfloat162_rn(v[0], v[1]);
                    yw[nt] = *reinterpret_cast<const uint32_t *>(&y2);
                }
                quad_transpose_bfly(yw, lane);  // yw: channels pw0 + 8 q4 .. + 7 of row t
                if (step_in(t) && channel_in(p0 + pw0 + 8 * q4))
                    *reinterpret_cast<uint4 *>(yh + t * a.y_s[1]) = as_uint4(yw);
            }
        };

        // ---- phase B: + M X, M as bf16 hi + lo ----
        // Off-diagonal tile (st, jt < st): M = G times the column factors of strip st (no mask, no exp).
        auto make_m_off = [&](int st, int jt, uint32_t (&mhi)[4], uint32_t (&mlo)[4]) {
            const float * Gt = sG + (st * (st + 1) / 2 + jt) * GF + lane * 4;
            const float * D = sDecay + (st - 1) * Q + 16 * jt + col2;
            float m[2][4];
#pragma unroll
            for (int q = 0; q < 2; ++q) {
                const float4 gq = *reinterpret_cast<const float4 *>(Gt + q * 128);
                const float2 d2 = *reinterpret_cast<const float2 *>(D + 8 * q);  // columns s0, s0 + 1
                m[q][0] = gq.x * d2.x;
                m[q][1] = gq.y * d2.y;
                m[q][2] = gq.z * d2.x;
                m[q][3] = gq.w * d2.y;
            }
#pragma unroll
            for (int r = 0; r < 4; ++r)
                split_pair(m[fr::a_from_acc_tile(r)][fr::a_from_acc_elem(r, 0)], m[fr::a_from_acc_tile(r)][fr::a_from_acc_elem(r, 1)], mhi[r], mlo[r]);
        };
        // Diagonal tile of strip st: the full masked decay per element (as mma8). The strip's acum values
        // are read again from shared memory where they are needed (not held through phase B: registers).
        auto make_m_diag = [&](int st, uint32_t (&mhi)[4], uint32_t (&mlo)[4]) {
            const float acum_t[2] = {sAcum[16 * st + gl], sAcum[16 * st + gl + 8]};
            const float * Gt = sG + (st * (st + 1) / 2 + st) * GF + lane * 4;
            float m[2][4];
#pragma unroll
            for (int q = 0; q < 2; ++q) {
                const float4 gq = *reinterpret_cast<const float4 *>(Gt + q * 128);
                const float gv[4] = {gq.x, gq.y, gq.z, gq.w};
                const int c0 = 8 * q + col2;  // columns c0, c0 + 1 of the tile; rows gl, gl + 8
                const float2 dt2 = *reinterpret_cast<const float2 *>(sDt + 16 * st + c0);
                const float2 ac2 = *reinterpret_cast<const float2 *>(sAcum + 16 * st + c0);
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int tr = e < 2 ? gl : gl + 8;
                    const int sc = c0 + e % 2;
                    const float as = e % 2 == 0 ? ac2.x : ac2.y, ds = e % 2 == 0 ? dt2.x : dt2.y;
                    m[q][e] = sc <= tr ? gv[e] * __expf(acum_t[e / 2] - as) * ds : 0.0f;
                }
            }
#pragma unroll
            for (int r = 0; r < 4; ++r)
                split_pair(m[fr::a_from_acc_tile(r)][fr::a_from_acc_elem(r, 0)], m[fr::a_from_acc_tile(r)][fr::a_from_acc_elem(r, 1)], mhi[r], mlo[r]);
        };
        // X (s, p) = sX[s][p] for the k step of column tile jt.
        auto load_x = [&](int jt, uint32_t (&fb)[NT8 / 2][4]) {
            const bf16_t * xt = sX + (16 * jt + fr::ldsm_b_row(lane)) * ldP + pw0 + fr::ldsm_b_col(lane);
#pragma unroll
            for (int np = 0; np < NT8 / 2; ++np) ldsm_x4_trans(fb[np], xt + 16 * np);
        };
        auto mma_x = [&](float (&ac)[NT8][4], const uint32_t (&ma)[4], const uint32_t (&fb)[NT8 / 2][4]) {
#pragma unroll
            for (int np = 0; np < NT8 / 2; ++np) {
                mma_bf16(ac[2 * np], ma, fb[np][0], fb[np][1]);
                mma_bf16(ac[2 * np + 1], ma, fb[np][2], fb[np][3]);
            }
        };
        // Rows t of strip st times exp(acum_t - acum_b), b = 16 st: after its off-diagonal tiles.
        auto apply_row_decay = [&](float (&ac)[NT8][4], int st) {
            const float acum_b = sAcum[16 * st];
            const float rd[2] = {__expf(sAcum[16 * st + gl] - acum_b), __expf(sAcum[16 * st + gl + 8] - acum_b)};
#pragma unroll
            for (int nt = 0; nt < NT8; ++nt) {
                ac[nt][0] *= rd[0];
                ac[nt][1] *= rd[0];
                ac[nt][2] *= rd[1];
                ac[nt][3] *= rd[1];
            }
        };
        if constexpr (!kHasZ) {
            // Both strips at each column tile while both have one (strip_lo <= 3 < 4 <= strip_hi): one X
            // fragment load for both, 8 independent accumulators between dependent MMAs.
#pragma unroll 1
            for (int jt = 0; jt < strip_lo; ++jt) {
                uint32_t fb[NT8 / 2][4];
                load_x(jt, fb);
                uint32_t mhi[2][4], mlo[2][4];
                make_m_off(strip_hi, jt, mhi[1], mlo[1]);
                make_m_off(strip_lo, jt, mhi[0], mlo[0]);
                mma_x(acc[1], mhi[1], fb);
                mma_x(acc[0], mhi[0], fb);
                mma_x(acc[1], mlo[1], fb);
                mma_x(acc[0], mlo[0], fb);
            }
            apply_row_decay(acc[0], strip_lo);
            {
                uint32_t fb[NT8 / 2][4];
                load_x(strip_lo, fb);
                uint32_t mhi[2][4], mlo[2][4];
                make_m_off(strip_hi, strip_lo, mhi[1], mlo[1]);
                make_m_diag(strip_lo, mhi[0], mlo[0]);
                mma_x(acc[1], mhi[1], fb);
                mma_x(acc[0], mhi[0], fb);
                mma_x(acc[1], mlo[1], fb);
                mma_x(acc[0], mlo[0], fb);
            }
#pragma unroll 1
            for (int jt = strip_lo + 1; jt < strip_hi; ++jt) {
                uint32_t fb[NT8 / 2][4];
                load_x(jt, fb);
                uint32_t mhi[4], mlo[4];
                make_m_off(strip_hi, jt, mhi, mlo);
                mma_x(acc[1], mhi, fb);
                mma_x(acc[1], mlo, fb);
            }
            apply_row_decay(acc[1], strip_hi);
            {
                uint32_t fb[NT8 / 2][4];
                load_x(strip_hi, fb);
                uint32_t mhi[4], mlo[4];
                make_m_diag(strip_hi, mhi, mlo);
                mma_x(acc[1], mhi, fb);
                mma_x(acc[1], mlo, fb);
            }
        } else {
            // Strip after strip, strip_hi first, each stored right after its walk on the row path.
            uint4 zs[2];
            load_z_strip(1, zs);
#pragma unroll
            for (int si = 1; si >= 0; --si) {
                const int st = si == 0 ? strip_lo : strip_hi;
#pragma unroll 1
                for (int jt = 0; jt < st; ++jt) {
                    uint32_t mhi[4], mlo[4];
                    make_m_off(st, jt, mhi, mlo);
                    uint32_t fb[NT8 / 2][4];
                    load_x(jt, fb);
                    mma_x(acc[si], mhi, fb);
                    mma_x(acc[si], mlo, fb);
                }
                apply_row_decay(acc[si], st);
                uint32_t mhi[4], mlo[4];
                make_m_diag(st, mhi, mlo);
                uint32_t fb[NT8 / 2][4];
                load_x(st, fb);
                mma_x(acc[si], mhi, fb);
                mma_x(acc[si], mlo, fb);
                if (vec_zy) {
                    store_strip(si, acc[si], zs);
                    if (si == 1) load_z_strip(0, zs);
                }
            }
        }

        if constexpr (!kHasZ) {
            if (vec_zy) {
                const uint4 zs[2] = {make_uint4(0u, 0u, 0u, 0u), make_uint4(0u, 0u, 0u, 0u)};
                store_strip(0, acc[0], zs);
                store_strip(1, acc[1], zs);
                continue;
            }
        } else if (vec_zy) {
            continue;  // stored strip by strip in phase B
        }
        // Generic path (strided or unaligned z / y; general build only): element by element.
        if constexpr (!kFull) {
#pragma unroll
        for (int si = 0; si < 2; ++si) {
            const int t_a = 16 * (si == 0 ? strip_lo : strip_hi) + gl;
#pragma unroll
            for (int nt = 0; nt < NT8; ++nt) {
#pragma unroll
                for (int rr = 0; rr < 2; ++rr) {
                    const int t = t_a + 8 * rr;
                    const int pp = pw0 + 8 * nt + col2;
                    const int64_t p = p0 + pp;
                    if (t >= steps || p >= a.headdim) continue;
                    float v[2] = {acc[si][nt][2 * rr], acc[si][nt][2 * rr + 1]};
                    const int64_t zrow = b * a.z_s[0] + (t0 + t) * a.z_s[1] + h * a.z_s[2];
                    const int64_t yrow = b * a.y_s[0] + (t0 + t) * a.y_s[1] + h * a.y_s[2];
#pragma unroll
                    for (int e = 0; e < 2; ++e) {
                        if (p + e >= a.headdim) continue;  // odd headdim on the generic path
                        v[e] += sDvec[pp + e] * __bfloat162float(sX[t * ldP + pp + e]);
                        if (kHasZ) v[e] *= silu_f(a.z.load(zrow + (p + e) * a.z_s[3]));
                        a.y.store(yrow + (p + e) * a.y_s[3], v[e]);
                    }
                }
            }
        }
        }
    }
    cp_async_wait_all();  // nothing in flight at exit
}
