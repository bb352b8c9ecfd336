// Mamba-2 SSD forward (mamba_ssd), bf16 x/B/C, dstate <= 128: the chunk-parallel state-space-duality
// algorithm on tensor cores: a state pass (one kernel, `pair`, or two, `twopass`), then the output kernel.
//
// Chunks of kQ = 128 steps restart at every sequence start, so no chunk straddles packed sequences.
// With acum_t the inclusive cumulative sum of dt*A inside a chunk and S the (headdim x dstate) state:
//   state pass (pair: block = (sequence, pair of heads, 16 or 32 channels), walking its chunks; twopass:
//   every chunk's local state at once, then an elementwise carry over the chunks):
//     dt (bias, softplus, limit) and acum           -> workspace (float32, read back by the output kernel)
//     S_in of the chunk (the state before it)         -> workspace (float16 / a power-of-two scale)
//     S <- exp(acum_end) S + Xw^T B,  Xw[s,p] = x[s,p] dt_s exp(acum_end - acum_s)   (tensor cores)
//     the last S -> final_states (float32)
//   output kernel, block = (chunk, group, tile of heads of the group, 64 channels), all chunks at once:
//     G = C B^T once for the block's heads (they share the group's B and C)
//     per head: M[t,s] = G[t,s] exp(acum_t - acum_s) dt_s (s <= t)
//               y = exp(acum_t) (C S_in^T) + M X + D x, gated by silu(z), stored once.
//   Kernels (same workspace format):
//     state pair (ssd_cp_state_pair_kernel): mma.sync, the state in accumulators, x^T scaled by w and
//          split hi + lo in registers, one block barrier per chunk, for two heads of one group per block:
//          B staged once and each B fragment used by both heads' MMAs, swizzled unpadded shared memory
//          (its section below).
//     state twopass (ssd_chunk_state_twopass.cu): every chunk's local state from a zero start in parallel
//          (float16 + a power-of-two scale per 16 rows like S_in, the sequence's last chunk float32; a
//          workspace of its own), then an elementwise float32 carry per sequence that writes S_in and
//          the final states.
//     output (ssd_cp_output_lean_kernel, ssd_cp_output_lean.cuh): mma.sync with ldmatrix, 8 warps, G in
//          shared memory in the accumulator layout, 128 registers, 2 blocks (16 warps) per SM, S_in / x
//          copies overlapping the other phase of the same head; z and y moved as 16-byte rows; the decay
//          factored into a per-head column table, compile-time builds for the gate and for full chunks.
//   State kernel choice: MAMBA_CUDA_SSD_STATE = pair or twopass forces one (tests and benchmarks); unset,
//   the plan picks pair when its grid has at least 4 x (SM count) blocks (B8 H80: 640 blocks of 32
//   channels on 132 SMs = 4.8 x), else twopass (B1 H80: pair would have 160 blocks of 16 channels = 1.2 x,
//   one partial wave) while its local states take at most 256 MB (else pair), and reserves them
//   when it picks twopass (resolve_state_kernel).
//   Removed after the H200 run at 66a43f9 (bf16 L2048 H80 P64 N128 G1, ms a call; z = with the gate):
//     output mma8 (the lean kernel's predecessor: same layout and MMAs, per-element decay and masks,
//          runtime checks): state automatic, mma8 / lean: B8 z 1.018 / 0.840, B8 0.909 / 0.774, B1 z
//          0.224 / 0.188, B1 0.210 / 0.183: lean won everywhere. MAMBA_CUDA_SSD_OUTPUT went with it.
//     state mma (block = one head, 16 or 32 channels, every warp scanning dt; was the automatic choice
//          below 4 pair blocks per SM): with output mma8, mma / pair / twopass: B8 z 1.199 / 1.051 /
//          1.016, B8 1.079 / 0.922 / 0.907, B1 z 0.226 / 0.243 / 0.181, B1 0.210 / 0.229 / 0.168: mma
//          lost everywhere. twopass wins clearly at B1 and by 1.5-3% at B8 (kernels alone at B8 z: local
//          0.318 + carry 0.136 ms against pair 0.46), but its local states then took 336 MB at B8 L2048
//          H80 in float32 (~1 GB at B4 L8192 H128), so pair stays the choice at large grids. They are
//          float16 since (~189 MB at B8 L2048 H80, ~0.55 GB at B4 L8192 H128).
//   Earlier measurements (the output and state variants before these):
//   Measured on an H200 (CUDA 13, sm_90a) at 5abc501, bf16 L2048 H80 P64 N128 G1, ms per call (all
//   correct on the GPU; "alone" = MAMBA_CUDA_TRACE mean of that kernel). Output builds (state automatic: pair at B8, mma at B1); "z" = with the gate (the Mamba-2 mixer
//   calls it without: its gated RMS norm applies z):
//     output build                         | B8 z  | B1 z  | B8    | B1    | B8 z, output kernel alone
//     mma8 (z/y as 4-byte pairs)           | 1.138 | 0.239 | 0.964 | 0.222 | 0.681
//     mma8_rows (z/y as 16-byte rows)      | 1.056 | 0.228 | 0.911 | 0.212 | 0.609
//     mma8_rows_early (rows, z early)      | 1.026 | 0.223 | 0.923 | 0.214 | 0.578
//     mma8_merged (phase B both strips)    | 1.144 | 0.242 | 0.989 | 0.226 | 0.688
//     mma8_rows_merged (rows + merged)     | 1.059 | 0.227 | 0.899 | 0.210 | 0.606
//   Kept: mma8_rows_early for calls with z, mma8_rows_merged for calls without (the best of each column;
//   one template, kEarlyZ). Early z with the merged phase B was not measured: ptxas spills 244 B there
//   (128 registers) against 76 B for mma8_rows_early. State kernels (output mma8):
//     state kernel                         | B8 z  | B1 z  | B8    | B1    | B8 z, state kernel alone
//     pair                                 | 1.114 | 0.258 | 0.963 | 0.241 | 0.452
//     mma                                  | 1.279 | 0.239 | 1.130 | 0.222 | 0.600
//     pair_rows (S_in by 16-byte rows)     | 1.179 | 0.270 | 1.030 | 0.254 | 0.505
//     mma_rows  (S_in by 16-byte rows)     | 1.287 | 0.242 | 1.139 | 0.227 | 0.614
//     quad   (pair, 4 heads, 16 ch, 8 w)   | 1.232 | 0.288 | 1.083 | 0.272 | 0.561
//     quad32 (pair, 4 heads, 32 ch, 16 w)  | 1.301 | 0.345 | 1.146 | 0.328 | 0.616
//   Removed after these numbers (do not retry blindly):
//     output mma8 (4-byte z/y pairs from the accumulator layout): half-used 32-byte sectors, 4x the
//          access instructions of the rows epilogue; 0.07 ms slower than rows at B8.
//     output mma8_merged (merged phase B with the pairs epilogue): slower alone (0.688 vs 0.681 ms); the
//          merge only pays with the rows epilogue, without z (0.899 vs 0.911).
//     output mma8_rows (rows, z loaded in the epilogue, phase B strip by strip): with z, early loads won
//          by 0.03 ms at B8 (1.026 vs 1.056); without z, the merged phase B by 0.012 (0.899 vs 0.911).
//     state pair_rows / mma_rows (S_in by 16-byte rows through a quad transpose): slower at every shape
//          (pair_rows 0.505 vs 0.452 alone); the stores are 1/16 of the kernel's bytes, the 3 shuffles a
//          piece and the registers for them (spills at 128) are not free.
//     state quad / quad32 (pair with four heads a block): each scaled, split x fragment feeds half of
//          pair's MMAs (quad), or one 16-warp block per SM leaves no second block to run during a
//          barrier (quad32); slower than pair at B8 and than mma at B1.
//   Measured before (output mma8): out=mma8 st=pair 0.962 / 1.115 (B8 / B8 z); the removed 4-warp output
//   kernel "mma" (G in registers, 241 registers, 8 warps per SM) 1.203 / 1.613, 0.763 ms alone against
//   0.525; the state variants pair3 (16 warps, 3 chunk buffers, 1 block per SM: 1.136 / 1.289) and pair16
//   (16-channel tiles at every block count: 1.394 / 1.803 with the old output), both slower than pair at
//   B8 and no better than mma at B1.
//   An earlier wmma pair (fragments over float32 G and bf16 M tiles in shared memory) measured slower on
//   an H200 (output 1.94 ms against 1.78 ms total at B8, state 2.01 ms): latency of shared-memory fragment
//   loads, dependent MMA chains and block barriers between its phases. It was removed.
// In pair the sequential part is only the state carry, and the carry is the accumulator itself
// (registers): the chunk contributions Xw^T B make no round trip through memory (twopass stores them). The next chunk's B and x land by cp.async
// during the current chunk's MMAs (B double-buffered).
// B1 (L2048 H80 P64 N128), counted for a one-kernel state pass (the carry inside the state kernel): the
// state kernel is 160 blocks (one wave on 132 SMs), each a chain of 16 chunk steps
// (copy wait, dt scan, one barrier, 64 MMAs a warp in 8-deep chains, S_in store): ~0.11 ms measured at
// 40872b3, ~7 us a step, with 16 x 80 x 16 KB = 21 MB of S_in to write. The output kernel then runs all
// 16 x 80 (chunk, head) pairs at once. So at B1 the serial chain of that state kernel is the floor, and
// twopass (the automatic choice there: all chunks' local Xw^T B in parallel, 16x the blocks, then a
// 16-step elementwise carry) cuts it to one chunk step plus 16 cheap steps: 0.049 + 0.029 ms measured
// (run 11, float32 local states) against ~0.11 for the chain.
//
// Precision (checked by a host emulation of this arithmetic against the float64 recurrence on the test
// inputs): bf16 x, B and C are exact MMA operands. The state update's float32 operand Xw and the
// output's M are split into bf16 hi + lo (v = hi + lo to ~2^-17) and multiplied twice, so the states
// follow the float32 recurrence (final states at 0.02 of their 2e-4 tolerance). C S_in^T runs in
// float16 (11 bits): S_in divided by a power of two per (chunk, head, state block) and each C row by
// its own (exact scalings that keep every value in float16's range; the scales are applied in float32
// to the product, with exp(acum_t)). One bf16 rounding of M or S_in put y at 2-3.5x the bf16 test
// tolerance after 2048 steps (a state of size ~10 cancels inside C S); as built, y is at 0.28 of it
// (mostly the output's own rounding).
//
// Workspace (per chunk slot and head): S_in Pw x Nw float16 (Pw = headdim rounded up to 16, Nw = 64
// or 128) and its scale per 16 rows, dt and acum Q floats each. Slots: batch b chunk k -> b * chunks
// + k; packed: the chunk starting at row t0 of sequence i -> t0 / Q + i, which is one-to-one (a
// sequence of length l starting at row r uses slots r/Q + i .. r/Q + i + ceil(l/Q) - 1 < (r + l)/Q +
// i + 1) and below (len - 1)/Q + nseq, so no table is built and the output kernel finds its sequence
// by a binary search over cu_seqlens. The workspace is carved with the op's other scratch before any
// launch, so a captured graph reuses it (capture cannot allocate).
//
// Counts at bf16 B8 L2048 H80 P64 N128 G1 (16 chunks per sequence, 10240 (chunk, head) pairs,
// 1.31 M (step, head) pairs; one 16x16x16 MMA = 8192 FLOP):
//   state kernel (the removed one-head mma kernel; pair halves the B reads and the blocks):
//                  reads x 168 MB, B 4 MB (again per head from L2); writes S_in 168 MB, dt/acum 10 MB:
//                  ~350 MB -> 0.085 ms at 4.1 TB/s. MMAs Xw^T B, hi + lo: 4 P N per (step, head) =
//                  43 GFLOP -> ~0.11 ms at ~400 TFLOP/s of mma.sync. 1280 blocks of 8 warps, 2 per SM
//                  (~94 KB of shared memory, 128 registers). Expected ~0.11-0.14 ms.
//   output kernel: reads x, z 336 MB, S_in 168 MB, B and C 8 MB; writes y 168 MB: ~680 MB -> 0.165 ms.
//                  MMAs per (step, head): C S_in^T 2 N P = 16.4 K, M X hi + lo ~(Q/2 + 8) P 2 = 18.4 K,
//                  G Q N / 16 heads = 1 K: 47 GFLOP -> ~0.12 ms, under the memory time.
//   B8 total ~0.28-0.35 ms by these counts (was 2.23). B1: ~0.05-0.08 ms (was 0.45). Measured at run 11:
//   B8 0.77 ms (0.83 with z), B1 0.142 (0.147): the kernels are bound by instruction issue and latency,
//   not by these counts (docs/gpu-results.md).
// G shared, not stored: in shared memory it costs no traffic; stored per chunk and group (64 KB float32)
// it would be read once per head (80 x 64 KB per chunk, 0.67 GB of L2 reads at B8). Recomputing it per
// block of hb heads costs Q N / hb FLOPs per (step, head), 1-4 K against ~35 K of the y MMAs. Only the
// 36 G tiles on and below the diagonal are formed.
// The kernels' own counts and layouts are in their sections (the output kernel's in its own file). Their fragment layouts and block
// logic were run on the host (ldmatrix and mma.sync emulated from the PTX ISA tables, one thread per CUDA
// thread) against the float64 recurrence on test-like shapes: y at <= 0.11 of the bf16 tolerance, final
// states at <= 0.025 of theirs.
#include "core/env_choice.h"
#include "launch.cuh"
#include "mma_fragments.cuh"
#include "ssd_chunk_parallel.cuh"
#include "ssd_chunk_state_twopass.cuh"
#include "ssd_cp_common.cuh"
#include "ssd_host.cuh"

