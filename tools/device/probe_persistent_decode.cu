// Probe: a chain of Mamba-1 decode layers at batch 1 as ONE persistent kernel that streams every weight through a
// ring of shared-memory slots, against the bandwidth floor of the same bytes.
//
// Why: the library's batch-1 decode runs three kernels a layer (in_proj with the pre-norm, conv step and x_proj sums;
// the state update with dt_proj; out_proj). At each hand-off the next kernel's weights can start streaming only where
// its blocks find room beside the running kernel's, and out_proj's staged weights fill the SMs, so HBM idles for about
// 8 of a 29.7 us mamba-2.8b layer (docs/gpu-results.md, run 121). Here the weight stream never waits for the
// arithmetic: every block reads its slices of every layer's weights, in layer order, into a FIFO ring of slots with
// cp.async, and refills a slot as soon as the block is done with it. The data dependencies (x_proj's sums over all
// channels, out_proj's input from all channels, the next layer's norm over the whole hidden vector) become grid-wide
// barriers, and while a block waits at one its ring keeps filling: 8 slots of 20 KB cover about 5 us of waiting at
// HBM's rate per SM.
//
// One block an SM (cooperative launch). Per layer, block b owns:
//   - channels [c0, c0 + nc) in groups of 8 (their x and z rows of in_proj, their conv step, their columns of x_proj,
//     their dt_proj rows, their state rows);
//   - hidden rows [r0, r0 + nr) (their rows of out_proj and of the residual stream).
// Phases of a layer, with a grid barrier after each:
//   P1  h = out + residual; xn = RMSNorm(h) * norm_w; x, z of the owned channels (in_proj); conv step; x_proj's
//       partial sums over the owned channels added into float64 sums (atomics; float64 so that the order of the
//       blocks' additions does not show in float32).
//   P2  dt_low, B, C from the sums; dt = softplus(dt_proj . dt_low + bias); state update; y of the owned channels.
//   P3  out rows = out_proj rows . y (the whole y, read from L2); residual rows = h.
// Bytes a layer (mamba-2.8b): 86.6 MB of weights + 0.3 MB of state, a floor of about 21.4 us at 4.05 TB/s.
// FLOPs: 2 per weight; the arithmetic is far below the SMs' rate, so the kernel is bound by the stream and the
// barriers' latency.
//
// The probe checks the kernel's final hidden vector, residual and every layer's states against a float64 host
// reference of the same math (with the same bfloat16 weights and the conv state stored in bfloat16), checks that two
// runs from the same start give the same bits, then times the chain (median of CUDA-event timings) and a 1 GiB copy.
// Nothing here is linked into the library: a positive result is the case for building it into the decode step.
//
// On the GPU machine:
//   nvcc -std=c++17 -arch=sm_90a -O3 -o /tmp/probe tools/device/probe_persistent_decode.cu && /tmp/probe [layers] [shape]
// shape: 2.8b (default: d 2560, e 5120, rank 160) or 130m (d 768, e 1536, rank 48); layers default 8.
// Without a GPU, the same kernel on emulated blocks (probe_emulation.h; a check of its logic against the reference,
// slow and untimed), and the host check of the blocks' plans:
//   g++ -std=c++17 -O2 -DPROBE_EMULATE -DPROBE_THREADS=64 -x c++ tools/device/probe_persistent_decode.cu -Itools/device
//       -o /tmp/probe_emu -lcudart     (one command)
//   /tmp/probe_emu [layers=3] [shape=130m] [blocks=28]
//   /tmp/probe_emu --plan-check
#ifdef PROBE_EMULATE
#include "probe_emulation.h"
#else
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#define CK(x)                                                                             \
    do {                                                                                  \
        cudaError_t e_ = (x);                                                             \
        if (e_ != cudaSuccess) {                                                          \
            std::printf("%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
            std::exit(1);                                                                 \
        }                                                                                 \
    } while (0)

using bf16 = __nv_bfloat16;

namespace {

constexpr int kState = 16;   // dstate (Mamba-1 checkpoints)
constexpr int kWidth = 4;    // conv kernel width
// Overridable when compiling (-DPROBE_SLOTS=6 ...), to compare ring depths, slot sizes and block sizes.
#ifndef PROBE_THREADS
#define PROBE_THREADS 512
#endif
#ifndef PROBE_SLOTS
#define PROBE_SLOTS 8
#endif
#ifndef PROBE_SLOT_BYTES
#define PROBE_SLOT_BYTES 20480
#endif
constexpr int kThreads = PROBE_THREADS;
constexpr int kWarps = kThreads / 32;
constexpr int kSlots = PROBE_SLOTS;
constexpr int kSlotBytes = PROBE_SLOT_BYTES;
static_assert(kThreads % 32 == 0 && kSlotBytes % 16 == 0 && kSlots >= 2, "probe configuration");
constexpr int kMaxChannels = 64;  // owned channels a block (nc)
constexpr int kMaxOutputs = 512;  // x_proj outputs (rank + 2 dstate)

struct Layer {
    const bf16 *norm_w, *w_in, *conv_w, *conv_b, *w_x, *w_dt, *w_out;
    const float *dt_bias, *A, *D;
    bf16 * conv_state;  // [e, kWidth - 1]
    float * ssm_state;  // [e, kState]
};

struct Args {
    int d, e, rank, layers;
    int first_layer;      // of the chain, for launches that run part of it: it picks the sums' buffers
    float eps;
    const Layer * layer;  // device array
    float * hidden;       // [d]: the mixer output of the layer before (the embedding before layer 0)
    float * residual;     // [d]: the residual stream before the layer before (zero before layer 0)
    float * y;            // [e]: the state update's output, exchanged between P2 and P3
    double * sums;        // [2][outputs]: x_proj's sums, by the parity of the layer in the chain; zero before the chain
    unsigned * barrier;   // zero at launch
    long long * stamps;   // [blocks][layers][kStamps]: %globaltimer at the phase points, written by each block's thread 0
};

// Where a layer's time goes: the points stamped in each layer, in order.
constexpr int kStamps = 7;
const char * const kStampNames[kStamps] = {"P1 start (h read)", "in_proj rows done", "x_proj sums added", "barrier A passed", "y stored",
                                           "barrier B passed", "out rows stored"};

#ifdef PROBE_EMULATE
// The emulated block's shared memory (probe_emulation.h).
#define PROBE_SHARED_BYTES(name) char * name = probe_emu::block_shared()
#define PROBE_SHARED_STATIC(type, name) type & name = *reinterpret_cast<type *>(probe_emu::block_statics())
inline void cp_async_16(void * dst, const void * src) { std::memcpy(dst, src, 16); }
inline void mbarrier_init(uint64_t * bar, unsigned count) { probe_emu::barrier_init(bar, count); }
inline void mbarrier_arrive_on_copies(uint64_t * bar) { probe_emu::barrier_arrive(bar); }
inline void mbarrier_wait(uint64_t * bar, unsigned parity) { probe_emu::barrier_wait_parity(bar, parity); }
inline void release_add(unsigned * counter) { ++*counter; }
inline unsigned acquire_load(const unsigned * counter) { return *counter; }
inline void spin_pause() { probe_emu::yield(); }
inline long long global_time() { return (long long)probe_emu::grid()->steps; }
#else
#define PROBE_SHARED_BYTES(name) extern __shared__ __align__(16) char name[]
#define PROBE_SHARED_STATIC(type, name) __shared__ type name

// ---- PTX helpers (sm_80+) ----
__device__ __forceinline__ unsigned smem_addr(const void * p) { return static_cast<unsigned>(__cvta_generic_to_shared(p)); }

__device__ __forceinline__ void cp_async_16(void * dst, const void * src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_addr(dst)), "l"(src) : "memory");
}
__device__ __forceinline__ void mbarrier_init(uint64_t * bar, unsigned count) {
    asm volatile("mbarrier.init.shared.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count) : "memory");
}
// The barrier's pending count drops by one when every cp.async this thread issued so far has landed.
__device__ __forceinline__ void mbarrier_arrive_on_copies(uint64_t * bar) {
    asm volatile("cp.async.mbarrier.arrive.noinc.shared.b64 [%0];\n" ::"r"(smem_addr(bar)) : "memory");
}
__device__ __forceinline__ void mbarrier_wait(uint64_t * bar, unsigned parity) {
    unsigned done = 0;
    while (!done) {
        asm volatile(
            "{\n .reg .pred p;\n mbarrier.test_wait.parity.shared.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(done)
            : "r"(smem_addr(bar)), "r"(parity)
            : "memory");
    }
}

__device__ __forceinline__ void release_add(unsigned * counter) {
    asm volatile("red.release.gpu.global.add.u32 [%0], 1;\n" ::"l"(counter) : "memory");
}
__device__ __forceinline__ unsigned acquire_load(const unsigned * counter) {
    unsigned seen;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(seen) : "l"(counter) : "memory");
    return seen;
}
__device__ __forceinline__ void spin_pause() {}

