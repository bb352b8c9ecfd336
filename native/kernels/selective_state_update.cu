// Mamba-1 decode step (mamba_selective_state_update): one step of the selective scan recurrence,
// float32 state read once and written once.
// Bytes: 2 * batch*dim*dstate*4 (state) + dim*dstate*4 (A, float32) + small vectors; FLOPs: 6 per state.
// With the fused dt projection (dt_proj_weight): + dim*dt_rank*sizeof(W) (the weight, read once per
// batch row, from L2 after the first) + batch*dt_rank (the low-rank input) bytes and 2*batch*dim*dt_rank
// FLOPs; for mamba-2.8b at batch 1 that is 1.6 MB of bfloat16 weight next to 0.98 MB of state traffic,
// and it replaces a separate GEMV kernel plus the write and read of dt (batch*dim).
// Design: the grid is (channel blocks, batch rows). dstate/4 consecutive lanes (a power of two) own one
// channel, each lane one float4 of the state and of A per pass (16-byte loads and stores with streaming
// hints when state and A rows are aligned with unit stride and dstate % 4 == 0, element accesses
// otherwise); the state and A loads are issued before the per-channel scalars and B, C (four loads at a
// time behind one dtype switch); y is reduced over the channel's lanes by shuffles. With the fused dt projection at 2
// or more rows a block may take several rows instead (selective_state_update_rows_kernel, MAMBA_CUDA_UPDATE_ROWS), so
// that batched decode's grid is one wave.
// Fused dt projection: the block stages its batch row's low-rank input (dt_rank floats) in shared memory
// once; a channel's lanes split its weight row in 16-byte chunks (when rows are 16-byte aligned with unit
// stride; element loads otherwise) and sum their partial dot products by shuffles. A lane's first chunks
// are loaded into registers, and the state loads issued, before the staging and its barrier, so that the
// weight, state and input round trips overlap instead of following each other. Where the op just before
// writes none of them (launch.cuh's early reads), the fused builds issue those loads of the block's first
// batch row (all inputs but dt, B and C) before wait_for_producer().
// From x_proj's sums (kSumsIn build, step_xproj.cuh; batch 1, or up to kXProjMaxRows rows from the conv step's fold,
// conv_xproj_step.cu): the block stages its row's dt_low, B and C (rank + 2*dstate values, rounded to xdbl's dtype)
// from the context's float64 sums instead of reading xdbl. At batch 1 out_proj's GEMV zeroes them after
// (mamba1_step.cu), or, given an arrival count, thread 0 counts the block's arrival once they are staged and the last
// block to arrive zeroes the sums and the count at its end; the batched fold's sums are stored afresh every step and
// need no zeroing (no arrival count). Where
// the block's dt_proj rows fit 48 KB of shared memory with dt_low, B and C (kWeightsShared; mamba-2.8b: 64 rows of
// 320 bytes), each lane copies its chunks there with cp.async before the PDL wait and reads them back after the
// barrier: no weight load after the wait, and 72 registers instead of 106 (bf16).
#include "common.cuh"
#include "launch.cuh"
#include "ops/selective_scan.h"
#include "step_xproj.cuh"