namespace mamba::cuda {

static_assert(kSsdCpChunk == kSsdTwoPassChunk, "the two-pass state kernels use the same chunks and slots");

namespace {

// The arguments of both kernels: the problem, the workspace views and the launch choices.
struct SsdCpArgs {
    SsdArgs a;
    f16_t * states;    // [slot][head][Pw][Nw]: the state entering each chunk / its scale, float16
    float * scales;    // [slot][head][Pw / 16]: that power-of-two scale, per 16 rows of channels
    float * dts;       // [slot][head][Q]: processed dt (0 past the sequence end)
    float * acums;     // [slot][head][Q]: inclusive cumulative sum of dt*A inside the chunk
    int64_t Pw;        // headdim rounded up to 16
    int64_t chunks;    // chunks per batch row (unpacked)
    int64_t nseq;
    int64_t heads_per_block, head_tiles;  // output kernel: heads of one group per block
    bool vec_bc, vec_x, vec_zy;           // 16-byte rows of B/C, x, and z/y
};

// ---- accumulator layout <-> 16-byte rows (the output kernel's z and y) ------------------------------
//
// In an m16n8 accumulator the 4 lanes of a quad (lane / 4 = row) hold one row's 8 columns, 2 each, so a
// store straight from it writes 4 bytes a lane: 8 rows x 16 bytes per warp instruction, half of each
// 32-byte sector. Four such tiles side by side are a 64-byte row piece; a transpose inside the quad gives
// each lane one tile's whole 16 bytes: 8 rows x 64 bytes an instruction, whole sectors, a quarter of the
// instructions.

__device__ __forceinline__ uint4 as_uint4(const uint32_t (&v)[4]) { return make_uint4(v[0], v[1], v[2], v[3]); }

// ---- state kernel, head pairs (automatic choice at many blocks) ----------------------------------------
//
// The removed one-head mma kernel (header: a block = (sequence, head, 16 or 32 channels), the state in
// accumulators, every warp scanning dt itself), with a block = (sequence, two heads of one group, 16 or 32
// channels): both heads
// read the same B, so B is staged once per chunk for the pair and every B fragment a warp loads by
// ldmatrix feeds both heads' MMAs. Warp: one 16-channel row tile and kNW states of BOTH heads, so it
// carries 2 x kNT8 independent accumulator chains (8 at 32 channels, N 128) instead of kNT8.
// What it attacks (the mma kernel takes ~7.7 us per chunk against ~1.5 us of instructions and bytes):
//   - B's L2 -> shared traffic and its cp.async issue per head halve (32 KB per chunk per head pair at
//     N 128 instead of per head), so do the B ldmatrix per MMA (1 per 4 MMAs instead of 1 per 2);
//   - twice the independent MMA chains per warp between the chunk's barriers (more latency hidden by
//     one warp), with the same 8 warps and the same one barrier per chunk;
//   - shared memory without padding (XOR-swizzled 16-byte quads, conflict-free ldmatrix) so that two
//     pair blocks stay resident per SM: B 2 x 32 KB + x 2 x 2 x 8 KB + w 2 KB = 98 KB at N 128.
// The chunk's dt/acum scan is done once per head (warps 0 and 1, one head each), not by every warp: its
// w and acum_end go through shared memory by parity, read after the chunk's one barrier; the other warps
// load no dt (the mma kernel has every warp load the chunk's 128 strided dt and scan them).
// An odd head count per group leaves the last pair one head: its partner runs on zero x (zero
// contribution) and writes nothing.
// Counts per chunk and block (32 channels, N 128, 2 heads): 2 x 2 x 16 x 8 x 2 = 1024 MMAs over 8 warps,
// 128 per warp in 8 k steps of 8 accumulators; B 32 KB + x 16 KB copied; S_in 16 KB stored. Blocks at B8
// L2048 H80: 2 x 40 x 8 = 640 (2.4 waves of 264); B1: 16 channels, 4 x 40 = 160 blocks (one wave).
// Bytes and FLOPs of the whole pass are the mma kernel's less half of B's L2 reads.
// As built: 8 warps, 2 chunk buffers (the copy one chunk ahead), 2 blocks per SM = 16 warps per SM. The
// kernel body is written for kHeads heads and kStages buffers, fixed in the traits at 2 and 2: 3 buffers
// with 16 warps (pair3), four heads a block (quad, quad32) and 16-channel tiles at every block count
// (pair16) all measured slower (header).
// ptxas sm_90 (CUDA 11.8), N 128: 32 ch 128 registers (8 B spilled: loop-invariant values), 16 ch 128,
// no spill; smem 98 KB.

template <int kStatePad, int kChannelTile>
struct SsdCpPairStateTraits {
    static constexpr int kN = kStatePad;      // dstate padded to 64 or 128
    static constexpr int kPT = kChannelTile;  // channels per block and head: 16 or 32
    static constexpr int kQ = kSsdCpChunk;
    static constexpr int kHeads = 2;          // heads of one group per block
    static constexpr int kStages = 2;         // chunk buffers: the copy runs kStages - 1 chunks ahead
    static constexpr int kMaxWarps = 8;
    static constexpr int kTP = kPT / 16;
    static constexpr int kWarps = kTP * kN / 16 < kMaxWarps ? kTP * kN / 16 : kMaxWarps;
    static constexpr int kThreads = 32 * kWarps;
    static constexpr int kMinBlocks = kThreads <= 256 ? 2 : 1;  // resident blocks per SM the registers allow
    static constexpr int kWarpsPerTile = kWarps / kTP;
    static constexpr int kNW = kN / kWarpsPerTile;  // states per warp (of each head)
    static constexpr int kNT8 = kNW / 8;            // n8 accumulators per warp and head
    // Rows without padding, 16-byte quads XOR-swizzled: the 8 rows one ldmatrix matrix reads (8
    // consecutive rows, one logical quad) land on 8 distinct bank quads.
    static constexpr int kBQuads = kN / 8, kXQuads = kPT / 8;
    static constexpr size_t kBBytes = size_t(kQ) * kN * 2;
    static constexpr size_t kXBytes = size_t(kQ) * kPT * 2;  // one head
    static constexpr size_t oB = 0;
    static constexpr size_t oX = oB + kStages * kBBytes;              // [stage][head]
    static constexpr size_t oW = oX + kStages * kHeads * kXBytes;     // [parity][head][Q]: w_s of the chunk
    static constexpr size_t oEnd = oW + size_t(2) * kHeads * kQ * 4;   // [parity][head]: acum at the chunk end
    static constexpr size_t oMax = oEnd + align128(2 * kHeads * 4);    // [parity][head][warp]: max |S|
    static constexpr size_t kSmemBytes = oMax + align128(2 * kHeads * kWarps * 4);
    static_assert(kNT8 % 2 == 0 && kNT8 >= 2, "B fragments come two n8 tiles per ldmatrix");
    static_assert(kWarps % kTP == 0, "whole row tiles per warp group");
    static_assert(kThreads % kBQuads == 0 && kThreads % kXQuads == 0, "a thread copies the same quad every round");
    static_assert(kBQuads >= 8 && (kXQuads == 2 || kXQuads == 4), "swizzle patterns below");
    static_assert(kQ == 128, "a lane scans 4 steps of the chunk");
    static_assert(kStages == 2 || kStages == 3, "one or two chunks ahead");
    static_assert(kHeads <= kWarps, "one scan warp per head");
    // Element offset of (row, col) in a swizzled buffer of `quads` 16-byte quads per row.
    __device__ static __forceinline__ int swz(int row, int col, int quads) {
        const int group = quads >= 8 ? 1 : 8 / quads;  // rows sharing a bank-quad offset
        return row * quads * 8 + ((col / 8) ^ ((row / group) % quads)) * 8 + col % 8;
    }
    __device__ static __forceinline__ int at_b(int row, int col) { return swz(row, col, kBQuads); }
    __device__ static __forceinline__ int at_x(int row, int col) { return swz(row, col, kXQuads); }
};

template <class Tr>
__global__ void __launch_bounds__(Tr::kThreads, Tr::kMinBlocks) ssd_cp_state_pair_kernel(SsdCpArgs c) {
    const SsdArgs & a = c.a;
    constexpr int N = Tr::kN, PT = Tr::kPT, Q = Tr::kQ, NT = Tr::kThreads, NT8 = Tr::kNT8, W = Tr::kWarps, HP = Tr::kHeads;
    namespace fr = frag;
    extern __shared__ __align__(128) unsigned char smem[];
    auto sB = [&](int buf) { return reinterpret_cast<bf16_t *>(smem + Tr::oB + size_t(buf) * Tr::kBBytes); };
    auto sX = [&](int buf, int hh) { return reinterpret_cast<bf16_t *>(smem + Tr::oX + size_t(buf * HP + hh) * Tr::kXBytes); };
    constexpr int ST = Tr::kStages;
    float * sMax = reinterpret_cast<float *>(smem + Tr::oMax);

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    float * sW = reinterpret_cast<float *>(smem + Tr::oW);
    float * sEnd = reinterpret_cast<float *>(smem + Tr::oEnd);
    const int64_t tiles_per_group = (a.heads_per_group + HP - 1) / HP;
    const int64_t g = blockIdx.y / tiles_per_group;
    const int64_t in_group = HP * (blockIdx.y % tiles_per_group);
    const int64_t h0 = g * a.heads_per_group + in_group;
    // Heads of the block that exist: the group's last block may have fewer than HP (the others run on
    // zero x, contribute nothing and write nothing).
    const int nin = a.heads_per_group - in_group < HP ? int(a.heads_per_group - in_group) : HP;
    const int64_t seq = blockIdx.z;
    const int64_t p0 = int64_t(blockIdx.x) * PT;
    int64_t b, t_begin, t_end;
    sequence_span(a, seq, b, t_begin, t_end);
    float A[HP], bias[HP];
#pragma unroll
    for (int hh = 0; hh < HP; ++hh) {
        const int64_t h = hh < nin ? h0 + hh : h0;  // a missing head reads head h0's scalars
        A[hh] = a.A[h * a.A_s];
        bias[hh] = a.has_bias ? a.dt_bias[h * a.bias_s] : 0.0f;
    }
    const bf16_t * xg = reinterpret_cast<const bf16_t *>(a.x.p);
    const bf16_t * Bg = reinterpret_cast<const bf16_t *>(a.B.p);
    const bf16_t zero = __float2bfloat16_rn(0.0f);
    const int tp = warp / Tr::kWarpsPerTile;
    const int n_w = (warp % Tr::kWarpsPerTile) * Tr::kNW;

    float S[HP][NT8][4];
#pragma unroll
    for (int hh = 0; hh < HP; ++hh)
#pragma unroll
        for (int nt = 0; nt < NT8; ++nt)
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int64_t p = p0 + 16 * tp + fr::acc_row(lane, i), n = n_w + 8 * nt + fr::acc_col(lane, i);
                const bool in = a.has_init && hh < nin && p < a.headdim && n < a.dstate;
                S[hh][nt][i] = in ? a.init[seq * a.init_s[0] + (h0 + hh) * a.init_s[1] + p * a.init_s[2] + n * a.init_s[3]] : 0.0f;
            }

