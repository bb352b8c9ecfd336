// L2 prefetch (mamba_prefetch_l2): reads a range of device memory into L2 on a side stream, so that a later
// kernel on the context's stream finds it there.
//
// Why: decode at batch 1 is a chain of GEMVs that stream their weights from HBM, with small kernels between
// them (conv step, x_proj, state update, norms: 4-5 kernels of ~3-4 us per layer, mamba-2.8b on an H200)
// during which HBM is mostly idle. A layer's out_proj weight (2560 x 5120 bf16, 26 MB) fits the H200's
// 50 MB L2 with room for the first ~16-20 MB of the next layer's in_proj (10240 x 2560 bf16, 52 MB): read
// into L2 while the small kernels run, those GEMVs then stream from L2 instead of HBM. 42 MB at the 4.2
// TB/s copy rate take ~10 us, about the time the small kernels of one layer take.
//
// Bytes: `bytes` read from HBM into L2 (plus up to two partial 128-byte lines at the ends); nothing is
// written. FLOPs: none.
//
// Design:
// - Few blocks (MAMBA_CUDA_L2_PREFETCH_BLOCKS, default 8 of the H200's 132 SMs for bulk, 16 for the other
//   modes): the small kernels that
//   run at the same time keep their SMs. The modes that never bring data back to the SM (prefetch, bulk)
//   are limited by requests in flight, not by the SMs' load bandwidth, so a few blocks can still fill HBM.
// - The range is walked front to back by all blocks together (line i by thread i of a grid-stride loop),
//   so the lines the consumer reads first arrive first.
// - Lines are marked evict_last (except "prefetch_normal"): the consumer's GEMV loads are evict_normal,
//   so its streaming of weights that are not prefetched evicts those lines, not the prefetched ones.
// - The range is widened to whole 128-byte lines: a line holding any byte of the range is mapped memory.
// - The GEMV's own weight loads are evict_normal by default: with the prefetched lines marked evict_last,
//   L2 replaces the lines the GEMV streams before them anyway. MAMBA_CUDA_GEMV_EVICT=first (gemv.cu) marks
//   them evict_first instead, for the measurement.
// - Measured on an H200 (docs/gpu-results.md, runs 6 and 7; mamba-2.8b / mamba2-2.7b bf16 decode at batch 1):
//   off 3.428 / 3.635 ms a step, bulk with 8 blocks 3.362 / 3.547; prefetch and load with 16 blocks from 2%
//   slower to 2% faster. Whether "prefetch" fills a whole 128-byte line or only the addressed 32-byte sector
//   is the hardware's choice; "load" fetches every sector for sure, "bulk" whole chunks. Since then the
//   GEMVs read their first weights before their PDL wait and batch 1 no longer gains (run 40, bulk with 8
//   blocks: 3-4% slower on mamba-2.8b, 16% on mamba2-2.7b), while batches of 8 and 16 (cuBLAS GEMMs,
//   weights read once for every row) gain 2-3%; so bulk with 8 blocks is the default, and the managed
//   decode step calls the prefetch only from batch 8, on layers with an out_proj of 20 MiB or more (DecodePrefetch).
// Modes (MAMBA_CUDA_L2_PREFETCH when the context is created; "off" launches nothing):
// - "prefetch": prefetch.global.L2::evict_last per 128-byte line (sm_80+): no register, no data back.
// - "prefetch_normal": prefetch.global.L2 per line, without the eviction priority.
// - "load": 16-byte loads of every byte with an L2 evict_last cache policy, past L1, results discarded:
//   the data come back to the SM (SM load bandwidth and registers limit the rate), but every sector is
//   surely fetched.
// - "bulk" (the default): cp.async.bulk.prefetch.L2 of 4 KB per instruction with an evict_last policy (sm_90, CUDA 12+:
//   the copy engine of the SM walks the bytes, one instruction per 32 lines). Code built for an older
//   architecture or by an older compiler falls back to "prefetch".
//
// Stream: the kernel runs on the context's prefetch stream, forked from the context's stream by an event
// at the call, and joined back by join_l2_prefetch at the points listed in mamba.h (synchronize, copies to
// the host, event records, stream changes, frees, graph capture begin and end): a capture then contains
// the prefetch as a side branch that ends joined, as cudaStreamEndCapture requires. Successive prefetches
// queue on the side stream one after another, and joining waits for the last. The kernel is not launched
// with PDL: its only dependency is the fork event.
#include "launch.cuh"

#include "core/env_choice.h"