namespace mamba::cuda {

namespace {

struct StateUpdateArgs {
    float * state;
    AnyPtr x, dt, B, C, z, y, dt_proj_weight;
    const float *A, *D, *dt_bias;
    int64_t st_sb, st_sd, st_sn;
    int64_t x_sb, x_sd, dt_sb, dt_sd, z_sb, z_sd, y_sb, y_sd;
    int64_t B_sb, B_sg, B_sn, C_sb, C_sg, C_sn;
    int64_t A_sd, A_sn, D_s, bias_s;
    int64_t W_sd, W_sr;  // dt_proj_weight strides (channel, rank)
    int64_t W_row_chunks;  // whole 16-byte chunks in a weight row (used when rows are 16-byte aligned)
    int W_elem_bytes;
    int64_t batch, dim, dstate, channels_per_group, dt_rank;
    int lanes_per_channel;
    bool softplus, has_D, has_z, has_bias;
    // Everything but dt, B and C (the state, A, x, z, D, dt_bias, the dt_proj weight chunks) of the block's
    // first batch row loads before the PDL wait (readable_before_wait, launch.cuh); fused builds only.
    bool early;
    // kSumsIn: batch row b's dt_low, B and C are sums[0, dt_rank), sums[dt_rank, + dstate), sums[dt_rank + dstate,
    // + dstate) from sums + b * sums_row_stride, each the total of `replicas` copies `stride` apart added in order, as
    // dt's dtype rounds it; arrivals (where given) counts the blocks that have staged them, and the last block zeroes
    // both. Null: the kernel after clears them, or (the batched fold) nothing needs to. One batch row a block
    // (gridDim.y == batch).
    double * sums;
    unsigned * arrivals;
    int64_t sums_stride, sums_row_stride;
    int replicas;
    // kWeightsShared: where the block's dt_proj rows start in dynamic shared memory, in bytes (16-byte aligned, after
    // dt_low, B and C).
    int w_smem_offset;
    // Where the block lets the next kernel's blocks be scheduled (allow_dependents): ReleaseAt, launch.cuh.
    int release_at;
};

template <bool kVecStateAndA, bool kFusedDtProj = false, bool kVecWeightRows = false, class TWeight = float, bool kSumsInput = false,
          bool kWeightsInShared = false>
struct SelectiveUpdateTraits {
    // dt_proj_weight's element type: a compile-time type, as a run-time switch around the unrolled dot
    // product makes the compiler keep all three versions' registers live.
    using Weight = TWeight;
    static constexpr bool kVec = kVecStateAndA;  // state and A rows: unit stride, 16-byte aligned, dstate % 4 == 0
    static constexpr bool kFusedDt = kFusedDtProj;  // dt = dt_proj_weight[d, :] . dt[b, :]
    static constexpr bool kVecW = kVecWeightRows;   // weight rows: unit stride, 16-byte aligned starts
    static constexpr bool kSumsIn = kSumsInput;     // dt_low, B and C from x_proj's float64 sums (its own build)
    static_assert(!kSumsIn || (kFusedDtProj && kVecStateAndA && kVecWeightRows), "the sums' build is the vectorized fused one");
    // The block's dt_proj rows are copied to shared memory (cp.async, issued before the PDL wait) instead of held in
    // registers: no weight load after the barrier, and the registers the chunks took are free (sums build only).
    static constexpr bool kWeightsShared = kWeightsInShared;
    static_assert(!kWeightsShared || kSumsIn, "the weights in shared memory are a build of the sums' update");
    static constexpr int kThreads = 256;
    static constexpr int kStatesPerLane = 4;     // one float4 of state and of A per lane and pass
    // 16-byte weight chunks a lane loads into registers before the block barrier, so that they are in
    // flight with the state loads and the staging of the low-rank input (mamba-2.8b, bf16, dstate 16:
    // 5 per lane cover the row); later chunks are loaded after it.
    static constexpr int kWeightChunksInFlight = 4;
    // Resident blocks per SM the register budget must allow: 4 (64 registers) is what the plain step
    // compiles to anyway. The fused projection takes about 110 (the weight chunks stay live across the
    // state loads): 2 blocks; held to 3 (80 registers) it spills 40-84 bytes per thread (sm_80, nvcc 11.8).
    // Decode at batch 1 (80 blocks for mamba-2.8b) fills one block per SM either way.
    // With the weights in shared memory (no chunks live across the loads) the update fits 3 blocks (85 registers), and
    // so beside two of in_proj's 256-thread, 80-register GEMV blocks.
    static constexpr int kMinBlocksPerSm = kWeightsShared ? 3 : kFusedDtProj ? 2 : 4;
};

// A lane's 16-byte chunks k = lane_g, lane_g + G, ... of its channel's weight row (16-byte aligned, unit stride) copied
// to the same chunks of its row in shared memory; each lane later reads only the chunks it copied.
__device__ __forceinline__ void copy_weight_row_async(uint4 * smem_row, const char * row, int64_t chunks, int lane_g, int G) {
    for (int64_t k = lane_g; k < chunks; k += G) cp_async_16(smem_row + k, reinterpret_cast<const uint4 *>(row) + k, true);
    cp_async_commit();
}

// This lane's part of the dot product of a weight row with the staged low-rank input, its whole chunks from shared
// memory (copy_weight_row_async) and the elements past the last whole chunk from w.
template <class T>
__device__ __forceinline__ float dt_proj_partial_shared(const uint4 * smem_row, int64_t chunks, const T * w, const float * dt_low, int64_t rank, int lane_g,
                                                        int G) {
    constexpr int E = 16 / int(sizeof(T));
    float acc = 0.0f;
#pragma unroll 2
    for (int64_t k = lane_g; k < chunks; k += G) {
        const uint4 raw = smem_row[k];
        const T * e = reinterpret_cast<const T *>(&raw);
#pragma unroll
        for (int j = 0; j < E; ++j) acc = fmaf(to_f32<T>(e[j]), dt_low[k * E + j], acc);
    }
#pragma unroll 1
    for (int64_t r = chunks * E + lane_g; r < rank; r += G) acc = fmaf(to_f32<T>(w[r]), dt_low[r], acc);
    return acc;
}

// A lane's first K 16-byte chunks k = lane_g + i*G (i < K, k < chunks) of its channel's weight row
// (16-byte aligned, unit stride); chunks past the row are zero.
template <int K>
__device__ __forceinline__ void load_weight_chunks(const char * row, int64_t chunks, int lane_g, int G, uint4 (&raw)[K]) {
#pragma unroll
    for (int i = 0; i < K; ++i) {
        const int64_t k = lane_g + int64_t(i) * G;
        raw[i] = k < chunks ? reinterpret_cast<const uint4 *>(row)[k] : make_uint4(0u, 0u, 0u, 0u);
    }
}

// This lane's part of the dot product of a weight row w (dt_rank elements) with the staged low-rank input.
// kVecW: the chunks held in `raw` (see load_weight_chunks), then chunks k = lane_g + K*G, ... loaded here,
// then the elements past the last whole chunk, r = chunks*E + lane_g, ... . Otherwise: elements
// r = lane_g, lane_g + G, ... at element stride w_sr.
template <bool kVecW, class T, int K>
__device__ __forceinline__ float dt_proj_partial(const uint4 (&raw)[K], const T * w, int64_t w_sr, const float * dt_low, int64_t rank, int lane_g,
                                                 int G) {
    float acc = 0.0f;
    int64_t r_tail = 0;
    if constexpr (kVecW) {
        constexpr int E = 16 / int(sizeof(T));
        const int64_t chunks = rank / E;
#pragma unroll
        for (int i = 0; i < K; ++i) {
            const int64_t k = lane_g + int64_t(i) * G;
            const T * e = reinterpret_cast<const T *>(&raw[i]);
            if (k < chunks) {
#pragma unroll
                for (int j = 0; j < E; ++j) acc = fmaf(to_f32<T>(e[j]), dt_low[k * E + j], acc);
            }
        }
#pragma unroll 1
        for (int64_t k = lane_g + int64_t(K) * G; k < chunks; k += G) {
            float v[E];
            load_floats<T, E>(w + k * E, v, true);
#pragma unroll
            for (int j = 0; j < E; ++j) acc = fmaf(v[j], dt_low[k * E + j], acc);
        }
        r_tail = chunks * E;
        w_sr = 1;
    }
#pragma unroll 1
    for (int64_t r = r_tail + lane_g; r < rank; r += G) acc = fmaf(to_f32<T>(w[r * w_sr]), dt_low[r], acc);
    return acc;
}

// Four consecutive elements i0, i0 + stride, ... of a run-time-typed vector, the dtype switch taken once
// so that the four loads are issued together.
__device__ __forceinline__ void load4(const AnyPtr & p, int64_t i0, int64_t stride, int64_t count, float (&v)[4]) {
    switch (p.dtype) {
        case int(DType::F16): {
            const f16_t * q = reinterpret_cast<const f16_t *>(p.p);
#pragma unroll
            for (int i = 0; i < 4; ++i) v[i] = i < count ? __half2float(q[i0 + i * stride]) : 0.0f;
            break;
        }
        case int(DType::BF16): {
            const bf16_t * q = reinterpret_cast<const bf16_t *>(p.p);
#pragma unroll
            for (int i = 0; i < 4; ++i) v[i] = i < count ? __bfloat162float(q[i0 + i * stride]) : 0.0f;
            break;
        }
        default: {
            const float * q = reinterpret_cast<const float *>(p.p);
#pragma unroll
            for (int i = 0; i < 4; ++i) v[i] = i < count ? q[i0 + i * stride] : 0.0f;
            break;
        }
    }
}

// Block (x, y) takes channels of batch rows y, y + gridDim.y, ...; G = lanes_per_channel consecutive
// lanes (a power of two) own one channel; lane j owns the states n = 4j + 4G*k (k = 0, 1, ... while
// n < dstate), one float4 of state and of A at a time. Dynamic shared memory: dt_rank floats when kFusedDt.
template <class Tr>
__global__ void __launch_bounds__(Tr::kThreads, Tr::kMinBlocksPerSm) selective_state_update_kernel(StateUpdateArgs a) {
    extern __shared__ float dt_low[];
    const int G = a.lanes_per_channel;
    const int lane_g = threadIdx.x % G;
    const int64_t ch = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / G;
    // Lanes past the last channel compute a copy of it (every lane takes part in the shuffles and
    // barriers) and store nothing.
    const bool valid_ch = ch < a.dim;
    const int64_t d = valid_ch ? ch : a.dim - 1, g = d / a.channels_per_group;
    const float * A = a.A + d * a.A_sd;
    const int64_t N = a.dstate;
    // The channel's weight row (the same for every batch row) and its first chunks, loaded once.
    const char * w_row = a.dt_proj_weight.p + d * a.W_sd * a.W_elem_bytes;
    uint4 w_raw[Tr::kWeightChunksInFlight];
    // kWeightsShared: this channel's row in shared memory.
    uint4 * const w_smem = Tr::kWeightsShared
                               ? reinterpret_cast<uint4 *>(reinterpret_cast<char *>(dt_low) + a.w_smem_offset) + int64_t(threadIdx.x / G) * a.W_row_chunks
                               : nullptr;
    const auto request_weights = [&] {
        if constexpr (Tr::kWeightsShared && Tr::kVecW) copy_weight_row_async(w_smem, w_row, a.W_row_chunks, lane_g, G);
        else if constexpr (Tr::kFusedDt && Tr::kVecW) load_weight_chunks(w_row, a.W_row_chunks, lane_g, G, w_raw);
    };
    float s[4], Av[4];
    float x = 0.0f, bias = 0.0f, D = 0.0f, z = 0.0f;
    // First pass of a batch row: state and A loads issued before the small vectors.
    auto load_pass = [&](const float * st, int64_t n) {
        if (Tr::kVec && n < N) {
            const float4 sv = __ldcs(reinterpret_cast<const float4 *>(st + n));
            const float4 av = *reinterpret_cast<const float4 *>(A + n);
            s[0] = sv.x, s[1] = sv.y, s[2] = sv.z, s[3] = sv.w;
            Av[0] = av.x, Av[1] = av.y, Av[2] = av.z, Av[3] = av.w;
        } else {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                s[i] = n + i < N ? st[(n + i) * a.st_sn] : 0.0f;
                Av[i] = n + i < N ? A[(n + i) * a.A_sn] : 0.0f;
            }
        }
    };
    // The row's inputs that no earlier op of the step writes just before: with a.early they load before
    // the PDL wait for the block's first row (the state's HBM round trip then overlaps the previous
    // kernel). z, whose branch holds its conversion, goes last.
    auto load_row = [&](int64_t b) {
        load_pass(a.state + b * a.st_sb + d * a.st_sd, int64_t(lane_g) * Tr::kStatesPerLane);
        x = a.x.load(b * a.x_sb + d * a.x_sd);
        bias = a.has_bias ? a.dt_bias[d * a.bias_s] : 0.0f;
        D = a.has_D ? a.D[d * a.D_s] : 0.0f;
        z = a.has_z ? a.z.load(b * a.z_sb + d * a.z_sd) : 0.0f;
    };
    // kSumsIn: in_proj, the kernel just before, writes x and z, but not the state, A, D, dt_bias or the weight;
    // those load early on their own (a.early then says only that they may).
    auto load_row_but_xz = [&](int64_t b) {
        load_pass(a.state + b * a.st_sb + d * a.st_sd, int64_t(lane_g) * Tr::kStatesPerLane);
        bias = a.has_bias ? a.dt_bias[d * a.bias_s] : 0.0f;
        D = a.has_D ? a.D[d * a.D_s] : 0.0f;
    };
    // Only the fused builds (decode up to 8 rows) load early: the plain one would spill at its 64 registers.
    const bool early = Tr::kFusedDt && a.early;
    if (early) {
        request_weights();
        if constexpr (Tr::kSumsIn) load_row_but_xz(blockIdx.y);
        else if (blockIdx.y < a.batch) load_row(blockIdx.y);
    }
    // PDL-safe (launch.cuh): only index math above, and when early the inputs the op just before does not
    // write; dt, B and C (x_proj's outputs) and everything else may come from the previous kernel.
    // allow_dependents() before the wait where the host chose so (MAMBA_CUDA_UPDATE_RELEASE, launch.cuh): out_proj's
    // blocks then load their early weights while in_proj still runs, and the update's own reads find HBM less busy.
    if (a.release_at == int(ReleaseAt::BeforeWait)) allow_dependents();
    wait_for_producer();
    if (a.release_at == int(ReleaseAt::Start)) allow_dependents();
    if (!early) request_weights();