    // Copies of the chunk starting at tc into stage buf: B once, x of both heads (zeros for a missing
    // partner and past the end); one commit group per chunk.
    auto issue = [&](int64_t tc, int buf) {
        const int64_t avail = t_end - tc;
        bf16_t * dB = sB(buf);
        if (c.vec_bc) {
            const int n = tid % Tr::kBQuads * 8;
            for (int k = tid / Tr::kBQuads; k < Q; k += NT / Tr::kBQuads) {
                const bool in = k < avail && n < a.dstate;
                cp_async_16(dB + Tr::at_b(k, n), in ? Bg + b * a.B_s[0] + (tc + k) * a.B_s[1] + g * a.B_s[2] + n : Bg, in);
            }
        } else {
            for (int i = tid; i < Q * N; i += NT) {
                const int k = i / N, n = i % N;
                dB[Tr::at_b(k, n)] = (k < avail && n < a.dstate) ? Bg[b * a.B_s[0] + (tc + k) * a.B_s[1] + g * a.B_s[2] + n * a.B_s[3]] : zero;
            }
        }
#pragma unroll
        for (int hh = 0; hh < HP; ++hh) {
            bf16_t * dX = sX(buf, hh);
            const bool head_in = hh < nin;
            const int64_t h = h0 + hh;
            if (c.vec_x) {
                const int pp = tid % Tr::kXQuads * 8;
                const int64_t p = p0 + pp;
                for (int k = tid / Tr::kXQuads; k < Q; k += NT / Tr::kXQuads) {
                    const bool in = head_in && k < avail && p < a.headdim;
                    cp_async_16(dX + Tr::at_x(k, pp), in ? xg + b * a.x_s[0] + (tc + k) * a.x_s[1] + h * a.x_s[2] + p : xg, in);
                }
            } else {
                for (int i = tid; i < Q * PT; i += NT) {
                    const int k = i / PT, pp = i % PT;
                    const int64_t p = p0 + pp;
                    dX[Tr::at_x(k, pp)] = (head_in && k < avail && p < a.headdim) ? xg[b * a.x_s[0] + (tc + k) * a.x_s[1] + h * a.x_s[2] + p * a.x_s[3]] : zero;
                }
            }
        }
        cp_async_commit();
    };
    // The chunk's dt scan is shared: warp hh < HP scans head hh (its raw dt in registers, lane: steps
    // 4 lane .. 4 lane + 3, loaded one chunk ahead of its use); the other warps load nothing.
    const bool scans = warp < HP;
    const int scan_head = scans ? warp : 0;
    const bool scan_valid = scans && scan_head < nin;
    float scan_A = A[0], scan_bias = bias[0];
#pragma unroll
    for (int hh = 1; hh < HP; ++hh)
        if (scan_head == hh) {
            scan_A = A[hh];
            scan_bias = bias[hh];
        }
    float rDt[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    auto load_dt = [&](int64_t tc) {
        if (!scan_valid) return;
        const int64_t avail = t_end - tc;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int k = lane * 4 + i;
            rDt[i] = k < avail ? a.dt.load(b * a.dt_s[0] + (tc + k) * a.dt_s[1] + (h0 + scan_head) * a.dt_s[2]) : 0.0f;
        }
    };
    // x of both heads towards L2 one chunk before its copy is issued (as in the mma kernel).
    auto prefetch_x = [&](int64_t tc) {
        for (int k = tid; k < HP * Q; k += NT) {
            const int hh = k / Q, r = k % Q;
            if (tc + r < t_end && p0 < a.headdim && hh < nin)
                prefetch_l2(reinterpret_cast<const char *>(a.x.p) + (b * a.x_s[0] + (tc + r) * a.x_s[1] + (h0 + hh) * a.x_s[2] + p0 * a.x_s[3]) * 2);
        }
    };
    // Prologue: chunks 0 .. ST - 2 in flight (an empty group past the end keeps one group per chunk).
#pragma unroll
    for (int j = 0; j < ST - 1; ++j) {
        if (t_begin + j * Q < t_end) issue(t_begin + j * Q, j);
        else cp_async_commit();
    }
    prefetch_x(t_begin + (ST - 1) * Q);
    load_dt(t_begin);