namespace mamba::cuda {

// The modes, and the launch shape and request sizes of each (outside the anonymous namespace: its
// unused members would warn there).
enum class L2PrefetchMode : int { Off = 0, Prefetch = 1, PrefetchNormal = 2, Load = 3, Bulk = 4 };

template <L2PrefetchMode kMode>
struct L2PrefetchTraits {
    static constexpr L2PrefetchMode kKind = kMode;
    static constexpr int kThreads = 512;
    static constexpr int kLineBytes = 128;
    // "load": 16-byte vectors per thread issued before any is consumed (8 x 16 B x 512 threads = 64 KB in
    // flight per block).
    static constexpr int kLoadUnroll = 8;
    // "bulk": bytes per instruction (a multiple of 16; whole lines).
    static constexpr int kBulkBytes = 4096;
};

namespace {

constexpr EnvChoice<L2PrefetchMode> kModes[] = {{"off", L2PrefetchMode::Off},
                                                 {"prefetch", L2PrefetchMode::Prefetch},
                                                 {"prefetch_normal", L2PrefetchMode::PrefetchNormal},
                                                 {"load", L2PrefetchMode::Load},
                                                 {"bulk", L2PrefetchMode::Bulk}};
constexpr EnvChoice<int> kBlocks[] = {{"4", 4}, {"8", 8}, {"16", 16}, {"32", 32}, {"64", 64}, {"132", 132}};

__device__ __forceinline__ void prefetch_line(const char * p, bool evict_last) {
    if (evict_last) asm volatile("prefetch.global.L2::evict_last [%0];" ::"l"(p));
    else asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
}

// Lines [0, lines) from `first` (128-byte aligned) into L2.
// `sink` is a scratch word: the "load" mode writes its discarded data there only when their xor equals a
// constant (whatever is written is never read), so that the compiler cannot drop the loads as dead.
template <class Tr>
__global__ void __launch_bounds__(Tr::kThreads) l2_prefetch_kernel(const char * first, int64_t lines, uint32_t * sink) {
    const int64_t stride = int64_t(gridDim.x) * Tr::kThreads;
    const int64_t start = int64_t(blockIdx.x) * Tr::kThreads + threadIdx.x;
    if constexpr (Tr::kKind == L2PrefetchMode::Load) {
        // A warp covers 4 lines per round of 32 x 16-byte loads; thread t of the grid takes vectors t,
        // t + stride, ... of the range (8 per line).
        const uint64_t policy = l2_policy<L2Evict::Last>();
        constexpr int kVecPerLine = Tr::kLineBytes / 16, U = Tr::kLoadUnroll;
        const int64_t vectors = lines * kVecPerLine;
        uint32_t folded = 0;
        for (int64_t v0 = start; v0 < vectors; v0 += U * stride) {
            uint32_t got[U];
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const int64_t v = v0 + u * stride;
                got[u] = 0;
                if (v < vectors) {
                    uint32_t a, b, c, d;
                    asm volatile("ld.global.nc.L1::no_allocate.L2::cache_hint.v4.u32 {%0, %1, %2, %3}, [%4], %5;"
                                 : "=r"(a), "=r"(b), "=r"(c), "=r"(d)
                                 : "l"(first + v * 16), "l"(policy));
                    got[u] = a ^ b ^ c ^ d;
                }
            }
#pragma unroll
            for (int u = 0; u < U; ++u) folded ^= got[u];
        }
        if (folded == 0x9e3779b9u) *sink = folded;
    } else if constexpr (Tr::kKind == L2PrefetchMode::Bulk) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && defined(CUDART_VERSION) && CUDART_VERSION >= 12000
        const uint64_t policy = l2_policy<L2Evict::Last>();
        constexpr int64_t kLinesPerChunk = Tr::kBulkBytes / Tr::kLineBytes;
        const int64_t chunks = (lines + kLinesPerChunk - 1) / kLinesPerChunk;
        for (int64_t c = start; c < chunks; c += stride) {
            const int64_t first_line = c * kLinesPerChunk;
            const int64_t n = lines - first_line < kLinesPerChunk ? lines - first_line : kLinesPerChunk;
            const uint32_t size = uint32_t(n * Tr::kLineBytes);
            asm volatile("cp.async.bulk.prefetch.L2.global.L2::cache_hint [%0], %1, %2;" ::"l"(first + first_line * Tr::kLineBytes), "r"(size),
                         "l"(policy)
                         : "memory");
        }
#else
        for (int64_t i = start; i < lines; i += stride) prefetch_line(first + i * Tr::kLineBytes, true);
#endif
    } else {
        constexpr bool kEvictLast = Tr::kKind == L2PrefetchMode::Prefetch;
#pragma unroll 4
        for (int64_t i = start; i < lines; i += stride) prefetch_line(first + i * Tr::kLineBytes, kEvictLast);
    }
}

template <L2PrefetchMode kMode>
void launch_l2_prefetch(const CudaState & s, const char * first, int64_t lines) {
    using Tr = L2PrefetchTraits<kMode>;
    // No more blocks than the range has work for (one line per thread at least).
    const int64_t useful = (lines + Tr::kThreads - 1) / Tr::kThreads;
    const int blocks = int(useful < s.l2_prefetch_blocks ? useful : s.l2_prefetch_blocks);
    l2_prefetch_kernel<Tr><<<blocks, Tr::kThreads, 0, s.prefetch_stream>>>(first, lines, s.prefetch_sink);
    MAMBA_CUDA_CHECK_LAUNCH("l2_prefetch_kernel");
}

}  // namespace