    [[maybe_unused]] unsigned arrival = 0;  // kSumsIn, thread 0: the arrivals counted before this block's
    for (int64_t b = blockIdx.y; b < a.batch; b += gridDim.y) {
        float * st = a.state + b * a.st_sb + d * a.st_sd;
        int64_t n0 = int64_t(lane_g) * Tr::kStatesPerLane;
        float Bn[4], Cn[4];
        const auto load_bc = [&](int64_t n) {
            if constexpr (Tr::kSumsIn) {  // staged after dt_low
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    Bn[i] = n + i < N ? dt_low[a.dt_rank + n + i] : 0.0f;
                    Cn[i] = n + i < N ? dt_low[a.dt_rank + N + n + i] : 0.0f;
                }
            } else {
                load4(a.B, b * a.B_sb + g * a.B_sg + n * a.B_sn, a.B_sn, N - n, Bn);
                load4(a.C, b * a.C_sb + g * a.C_sg + n * a.C_sn, a.C_sn, N - n, Cn);
            }
        };
        // Every input of the row is requested before the dt stage and its barrier, so that the round trips
        // overlap (at batch 1 the kernel's time is those round trips).
        if (!early || b != blockIdx.y) load_row(b);
        if constexpr (Tr::kSumsIn) {
            if (early) {  // b is the block's first (and only) row
                x = a.x.load(b * a.x_sb + d * a.x_sd);
                z = a.has_z ? a.z.load(b * a.z_sb + d * a.z_sd) : 0.0f;
            }
        } else {
            load_bc(n0);
        }
        float dt;
        if (Tr::kFusedDt) {
            // Staged after the state and weight loads are issued, so that the three round trips overlap.
            if constexpr (Tr::kSumsIn) {
                const double * row_sums = a.sums + b * a.sums_row_stride;
                for (int64_t r = threadIdx.x; r < a.dt_rank + 2 * N; r += blockDim.x) {
                    double part[kXProjMaxReplicas];  // all of a value's loads in flight together
#pragma unroll
                    for (int k = 0; k < kXProjMaxReplicas; ++k) part[k] = k < a.replicas ? row_sums[k * a.sums_stride + r] : 0.0;
                    double v = 0.0;
#pragma unroll
                    for (int k = 0; k < kXProjMaxReplicas; ++k) v += part[k];
                    dt_low[r] = a.dt.rounded(float(v));
                }
            } else {
                for (int64_t r = threadIdx.x; r < a.dt_rank; r += blockDim.x) dt_low[r] = a.dt.load(b * a.dt_sb + r * a.dt_sd);
            }
            __syncthreads();
            if constexpr (Tr::kSumsIn) {
                // Every thread's reads of the sums are done (the barrier): count the block in. The result is
                // needed only at the end, so the atomic's round trip overlaps the update.
                if (threadIdx.x == 0 && a.arrivals != nullptr) {
                    __threadfence();
                    arrival = atomicAdd(a.arrivals, 1u);
                }
                load_bc(n0);
            }
            float part;
            if constexpr (Tr::kWeightsShared) {
                cp_async_wait_all();  // this lane's own chunks: no barrier needed
                part = dt_proj_partial_shared(w_smem, a.W_row_chunks, reinterpret_cast<const typename Tr::Weight *>(w_row), dt_low, a.dt_rank, lane_g, G);
            } else {
                part = dt_proj_partial<Tr::kVecW>(w_raw, reinterpret_cast<const typename Tr::Weight *>(w_row), a.W_sr, dt_low, a.dt_rank, lane_g, G);
            }
            for (int o = G / 2; o > 0; o >>= 1) part += __shfl_xor_sync(0xffffffffu, part, o);
            dt = part;
        } else {
            dt = a.dt.load(b * a.dt_sb + d * a.dt_sd);
        }
        dt += bias;
        if (a.softplus) dt = softplus_mufu(dt);
        const float dtx = dt * x;
        float acc = 0.0f;
        for (;;) {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                s[i] = __expf(dt * Av[i]) * s[i] + dtx * Bn[i];
                acc += Cn[i] * s[i];
            }
            if (valid_ch && n0 < N) {
                if (Tr::kVec) {
                    __stcs(reinterpret_cast<float4 *>(st + n0), make_float4(s[0], s[1], s[2], s[3]));
                } else {
#pragma unroll
                    for (int i = 0; i < 4; ++i)
                        if (n0 + i < N) st[(n0 + i) * a.st_sn] = s[i];
                }
            }
            n0 += int64_t(G) * Tr::kStatesPerLane;
            if (n0 - int64_t(lane_g) * Tr::kStatesPerLane >= N) break;  // uniform over the channel's lanes
            load_pass(st, n0);
            load_bc(n0);
        }
        for (int o = G / 2; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
        if (lane_g == 0 && valid_ch) {
            float out = acc + (a.has_D ? D * x : 0.0f);
            if (a.has_z) out *= silu_f(z);
            a.y.store(b * a.y_sb + d * a.y_sd, out);
        }
        if (Tr::kFusedDt) __syncthreads();  // dt_low read by every lane before the next row overwrites it
    }
    if constexpr (Tr::kSumsIn) {
        // The last block to arrive: every other block has staged the sums, so they go back to zero for the next step.
        __shared__ bool last;
        if (threadIdx.x == 0) {
            last = a.arrivals != nullptr && arrival + 1 == gridDim.x * gridDim.y;
            if (last) __threadfence();  // the zeros after every block's reads (their fence before their arrival)
        }
        __syncthreads();
        if (last) {
            for (int64_t b = 0; b < a.batch; ++b)
                for (int k = 0; k < a.replicas; ++k)
                    for (int64_t r = threadIdx.x; r < a.dt_rank + 2 * N; r += blockDim.x) a.sums[b * a.sums_row_stride + k * a.sums_stride + r] = 0.0;
            if (threadIdx.x == 0) *a.arrivals = 0u;
        }
    }
}