    int buf = 0, parity = 0;
    for (int64_t t0 = t_begin; t0 < t_end; t0 += Q, buf = buf + 1 == ST ? 0 : buf + 1, parity ^= 1) {
        const int steps = t_end - t0 < Q ? int(t_end - t0) : Q;
        const int64_t slot = slot_of(c, seq, t0);
#pragma unroll
        for (int hh = 0; hh < HP; ++hh) {
            float m = 0.0f;
#pragma unroll
            for (int nt = 0; nt < NT8; ++nt)
#pragma unroll
                for (int i = 0; i < 4; ++i) m = fmaxf(m, fabsf(S[hh][nt][i]));
            m = warp_max(m);
            if (lane == 0) sMax[(parity * HP + hh) * W + warp] = m;
        }
        // dt and the inclusive cumulative sum of dt*A of head scan_head, by its scan warp, into the parity
        // buffers (their readers of two chunks ago passed the last barrier). A missing partner's dt is 0
        // (w 0, no decay).
        if (scans) {
            float dt[4], acum[4];
            const float end = warp_chunk_scan([&](int i) { return scan_valid && lane * 4 + i < steps ? process_dt(a, rDt[i], scan_bias) : 0.0f; },
                                              scan_A, lane, dt, acum);
            float * w = sW + (parity * HP + scan_head) * Q + lane * 4;
#pragma unroll
            for (int i = 0; i < 4; ++i) w[i] = dt[i] * __expf(end - acum[i]);
            if (lane == 0) sEnd[parity * HP + scan_head] = end;
            if (blockIdx.x == 0 && scan_valid) {
                const int64_t at = (slot * a.heads + h0 + scan_head) * Q + lane * 4;
                *reinterpret_cast<float4 *>(c.dts + at) = make_float4(dt[0], dt[1], dt[2], dt[3]);
                *reinterpret_cast<float4 *>(c.acums + at) = make_float4(acum[0], acum[1], acum[2], acum[3]);
            }
        }

        cp_async_wait_group<ST - 2>();  // this chunk's group (later chunks' may stay in flight)
        __syncthreads();  // this chunk's B, x, w and acum_end are in; every warp's max |S| is written; the previous chunk's stage is free
        float acum_end[HP];
#pragma unroll
        for (int hh = 0; hh < HP; ++hh) acum_end[hh] = sEnd[parity * HP + hh];
        {
            const int64_t tn = t0 + (ST - 1) * Q;
            const int nbuf = buf == 0 ? ST - 1 : buf - 1;  // (buf + ST - 1) % ST: the stage read by the previous chunk
            if (tn < t_end) issue(tn, nbuf);
            else cp_async_commit();
            prefetch_x(tn + Q);
        }
        if (t0 + Q < t_end) load_dt(t0 + Q);

        // S_in of both heads, float16 after each head's power-of-two scale; then the decay.
#pragma unroll
        for (int hh = 0; hh < HP; ++hh) {
            float block_max = 0.0f;
#pragma unroll
            for (int w = 0; w < W; ++w) block_max = fmaxf(block_max, sMax[(parity * HP + hh) * W + w]);
            const int scale_exp = f16_scale_exponent(block_max);
            const float inv_scale = ldexpf(1.0f, -scale_exp);
            const int64_t h = h0 + hh;
            if (hh < nin) {
                if (tid < Tr::kTP && p0 + 16 * tid < c.Pw) c.scales[(slot * a.heads + h) * (c.Pw / 16) + p0 / 16 + tid] = ldexpf(1.0f, scale_exp);
                if (p0 + 16 * tp < c.Pw) {
                    f16_t * St = c.states + ((slot * a.heads + h) * c.Pw + p0 + 16 * tp) * N + n_w;
#pragma unroll
                    for (int nt = 0; nt < NT8; ++nt)
#pragma unroll
                        for (int rr = 0; rr < 2; ++rr)
                            *reinterpret_cast<__half2 *>(St + fr::acc_row(lane, 2 * rr) * N + 8 * nt + fr::acc_col(lane, 0)) =
                                __floats2half2_rn(S[hh][nt][2 * rr] * inv_scale, S[hh][nt][2 * rr + 1] * inv_scale);
                }
            }
            const float decay = __expf(acum_end[hh]);
#pragma unroll
            for (int nt = 0; nt < NT8; ++nt)
#pragma unroll
                for (int i = 0; i < 4; ++i) S[hh][nt][i] *= decay;
        }

        // ---- S_h <- decayed S_h + (x_h w_h)^T B for both heads, one B fragment per 4 MMAs ----
        const bf16_t * cB = sB(buf);
        // Two k steps unrolled (unroll 1 spilled more at 128 registers: 12 B against 8 B here).
#pragma unroll 2
        for (int kk = 0; kk < Q / 16; ++kk) {
            uint32_t ahi[HP][4], alo[HP][4];
#pragma unroll
            for (int hh = 0; hh < HP; ++hh) {
                uint32_t xa[4];  // x^T (p, s) = x[s][p]
                ldsm_x4_trans(xa, sX(buf, hh) + Tr::at_x(16 * kk + fr::ldsm_at_row(lane), 16 * tp + fr::ldsm_at_col(lane)));
                const float * cW = sW + (parity * HP + hh) * Q + 16 * kk;
                const float2 w_lo = *reinterpret_cast<const float2 *>(cW + fr::a_col(lane, 0, 0));
                const float2 w_hi = *reinterpret_cast<const float2 *>(cW + fr::a_col(lane, 2, 0));
#pragma unroll
                for (int r = 0; r < 4; ++r) {
                    const __nv_bfloat162 xv = *reinterpret_cast<const __nv_bfloat162 *>(&xa[r]);
                    const float2 w = r / 2 == 0 ? w_lo : w_hi;
                    split_pair(__low2float(xv) * w.x, __high2float(xv) * w.y, ahi[hh][r], alo[hh][r]);
                }
            }
#pragma unroll
            for (int np = 0; np < NT8 / 2; ++np) {
                uint32_t fb[4];  // B (s, n) = B[s][n]
                ldsm_x4_trans(fb, cB + Tr::at_b(16 * kk + fr::ldsm_b_row(lane), n_w + 16 * np + fr::ldsm_b_col(lane)));
#pragma unroll
                for (int hh = 0; hh < HP; ++hh) {
                    mma_bf16(S[hh][2 * np], ahi[hh], fb[0], fb[1]);
                    mma_bf16(S[hh][2 * np + 1], ahi[hh], fb[2], fb[3]);
                }
#pragma unroll
                for (int hh = 0; hh < HP; ++hh) {
                    mma_bf16(S[hh][2 * np], alo[hh], fb[0], fb[1]);
                    mma_bf16(S[hh][2 * np + 1], alo[hh], fb[2], fb[3]);
                }
            }
        }
    }
    cp_async_wait_all();