__device__ __forceinline__ long long global_time() {
    long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
#endif

// Every block of the grid arrives and waits; the writes before it are visible to every block after it.
__device__ __forceinline__ void grid_barrier(unsigned * counter, unsigned & target) {
    __syncthreads();
    target += gridDim.x;
    if (threadIdx.x == 0) {
        __threadfence();
        release_add(counter);
        while (acquire_load(counter) < target) spin_pause();
        __threadfence();
    }
    __syncthreads();
}

__device__ __forceinline__ float silu(float v) { return v / (1.0f + __expf(-v)); }
__device__ __forceinline__ float softplus(float v) { return v > 20.0f ? v : log1pf(__expf(v)); }

// 8 bfloat16 of a 16-byte word dotted with 8 floats, given as their first and last 4.
__device__ __forceinline__ float dot8(uint4 w, float4 lo, float4 hi) {
    const __nv_bfloat162 * p = reinterpret_cast<const __nv_bfloat162 *>(&w);
    const float x[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
    float acc = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const float2 f = __bfloat1622float2(p[i]);
        acc = fmaf(f.x, x[2 * i], acc);
        acc = fmaf(f.y, x[2 * i + 1], acc);
    }
    return acc;
}

// The vectors the GEMV rows are dotted with sit in shared memory split in two halves of float4s: element 8v + k at
// float4 v of the first half (k < 4) or of the second. A lane's two loads for its 16-byte weight word are then
// consecutive 16-byte words across the warp, free of bank conflicts (8 scalar loads of 32-byte-strided floats were
// 8-way conflicts). n: the vector's length, a multiple of 8.
__device__ __forceinline__ int split_index(int i, int n) { return ((i & 7) < 4 ? 0 : n / 2) + (i >> 3) * 4 + (i & 3); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// What a block owns and how its weight stream is cut into tiles (the same on every layer). Kept in shared memory:
// in registers it pushed the kernel past its 128-register budget.
struct Plan {
    int c0, nc, r0, nr, outputs;
    int rows_in, rows_xp, rows_dt, rows_out;       // rows a tile
    int tiles_in, tiles_xp, tiles_dt, tiles_out;   // tiles of each part (in: of x rows, and as many of z rows)
    int tiles_layer;
    int seg_in, seg_out;                           // warps a row of in_proj / out_proj is split over
    // Byte offsets of the parameter tile's pieces.
    int off_conv_w, off_conv_b, off_A, off_D, off_dt_bias, param_bytes;

    __host__ __device__ void init(const Args & a, int b, int G) {
        const int groups = a.e / 8;
        const int g0 = int(int64_t(b) * groups / G), g1 = int(int64_t(b + 1) * groups / G);
        c0 = 8 * g0;
        nc = 8 * (g1 - g0);
        r0 = int(int64_t(b) * a.d / G);
        nr = int(int64_t(b + 1) * a.d / G) - r0;
        outputs = a.rank + 2 * kState;
        rows_in = kSlotBytes / (a.d * 2);
        rows_xp = nc > 0 ? kSlotBytes / (nc * 2) : outputs;
        rows_dt = kSlotBytes / (a.rank * 2);
        rows_out = kSlotBytes / (a.e * 2);
        tiles_in = (nc + rows_in - 1) / rows_in;
        tiles_xp = nc > 0 ? (outputs + rows_xp - 1) / rows_xp : 0;
        tiles_dt = (nc + rows_dt - 1) / rows_dt;
        tiles_out = (nr + rows_out - 1) / rows_out;
        tiles_layer = 1 + 2 * tiles_in + tiles_xp + tiles_dt + tiles_out;
        seg_in = kWarps / rows_in > 1 ? kWarps / rows_in : 1;
        seg_out = kWarps / rows_out > 1 ? kWarps / rows_out : 1;
        off_conv_w = a.d * 2;
        off_conv_b = off_conv_w + nc * kWidth * 2;
        off_A = off_conv_b + nc * 2;
        off_D = off_A + nc * kState * 4;
        off_dt_bias = off_D + nc * 4;
        param_bytes = off_dt_bias + nc * 4;
    }
};

// Floats of the partial-sum buffer, rounded up to a multiple of 4 so that the arrays after it stay 16-byte aligned (s_sum
// is read as float4s, the mbarriers need 8 bytes).
__host__ __device__ inline int part_floats(int seg_in, int nr, int seg_out) {
    const int n = 2 * kMaxChannels * seg_in > nr * seg_out ? 2 * kMaxChannels * seg_in : nr * seg_out;
    return (n + 3) & ~3;
}

enum TileKind { kParams, kInX, kInZ, kXProj, kDtProj, kOutProj };

struct Tile {
    int kind, first, rows;
    const char * src;
    int64_t pitch;
    int row_bytes;
};

// Rows first .. first + per_tile - 1 (fewer at the end of `count`) of a matrix part starting at `src`.
__host__ __device__ inline Tile row_tile(int kind, int first, int per_tile, int count, const void * src, int64_t pitch, int row_bytes) {
    return Tile{kind, first, per_tile < count - first ? per_tile : count - first, static_cast<const char *>(src), pitch, row_bytes};
}

// Tile k of a layer's stream: the parameters, in_proj's x rows, its z rows, x_proj's columns, dt_proj's rows, out_proj's rows.
__host__ __device__ Tile describe(const Args & a, const Plan & p, int layer, int k) {
    const Layer & L = a.layer[layer];
    if (k == 0) return Tile{kParams, 0, 0, nullptr, 0, 0};
    k -= 1;
    if (k < 2 * p.tiles_in) {
        const bool z = k >= p.tiles_in;
        const int j = (z ? k - p.tiles_in : k) * p.rows_in;
        return row_tile(z ? kInZ : kInX, j, p.rows_in, p.nc, L.w_in + (int64_t(z ? a.e : 0) + p.c0 + j) * a.d, int64_t(a.d) * 2, a.d * 2);
    }
    k -= 2 * p.tiles_in;
    if (k < p.tiles_xp) {
        const int o = k * p.rows_xp;
        return row_tile(kXProj, o, p.rows_xp, p.outputs, L.w_x + int64_t(o) * a.e + p.c0, int64_t(a.e) * 2, p.nc * 2);
    }
    k -= p.tiles_xp;
    if (k < p.tiles_dt) {
        const int j = k * p.rows_dt;
        return row_tile(kDtProj, j, p.rows_dt, p.nc, L.w_dt + int64_t(p.c0 + j) * a.rank, int64_t(a.rank) * 2, a.rank * 2);
    }
    k -= p.tiles_dt;
    const int j = k * p.rows_out;
    return row_tile(kOutProj, j, p.rows_out, p.nr, L.w_out + int64_t(p.r0 + j) * a.e, int64_t(a.e) * 2, a.e * 2);
}

__device__ __forceinline__ void copy_piece(char * dst, const void * src, int bytes) {
    for (int u = threadIdx.x; u < bytes / 16; u += kThreads) cp_async_16(dst + 16 * u, static_cast<const char *>(src) + 16 * u);
}

// Queues tile `index` of the block's stream into its slot; every thread arrives on the slot's barrier once.
__device__ void issue(const Args & a, const Plan & p, char * ring, uint64_t * full, int index) {
    const int layer = index / p.tiles_layer, k = index % p.tiles_layer, slot = index % kSlots;
    char * dst = ring + slot * kSlotBytes;
    const Tile t = describe(a, p, layer, k);
    if (t.kind == kParams) {
        const Layer & L = a.layer[layer];
        copy_piece(dst, L.norm_w, a.d * 2);
        copy_piece(dst + p.off_conv_w, L.conv_w + int64_t(p.c0) * kWidth, p.nc * kWidth * 2);
        copy_piece(dst + p.off_conv_b, L.conv_b + p.c0, p.nc * 2);
        copy_piece(dst + p.off_A, L.A + int64_t(p.c0) * kState, p.nc * kState * 4);
        copy_piece(dst + p.off_D, L.D + p.c0, p.nc * 4);
        copy_piece(dst + p.off_dt_bias, L.dt_bias + p.c0, p.nc * 4);
    } else {
        const int per_row = t.row_bytes / 16, units = t.rows * per_row;
        for (int u = threadIdx.x; u < units; u += kThreads) {
            const int row = u / per_row, col = u - row * per_row;
            cp_async_16(dst + row * t.row_bytes + 16 * col, t.src + row * t.pitch + 16 * col);
        }
    }
    mbarrier_arrive_on_copies(&full[slot]);
}

// Rows of a tile dotted with x (row_bytes / 2 floats in shared memory, split as split_index says), each row split over
// `seg` warps; warp w takes row w / seg's piece w % seg and writes its sum to part[(first + row) * seg + piece].
__device__ __forceinline__ void tile_rows_dot(const char * tile, int rows, int row_bytes, int seg, const float * x, float * part, int first) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, vecs = row_bytes / 16;
    const float4 * x_lo = reinterpret_cast<const float4 *>(x);
    const float4 * x_hi = x_lo + vecs;
    for (int w = warp; w < rows * seg; w += kWarps) {
        const int row = w / seg, piece = w % seg;
        const int v0 = piece * vecs / seg, v1 = (piece + 1) * vecs / seg;
        const uint4 * r = reinterpret_cast<const uint4 *>(tile + row * row_bytes);
        float acc = 0.0f;
        for (int v = v0 + lane; v < v1; v += 32) acc += dot8(r[v], x_lo[v], x_hi[v]);
        acc = warp_sum(acc);
        if (lane == 0) part[(first + row) * seg + piece] = acc;
    }
}

__global__ void __launch_bounds__(kThreads, 1) persistent_decode(Args a) {
    PROBE_SHARED_BYTES(smem);
    PROBE_SHARED_STATIC(Plan, plan);
    if (threadIdx.x == 0) plan.init(a, blockIdx.x, gridDim.x);
    __syncthreads();
    const Plan & p = plan;
    char * ring = smem;
    float * s_h = reinterpret_cast<float *>(ring + kSlots * kSlotBytes);  // [d]
    float * s_xn = s_h + a.d;                                             // [d], split (split_index)
    float * s_y = s_xn + a.d;                                             // [e], split
    float * s_ssm = s_y + a.e;                                            // [nc * kState]: this layer's state
    bf16 * s_conv = reinterpret_cast<bf16 *>(s_ssm + kMaxChannels * kState);  // [nc * (kWidth - 1)]: its conv state
    float * s_part = s_ssm + kMaxChannels * kState + kMaxChannels * (kWidth - 1) / 2;  // [max(2 nc seg_in, nr seg_out)]
    float * s_x = s_part + part_floats(p.seg_in, p.nr, p.seg_out);  // [nc]
    float * s_z = s_x + kMaxChannels;
    float * s_xc = s_z + kMaxChannels;
    float * s_dt = s_xc + kMaxChannels;
    float * s_conv_w = s_dt + kMaxChannels;          // [nc * kWidth]
    float * s_conv_b = s_conv_w + kMaxChannels * kWidth;
    float * s_A = s_conv_b + kMaxChannels;           // [nc * kState]
    float * s_D = s_A + kMaxChannels * kState;
    float * s_dt_bias = s_D + kMaxChannels;
    float * s_sum = s_dt_bias + kMaxChannels;        // [outputs]
    float * s_red = s_sum + kMaxOutputs;             // [kWarps]
    uint64_t * full = reinterpret_cast<uint64_t *>(s_red + kWarps + (kWarps % 2));  // [kSlots]
    uint64_t * states_landed = full + kSlots;  // one phase a layer: s_ssm and s_conv hold its states

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    if (tid == 0) {
        for (int s = 0; s < kSlots; ++s) mbarrier_init(&full[s], kThreads);
        mbarrier_init(states_landed, kThreads);
    }
    __syncthreads();

    const int total = a.layers * p.tiles_layer;
    int issued = 0, consumed = 0;
    unsigned target = 0;
    auto refill = [&]() {
        while (issued < total && issued < consumed + kSlots) issue(a, p, ring, full, issued++);
    };
    auto acquire = [&]() -> const char * {
        const int slot = consumed % kSlots;
        mbarrier_wait(&full[slot], unsigned(consumed / kSlots) & 1u);
        return ring + slot * kSlotBytes;
    };
    auto release = [&]() {
        __syncthreads();  // every thread is done with the slot before anyone refills it
        ++consumed;
        refill();
    };
    // The layer's own states, copied as they are: only this block reads or writes its rows, so they load at any time
    // after the layer before has used s_ssm and s_conv. The barrier's arrival also waits for the ring's tiles issued
    // before, which are consumed long before the states are used.
    auto load_states = [&](int layer) {
        const Layer & L = a.layer[layer];
        copy_piece(reinterpret_cast<char *>(s_conv), L.conv_state + int64_t(p.c0) * (kWidth - 1), p.nc * (kWidth - 1) * 2);
        copy_piece(reinterpret_cast<char *>(s_ssm), L.ssm_state + int64_t(p.c0) * kState, p.nc * kState * 4);
        mbarrier_arrive_on_copies(states_landed);
    };

    refill();
    load_states(0);
    for (int layer = 0; layer < a.layers; ++layer) {
        const Layer & L = a.layer[layer];
        double * sums = a.sums + ((a.first_layer + layer) & 1) * p.outputs;
        long long * stamp = a.stamps + (int64_t(blockIdx.x) * a.layers + layer) * kStamps;
        if (tid == 0) stamp[0] = global_time();

        // ---- P1: norm, in_proj rows, conv step, x_proj partial sums ----
        float sq = 0.0f;
        for (int i = tid; i < a.d / 4; i += kThreads) {
            const float4 o = __ldcg(reinterpret_cast<const float4 *>(a.hidden) + i), r = __ldcg(reinterpret_cast<const float4 *>(a.residual) + i);
            const float4 h = make_float4(o.x + r.x, o.y + r.y, o.z + r.z, o.w + r.w);
            reinterpret_cast<float4 *>(s_h)[i] = h;
            sq = fmaf(h.x, h.x, fmaf(h.y, h.y, fmaf(h.z, h.z, fmaf(h.w, h.w, sq))));
        }
        sq = warp_sum(sq);
        if (lane == 0) s_red[warp] = sq;
        __syncthreads();
        {
            const char * params = acquire();
            float total_sq = 0.0f;
            for (int w = 0; w < kWarps; ++w) total_sq += s_red[w];
            const float inv = rsqrtf(total_sq / float(a.d) + a.eps);
            const bf16 * norm_w = reinterpret_cast<const bf16 *>(params);
            for (int i = tid; i < a.d; i += kThreads) s_xn[split_index(i, a.d)] = s_h[i] * inv * __bfloat162float(norm_w[i]);
            const bf16 * conv_w = reinterpret_cast<const bf16 *>(params + p.off_conv_w);
            const bf16 * conv_b = reinterpret_cast<const bf16 *>(params + p.off_conv_b);
            const float * A = reinterpret_cast<const float *>(params + p.off_A);
            const float * D = reinterpret_cast<const float *>(params + p.off_D);
            const float * dt_bias = reinterpret_cast<const float *>(params + p.off_dt_bias);
            for (int i = tid; i < p.nc * kWidth; i += kThreads) s_conv_w[i] = __bfloat162float(conv_w[i]);
            for (int i = tid; i < p.nc * kState; i += kThreads) s_A[i] = A[i];
            for (int i = tid; i < p.nc; i += kThreads) {
                s_conv_b[i] = __bfloat162float(conv_b[i]);
                s_D[i] = D[i];
                s_dt_bias[i] = dt_bias[i];
            }
            release();
        }
        for (int k = 0; k < 2 * p.tiles_in; ++k) {
            const char * tile = acquire();
            const bool z = k >= p.tiles_in;
            const int j = (z ? k - p.tiles_in : k) * p.rows_in;
            tile_rows_dot(tile, min(p.rows_in, p.nc - j), a.d * 2, p.seg_in, s_xn, s_part, (z ? p.nc : 0) + j);
            release();
        }
        if (tid == 0) stamp[1] = global_time();
        // x and z of the owned channels; the conv step (its state stored back in bfloat16, as the model keeps it).
        mbarrier_wait(states_landed, unsigned(layer) & 1u);
        for (int j = tid; j < p.nc; j += kThreads) {
            float x = 0.0f, z = 0.0f;
            for (int s = 0; s < p.seg_in; ++s) {
                x += s_part[j * p.seg_in + s];
                z += s_part[(p.nc + j) * p.seg_in + s];
            }
            s_z[j] = z;
            float acc = s_conv_b[j];
            for (int i = 0; i < kWidth - 1; ++i) acc = fmaf(s_conv_w[j * kWidth + i], __bfloat162float(s_conv[j * (kWidth - 1) + i]), acc);
            acc = fmaf(s_conv_w[j * kWidth + kWidth - 1], x, acc);
            s_xc[j] = silu(acc);
            bf16 * state = L.conv_state + int64_t(p.c0 + j) * (kWidth - 1);
            for (int i = 0; i < kWidth - 2; ++i) state[i] = s_conv[j * (kWidth - 1) + i + 1];
            state[kWidth - 2] = __float2bfloat16(x);
        }
        __syncthreads();
        for (int k = 0; k < p.tiles_xp; ++k) {
            const char * tile = acquire();
            const int o0 = k * p.rows_xp, rows = min(p.rows_xp, p.outputs - o0);
            for (int o = warp; o < rows; o += kWarps) {  // a warp a row: consecutive lanes read consecutive weights
                const bf16 * w = reinterpret_cast<const bf16 *>(tile + o * p.nc * 2);
                float acc = 0.0f;
                for (int j = lane; j < p.nc; j += 32) acc = fmaf(__bfloat162float(w[j]), s_xc[j], acc);
                acc = warp_sum(acc);
                if (lane == 0) atomicAdd(&sums[o0 + o], double(acc));
            }
            release();
        }
        if (tid == 0) stamp[2] = global_time();
        refill();
        grid_barrier(a.barrier, target);
        if (tid == 0) stamp[3] = global_time();

        // ---- P2: dt, the state update, y of the owned channels ----
        for (int o = tid; o < p.outputs; o += kThreads) s_sum[o] = float(__ldcg(sums + o));
        if (blockIdx.x == 0) {
            double * next = a.sums + ((a.first_layer + layer + 1) & 1) * p.outputs;  // last read before this layer's first barrier
            for (int o = tid; o < p.outputs; o += kThreads) next[o] = 0.0;
        }
        __syncthreads();
        for (int k = 0; k < p.tiles_dt; ++k) {
            const char * tile = acquire();
            const int j0 = k * p.rows_dt, rows = min(p.rows_dt, p.nc - j0);
            for (int jj = warp; jj < rows; jj += kWarps) {
                const uint4 * w = reinterpret_cast<const uint4 *>(tile + jj * a.rank * 2);
                float acc = 0.0f;
                for (int v = lane; v < a.rank / 8; v += 32) {
                    const float4 * x = reinterpret_cast<const float4 *>(s_sum) + 2 * v;  // dt_low, as it came (rank is short)
                    acc += dot8(w[v], x[0], x[1]);
                }
                acc = warp_sum(acc);
                if (lane == 0) s_dt[j0 + jj] = softplus(acc + s_dt_bias[j0 + jj]);
            }
            release();
        }
        {
            const float * B = s_sum + a.rank;
            const float * C = B + kState;
            // 16 lanes a channel, one state element each.
            for (int i = tid; i < ((p.nc * kState + 31) / 32) * 32; i += kThreads) {
                const int j = i / kState, n = i % kState;
                float contribution = 0.0f;
                if (j < p.nc) {
                    const float dt = s_dt[j], x = s_xc[j];
                    const float h = __expf(dt * s_A[j * kState + n]) * s_ssm[j * kState + n] + dt * B[n] * x;
                    L.ssm_state[int64_t(p.c0 + j) * kState + n] = h;
                    contribution = C[n] * h;
                }
#pragma unroll
                for (int o = 8; o > 0; o >>= 1) contribution += __shfl_xor_sync(0xffffffffu, contribution, o);
                if (j < p.nc && n == 0) {
                    const float x = s_xc[j];
                    a.y[p.c0 + j] = (contribution + s_D[j] * x) * silu(s_z[j]);
                }
            }
        }
        __syncthreads();  // s_ssm and s_conv are free
        if (tid == 0) stamp[4] = global_time();
        if (layer + 1 < a.layers) load_states(layer + 1);
        refill();
        grid_barrier(a.barrier, target);
        if (tid == 0) stamp[5] = global_time();

        // ---- P3: out_proj rows, residual rows ----
        for (int i0 = tid; i0 < a.e / 4; i0 += 4 * kThreads) {  // four loads in flight a thread; float4 i is 4i .. 4i + 3
            float4 v[4];
#pragma unroll
            for (int u = 0; u < 4; ++u)
                if (i0 + u * kThreads < a.e / 4) v[u] = __ldcg(reinterpret_cast<const float4 *>(a.y) + i0 + u * kThreads);
#pragma unroll
            for (int u = 0; u < 4; ++u) {
                const int i = i0 + u * kThreads;
                if (i < a.e / 4) reinterpret_cast<float4 *>(s_y)[(i & 1) * (a.e / 8) + (i >> 1)] = v[u];
            }
        }
        __syncthreads();
        for (int k = 0; k < p.tiles_out; ++k) {
            const char * tile = acquire();
            const int j = k * p.rows_out;
            tile_rows_dot(tile, min(p.rows_out, p.nr - j), a.e * 2, p.seg_out, s_y, s_part, j);
            release();
        }
        for (int j = tid; j < p.nr; j += kThreads) {
            float out = 0.0f;
            for (int s = 0; s < p.seg_out; ++s) out += s_part[j * p.seg_out + s];
            a.hidden[p.r0 + j] = out;
            a.residual[p.r0 + j] = s_h[p.r0 + j];
        }
        if (tid == 0) stamp[6] = global_time();
        refill();
        grid_barrier(a.barrier, target);
    }
}

size_t shared_bytes(int d, int e, int nr_max) {
    const int seg_in = std::max(1, kWarps / (kSlotBytes / (d * 2)));
    const int seg_out = std::max(1, kWarps / (kSlotBytes / (e * 2)));
    // s_h, s_xn, s_y; s_ssm; s_conv (bfloat16); s_part; s_x, s_z, s_xc, s_dt, s_conv_b, s_D, s_dt_bias; s_conv_w; s_A; s_sum; s_red.
    const size_t floats = size_t(2 * d + e) + kMaxChannels * kState + kMaxChannels * (kWidth - 1) / 2 + size_t(part_floats(seg_in, nr_max, seg_out)) +
                          7 * kMaxChannels + kMaxChannels * kWidth + kMaxChannels * kState + kMaxOutputs + kWarps + (kWarps % 2);
    return size_t(kSlots) * kSlotBytes + floats * 4 + (kSlots + 1) * 8;
}

// ---- host side: random weights, the float64 reference, timing ----

uint64_t splitmix(uint64_t & s) {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
float uniform(uint64_t & s, float lo, float hi) { return lo + (hi - lo) * float(splitmix(s) >> 40) / float(1ull << 24); }
uint16_t to_bf16(float f) {  // round to nearest even
    uint32_t u;
    std::memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return uint16_t(u >> 16);
}
float from_bf16(uint16_t h) {
    uint32_t u = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

struct HostLayer {
    std::vector<uint16_t> norm_w, w_in, conv_w, conv_b, w_x, w_dt, w_out, conv_state;
    std::vector<float> dt_bias, A, D, ssm_state;
};

std::vector<uint16_t> bf16_fill(size_t n, uint64_t seed, float lo, float hi) {
    std::vector<uint16_t> v(n);
    const unsigned threads = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
            const size_t a = n * t / threads, b = n * (t + 1) / threads;
            uint64_t s = seed * 1000003ull + t;
            for (size_t i = a; i < b; ++i) v[i] = to_bf16(uniform(s, lo, hi));
        });
    for (auto & th : pool) th.join();
    return v;
}
std::vector<float> f32_fill(size_t n, uint64_t seed, float lo, float hi) {
    std::vector<float> v(n);
    uint64_t s = seed;
    for (auto & x : v) x = uniform(s, lo, hi);
    return v;
}

HostLayer make_layer(int d, int e, int rank, uint64_t seed) {
    HostLayer L;
    const int outputs = rank + 2 * kState;
    L.norm_w = bf16_fill(d, seed + 1, 0.5f, 1.5f);
    L.w_in = bf16_fill(size_t(2 * e) * d, seed + 2, -1.0f / std::sqrt(float(d)), 1.0f / std::sqrt(float(d)));
    L.conv_w = bf16_fill(size_t(e) * kWidth, seed + 3, -0.5f, 0.5f);
    L.conv_b = bf16_fill(e, seed + 4, -0.2f, 0.2f);
    L.w_x = bf16_fill(size_t(outputs) * e, seed + 5, -1.0f / std::sqrt(float(e)), 1.0f / std::sqrt(float(e)));
    L.w_dt = bf16_fill(size_t(e) * rank, seed + 6, -1.0f / std::sqrt(float(rank)), 1.0f / std::sqrt(float(rank)));
    L.w_out = bf16_fill(size_t(d) * e, seed + 7, -1.0f / std::sqrt(float(e)), 1.0f / std::sqrt(float(e)));
    L.conv_state = bf16_fill(size_t(e) * (kWidth - 1), seed + 8, -1.0f, 1.0f);
    L.dt_bias = f32_fill(e, seed + 9, 0.001f, 0.1f);
    for (auto & b : L.dt_bias) b = std::log(std::expm1(b));
    L.A = f32_fill(size_t(e) * kState, seed + 10, -16.0f, -1.0f);
    L.D = f32_fill(e, seed + 11, 0.5f, 1.5f);
    L.ssm_state = f32_fill(size_t(e) * kState, seed + 12, -0.1f, 0.1f);
    return L;
}

double silu_d(double v) { return v / (1.0 + std::exp(-v)); }
double softplus_d(double v) { return v > 20.0 ? v : std::log1p(std::exp(v)); }

// The same layer in float64 on the host; updates L's states (the conv state rounded to bfloat16 as the kernel stores it).
void reference_layer(HostLayer & L, int d, int e, int rank, float eps, std::vector<double> & hidden, std::vector<double> & residual) {
    const int outputs = rank + 2 * kState;
    std::vector<double> h(d), xn(d);
    double sq = 0.0;
    for (int i = 0; i < d; ++i) {
        h[i] = hidden[i] + residual[i];
        sq += h[i] * h[i];
    }
    const double inv = 1.0 / std::sqrt(sq / d + eps);
    for (int i = 0; i < d; ++i) xn[i] = h[i] * inv * from_bf16(L.norm_w[i]);
    std::vector<double> x(e), z(e), xc(e), sums(outputs, 0.0), y(e);
    auto row_dot = [&](const uint16_t * w, const std::vector<double> & v, int n) {
        double acc = 0.0;
        for (int i = 0; i < n; ++i) acc += double(from_bf16(w[i])) * v[i];
        return acc;
    };
    const unsigned threads = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
    auto parallel = [&](int n, auto && body) {
        std::vector<std::thread> pool;
        for (unsigned t = 0; t < threads; ++t)
            pool.emplace_back([&, t] {
                for (int i = int(int64_t(n) * t / threads); i < int(int64_t(n) * (t + 1) / threads); ++i) body(i);
            });
        for (auto & th : pool) th.join();
    };
    parallel(e, [&](int c) {
        x[c] = row_dot(&L.w_in[size_t(c) * d], xn, d);
        z[c] = row_dot(&L.w_in[size_t(e + c) * d], xn, d);
    });
    for (int c = 0; c < e; ++c) {
        uint16_t * st = &L.conv_state[size_t(c) * (kWidth - 1)];
        double acc = from_bf16(L.conv_b[c]);
        for (int i = 0; i < kWidth - 1; ++i) acc += double(from_bf16(L.conv_w[size_t(c) * kWidth + i])) * from_bf16(st[i]);
        acc += double(from_bf16(L.conv_w[size_t(c) * kWidth + kWidth - 1])) * x[c];
        xc[c] = silu_d(acc);
        for (int i = 0; i < kWidth - 2; ++i) st[i] = st[i + 1];
        st[kWidth - 2] = to_bf16(float(x[c]));
    }
    for (int o = 0; o < outputs; ++o) sums[o] = row_dot(&L.w_x[size_t(o) * e], xc, e);
    parallel(e, [&](int c) {
        double dt = L.dt_bias[c];
        for (int r = 0; r < rank; ++r) dt += double(from_bf16(L.w_dt[size_t(c) * rank + r])) * sums[r];
        dt = softplus_d(dt);
        double acc = 0.0;
        for (int n = 0; n < kState; ++n) {
            float & hs = L.ssm_state[size_t(c) * kState + n];
            const double nh = std::exp(dt * L.A[size_t(c) * kState + n]) * hs + dt * sums[rank + n] * xc[c];
            hs = float(nh);
            acc += sums[rank + kState + n] * nh;
        }
        y[c] = (acc + L.D[c] * xc[c]) * silu_d(z[c]);
    });
    std::vector<double> out(d);
    parallel(d, [&](int r) { out[r] = row_dot(&L.w_out[size_t(r) * e], y, e); });
    residual = h;
    hidden = out;
}

template <class T>
T * upload(const std::vector<T> & v) {
    T * p = nullptr;
    CK(cudaMalloc(&p, v.size() * sizeof(T)));
    CK(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
    return p;
}

double rel_err(const std::vector<float> & got, const std::vector<double> & want) {
    double worst = 0.0, scale = 1e-30;
    for (size_t i = 0; i < want.size(); ++i) {
        worst = std::max(worst, std::abs(double(got[i]) - want[i]));
        scale = std::max(scale, std::abs(want[i]));
    }
    return worst / scale;
}

// Host-only check of the blocks' plans for a grid of G blocks: every byte of every per-layer weight is in exactly one
// block's tiles (norm_w in every block's), each tile fits a slot, and every copy is 16-byte aligned at both ends.
// Fake, far-apart base addresses stand for the tensors, so no memory is touched. Returns the number of faults.
int plan_check(int d, int e, int rank, int G) {
    const int outputs = rank + 2 * kState;
    const int64_t kSpan = int64_t(1) << 36;  // tensor i at (i + 1) << 36
    enum { kNorm, kIn, kConvW, kConvB, kX, kDt, kOut, kBias, kA, kD, kTensors };
    const int64_t sizes[kTensors] = {int64_t(d) * 2,     int64_t(2 * e) * d * 2, int64_t(e) * kWidth * 2, int64_t(e) * 2, int64_t(outputs) * e * 2,
                                     int64_t(e) * rank * 2, int64_t(d) * e * 2,   int64_t(e) * 4,          int64_t(e) * kState * 4, int64_t(e) * 4};
    auto base = [&](int i) { return reinterpret_cast<const char *>((int64_t(i) + 1) * kSpan); };
    Layer L{};
    L.norm_w = reinterpret_cast<const bf16 *>(base(kNorm));
    L.w_in = reinterpret_cast<const bf16 *>(base(kIn));
    L.conv_w = reinterpret_cast<const bf16 *>(base(kConvW));
    L.conv_b = reinterpret_cast<const bf16 *>(base(kConvB));
    L.w_x = reinterpret_cast<const bf16 *>(base(kX));
    L.w_dt = reinterpret_cast<const bf16 *>(base(kDt));
    L.w_out = reinterpret_cast<const bf16 *>(base(kOut));
    L.dt_bias = reinterpret_cast<const float *>(base(kBias));
    L.A = reinterpret_cast<const float *>(base(kA));
    L.D = reinterpret_cast<const float *>(base(kD));
    Args a{};
    a.d = d;
    a.e = e;
    a.rank = rank;
    a.layers = 1;
    a.layer = &L;
    std::vector<std::vector<uint8_t>> seen(kTensors);
    for (int i = 0; i < kTensors; ++i) seen[i].assign(size_t(sizes[i]), 0);
    int faults = 0;
    auto mark = [&](const void * src, int64_t bytes, const char * what) {
        const int64_t at = reinterpret_cast<int64_t>(src);
        const int i = int(at / kSpan) - 1;
        const int64_t off = at % kSpan;
        if (i < 0 || i >= kTensors || off + bytes > sizes[i] || at % 16 || bytes % 16) {
            if (faults++ < 10) std::printf("plan fault: %s piece at tensor %d offset %lld, %lld bytes\n", what, i, (long long)off, (long long)bytes);
            return;
        }
        for (int64_t k = 0; k < bytes; ++k) ++seen[i][size_t(off + k)];
    };
    for (int b = 0; b < G; ++b) {
        Plan p{};
        p.init(a, b, G);
        if (p.nc > kMaxChannels || p.param_bytes > kSlotBytes || p.off_conv_w % 16 || p.off_conv_b % 16 || p.off_A % 16 || p.off_D % 16 ||
            p.off_dt_bias % 16) {
            if (faults++ < 10) std::printf("plan fault: block %d owns %d channels, parameter tile %d bytes\n", b, p.nc, p.param_bytes);
        }
        mark(L.norm_w, int64_t(d) * 2, "norm_w");
        if (p.nc > 0) {
            mark(L.conv_w + int64_t(p.c0) * kWidth, int64_t(p.nc) * kWidth * 2, "conv_w");
            mark(L.conv_b + p.c0, int64_t(p.nc) * 2, "conv_b");
            mark(L.A + int64_t(p.c0) * kState, int64_t(p.nc) * kState * 4, "A");
            mark(L.D + p.c0, int64_t(p.nc) * 4, "D");
            mark(L.dt_bias + p.c0, int64_t(p.nc) * 4, "dt_bias");
        }
        for (int k = 1; k < p.tiles_layer; ++k) {
            const Tile t = describe(a, p, 0, k);
            if (t.rows <= 0 || int64_t(t.rows) * t.row_bytes > kSlotBytes) {
                if (faults++ < 10) std::printf("plan fault: block %d tile %d kind %d has %d rows of %d bytes\n", b, k, t.kind, t.rows, t.row_bytes);
                continue;
            }
            for (int r = 0; r < t.rows; ++r) mark(t.src + r * t.pitch, t.row_bytes, "tile row");
        }
    }
    for (int i = 0; i < kTensors; ++i) {
        const uint8_t want = i == kNorm ? uint8_t(G) : uint8_t(1);
        int64_t off_count = 0;
        for (uint8_t c : seen[i]) off_count += c != want;
        if (off_count) {
            ++faults;
            std::printf("plan fault: tensor %d has %lld bytes read other than %d times\n", i, (long long)off_count, int(want));
        }
    }
    std::printf("plan check, d %d e %d rank %d, %d blocks: %s\n", d, e, rank, G, faults ? "FAIL" : "every weight byte in exactly one block's tiles");
    return faults;
}

// Grids of the H100 and H200 (132 SMs) and others, over the Mamba-1 shapes (d, e, rank) from 130m to 2.8b; the
// combinations that give a block more than kMaxChannels channels are outside this probe's limits (main refuses them).
int plan_checks() {
    int faults = 0;
    const int shapes[][3] = {{768, 1536, 48}, {1024, 2048, 64}, {1536, 3072, 96}, {2048, 4096, 128}, {2560, 5120, 160}};
    for (int G : {28, 78, 80, 108, 114, 132, 144, 192})
        for (const auto & s : shapes) {
            if (8 * ((s[1] / 8 + G - 1) / G) > kMaxChannels) continue;
            faults += plan_check(s[0], s[1], s[2], G);
        }
    return faults;
}

// Whether a shape fits this probe's limits on a grid of G blocks (prints why not).
bool fits(int d, int e, int rank, int G) {
    const int outputs = rank + 2 * kState;
    const int nc_max = 8 * ((e / 8 + G - 1) / G);
    if (e % 8 || d % 8 || rank % 8 || nc_max > kMaxChannels || outputs > kMaxOutputs || d * 2 > kSlotBytes || e * 2 > kSlotBytes ||
        d * 2 + nc_max * (kWidth * 2 + 2 + kState * 4 + 8) > kSlotBytes) {
        std::printf("shape d %d e %d rank %d does not fit this probe's limits on %d blocks\n", d, e, rank, G);
        return false;
    }
    return true;
}

// The command line's layer count and shape (d, e, rank); false, with the reason printed, for anything else.
bool parse_chain(int argc, char ** argv, int default_layers, const char * default_shape, int & layers, int & d, int & e, int & rank) {
    const std::string count = argc > 1 ? argv[1] : std::to_string(default_layers);
    const std::string shape = argc > 2 ? argv[2] : default_shape;
    char * end = nullptr;
    const long n = std::strtol(count.c_str(), &end, 10);
    if (end == count.c_str() || *end != '\0' || n < 1 || n > 64) {
        std::printf("layers: '%s' is not a count from 1 to 64\n", count.c_str());
        return false;
    }
    layers = int(n);
    if (shape == "2.8b") {
        d = 2560, e = 5120, rank = 160;
    } else if (shape == "130m") {
        d = 768, e = 1536, rank = 48;
    } else {
        std::printf("shape: '%s' is not one of 2.8b, 130m\n", shape.c_str());
        return false;
    }
    return true;
}

// What one chain left behind: the last mixer output, the residual and every layer's states.
struct ChainResult {
    std::vector<float> hidden, residual;
    std::vector<std::vector<float>> ssm;
    std::vector<std::vector<uint16_t>> conv;
};

// Runs the float64 reference over `start` (the layers as they were before the chain) from hidden0 and compares; prints
// and returns whether every figure is within its bound.
bool matches_reference(const ChainResult & got, std::vector<HostLayer> start, const std::vector<float> & hidden0, int d, int e, int rank, float eps) {
    const int layers = int(start.size());
    std::vector<double> ref_hidden(hidden0.begin(), hidden0.end()), ref_residual(d, 0.0);
    for (int l = 0; l < layers; ++l) reference_layer(start[l], d, e, rank, eps, ref_hidden, ref_residual);
    double worst_ssm = 0.0;
    int conv_mismatch = 0;
    for (int l = 0; l < layers; ++l) {
        worst_ssm = std::max(worst_ssm, rel_err(got.ssm[l], std::vector<double>(start[l].ssm_state.begin(), start[l].ssm_state.end())));
        for (size_t i = 0; i < got.conv[l].size(); ++i) {  // one bfloat16 step apart at most (the kernel's x differs by rounding)
            const float want = from_bf16(start[l].conv_state[i]);
            if (std::abs(from_bf16(got.conv[l][i]) - want) > 1e-2f * std::max(1.0f, std::abs(want))) ++conv_mismatch;
        }
    }
    const double err_hidden = rel_err(got.hidden, ref_hidden), err_residual = rel_err(got.residual, ref_residual);
    const bool ok = err_hidden < 1e-3 && err_residual < 1e-3 && worst_ssm < 1e-3 && conv_mismatch == 0;
    std::printf("against the float64 reference: hidden %.2e, residual %.2e, ssm states %.2e (max |diff| / max |ref|), conv state "
                "elements off by more than a bfloat16 step: %d -> %s\n",
                err_hidden, err_residual, worst_ssm, conv_mismatch, ok ? "PASS" : "FAIL");
    return ok;
}

}  // namespace

#ifdef PROBE_EMULATE

// probe [layers] [2.8b|130m] [blocks]: the kernel on emulated blocks of kThreads fibers each (build with a small
// -DPROBE_THREADS, e.g. 64), against the reference, twice from the same start.
int main(int argc, char ** argv) {
    if (argc > 1 && std::string(argv[1]) == "--plan-check") return plan_checks() ? 2 : 0;
    int layers = 0, d = 0, e = 0, rank = 0;
    if (!parse_chain(argc, argv, 3, "130m", layers, d, e, rank)) return 1;
    const std::string shape = argc > 2 ? argv[2] : "130m";
    const int G = argc > 3 ? std::atoi(argv[3]) : 28;
    if (G < 1) {
        std::printf("blocks: '%s' is not a positive count\n", argv[3]);
        return 1;
    }
    const float eps = 1e-5f;
    const int outputs = rank + 2 * kState;
    if (!fits(d, e, rank, G) || plan_check(d, e, rank, G) != 0) return 2;
    const size_t smem = shared_bytes(d, e, (d + G - 1) / G);
    std::printf("emulated: shape %s (d %d, e %d, rank %d), %d layers, %d blocks x %d threads, %zu B of shared memory a block\n", shape.c_str(),
                d, e, rank, layers, G, kThreads, smem);

    std::vector<HostLayer> start;
    for (int l = 0; l < layers; ++l) start.push_back(make_layer(d, e, rank, 1000 + 37 * l));
    const std::vector<float> hidden0 = f32_fill(d, 7, -1.0f, 1.0f);

    ChainResult first;
    for (int run = 0; run < 3; ++run) {  // one launch, the same again, one launch a layer
        std::vector<HostLayer> work = start;
        std::vector<Layer> layer(layers);
        for (int l = 0; l < layers; ++l) {
            HostLayer & H = work[l];
            layer[l] = Layer{reinterpret_cast<const bf16 *>(H.norm_w.data()), reinterpret_cast<const bf16 *>(H.w_in.data()),
                             reinterpret_cast<const bf16 *>(H.conv_w.data()), reinterpret_cast<const bf16 *>(H.conv_b.data()),
                             reinterpret_cast<const bf16 *>(H.w_x.data()),    reinterpret_cast<const bf16 *>(H.w_dt.data()),
                             reinterpret_cast<const bf16 *>(H.w_out.data()),  H.dt_bias.data(),
                             H.A.data(),                                      H.D.data(),
                             reinterpret_cast<bf16 *>(H.conv_state.data()),   H.ssm_state.data()};
        }
        std::vector<float> hidden = hidden0, residual(d, 0.0f), y(e, 0.0f);
        std::vector<double> sums(2 * outputs, 0.0);
        std::vector<long long> stamps(size_t(G) * layers * kStamps);
        std::vector<unsigned> barrier(layers, 0);
        Args a{};
        a.d = d;
        a.e = e;
        a.rank = rank;
        a.layers = layers;
        a.eps = eps;
        a.layer = layer.data();
        a.hidden = hidden.data();
        a.residual = residual.data();
        a.y = y.data();
        a.sums = sums.data();
        a.barrier = barrier.data();
        a.stamps = stamps.data();
        auto kernel = [](void * args) { persistent_decode(*static_cast<Args *>(args)); };
        if (run < 2) {
            probe_emu::launch(unsigned(G), kThreads, smem, sizeof(Plan), kernel, &a);
        } else {
            for (int l = 0; l < layers; ++l) {
                Args one = a;
                one.layers = 1;
                one.first_layer = l;
                one.layer = a.layer + l;
                one.barrier = a.barrier + l;
                probe_emu::launch(unsigned(G), kThreads, smem, sizeof(Plan), kernel, &one);
            }
        }
        ChainResult got{hidden, residual, {}, {}};
        for (const HostLayer & H : work) {
            got.ssm.push_back(H.ssm_state);
            got.conv.push_back(H.conv_state);
        }
        if (run == 0) {
            first = got;
            if (!matches_reference(got, start, hidden0, d, e, rank, eps)) return 2;
        } else {
            const bool same = std::memcmp(got.hidden.data(), first.hidden.data(), size_t(d) * 4) == 0;
            std::printf("%s from the same start: %s\n", run == 1 ? "a second run" : "one launch a layer", same ? "the same bits (PASS)" : "different bits (FAIL)");
            if (!same) return 2;
        }
    }
    return 0;
}

#else

int main(int argc, char ** argv) {
    if (argc > 1 && std::string(argv[1]) == "--plan-check") return plan_checks() ? 2 : 0;
    int layers = 0, d = 0, e = 0, rank = 0;
    if (!parse_chain(argc, argv, 8, "2.8b", layers, d, e, rank)) return 1;
    const std::string shape = argc > 2 ? argv[2] : "2.8b";
    const float eps = 1e-5f;
    const int outputs = rank + 2 * kState;

    cudaDeviceProp prop{};
    CK(cudaGetDeviceProperties(&prop, 0));
    const int grid = prop.multiProcessorCount;
    const int nr_max = (d + grid - 1) / grid;
    if (!fits(d, e, rank, grid) || plan_check(d, e, rank, grid) != 0) return 2;
    const size_t smem = shared_bytes(d, e, nr_max);
    if (smem > prop.sharedMemPerBlockOptin) {
        std::printf("%zu B of shared memory a block is more than this GPU's %zu\n", smem, size_t(prop.sharedMemPerBlockOptin));
        return 1;
    }
    std::printf("%s, %d SMs; shape %s: d %d, e %d, rank %d, %d layers; %d blocks x %d threads, %zu B of shared memory a block, %d slots of %d B\n",
                prop.name, grid, shape.c_str(), d, e, rank, layers, grid, kThreads, smem, kSlots, kSlotBytes);

    std::vector<HostLayer> host;
    for (int l = 0; l < layers; ++l) host.push_back(make_layer(d, e, rank, 1000 + 37 * l));
    const std::vector<HostLayer> start = host;
    std::vector<float> hidden0 = f32_fill(d, 7, -1.0f, 1.0f);

    std::vector<Layer> dev(layers);
    double weight_bytes = 0.0;
    for (int l = 0; l < layers; ++l) {
        const HostLayer & H = host[l];
        dev[l].norm_w = reinterpret_cast<const bf16 *>(upload(H.norm_w));
        dev[l].w_in = reinterpret_cast<const bf16 *>(upload(H.w_in));
        dev[l].conv_w = reinterpret_cast<const bf16 *>(upload(H.conv_w));
        dev[l].conv_b = reinterpret_cast<const bf16 *>(upload(H.conv_b));
        dev[l].w_x = reinterpret_cast<const bf16 *>(upload(H.w_x));
        dev[l].w_dt = reinterpret_cast<const bf16 *>(upload(H.w_dt));
        dev[l].w_out = reinterpret_cast<const bf16 *>(upload(H.w_out));
        dev[l].dt_bias = upload(H.dt_bias);
        dev[l].A = upload(H.A);
        dev[l].D = upload(H.D);
        dev[l].conv_state = reinterpret_cast<bf16 *>(upload(H.conv_state));
        dev[l].ssm_state = upload(H.ssm_state);
        weight_bytes += 2.0 * (H.norm_w.size() + H.w_in.size() + H.conv_w.size() + H.conv_b.size() + H.w_x.size() + H.w_dt.size() + H.w_out.size()) +
                        4.0 * (H.dt_bias.size() + H.A.size() + H.D.size());
    }
    const double state_bytes = layers * (2.0 * 2 * e * (kWidth - 1) + 2.0 * 4 * e * kState);  // read and written

    Args a{};
    a.d = d;
    a.e = e;
    a.rank = rank;
    a.layers = layers;
    a.eps = eps;
    a.layer = upload(dev);
    CK(cudaMalloc(&a.hidden, d * 4));
    CK(cudaMalloc(&a.residual, d * 4));
    CK(cudaMalloc(&a.y, e * 4));
    CK(cudaMalloc(&a.sums, 2 * outputs * 8));
    CK(cudaMalloc(&a.barrier, size_t(layers) * 4));  // one counter a layer, for the launches of one layer each
    CK(cudaMalloc(&a.stamps, size_t(grid) * layers * kStamps * 8));
    long long * layer_stamps = nullptr;  // the per-layer launches' stamps, not read
    CK(cudaMalloc(&layer_stamps, size_t(grid) * kStamps * 8));
    CK(cudaFuncSetAttribute(persistent_decode, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    int per_sm = 0;
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, persistent_decode, kThreads, smem));
    if (per_sm < 1) {
        std::printf("the kernel does not fit on an SM\n");
        return 1;
    }

    cudaStream_t stream;
    CK(cudaStreamCreate(&stream));
    auto reset_inputs = [&] {
        CK(cudaMemcpyAsync(a.hidden, hidden0.data(), d * 4, cudaMemcpyHostToDevice, stream));
        CK(cudaMemsetAsync(a.residual, 0, d * 4, stream));
    };
    auto prepare = [&] {  // the kernel expects both sums and the barrier's counters zero
        CK(cudaMemsetAsync(a.sums, 0, 2 * outputs * 8, stream));
        CK(cudaMemsetAsync(a.barrier, 0, size_t(layers) * 4, stream));
    };
    auto launch_args = [&](Args & args) {
        void * params[] = {&args};
        CK(cudaLaunchCooperativeKernel(reinterpret_cast<void *>(persistent_decode), dim3(grid), dim3(kThreads), params, smem, stream));
    };
    auto launch = [&] { launch_args(a); };  // the whole chain in one launch
    auto launch_per_layer = [&] {           // one launch a layer, back to back on the stream
        for (int l = 0; l < layers; ++l) {
            Args one = a;
            one.layers = 1;
            one.first_layer = l;
            one.layer = a.layer + l;
            one.barrier = a.barrier + l;
            one.stamps = layer_stamps;
            launch_args(one);
        }
    };
    auto reset_states = [&] {
        for (int l = 0; l < layers; ++l) {
            CK(cudaMemcpyAsync(dev[l].conv_state, start[l].conv_state.data(), start[l].conv_state.size() * 2, cudaMemcpyHostToDevice, stream));
            CK(cudaMemcpyAsync(dev[l].ssm_state, start[l].ssm_state.data(), start[l].ssm_state.size() * 4, cudaMemcpyHostToDevice, stream));
        }
    };

    // Correctness: one chain from the known start against the float64 reference.
    reset_inputs();
    reset_states();
    prepare();
    launch();
    CK(cudaStreamSynchronize(stream));
    auto fetch = [&] {
        ChainResult got{std::vector<float>(d), std::vector<float>(d), {}, {}};
        CK(cudaMemcpy(got.hidden.data(), a.hidden, d * 4, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(got.residual.data(), a.residual, d * 4, cudaMemcpyDeviceToHost));
        for (int l = 0; l < layers; ++l) {
            got.ssm.emplace_back(host[l].ssm_state.size());
            got.conv.emplace_back(host[l].conv_state.size());
            CK(cudaMemcpy(got.ssm[l].data(), dev[l].ssm_state, got.ssm[l].size() * 4, cudaMemcpyDeviceToHost));
            CK(cudaMemcpy(got.conv[l].data(), dev[l].conv_state, got.conv[l].size() * 2, cudaMemcpyDeviceToHost));
        }
        return got;
    };
    const ChainResult got = fetch();
    bool ok = matches_reference(got, start, hidden0, d, e, rank, eps);
    const std::vector<float> & got_hidden = got.hidden;

    // The same chain as one launch a layer.
    reset_inputs();
    reset_states();
    prepare();
    launch_per_layer();
    CK(cudaStreamSynchronize(stream));
    std::printf("one launch a layer: ");
    const ChainResult per_layer = fetch();
    ok = matches_reference(per_layer, start, hidden0, d, e, rank, eps) && ok;
    std::printf("one launch a layer against one launch: %s\n",
                std::memcmp(per_layer.hidden.data(), got_hidden.data(), d * 4) == 0 ? "the same bits" : "other bits (float64 sums added in another order)");

    // Determinism: the same start again gives the same bits.
    reset_inputs();
    reset_states();
    prepare();
    launch();
    CK(cudaStreamSynchronize(stream));
    std::vector<float> again(d);
    CK(cudaMemcpy(again.data(), a.hidden, d * 4, cudaMemcpyDeviceToHost));
    const bool same = std::memcmp(again.data(), got_hidden.data(), d * 4) == 0;
    std::printf("a second run from the same start: %s\n", same ? "the same bits (PASS)" : "different bits (FAIL)");

    // Timing: chains back to back (states evolve; inputs reset each time, outside the timed launch).
    cudaEvent_t t0, t1;
    CK(cudaEventCreate(&t0));
    CK(cudaEventCreate(&t1));
    // `reps` timings of run() after `warmups` untimed ones, each after before() (untimed), sorted (ms).
    auto timed = [&](int warmups, int reps, auto && before, auto && run) {
        std::vector<float> ms;
        for (int it = 0; it < warmups + reps; ++it) {
            before();
            CK(cudaEventRecord(t0, stream));
            run();
            CK(cudaEventRecord(t1, stream));
            CK(cudaEventSynchronize(t1));
            float m = 0.0f;
            CK(cudaEventElapsedTime(&m, t0, t1));
            if (it >= warmups) ms.push_back(m);
        }
        std::sort(ms.begin(), ms.end());
        return ms;
    };
    auto fresh_chain = [&] {
        reset_inputs();
        prepare();
    };
    const std::vector<float> layer_ms = timed(3, 20, fresh_chain, launch_per_layer);
    const std::vector<float> ms = timed(3, 20, fresh_chain, launch);  // last, so that the stamps read below are its
    const double chain_ms = ms[ms.size() / 2];

    // The last timed chain's stamps: each interval's mean over the layers past the first and before the last, as the
    // min / median / max over the blocks (us), then the layer's period (P1 start to the next layer's P1 start).
    std::vector<long long> stamps(size_t(grid) * layers * kStamps);
    CK(cudaMemcpy(stamps.data(), a.stamps, stamps.size() * 8, cudaMemcpyDeviceToHost));
    if (layers >= 3) {
        auto at = [&](int b, int l, int k) { return double(stamps[(size_t(b) * layers + l) * kStamps + k]); };
        std::printf("where a layer goes (us, mean over layers 1..%d; min / median / max over the blocks):\n", layers - 2);
        for (int k = 0; k < kStamps; ++k) {
            std::vector<double> per_block(grid);
            for (int b = 0; b < grid; ++b) {
                double sum = 0.0;
                for (int l = 1; l + 1 < layers; ++l) sum += k + 1 < kStamps ? at(b, l, k + 1) - at(b, l, k) : at(b, l + 1, 0) - at(b, l, k);
                per_block[b] = sum / (layers - 2) * 1e-3;
            }
            std::sort(per_block.begin(), per_block.end());
            std::printf("  %-20s -> %-20s %7.2f / %7.2f / %7.2f\n", kStampNames[k], k + 1 < kStamps ? kStampNames[k + 1] : "next layer's P1 start",
                        per_block.front(), per_block[grid / 2], per_block.back());
        }
        std::vector<double> period(grid);
        for (int b = 0; b < grid; ++b) period[b] = (at(b, layers - 1, 0) - at(b, 1, 0)) / (layers - 2) * 1e-3;
        std::sort(period.begin(), period.end());
        std::printf("  layer period %.2f / %.2f / %.2f\n", period.front(), period[grid / 2], period.back());
    }

    // Copy bandwidth: 1 GiB device to device, bytes read + written.
    const size_t copy_bytes = size_t(1) << 30;
    void *src = nullptr, *dst = nullptr;
    CK(cudaMalloc(&src, copy_bytes));
    CK(cudaMalloc(&dst, copy_bytes));
    CK(cudaMemsetAsync(src, 1, copy_bytes, stream));
    const std::vector<float> copy_ms = timed(2, 6, [] {}, [&] { CK(cudaMemcpyAsync(dst, src, copy_bytes, cudaMemcpyDeviceToDevice, stream)); });
    const double copy_gbs = 2.0 * copy_bytes / (copy_ms[copy_ms.size() / 2] * 1e-3) / 1e9;
    const double bytes = weight_bytes + state_bytes;
    const double floor_ms = bytes / (copy_gbs * 1e9) * 1e3;
    std::printf("chain of %d layers: %.4f ms (min %.4f, max %.4f over %zu launches), %.1f us a layer; %.1f MB moved, %.0f GB/s; copy %.0f GB/s; "
                "floor %.4f ms -> %.0f%% of it\n",
                layers, chain_ms, ms.front(), ms.back(), ms.size(), 1e3 * chain_ms / layers, bytes / 1e6, bytes / (chain_ms * 1e-3) / 1e9, copy_gbs,
                floor_ms, 100.0 * floor_ms / chain_ms);
    const double layer_chain_ms = layer_ms[layer_ms.size() / 2];
    std::printf("the same chain as one launch a layer: %.4f ms (min %.4f, max %.4f), %.1f us a layer -> %.0f%% of the floor\n", layer_chain_ms,
                layer_ms.front(), layer_ms.back(), 1e3 * layer_chain_ms / layers, 100.0 * floor_ms / layer_chain_ms);
    return ok && same ? 0 : 2;
}

#endif  // PROBE_EMULATE