// Batched decode with the fused dt projection (2 or more rows; selective_state_update_rows_kernel). The one-row kernel
// above takes a block per channel slice and batch row: at mamba-2.8b and 8 rows that is 640 blocks of 256 threads
// for about 400 resident slots, so a second wave of blocks runs the whole chain of round trips again (weights,
// state, sums, barrier, dt, state) after the first. This kernel's block takes kRows rows of its channel slice at
// once: the dt_proj rows are copied to shared memory once for them, every row's state loads at once (before the PDL
// wait where allowed), every row's dt_low, B and C are staged behind one barrier, and a weight chunk read from shared
// memory feeds every row's dot product. Bytes: the same state, A and x, z, y traffic; the dt_proj weight is read
// from L2 once a block (ceil(batch / kRows) times in all, against batch times), the sums or xdbl once a row and block
// as before. FLOPs: the same. The state must take one pass (dstate = 4 x lanes_per_channel) so that a row's state is
// one float4 a lane; the state, A and weight rows 16-byte accessible; one group of B and C.
template <class TWeight, int kRowsPerBlock, bool kSumsInput>
struct StateUpdateRowsTraits {
    using Weight = TWeight;
    static constexpr int kRows = kRowsPerBlock;  // batch rows a block updates
    static constexpr bool kSumsIn = kSumsInput;  // dt_low, B and C from x_proj's float64 sums, else from their tensors
    static constexpr int kThreads = 256;
    // Two blocks an SM leave 128 registers a thread: kRows float4 states, accumulators, x and z stay in registers.
    static constexpr int kMinBlocksPerSm = 2;
};