    if (a.has_fin) {
#pragma unroll
        for (int hh = 0; hh < HP; ++hh) {
            if (hh >= nin) break;
#pragma unroll
            for (int nt = 0; nt < NT8; ++nt)
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    const int64_t p = p0 + 16 * tp + fr::acc_row(lane, i), n = n_w + 8 * nt + fr::acc_col(lane, i);
                    if (p < a.headdim && n < a.dstate) a.fin[seq * a.fin_s[0] + (h0 + hh) * a.fin_s[1] + p * a.fin_s[2] + n * a.fin_s[3]] = S[hh][nt][i];
                }
        }
    }
}

// ---- output kernel layout: 8 warps, G in shared memory, each load in flight over one phase ----------------
//
// SsdCpOutputTraits is the block layout of the output kernel (ssd_cp_output_lean.cuh derives its traits
// from it); the kernel it was written for, mma8, is removed (header). The text below describes the design
// both share; its figures (shared memory, shuffles, ptxas) are mma8's, the lean kernel's are in its file. The removed 4-warp output kernel held G in registers (241 registers, 2 blocks = 8 warps an SM) and each
// warp ran long dependent ldmatrix/mma chains with little to hide their latency (0.763 ms at B8 against
// this kernel's 0.525 ms, header). Here:
//   * 8 warps a block, warp w = (strip pair i = w % 4, channel half w / 4): strips i and 7 - i (9 tiles on
//     and below the diagonal, the same for every warp) over 32 of the block's 64 channels.
//   * G = C B^T formed once per block by all warps (36 tiles, 4-5 a warp) into shared memory in the
//     accumulator layout ([tile][n8 half][lane][4] floats: one conflict-free 16-byte load per lane and
//     n8 half), so that a warp holds only its 2 x 4 y accumulators: __launch_bounds__(256, 2) caps it at
//     128 registers and 2 blocks (16 warps) fit an SM (108 KB of shared memory each, N 128).
//   * Per head two phases, one barrier before each: A = exp(acum_t) scale (C16 S_in^T) and B = M X + D x,
//     gated, stored. S_in of the next head is copied (cp.async) during phase B, x of this head during
//     phase A, so one buffer of each suffices and every copy overlaps the other phase's MMAs; dt, acum and
//     the S_in scales (1 KB) are double-buffered because both phases read them.
//   * Phase A runs both strips' k loops together (8 independent accumulators), phase B all hi products of
//     a tile before the lo ones.
//   * Heads per block from a wave model (blocks rounded up to whole waves of resident blocks, plus G as
//     half a head), e.g. B8 H80: 8 heads, 1280 blocks = 4.85 waves instead of 16 heads in 2.4 waves.
//   * z and y move as whole 64-byte row pieces (16-byte-row paths; the generic path goes element by
//     element): 4 + 4 sixteen-byte accesses a warp per head, each 8 rows x 64 bytes = 16 whole sectors
//     (128 sector requests), plus 3 shuffles per 16-byte piece (quad_transpose). Straight from the
//     accumulator layout it was 16 + 16 four-byte accesses of half-used sectors (256 requests): the
//     removed mma8 build, 0.07 ms slower at B8 (header).
//   * Two builds (kEarlyZ), launched by whether the call has z: with z, z's 4 row pieces a lane are
//     loaded before phase B, in flight under its MMAs (16 registers live through phase B; loaded in the
//     epilogue they cost 0.03 ms at B8), and phase B goes strip after strip; without z, phase B walks
//     column tiles jt = 0 .. strip_hi once and does both strips' tiles at each jt <= strip_lo: one X
//     fragment load for both (16 - 2 pair ldmatrix a warp instead of 18) and 8 independent accumulators
//     between dependent MMAs instead of 4. Both at once spill 244 B (header), so they stay apart.
//   ptxas sm_90 (CUDA 11.8, --use_fast_math as the build), 128 registers, spills N 128 / N 64: early z
//   80 / 76 B, merged 8 / 4 B (the measured mma8_rows_early 76 / 72, mma8_rows_merged 8 / 4). Shared
//   memory 108 KB (N 128), the same for both.
// Counts per (chunk, head, 64 channels) = per block-head: reads x 16 KB, z 16 KB, S_in 16 KB (float16),
// dt/acum 1 KB; writes y 16 KB. MMAs (m16n8k16): C S_in^T 8 warps x 64, M X 8 warps x 72 (hi + lo) =
// 1088 (4.5 MFLOP); G 36 tiles x 16 = 576 per block (72 a warp, amortized over its heads). At bf16 B8
// L2048 H80 P64 N128: 10240 block-heads -> x, z, S_in, y 4 x 168 MB = 0.67 GB (0.16 ms at 4.2 TB/s; 0.50
// GB, 0.12 ms, without z),
// 46 GFLOP of y MMAs + 6 GFLOP of G (8 heads a block) (~0.1 ms at ~500 TFLOP/s of mma.sync).