void read_l2_prefetch_settings(CudaState & s) {
    const L2PrefetchMode mode = env_choice("MAMBA_CUDA_L2_PREFETCH", kModes, L2PrefetchMode::Bulk);
    s.l2_prefetch_mode = int(mode);
    s.l2_prefetch_blocks = env_choice("MAMBA_CUDA_L2_PREFETCH_BLOCKS", kBlocks, mode == L2PrefetchMode::Bulk ? 8 : 16);
}

void create_l2_prefetch_stream(CudaState & s) {
    if (L2PrefetchMode(s.l2_prefetch_mode) == L2PrefetchMode::Off) return;
    MAMBA_CUDA_CHECK(cudaStreamCreateWithFlags(&s.prefetch_stream, cudaStreamNonBlocking));
    MAMBA_CUDA_CHECK(cudaEventCreateWithFlags(&s.prefetch_fork, cudaEventDisableTiming));
    MAMBA_CUDA_CHECK(cudaEventCreateWithFlags(&s.prefetch_join, cudaEventDisableTiming));
    MAMBA_CUDA_CHECK(cudaMalloc(&s.prefetch_sink, sizeof(uint32_t)));
}

void destroy_l2_prefetch_stream(CudaState & s) noexcept {
    if (s.prefetch_stream) cudaStreamSynchronize(s.prefetch_stream);
    if (s.prefetch_fork) cudaEventDestroy(s.prefetch_fork);
    if (s.prefetch_join) cudaEventDestroy(s.prefetch_join);
    if (s.prefetch_stream) cudaStreamDestroy(s.prefetch_stream);
    if (s.prefetch_sink) cudaFree(s.prefetch_sink);
    s.prefetch_sink = nullptr;
    s.prefetch_fork = s.prefetch_join = nullptr;
    s.prefetch_stream = nullptr;
    s.prefetch_pending = s.prefetch_pending_captured = false;
}

void join_l2_prefetch(mamba_context & ctx) {
    CudaState & s = *ctx.cuda;
    if (!s.prefetch_pending) return;
    const bool captured = s.prefetch_pending_captured;
    // A prefetch forked outside a capture cannot be waited on inside one (the event lies outside the
    // graph), so the caller's capture does not wait for it; it stays pending for the first join point
    // after that capture, so a later synchronize or free still waits for it.
    if (!captured && stream_capturing(ctx)) return;
    MAMBA_CUDA_CHECK(cudaSetDevice(ctx.device_id));
    MAMBA_CUDA_CHECK(cudaStreamWaitEvent(s.stream, s.prefetch_join, 0));
    s.prefetch_pending = s.prefetch_pending_captured = false;
}

void join_l2_prefetch_for_abandon(mamba_context & ctx) noexcept {
    CudaState * s = ctx.cuda;
    if (s == nullptr || !s->prefetch_pending) return;
    if (s->prefetch_pending_captured) (void)cudaStreamWaitEvent(s->stream, s->prefetch_join, 0);
    (void)cudaGetLastError();
    s->prefetch_pending = s->prefetch_pending_captured = false;
}

void prefetch_to_l2(mamba_context & ctx, const void * data, size_t bytes) {
    CudaState & s = *ctx.cuda;
    const L2PrefetchMode mode = L2PrefetchMode(s.l2_prefetch_mode);
    if (mode == L2PrefetchMode::Off || bytes == 0) return;
    // The caller captures a borrowed stream itself: its cudaStreamEndCapture would find the side branch
    // unjoined, so this capture gets no prefetch.
    if (!s.capturing && stream_capturing(ctx)) return;
    MAMBA_CUDA_CHECK(cudaSetDevice(ctx.device_id));
    constexpr uintptr_t kLine = 128;
    const uintptr_t begin = reinterpret_cast<uintptr_t>(data) & ~(kLine - 1);
    const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes + kLine - 1) & ~(kLine - 1);
    const int64_t lines = int64_t((end - begin) / kLine);
    const char * first = reinterpret_cast<const char *>(begin);

    MAMBA_CUDA_CHECK(cudaEventRecord(s.prefetch_fork, s.stream));
    MAMBA_CUDA_CHECK(cudaStreamWaitEvent(s.prefetch_stream, s.prefetch_fork, 0));
    switch (mode) {
        case L2PrefetchMode::Prefetch: launch_l2_prefetch<L2PrefetchMode::Prefetch>(s, first, lines); break;
        case L2PrefetchMode::PrefetchNormal: launch_l2_prefetch<L2PrefetchMode::PrefetchNormal>(s, first, lines); break;
        case L2PrefetchMode::Load: launch_l2_prefetch<L2PrefetchMode::Load>(s, first, lines); break;
        case L2PrefetchMode::Bulk: launch_l2_prefetch<L2PrefetchMode::Bulk>(s, first, lines); break;
        case L2PrefetchMode::Off: break;
    }
    MAMBA_CUDA_CHECK(cudaEventRecord(s.prefetch_join, s.prefetch_stream));
    s.prefetch_pending = true;
    s.prefetch_pending_captured = s.capturing;
}

}  // namespace mamba::cuda