// Block (x, y): the channels of block x for batch rows [y * kRows, y * kRows + kRows) (fewer in the last). Dynamic
// shared memory: kRows rows of dt_rank + 2 dstate floats (dt_low, B, C), then the block's dt_proj rows at
// w_smem_offset.
template <class Tr>
__global__ void __launch_bounds__(Tr::kThreads, Tr::kMinBlocksPerSm) selective_state_update_rows_kernel(StateUpdateArgs a) {
    constexpr int R = Tr::kRows;
    using W = typename Tr::Weight;
    constexpr int E = 16 / int(sizeof(W));
    extern __shared__ float staged[];
    const int G = a.lanes_per_channel;
    const int lane_g = threadIdx.x % G;
    const int64_t ch = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / G;
    const bool valid_ch = ch < a.dim;  // lanes past the last channel compute a copy of it and store nothing
    const int64_t d = valid_ch ? ch : a.dim - 1;
    const int64_t b0 = int64_t(blockIdx.y) * R;
    const int rows = int(min(int64_t(R), a.batch - b0));
    const int64_t N = a.dstate, V = a.dt_rank + 2 * N, n0 = int64_t(lane_g) * 4;
    const char * w_row = a.dt_proj_weight.p + d * a.W_sd * a.W_elem_bytes;
    uint4 * const w_smem = reinterpret_cast<uint4 *>(reinterpret_cast<char *>(staged) + a.w_smem_offset) + int64_t(threadIdx.x / G) * a.W_row_chunks;
    float s[R][4], Av[4], bias = 0.0f, D = 0.0f;
    // What no earlier op of the step writes just before: with a.early it loads before the PDL wait.
    const auto load_unwritten = [&] {
        copy_weight_row_async(w_smem, w_row, a.W_row_chunks, lane_g, G);
        const float4 av = *reinterpret_cast<const float4 *>(a.A + d * a.A_sd + n0);
        Av[0] = av.x, Av[1] = av.y, Av[2] = av.z, Av[3] = av.w;
#pragma unroll
        for (int j = 0; j < R; ++j) {
            float4 sv = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (j < rows) sv = __ldcs(reinterpret_cast<const float4 *>(a.state + (b0 + j) * a.st_sb + d * a.st_sd + n0));
            s[j][0] = sv.x, s[j][1] = sv.y, s[j][2] = sv.z, s[j][3] = sv.w;
        }
        bias = a.has_bias ? a.dt_bias[d * a.bias_s] : 0.0f;
        D = a.has_D ? a.D[d * a.D_s] : 0.0f;
    };
    if (a.early) load_unwritten();
    // PDL-safe (launch.cuh): before the wait only index math and, when early, inputs the op just before does not write.
    if (a.release_at == int(ReleaseAt::BeforeWait)) allow_dependents();
    wait_for_producer();
    if (a.release_at == int(ReleaseAt::Start)) allow_dependents();
    if (!a.early) load_unwritten();
    float x[R], z[R];
#pragma unroll
    for (int j = 0; j < R; ++j) {
        x[j] = j < rows ? a.x.load((b0 + j) * a.x_sb + d * a.x_sd) : 0.0f;
        z[j] = a.has_z && j < rows ? a.z.load((b0 + j) * a.z_sb + d * a.z_sd) : 0.0f;
    }
    // Every row's dt_low, B and C (rounded to dt's dtype as a store to xdbl would round them) behind one barrier.
    for (int64_t i = threadIdx.x; i < int64_t(rows) * V; i += blockDim.x) {
        const int64_t j = i / V, r = i - j * V, b = b0 + j;
        if constexpr (Tr::kSumsIn) {
            const double * sums = a.sums + b * a.sums_row_stride + r;
            double part[kXProjMaxReplicas];  // a value's loads in flight together
#pragma unroll
            for (int k = 0; k < kXProjMaxReplicas; ++k) part[k] = k < a.replicas ? sums[k * a.sums_stride] : 0.0;
            double v = 0.0;
#pragma unroll
            for (int k = 0; k < kXProjMaxReplicas; ++k) v += part[k];
            staged[i] = a.dt.rounded(float(v));
        } else {
            staged[i] = r < a.dt_rank   ? a.dt.load(b * a.dt_sb + r * a.dt_sd)
                        : r < a.dt_rank + N ? a.B.load(b * a.B_sb + (r - a.dt_rank) * a.B_sn)
                                            : a.C.load(b * a.C_sb + (r - a.dt_rank - N) * a.C_sn);
        }
    }
    cp_async_wait_all();  // this lane's own weight chunks
    __syncthreads();
    // dt of every row: each weight chunk converted once and multiplied into every row's sum, in the one-row kernel's
    // order (chunks lane_g, lane_g + G, ..., then the elements past the last chunk, then the sum over the lanes).
    float dt[R];
#pragma unroll
    for (int j = 0; j < R; ++j) dt[j] = 0.0f;
#pragma unroll 2
    for (int64_t k = lane_g; k < a.W_row_chunks; k += G) {
        const uint4 raw = w_smem[k];
        const W * e = reinterpret_cast<const W *>(&raw);
        float w[E];
#pragma unroll
        for (int q = 0; q < E; ++q) w[q] = to_f32<W>(e[q]);
#pragma unroll
        for (int j = 0; j < R; ++j) {
            if (j < rows) {
                const float * low = staged + j * V + k * E;
#pragma unroll
                for (int q = 0; q < E; ++q) dt[j] = fmaf(w[q], low[q], dt[j]);
            }
        }
    }
#pragma unroll 1
    for (int64_t r = a.W_row_chunks * E + lane_g; r < a.dt_rank; r += G) {
        const float w = to_f32<W>(reinterpret_cast<const W *>(w_row)[r]);
#pragma unroll
        for (int j = 0; j < R; ++j)
            if (j < rows) dt[j] = fmaf(w, staged[j * V + r], dt[j]);
    }
#pragma unroll
    for (int j = 0; j < R; ++j) {
        if (j >= rows) break;  // uniform over the block
        for (int o = G / 2; o > 0; o >>= 1) dt[j] += __shfl_xor_sync(0xffffffffu, dt[j], o);
        float dtj = dt[j] + bias;
        if (a.softplus) dtj = softplus_mufu(dtj);
        const float dtx = dtj * x[j];
        const float * Bn = staged + j * V + a.dt_rank + n0;
        const float * Cn = Bn + N;
        float acc = 0.0f;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            s[j][i] = __expf(dtj * Av[i]) * s[j][i] + dtx * Bn[i];
            acc += Cn[i] * s[j][i];
        }
        if (valid_ch) __stcs(reinterpret_cast<float4 *>(a.state + (b0 + j) * a.st_sb + d * a.st_sd + n0), make_float4(s[j][0], s[j][1], s[j][2], s[j][3]));
        for (int o = G / 2; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
        if (lane_g == 0 && valid_ch) {
            float out = acc + (a.has_D ? D * x[j] : 0.0f);
            if (a.has_z) out *= silu_f(z[j]);
            a.y.store((b0 + j) * a.y_sb + d * a.y_sd, out);
        }
    }
}