template <int kStatePad, bool kEarlyZArg>
struct SsdCpOutputTraits {
    static constexpr int kN = kStatePad;  // dstate padded to 64 or 128
    // kEarlyZArg: the lean kernel's gate (its traits pass has_z; no layout depends on it).
    static constexpr int kQ = kSsdCpChunk;
    static constexpr int kPT = 64;  // channels per block
    static constexpr int kWarps = 8;
    static constexpr int kThreads = 32 * kWarps;
    static constexpr int kStrips = kQ / 16;            // 16-step row strips
    static constexpr int kPairs = kStrips / 2;         // strip pairs (i, kStrips - 1 - i)
    static constexpr int kHalves = kWarps / kPairs;    // channel parts
    static constexpr int kPW = kPT / kHalves;          // channels per warp
    static constexpr int kNT = kPW / 8;                // n8 tiles of a warp's y strip
    static constexpr int kKN = kN / 16;                // k steps over dstate
    static constexpr int kTri = kStrips * (kStrips + 1) / 2;  // G tiles on and below the diagonal
    static constexpr int ldN = kN + 8;                 // 16-bit rows of C, B, S_in
    static constexpr int ldP = kPT + 8;                // bf16 rows of x
    static constexpr size_t kGTileFloats = 2 * 32 * 4;  // [n8 half][lane][4]
    // dt, acum and the S_in scales of one head (two buffers).
    static constexpr size_t sDt = 0;
    static constexpr size_t sAcum = sDt + align128(kQ * 4);
    static constexpr size_t sScale = sAcum + align128(kQ * 4);
    static constexpr size_t kSmallBytes = sScale + align128(kPT / 16 * 4);
    static constexpr size_t oC = 0;  // C (bf16), then C / row scale (float16)
    static constexpr size_t oCscale = oC + align128(size_t(kQ) * ldN * 2);
    static constexpr size_t oG = oCscale + align128(kQ * 4);
    static constexpr size_t oS = oG + align128(kTri * kGTileFloats * 4);  // S_in; B while G is formed
    static constexpr size_t oX = oS + align128(size_t(kPT) * ldN * 2);
    static constexpr size_t oSmall = oX + align128(size_t(kQ) * ldP * 2);
    static constexpr size_t kSmemBytes = oSmall + 2 * kSmallBytes;
    static constexpr size_t kBBytes = align128(size_t(kQ) * ldN * 2);
    static constexpr int kMinBlocks = 2;
    static_assert(kBBytes <= oSmall - oS, "B fits where S_in and x go");
    static_assert(kHalves * kPairs == kWarps && kNT % 2 == 0, "whole strip pairs, n8 tiles in pairs");
    static_assert(kNT == 4, "a row piece of four n8 tiles per quad transpose");
    static_assert(kPairs * 2 == kStrips, "merged phase B: the low strip of a pair never passes the high one");
    static_assert(kThreads % (kN / 8) == 0 && kThreads % (kPT / 8) == 0, "a thread copies the same columns every round");
    static_assert(kQ / 2 + kPT / 16 <= kThreads, "dt, acum and scales in one round");
    static_assert(kSmemBytes * 2 + 2048 <= 228 * 1024, "two blocks fit an H100/H200 SM");
};

// ---- output kernel (its own file) -------------------------------------------------------------------
#include "ssd_cp_output_lean.cuh"

// ---- host side -------------------------------------------------------------------------------------

int64_t slot_count(const SsdCpShape & s) {
    if (s.len == 0) return 0;
    return s.packed ? (s.len - 1) / kSsdCpChunk + s.nseq : s.nseq * ceil_div(s.len, kSsdCpChunk);
}
// The output kernel's grid z: 64-channel tiles of headdim.
int64_t output_channel_tiles(int64_t headdim) { return ceil_div(headdim, int64_t(SsdCpOutputTraits<64, false>::kPT)); }

