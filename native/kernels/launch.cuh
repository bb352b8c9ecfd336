// Kernel launches on a context's stream with Programmatic Dependent Launch (PDL, compute capability 9.0+).
//
// Why: a decode step is hundreds of small dependent kernels (2-10 us each). Without PDL a kernel's blocks
// are scheduled only after the previous kernel has drained and its memory is flushed, so every boundary
// costs a launch-and-fill gap. With PDL the next kernel's blocks are scheduled as soon as every block of
// the previous one has called allow_dependents() (or exited); they get resident, run their preamble
// (index math) and stop in wait_for_producer() until the previous grid has completed and its writes are
// visible: the launch latency and block fill of the next kernel overlap the tail of the previous one. Stream capture keeps these programmatic edges in the graph (CUDA 12.3+), so the
// captured decode step gets the same overlap.
//
// Contract of a kernel launched with pdl = true ("PDL-safe"):
// - every thread calls wait_for_producer() before it reads anything an earlier kernel (or copy) in the
//   stream may write, and before it writes anything an earlier kernel may still read or write;
// - every thread reaches wait_for_producer() on every path (no return before it): the kernel's completion
//   then implies its predecessor's, which the kernels after it rely on;
// - allow_dependents() may come anywhere, even first: it only lets the next kernel's blocks be scheduled.
//   That kernel's own wait still waits for this grid to complete and flush. The kernels here call it
//   right after their wait, so that at most one grid waits ahead of the running one; the state updates may
//   call it before (MAMBA_CUDA_UPDATE_RELEASE, below), the Mamba-1 update from x_proj's sums by default.
// What may come before the wait: index arithmetic, kernel arguments, shared-memory setup, prefetch_l2()
// hints. Not loads of tensors, weights included: through the C ABI any tensor may be the output of the
// op just before (a weight converted by mamba_copy and used at once), and that kernel may still write it;
// the one exception is a tensor readable_before_wait() clears (below).
// A predecessor that is not PDL-aware (a cuBLAS kernel, a memcpy, a plain launch) never triggers early,
// so the wait simply returns once it has completed: such neighbours stay correct, without the overlap.
//
// PDL is used when the device has compute capability 9.0 or newer, runs code built for it (not PTX of an
// older architecture, which has no wait), and the environment variable MAMBA_CUDA_PDL is unset or "1"
// when the context is created ("0" turns it off; any other value makes the context's creation fail with
// INVALID_ARGUMENT). It is read once per context, so that one process can hold contexts with and without
// it, e.g. to compare them. Below sm_90 the device helpers are no-ops.
#pragma once

#include <cstdio>
#include <initializer_list>
#include <utility>

#include "common.cuh"
#include "core/env_choice.h"
#include "core/tensor.h"