template <class Tr>
void launch_update(mamba_context & ctx, dim3 grid, size_t smem, const StateUpdateArgs & a) {
    // The trace name tells the early loads apart.
    const char * name = Tr::kSumsIn ? (a.early ? "selective_state_update_sums_kernel early" : "selective_state_update_sums_kernel")
                                    : (Tr::kFusedDt && a.early ? "selective_state_update_kernel early" : "selective_state_update_kernel");
    launch_kernel(ctx, name, true, selective_state_update_kernel<Tr>, grid,
                  dim3(Tr::kThreads), smem, a);
    MAMBA_CUDA_CHECK_LAUNCH("selective_state_update_kernel");
}

template <bool kVec, bool kVecW>
void launch_fused(mamba_context & ctx, dim3 grid, size_t smem, const StateUpdateArgs & a, DType weight) {
    switch (weight) {
        case DType::F16: launch_update<SelectiveUpdateTraits<kVec, true, kVecW, f16_t>>(ctx, grid, smem, a); break;
        case DType::BF16: launch_update<SelectiveUpdateTraits<kVec, true, kVecW, bf16_t>>(ctx, grid, smem, a); break;
        default: launch_update<SelectiveUpdateTraits<kVec, true, kVecW, float>>(ctx, grid, smem, a); break;
    }
}

template <class Tr>
void launch_rows(mamba_context & ctx, dim3 grid, size_t smem, const StateUpdateArgs & a) {
    // The trace name tells the input, the rows a block and the early loads apart.
    static const std::string name = cat(Tr::kSumsIn ? "selective_state_update_rows_sums_kernel " : "selective_state_update_rows_kernel ", Tr::kRows, " rows");
    static const std::string name_early = name + " early";
    launch_kernel(ctx, (a.early ? name_early : name).c_str(), true, selective_state_update_rows_kernel<Tr>, grid, dim3(Tr::kThreads), smem, a);
    MAMBA_CUDA_CHECK_LAUNCH("selective_state_update_rows_kernel");
}

template <class TWeight, bool kSums>
void launch_rows(mamba_context & ctx, int rows_per_block, dim3 grid, size_t smem, const StateUpdateArgs & a) {
    switch (rows_per_block) {
        case 1: launch_rows<StateUpdateRowsTraits<TWeight, 1, kSums>>(ctx, grid, smem, a); break;
        case 2: launch_rows<StateUpdateRowsTraits<TWeight, 2, kSums>>(ctx, grid, smem, a); break;
        case 4: launch_rows<StateUpdateRowsTraits<TWeight, 4, kSums>>(ctx, grid, smem, a); break;
        default: launch_rows<StateUpdateRowsTraits<TWeight, 8, kSums>>(ctx, grid, smem, a); break;
    }
}

template <bool kSums>
void launch_rows(mamba_context & ctx, DType weight, int rows_per_block, dim3 grid, size_t smem, const StateUpdateArgs & a) {
    switch (weight) {
        case DType::F16: launch_rows<f16_t, kSums>(ctx, rows_per_block, grid, smem, a); break;
        case DType::BF16: launch_rows<bf16_t, kSums>(ctx, rows_per_block, grid, smem, a); break;
        default: launch_rows<float, kSums>(ctx, rows_per_block, grid, smem, a); break;
    }
}

// MAMBA_CUDA_UPDATE_ROWS (read at each call), for the fused dt projection at 2 or more batch rows: "auto" (or unset)
// takes selective_state_update_rows_kernel where it can run, with the fewest rows a block that keep the grid within
// kRowsGridBlocksPerSm blocks an SM; "1", "2", "4" or "8" take it with that many rows a block where it can run; "one"
// keeps the one-row kernel everywhere.
constexpr EnvChoice<int> kUpdateRowChoices[] = {{"auto", 0}, {"one", -1}, {"1", 1}, {"2", 2}, {"4", 4}, {"8", 8}};
constexpr int kMaxRowsPerBlock = 8;
// Measured on an H200 (run 194, bf16, mamba-2.8b's 5120 channels: 80 channel blocks): decode at 8 rows 2.903 ms a step
// with 2 rows a block (320 blocks), 3.043-3.048 with 4 (160), 3.210-3.215 with the one-row kernel (640 blocks); the
// kernel benchmark at 8 rows (a call each, which launch costs floor near 9 us) 14.2 us with 2 rows a block, 16.7 with 1,
// 18.4 with 4, 25.1 with 8, 19.1 one-row. So the grid may fill 3 blocks an SM (what the 56-71 registers and 22 KB of
// shared memory of the 2- and 4-row builds allow at least), but not more.
constexpr int64_t kRowsGridBlocksPerSm = 3;

// The rows kernel's dynamic shared memory for `rows_per_block` rows, its weight rows' offset in w_offset.
size_t rows_kernel_smem(const StateUpdateArgs & a, int rows_per_block, int & w_offset) {
    w_offset = int((size_t(rows_per_block) * size_t(a.dt_rank + 2 * a.dstate) * sizeof(float) + 15) / 16 * 16);
    return size_t(w_offset) + size_t(StateUpdateRowsTraits<float, 1, false>::kThreads / a.lanes_per_channel) * size_t(a.W_row_chunks) * 16;
}