// Where each workspace part starts (one carver, used by the plan for the size and by the run for the
// views, so the two cannot disagree) and the total.
struct SsdCpWorkspace {
    size_t states, scales, dts, acums, locals, total;
    // two_pass: the local chunk states of the twopass state kernel too (SsdTwoPassLocalsLayout).
    SsdCpWorkspace(const SsdCpShape & s, bool two_pass) {
        const size_t pairs = size_t(slot_count(s)) * size_t(s.heads);
        WorkspaceCarver carver;
        states = carver.add(pairs * size_t(ceil_div(s.headdim, 16) * 16) * size_t(state_pad(s.dstate)) * 2);
        scales = carver.add(pairs * size_t(ceil_div(s.headdim, 16)) * 4);
        dts = carver.add(pairs * kSsdCpChunk * 4);
        acums = carver.add(pairs * kSsdCpChunk * 4);
        locals = carver.add(two_pass ? ssd_twopass_locals_bytes(slot_count(s), s.nseq, s.packed, s.len, s.heads, s.headdim, s.dstate) : 0);
        total = carver.add(0);
    }
};

template <class Tr, class Kernel>
void set_smem(Kernel kernel) {
    MAMBA_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(Tr::kSmemBytes)));
}

// Head pairs of one group: the pair kernel's grid y.
int64_t state_head_pairs(const SsdArgs & a) { return a.heads / a.heads_per_group * ceil_div(a.heads_per_group, int64_t(2)); }

template <int kN, int kPT>
void launch_state_pair(mamba_context & ctx, const SsdCpArgs & c) {
    using Tr = SsdCpPairStateTraits<kN, kPT>;
    const dim3 grid(unsigned(ceil_div(c.a.headdim, int64_t(kPT))), unsigned(state_head_pairs(c.a)), unsigned(c.nseq));
    const auto kernel = ssd_cp_state_pair_kernel<Tr>;
    set_smem<Tr>(kernel);
    launch_kernel(ctx, "ssd_cp_state_pair_kernel", false, kernel, grid, dim3(Tr::kThreads), Tr::kSmemBytes, c);
    MAMBA_CUDA_CHECK_LAUNCH("ssd_cp_state_pair_kernel");
}

// The output kernel (ssd_cp_output_lean.cuh): the full build when every chunk is full and every tensor
// takes the 16-byte-row paths, else the general one; the gated build for calls with z.
template <int kN, bool kHasZ, bool kFull>
void launch_output_lean_build(mamba_context & ctx, const SsdCpArgs & c, int64_t slots) {
    using Tr = SsdCpOutputLeanTraits<kN, kHasZ, kFull>;
    const auto kernel = ssd_cp_output_lean_kernel<Tr>;
    set_smem<Tr>(kernel);
    const int64_t groups = c.a.heads / c.a.heads_per_group;
    const dim3 grid(unsigned(slots), unsigned(groups * c.head_tiles), unsigned(output_channel_tiles(c.a.headdim)));
    static constexpr const char * kName = kHasZ ? (kFull ? "ssd_cp_output_lean_kernel/z_full" : "ssd_cp_output_lean_kernel/z")
                                                : (kFull ? "ssd_cp_output_lean_kernel/full" : "ssd_cp_output_lean_kernel");
    launch_kernel(ctx, kName, false, kernel, grid, dim3(Tr::kThreads), Tr::kSmemBytes, c);
    MAMBA_CUDA_CHECK_LAUNCH("ssd_cp_output_lean_kernel");
}
template <int kN>
void launch_output_lean(mamba_context & ctx, const SsdCpArgs & c, int64_t slots) {
    const SsdArgs & a = c.a;
    const bool full = !a.packed && a.len % kSsdCpChunk == 0 && a.headdim % SsdCpOutputTraits<kN, false>::kPT == 0 &&
                      a.dstate == kN && c.vec_bc && c.vec_x && c.vec_zy;
    if (a.has_z) {
        if (full) launch_output_lean_build<kN, true, true>(ctx, c, slots);
        else launch_output_lean_build<kN, true, false>(ctx, c, slots);
    } else {
        if (full) launch_output_lean_build<kN, false, true>(ctx, c, slots);
        else launch_output_lean_build<kN, false, false>(ctx, c, slots);
    }
}

// Heads per output block: the fewest whole waves of resident blocks, each block
// costing its heads plus half a head for G (ties: more heads, G formed fewer times).
int64_t output_heads_per_block(int64_t blocks_per_head_tile, int64_t hpg, int64_t resident_blocks) {
    int64_t best = 1;
    double best_cost = 0.0;
    for (int64_t cand : {16, 8, 4, 2, 1}) {
        if (cand > hpg && cand != 1) continue;
        const int64_t blocks = blocks_per_head_tile * ceil_div(hpg, cand);
        const double cost = double(ceil_div(blocks, resident_blocks)) * (double(cand) + 0.5);
        if (best_cost == 0.0 || cost < best_cost) {
            best = cand;
            best_cost = cost;
        }
    }
    return best;
}

// Blocks of the pair state kernel and whether they take 32 channels: 32 when its blocks fill a wave of 2
// per SM (B8 H80: 640 blocks), else 16 (B1 H80: 80 blocks of 32 channels would leave SMs idle; 160 of 16).
struct PairStateGrid {
    bool wide;
    int64_t blocks;
};
PairStateGrid pair_state_grid(int64_t nseq, int64_t heads, int64_t heads_per_group, int64_t headdim, int sms) {
    const int64_t head_pairs = heads / heads_per_group * ceil_div(heads_per_group, int64_t(2));  // state_head_pairs
    const int64_t blocks32 = nseq * head_pairs * ceil_div(headdim, int64_t(32));
    if (blocks32 >= 2 * int64_t(sms)) return {true, blocks32};
    return {false, nseq * head_pairs * ceil_div(headdim, int64_t(16))};
}

// The automatic state kernel: pair when its blocks fill the GPU at least kPairMinWaves times over (one
// block per SM counted), else twopass. Measured on an H200 (132 SMs, header): pair 0.46 ms against
// twopass 0.318 + 0.136 at B8 H80 (640 pair blocks = 4.8 x SMs; twopass 1.5-3% faster there in all, but
// its float32 local states take 336 MB, ~1 GB at B4 L8192 H128, so pair stays at large grids), twopass
// 0.181 / 0.168 ms a call against pair 0.243 / 0.229 at B1 H80 (160 pair blocks = 1.2 x SMs, one partial
// wave). The threshold is the one the removed mma kernel was chosen below; shapes between the two
// measured points (e.g. B4 H80, 320 pair blocks -> twopass) are not measured. The plan decides (it
// reserves twopass's workspace), the run follows the plan. A grid below the threshold whose local states
// would take more than kTwoPassMaxLocalBytes keeps pair, so the automatic choice never asks for more than
// that on top of the other scratch. The cap is in bytes: the locals are float16 (+ a float32 tail of at
// most 2 chunks a sequence, SsdTwoPassLocalsLayout), about half their former float32 size for long
// sequences, so it admits about twice the shapes it did (B4 L8192 H128: 512 pair blocks, ~0.55 GB, still
// pair; B8 L2048 H80: 189 MB, under it, but pair by the block count).
constexpr int64_t kPairMinWaves = 4;
constexpr size_t kTwoPassMaxLocalBytes = size_t(256) << 20;
SsdCpStateKernel resolve_state_kernel(SsdCpStateKernel chosen, const SsdCpShape & s, int sms) {
    if (chosen != SsdCpStateKernel::Auto) return chosen;
    if (pair_state_grid(s.nseq, s.heads, s.heads / s.groups, s.headdim, sms).blocks >= kPairMinWaves * int64_t(sms)) return SsdCpStateKernel::Pair;
    return ssd_twopass_locals_bytes(slot_count(s), s.nseq, s.packed, s.len, s.heads, s.headdim, s.dstate) <= kTwoPassMaxLocalBytes ? SsdCpStateKernel::TwoPass
                                                                                                         : SsdCpStateKernel::Pair;
}