namespace mamba::cuda {

// Blocks until the grids this kernel depends on through PDL have completed and their memory is visible.
// Returns at once when the kernel was launched without the PDL attribute.
__device__ __forceinline__ void wait_for_producer() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Asks L2 for the line holding p, without reading it into the thread. The one access allowed before
// wait_for_producer() to a tensor an earlier kernel may still write: L2 is the point of coherence, so a
// line fetched early is updated by those writes, and the loads after the wait see the final values.
__device__ __forceinline__ void prefetch_l2(const void * p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }

// Lets the next PDL-launched kernel in the stream be scheduled once every block of this grid has called
// it or exited. Says nothing about this grid's writes being visible.
__device__ __forceinline__ void allow_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// MAMBA_CUDA_UPDATE_RELEASE: where the decode steps' state updates (Mamba-1 and Mamba-2) call allow_dependents().
// "before_wait": before their own wait, so that out_proj's blocks get in and load their early weights while in_proj
// still runs; "start": right after the wait, as every other kernel. Unset: before_wait for the Mamba-1 update from
// x_proj's sums (mamba-2.8b chain of 8 layers on an H200: 0.2337-0.2349 ms against 0.2404-0.2422, decode 1.931-1.948
// against 1.983-1.992 ms/step, runs 113-114), start for the rest (the Mamba-2 update measured 0.5% slower with it). Releasing
// before the wait puts two grids ahead of the running one, so such an op records its writes together with those of
// the op before it (note_update_writes, below).
enum class ReleaseAt : int { Start = 0, BeforeWait = 1 };
inline ReleaseAt update_release_point(ReleaseAt fallback) {
    static constexpr EnvChoice<ReleaseAt> kPoints[] = {{"start", ReleaseAt::Start}, {"before_wait", ReleaseAt::BeforeWait}};
    return env_choice("MAMBA_CUDA_UPDATE_RELEASE", kPoints, fallback);
}

// Whether launches on this context may carry the PDL attribute (device and MAMBA_CUDA_PDL, at creation).
// Stream capture records programmatic edges from CUDA 12.3 on; older runtimes capture plain launches.
inline bool pdl_enabled(const mamba_context & ctx) {
#if CUDART_VERSION < 12030
    if (stream_capturing(ctx)) return false;
#endif
    return ctx.cuda->pdl;
}

// Early reads. The contract above keeps every load after the wait because the kernel just before may
// still write any tensor. But a kernel's blocks start only once every block of the kernel before it has
// passed its own wait (every kernel here calls allow_dependents() after wait_for_producer()), so every
// kernel before that one has completed and flushed: only the kernel just before can still be writing.
// The state updates may release before their wait (MAMBA_CUDA_UPDATE_RELEASE): then the op before them may
// still be writing too, and they record its writes with theirs (note_update_writes).
// Where the record of what may still be writing is current (note_writes), a tensor outside it may be loaded
// before the wait, and streams while the previous kernel runs: the GEMVs' first
// batches of W (tiled kernel at one row, warp kernel), the state updates' states and parameters and the
// fused dt_proj chunks (mamba-2.8b decode at batch 1 on an H200: 2.585 -> 2.366 ms/step).
// What a context knows of its stream is a StreamTrack (common.cuh), shared with the contexts that borrow
// that stream, so that their work counts too. Off where PDL is off, on a stream that is no live context's
// own (the caller's work there is not counted), while someone else captures the stream, after a capture
// (forget_writes), when anything else was queued since the record (count_queued), and with
// MAMBA_CUDA_EARLY_WEIGHTS=0 when the context was created ("1" or unset: on). Work the caller queues on the
// stream of mamba_context_get_stream is not counted either: mamba.h states what it may do.

// A capture of the stream begun by someone else (the caller, on the stream of mamba_context_get_stream):
// its work never runs on the stream, and its end cannot be seen, so nothing is recorded while it lasts.
inline bool captured_by_another(const mamba_context & ctx) { return !ctx.cuda->capturing && stream_capturing(ctx); }

// Appends the byte ranges of `outputs` (null and empty ones skipped) to the record from its `n`th entry on and makes
// the record current. More ranges than the record holds leave it stale.
inline void record_writes(mamba_context & ctx, StreamTrack & s, int n, std::initializer_list<const Tensor *> outputs) {
    s.forget();
    if (captured_by_another(ctx)) return;
    for (const Tensor * t : outputs) {
        if (t == nullptr) continue;
        const char *lo, *hi;
        byte_range(*t, lo, hi);
        if (lo == hi) continue;
        if (n == StreamTrack::kMaxWriteRanges) return;
        s.write_lo[n] = lo;
        s.write_hi[n] = hi;
        ++n;
    }
    s.write_count = n;
    s.writes_at = s.queued.load();
}

// Records the outputs of the op just queued (null entries are skipped). An op that does not record
// leaves the record stale, which keeps the next op's loads after its wait.
inline void note_writes(mamba_context & ctx, std::initializer_list<const Tensor *> outputs) {
    if (StreamTrack * s = ctx.cuda->track.get()) record_writes(ctx, *s, 0, outputs);
}

// Whether the record of ctx's stream is current: nothing queued since the last note_writes. An op that may release
// its dependents before its wait asks this before it queues anything, and passes the answer to note_update_writes.
inline bool writes_recorded(const mamba_context & ctx) {
    const StreamTrack * s = ctx.cuda->track.get();
    return s != nullptr && s->writes_at == s->queued.load();
}

// note_writes for a state update released at `release`. Released before its own wait, the next kernel may start while
// the op before the update still runs, so the record keeps that op's outputs with the update's. With
// `previous_recorded` false (the record was stale when the update began) nothing is known of that op, and the record
// stays stale.
inline void note_update_writes(mamba_context & ctx, ReleaseAt release, bool previous_recorded, std::initializer_list<const Tensor *> outputs) {
    StreamTrack * s = ctx.cuda->track.get();
    if (s == nullptr) return;
    if (release != ReleaseAt::BeforeWait) return record_writes(ctx, *s, 0, outputs);
    if (!previous_recorded) return s->forget();
    record_writes(ctx, *s, s->write_count, outputs);
}

// Whether the next kernel queued on ctx may load all of `inputs` (null entries skipped) before
// wait_for_producer() (see above).
inline bool readable_before_wait(const mamba_context & ctx, std::initializer_list<const Tensor *> inputs) {
    const StreamTrack * s = ctx.cuda->track.get();
    if (s == nullptr || !ctx.cuda->early_weights || s->writes_at != s->queued.load() || !pdl_enabled(ctx) || captured_by_another(ctx)) return false;
    for (const Tensor * t : inputs) {
        if (t == nullptr) continue;
        const char *lo, *hi;
        byte_range(*t, lo, hi);
        for (int i = 0; i < s->write_count; ++i)
            if (lo < s->write_hi[i] && s->write_lo[i] < hi) return false;
    }
    return true;
}

// The two events of a traced launch (MAMBA_CUDA_TRACE), destroyed on every path out of launch_kernel,
// including a failed check after the first one was created.
struct TraceEvents {
    cudaEvent_t start = nullptr, stop = nullptr;
    TraceEvents() = default;
    TraceEvents(const TraceEvents &) = delete;
    TraceEvents & operator=(const TraceEvents &) = delete;
    ~TraceEvents() {
        if (start) cudaEventDestroy(start);
        if (stop) cudaEventDestroy(stop);
    }
};

// How a kernel launches besides its grid: in thread-block clusters of `cluster_blocks` blocks along x (1: no
// clusters; more needs compute capability 9.0 and grid.x a multiple of it), and cooperatively (every block
// resident at once, for kernels with grid-wide barriers; the grid must fit on the device).
struct LaunchShape {
    unsigned cluster_blocks = 1;
    bool cooperative = false;
};

// Launches kernel<<<grid, block, smem, ctx's stream>>>(args...) as `shape` says, with the PDL attribute
// when `pdl_safe` (the kernel follows the contract above) and the context allows it; `name` identifies the
// kernel in the error a failed launch raises.
template <class... Params, class... Args>
void launch_kernel_shaped(mamba_context & ctx, const char * name, bool pdl_safe, LaunchShape shape, void (*kernel)(Params...), dim3 grid, dim3 block,
                          size_t smem, Args &&... args) {
    const unsigned cluster_blocks = shape.cluster_blocks;
    cudaLaunchConfig_t config{};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = smem;
    config.stream = stream_of(ctx);
    cudaLaunchAttribute attribute[3];
    config.attrs = attribute;
    if (shape.cooperative) {
        attribute[config.numAttrs].id = cudaLaunchAttributeCooperative;
        attribute[config.numAttrs].val.cooperative = 1;
        ++config.numAttrs;
    }
    if (pdl_safe && pdl_enabled(ctx)) {
        attribute[config.numAttrs].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attribute[config.numAttrs].val.programmaticStreamSerializationAllowed = 1;
        ++config.numAttrs;
    }
    if (cluster_blocks > 1) {
        attribute[config.numAttrs].id = cudaLaunchAttributeClusterDimension;
        attribute[config.numAttrs].val.clusterDim.x = cluster_blocks;
        attribute[config.numAttrs].val.clusterDim.y = 1;
        attribute[config.numAttrs].val.clusterDim.z = 1;
        ++config.numAttrs;
    }
    // MAMBA_CUDA_TRACE=1 when the context was created ("0" or unset: off): the kernel alone between two
    // events (a diagnostic for kernel work; it synchronizes after every kernel, so it is skipped while a
    // graph is being captured).
    const bool trace = ctx.cuda->trace && !stream_capturing(ctx);
    TraceEvents events;
    if (trace) {
        MAMBA_CUDA_CHECK(cudaEventCreate(&events.start));
        MAMBA_CUDA_CHECK(cudaEventCreate(&events.stop));
        MAMBA_CUDA_CHECK(cudaEventRecord(events.start, config.stream));
    }
    count_queued(ctx);
    const cudaError_t err = cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
    if (err != cudaSuccess) fail_cuda(err, name, __FILE__, __LINE__);
    if (trace) {
        MAMBA_CUDA_CHECK(cudaEventRecord(events.stop, config.stream));
        MAMBA_CUDA_CHECK(cudaEventSynchronize(events.stop));
        float ms = 0.0f;
        MAMBA_CUDA_CHECK(cudaEventElapsedTime(&ms, events.start, events.stop));
        std::fprintf(stderr, "mamba trace %s grid %ux%ux%u block %u smem %zu: %.4f ms\n", name, grid.x, grid.y, grid.z, block.x * block.y * block.z, smem,
                     double(ms));
    }
}

// launch_kernel_shaped in clusters of `cluster_blocks` blocks (the sampler's).
template <class... Params, class... Args>
void launch_kernel_in_clusters(mamba_context & ctx, const char * name, bool pdl_safe, unsigned cluster_blocks, void (*kernel)(Params...), dim3 grid,
                               dim3 block, size_t smem, Args &&... args) {
    launch_kernel_shaped(ctx, name, pdl_safe, LaunchShape{cluster_blocks, false}, kernel, grid, block, smem, std::forward<Args>(args)...);
}

// launch_kernel_shaped with neither clusters nor a cooperative grid: the launch of most kernels.
template <class... Params, class... Args>
void launch_kernel(mamba_context & ctx, const char * name, bool pdl_safe, void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                   Args &&... args) {
    launch_kernel_shaped(ctx, name, pdl_safe, LaunchShape{}, kernel, grid, block, smem, std::forward<Args>(args)...);
}

}  // namespace mamba::cuda