// Rows a block of selective_state_update_rows_kernel takes for this call, or 0 where the one-row kernel runs (the
// setting, batch 1, or a call the rows kernel has no build for).
int update_rows_per_block(const mamba_context & ctx, int choice, const SelectiveStateUpdateParams & p, const StateUpdateArgs & a, int64_t channel_blocks,
                          bool vectorized) {
    if (choice < 0 || p.batch < 2 || !vectorized || p.groups != 1 || p.dstate != 4 * int64_t(a.lanes_per_channel)) return 0;
    int rows = choice;
    if (rows == 0) {
        const int64_t budget = kRowsGridBlocksPerSm * int64_t(std::max(state_of(ctx).multiprocessors, 1));
        rows = 1;
        while (rows < kMaxRowsPerBlock && channel_blocks * ceil_div(p.batch, int64_t(rows)) > budget) rows *= 2;
    }
    int w_offset = 0;
    const bool fits = rows_kernel_smem(a, rows, w_offset) <= 48 * 1024 && ceil_div(p.batch, int64_t(rows)) <= 65535;
    return fits ? rows : 0;
}

// Whether the state and A (as float32; a converted A is a fresh contiguous copy) take 16-byte accesses.
bool state_and_A_vectorized(const Tensor & state, const Tensor & A, int64_t dstate) {
    const bool A_ok = A.dtype != DType::F32 || (A.stride[1] == 1 && A.stride[0] % 4 == 0 && aligned16(A.data));
    return dstate % 4 == 0 && state.stride[2] == 1 && state.stride[0] % 4 == 0 && state.stride[1] % 4 == 0 && aligned16(state.data) && A_ok;
}

bool weight_rows_vectorized(const Tensor & W) {
    return W.stride[1] == 1 && (W.stride[0] * int64_t(dtype_size(W.dtype))) % 16 == 0 && aligned16(W.data);
}

// The state update, with dt_low, B and C from x_proj's sums where `sums` is given (selective_state_update_from_sums).
void update_state(mamba_context & ctx, const SelectiveStateUpdateParams & p, const XProjSums * sums) {
    if (p.batch == 0 || p.dim == 0) return;
    // Every check before any work is queued (the parameter conversions below run on the stream): a
    // rejected call leaves the stream, y and the state as they were.
    if (p.state.dtype != DType::F32) fail(MAMBA_STATUS_UNSUPPORTED, "argument 'state' must be float32 on CUDA");
    const ReleaseAt release_at = update_release_point(sums ? ReleaseAt::BeforeWait : ReleaseAt::Start);  // may be rejected
    const int rows_choice = p.dt_proj_weight ? env_choice("MAMBA_CUDA_UPDATE_ROWS", kUpdateRowChoices, 0) : -1;  // may be rejected
    // The fused dt projection keeps a batch row's dt_rank low-rank dt values as float32 in shared memory (and B and
    // C after them when they come from the sums).
    const size_t fused_smem = p.dt_proj_weight ? size_t(p.dt_rank + (sums ? 2 * p.dstate : 0)) * sizeof(float) : 0;
    if (fused_smem > 48 * 1024)
        fail(MAMBA_STATUS_UNSUPPORTED, "argument 'dt_proj_weight' has shape ", p.dt_proj_weight->shape_string(), ": dt_rank ", p.dt_rank,
             " is above the largest supported on CUDA, ", 48 * 1024 / sizeof(float));
    // One float4 of states per lane: G = dstate/4 lanes per channel (a power of two, at most 32).
    int G = 1;
    while (G < 32 && G * 4 < p.dstate) G *= 2;
    const int64_t channel_blocks = ceil_div(p.dim * G, int64_t(SelectiveUpdateTraits<true>::kThreads));
    if (channel_blocks > INT32_MAX) fail(MAMBA_STATUS_UNSUPPORTED, "selective_state_update on CUDA: too many channels (", p.dim, ") for the grid");
    // Float32 parameters are read directly; others are converted first.
    WorkspaceCarver carver;
    auto need = [](const std::optional<Tensor> & t) { return t && t->dtype != DType::F32; };
    const size_t oA = p.A.dtype != DType::F32 ? carver.add(size_t(p.A.numel()) * 4) : 0;
    const size_t oD = need(p.D) ? carver.add(size_t(p.D->numel()) * 4) : 0;
    const size_t ob = need(p.dt_bias) ? carver.add(size_t(p.dt_bias->numel()) * 4) : 0;
    char * ws = carver.take(ctx);
    auto as_f32 = [&](const Tensor & t, size_t off) {
        if (t.dtype == DType::F32) return t;
        Tensor v = contiguous_like(ws + off, DType::F32, t);
        copy_tensor(ctx, t, v);
        return v;
    };
    StateUpdateArgs a{};
    a.state = p.state.ptr<float>();
    a.st_sb = p.state.stride[0];
    a.st_sd = p.state.stride[1];
    a.st_sn = p.state.stride[2];
    a.x = any(p.x);
    a.x_sb = p.x.stride[0];
    a.x_sd = p.x.stride[1];
    a.dt = any(p.dt);
    a.dt_sb = p.dt.stride[0];
    a.dt_sd = p.dt.stride[1];
    a.B = any(p.B);
    a.B_sb = p.B.stride[0];
    a.B_sg = p.B.stride[1];
    a.B_sn = p.B.stride[2];
    a.C = any(p.C);
    a.C_sb = p.C.stride[0];
    a.C_sg = p.C.stride[1];
    a.C_sn = p.C.stride[2];
    const Tensor A = as_f32(p.A, oA);
    a.A = A.ptr<float>();
    a.A_sd = A.stride[0];
    a.A_sn = A.stride[1];
    a.has_D = p.D.has_value();
    if (a.has_D) {
        const Tensor D = as_f32(*p.D, oD);
        a.D = D.ptr<float>();
        a.D_s = D.stride[0];
    }
    a.has_bias = p.dt_bias.has_value();
    if (a.has_bias) {
        const Tensor bias = as_f32(*p.dt_bias, ob);
        a.dt_bias = bias.ptr<float>();
        a.bias_s = bias.stride[0];
    }
    a.has_z = p.z.has_value();
    if (a.has_z) {
        a.z = any(*p.z);
        a.z_sb = p.z->stride[0];
        a.z_sd = p.z->stride[1];
    }
    a.y = any(p.y);
    a.y_sb = p.y.stride[0];
    a.y_sd = p.y.stride[1];
    a.batch = p.batch;
    a.dim = p.dim;
    a.dstate = p.dstate;
    a.channels_per_group = p.dim / p.groups;
    a.softplus = p.dt_softplus;
    a.lanes_per_channel = G;
    a.release_at = int(release_at);
    const bool vec = state_and_A_vectorized(p.state, A, p.dstate);
    const dim3 grid(unsigned(channel_blocks), unsigned(std::min<int64_t>(p.batch, 65535)));
    // After the conversions above: one queued just before makes the loads wait (launch.cuh). From the sums, x and z
    // (in_proj's outputs) always load after the wait, so they are not asked about.
    const bool previous_recorded = writes_recorded(ctx);  // before this op's launch (note_update_writes)
    a.early = sums ? readable_before_wait(ctx, {&p.state, &p.A, ptr(p.D), ptr(p.dt_bias), ptr(p.dt_proj_weight)})
                   : readable_before_wait(ctx, {&p.state, &p.A, &p.x, ptr(p.z), ptr(p.D), ptr(p.dt_bias), ptr(p.dt_proj_weight)});
    if (!p.dt_proj_weight) {
        if (vec) launch_update<SelectiveUpdateTraits<true>>(ctx, grid, 0, a);
        else launch_update<SelectiveUpdateTraits<false>>(ctx, grid, 0, a);
        note_update_writes(ctx, ReleaseAt(a.release_at), previous_recorded, {&p.y, &p.state});
        return;
    }
    const Tensor & W = *p.dt_proj_weight;
    a.dt_proj_weight = any(W);
    a.W_sd = W.stride[0];
    a.W_sr = W.stride[1];
    a.dt_rank = p.dt_rank;
    a.W_elem_bytes = int(dtype_size(W.dtype));
    a.W_row_chunks = p.dt_rank * a.W_elem_bytes / 16;
    const size_t smem = fused_smem;
    const bool vec_w = weight_rows_vectorized(W);
    if (sums) {
        if (!(vec && vec_w) || p.batch != sums->rows || p.batch > kXProjMaxRows || p.groups != 1)
            fail(MAMBA_STATUS_INTERNAL, "selective_state_update_from_sums: the update has no build for it");
        a.sums = sums->data;
        a.arrivals = sums->arrivals;
        a.sums_stride = sums->stride;
        a.sums_row_stride = sums->row_stride;
        a.replicas = sums->replicas;
    }
    if (const int rows_per_block = update_rows_per_block(ctx, rows_choice, p, a, channel_blocks, vec && vec_w); rows_per_block > 0) {
        if (a.arrivals != nullptr) fail(MAMBA_STATUS_INTERNAL, "selective_state_update_rows_kernel does not count arrivals");
        const size_t rows_smem = rows_kernel_smem(a, rows_per_block, a.w_smem_offset);
        const dim3 rows_grid(unsigned(channel_blocks), unsigned(ceil_div(p.batch, int64_t(rows_per_block))));
        if (sums) launch_rows<true>(ctx, W.dtype, rows_per_block, rows_grid, rows_smem, a);
        else launch_rows<false>(ctx, W.dtype, rows_per_block, rows_grid, rows_smem, a);
    } else if (sums) {
        // The block's weight rows in shared memory after dt_low, B and C, where they fit the default 48 KB (mamba-2.8b:
        // 20 KB): the chain of 8 mamba-2.8b layers 0.2499 ms against 0.2502-0.2506 with the rows in registers, decode
        // 2.049-2.051 ms/step against 2.069 (H200).
        a.w_smem_offset = int((smem + 15) / 16 * 16);
        const size_t w_smem = size_t(a.w_smem_offset) + size_t(SelectiveUpdateTraits<true>::kThreads / G) * size_t(a.W_row_chunks) * 16;
        if (w_smem <= 48 * 1024) {
            switch (W.dtype) {
                case DType::F16: launch_update<SelectiveUpdateTraits<true, true, true, f16_t, true, true>>(ctx, grid, w_smem, a); break;
                case DType::BF16: launch_update<SelectiveUpdateTraits<true, true, true, bf16_t, true, true>>(ctx, grid, w_smem, a); break;
                default: launch_update<SelectiveUpdateTraits<true, true, true, float, true, true>>(ctx, grid, w_smem, a); break;
            }
        } else {
            switch (W.dtype) {
                case DType::F16: launch_update<SelectiveUpdateTraits<true, true, true, f16_t, true>>(ctx, grid, smem, a); break;
                case DType::BF16: launch_update<SelectiveUpdateTraits<true, true, true, bf16_t, true>>(ctx, grid, smem, a); break;
                default: launch_update<SelectiveUpdateTraits<true, true, true, float, true>>(ctx, grid, smem, a); break;
            }
        }
    } else if (vec && vec_w) launch_fused<true, true>(ctx, grid, smem, a, W.dtype);
    else if (vec) launch_fused<true, false>(ctx, grid, smem, a, W.dtype);
    else if (vec_w) launch_fused<false, true>(ctx, grid, smem, a, W.dtype);
    else launch_fused<false, false>(ctx, grid, smem, a, W.dtype);
    note_update_writes(ctx, ReleaseAt(a.release_at), previous_recorded, {&p.y, &p.state});
}

}  // namespace