// The twopass state kernels (ssd_chunk_state_twopass.cu) on this call's workspace views.
void launch_state_twopass(mamba_context & ctx, const SsdCpArgs & c, char * locals, int64_t slots) {
    const SsdTwoPassLocalsLayout l(slots, c.nseq, c.a.packed, c.a.len, c.a.heads, c.a.headdim, c.a.dstate);
    SsdTwoPassArgs t{};
    t.a = c.a;
    t.states = c.states;
    t.scales = c.scales;
    t.dts = c.dts;
    t.acums = c.acums;
    t.locals = reinterpret_cast<f16_t *>(locals + l.locals);
    t.local_scales = reinterpret_cast<float *>(locals + l.local_scales);
    t.tail_locals = reinterpret_cast<float *>(locals + l.tail_locals);
    t.tails = l.tails;
    t.Pw = c.Pw;
    t.chunks = c.chunks;
    t.nseq = c.nseq;
    t.vec_bc = c.vec_bc;
    t.vec_x = c.vec_x;
    run_ssd_state_twopass(ctx, t, slots);
}

template <int kN>
void run_padded(mamba_context & ctx, const SsdCpPlan & plan, SsdCpArgs & c, char * locals, int64_t slots, int sms) {
    if (plan.state == SsdCpStateKernel::TwoPass) launch_state_twopass(ctx, c, locals, slots);
    else if (pair_state_grid(c.nseq, c.a.heads, c.a.heads_per_group, c.a.headdim, sms).wide) launch_state_pair<kN, 32>(ctx, c);
    else launch_state_pair<kN, 16>(ctx, c);
    if (slots == 0) return;
    const int64_t hpg = c.a.heads_per_group, groups = c.a.heads / hpg, ptiles = ceil_div(c.a.headdim, int64_t(64));
    c.heads_per_block = output_heads_per_block(slots * groups * ptiles, hpg, int64_t(SsdCpOutputTraits<kN, false>::kMinBlocks) * sms);
    c.head_tiles = ceil_div(hpg, c.heads_per_block);
    launch_output_lean<kN>(ctx, c, slots);
}

// Shared memory of the kernels that will run (the larger channel tile of the pair kernel).
template <int kN>
size_t smem_need(SsdCpStateKernel state, const SsdCpShape & s) {
    const size_t output = SsdCpOutputLeanTraits<kN, true, false>::kSmemBytes;  // (the gate and kFull change no layout)
    const size_t st = state == SsdCpStateKernel::TwoPass ? ssd_twopass_smem_bytes(s.headdim, s.dstate) : SsdCpPairStateTraits<kN, 32>::kSmemBytes;
    return output > st ? output : st;
}

}  // namespace

SsdCpPlan plan_ssd_chunk_parallel(mamba_context & ctx, const SsdCpShape & s) {
    SsdCpPlan plan;
    // Read first, so that an unknown name fails every call, whichever path the shape takes.
    static constexpr EnvChoice<SsdCpStateKernel> kStates[] = {{"pair", SsdCpStateKernel::Pair}, {"twopass", SsdCpStateKernel::TwoPass}};
    const SsdCpStateKernel forced = env_choice("MAMBA_CUDA_SSD_STATE", kStates, SsdCpStateKernel::Auto);
    if (!s.bf16_xbc || s.dstate < 1 || s.dstate > 128 || s.heads > 65535 || s.nseq > 65535 || s.nseq < 1) return plan;
    if (s.groups < 1 || s.heads % s.groups != 0) return plan;
    // Grid limits of the kernels' y and z extents (x is 2^31 - 1 wide and checked below): heads and
    // sequences above; the output kernel's 64-channel tiles of headdim are its grid z. Past them the
    // sequential chunked kernel runs (its headdim tiles are its grid x).
    if (output_channel_tiles(s.headdim) > 65535) return plan;
    if (slot_count(s) > int64_t(0x7fffffff)) return plan;
    const CudaState & st = state_of(ctx);
    const int sms = st.multiprocessors > 0 ? st.multiprocessors : 1;
    plan.state = resolve_state_kernel(forced, s, sms);
    // The automatic choice depends on the shape, so twopass may pick a larger workspace for a smaller
    // call than pair did for a larger one; while a graph is captured (the workspace cannot grow) it keeps
    // to pair unless twopass's part already fits the context's workspace.
    if (forced == SsdCpStateKernel::Auto && plan.state == SsdCpStateKernel::TwoPass && stream_capturing(ctx) &&
        SsdCpWorkspace(s, true).total > st.workspace_bytes)
        plan.state = SsdCpStateKernel::Pair;
    // The shared memory of the kernels that will run.
    const size_t need = s.dstate <= 64 ? smem_need<64>(plan.state, s) : smem_need<128>(plan.state, s);
    if (need > size_t(st.max_smem_per_block)) return plan;
    plan.use = true;
    plan.workspace_bytes = SsdCpWorkspace(s, plan.state == SsdCpStateKernel::TwoPass).total;
    return plan;
}

void run_ssd_chunk_parallel(mamba_context & ctx, const SsdCpPlan & plan, const SsdArgs & a, int64_t nseq, char * workspace) {
    const SsdCpShape s{true, a.packed, a.len, nseq, a.heads, a.headdim, a.dstate, a.heads / a.heads_per_group};
    const SsdCpWorkspace w(s, plan.state == SsdCpStateKernel::TwoPass);
    SsdCpArgs c{};
    c.a = a;
    c.states = reinterpret_cast<f16_t *>(workspace + w.states);
    c.scales = reinterpret_cast<float *>(workspace + w.scales);
    c.dts = reinterpret_cast<float *>(workspace + w.dts);
    c.acums = reinterpret_cast<float *>(workspace + w.acums);
    c.Pw = ceil_div(a.headdim, 16) * 16;
    c.chunks = ceil_div(a.len, kSsdCpChunk);
    c.nseq = nseq;
    // 16-byte accesses need 16-byte aligned rows: unit last stride, the other strides and the extent
    // multiples of 8 elements, an aligned base.
    // bf16 rows of whole vectors (the tensor-core kernels' operands)
    auto rows_of_8 = [](const AnyPtr & t, const int64_t * st, int outer, int64_t extent) {
        return t.dtype == int(DType::BF16) && ssd_host::rows_of_8(t, st, outer, extent);
    };
    c.vec_bc = rows_of_8(a.B, a.B_s, 3, a.dstate) && rows_of_8(a.C, a.C_s, 3, a.dstate);
    c.vec_x = rows_of_8(a.x, a.x_s, 3, a.headdim);
    c.vec_zy = rows_of_8(a.y, a.y_s, 3, a.headdim) && (!a.has_z || rows_of_8(a.z, a.z_s, 3, a.headdim));
    const int sms = state_of(ctx).multiprocessors > 0 ? state_of(ctx).multiprocessors : 1;
    const int64_t slots = slot_count(s);
    char * locals = plan.state == SsdCpStateKernel::TwoPass ? workspace + w.locals : nullptr;
    if (a.dstate <= 64) run_padded<64>(ctx, plan, c, locals, slots, sms);
    else run_padded<128>(ctx, plan, c, locals, slots, sms);
}

}  // namespace mamba::cuda