void selective_state_update(mamba_context & ctx, const SelectiveStateUpdateParams & p) { update_state(ctx, p, nullptr); }

std::string selective_state_update_sums_unsupported(const SelectiveStateUpdateParams & p) {
    if (!p.dt_proj_weight) return "the state update has no dt_proj";
    if (p.batch < 1 || p.batch > kXProjMaxRows) return cat("it takes 1 to ", kXProjMaxRows, " batch rows, not ", p.batch);
    if (p.groups != 1) return cat("B and C have ", p.groups, " groups; the fold takes one");
    if (!state_and_A_vectorized(p.state, p.A, p.dstate) || !weight_rows_vectorized(*p.dt_proj_weight))
        return "the SSM state, A or dt_proj_weight does not allow 16-byte accesses";
    return {};
}

void selective_state_update_from_sums(mamba_context & ctx, const SelectiveStateUpdateParams & p, const XProjSums & sums) {
    if (!selective_state_update_sums_unsupported(p).empty() || sums.replicas < 1 || sums.replicas > kXProjMaxReplicas || p.dt_rank + 2 * p.dstate > sums.stride ||
        sums.rows != p.batch || (p.batch > 1 && sums.row_stride < int64_t(sums.replicas) * sums.stride) || sums.extent() > sums.capacity)
        fail(MAMBA_STATUS_INTERNAL, "selective_state_update_from_sums: the update cannot read the sums");
    update_state(ctx, p, &sums);
}

}  // namespace mamba::cuda
