// CUDA graphs of a context: capture of the context's stream, instantiation, replay, and the deferred
// error word through which captured kernels report bad data they cannot read back.
//
// Design: the capture uses cudaStreamCaptureModeThreadLocal. Calls that would synchronize or allocate
// on the capturing thread are then errors (libmamba refuses them first with a clear message), while
// other threads, possibly using other contexts, are unaffected (global mode would break them). The
// context's workspace and cuBLAS workspace are fixed buffers while a capture is open, so every captured
// kernel reads addresses that stay valid as long as the graph lives.
#include "common.cuh"

namespace mamba::cuda {

bool stream_capturing(const mamba_context & ctx) {
    if (ctx.cuda->capturing) return true;
    // The caller may capture a borrowed stream itself (mamba_context_set_stream).
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(ctx.cuda->stream, &status) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    return status != cudaStreamCaptureStatusNone;
}

unsigned long long * error_slot(mamba_context & ctx, DeferredError op, unsigned long long & tag) {
    if (stream_capturing(ctx)) {
        tag = deferred_tag(op);
        return ctx.cuda->deferred_error;
    }
    tag = 0;
    return ctx.cuda->error_index;
}

void queue_deferred_error_read(mamba_context & ctx) {
    CudaState & s = *ctx.cuda;
    *s.deferred_error_host = kNoErrorIndex;
    MAMBA_CUDA_CHECK(cudaMemcpyAsync(s.deferred_error_host, s.deferred_error, sizeof(unsigned long long), cudaMemcpyDeviceToHost, s.stream));
}

void report_deferred_error(mamba_context & ctx) {
    CudaState & s = *ctx.cuda;
    const unsigned long long word = *s.deferred_error_host;
    if (word == kNoErrorIndex) return;
    MAMBA_CUDA_CHECK(cudaMemsetAsync(s.deferred_error, 0xff, sizeof(unsigned long long), s.stream));
    const unsigned long long index = word & kDeferredIndexMask;
    switch (static_cast<DeferredError>(word >> 56)) {
        case DeferredError::Embedding:
            fail_argument("a captured or replayed embedding met an id outside the table at position ", index,
                          " of its ids (the row was written as zeros)");
        case DeferredError::SampleHistory:
            fail_argument("a captured or replayed sample met a history id outside the vocabulary at flat position ", index,
                          " of its history (the entry was ignored)");
    }
    fail_argument("captured work reported bad data (code ", word >> 56, ", position ", index, ")");
}

void graph_capture_begin(mamba_context & ctx) {
    CudaState & s = *ctx.cuda;
    if (s.capturing) fail_argument("a graph capture is already in progress on this context");
    MAMBA_CUDA_CHECK(cudaSetDevice(ctx.device_id));
    if (stream_capturing(ctx)) fail_argument("the context's stream is already being captured by someone else");
    join_l2_prefetch(ctx);  // an eager prefetch's event cannot be waited on inside the capture
    MAMBA_CUDA_CHECK(cudaStreamBeginCapture(s.stream, cudaStreamCaptureModeThreadLocal));
    s.capturing = true;
    forget_writes(ctx);  // the graph's first kernel follows nothing inside the graph (launch.cuh)
}

void * graph_capture_end(mamba_context & ctx) {
    CudaState & s = *ctx.cuda;
    if (!s.capturing) fail_argument("no graph capture is in progress on this context (call mamba_graph_capture_begin first)");
    MAMBA_CUDA_CHECK(cudaSetDevice(ctx.device_id));
    // A prefetch branch left unjoined would make cudaStreamEndCapture fail.
    try {
        join_l2_prefetch(ctx);
    } catch (...) {
        graph_capture_abandon(ctx);
        throw;
    }
    s.capturing = false;
    forget_writes(ctx);  // the captured work never ran on the stream: its record describes nothing there
    cudaGraph_t graph = nullptr;
    const cudaError_t end = cudaStreamEndCapture(s.stream, &graph);
    if (end != cudaSuccess) {
        if (graph) cudaGraphDestroy(graph);
        fail_cuda(end, "cudaStreamEndCapture (the capture was invalidated by a call the device runtime refused)", __FILE__, __LINE__);
    }
    cudaGraphExec_t exec = nullptr;
    const cudaError_t inst = cudaGraphInstantiateWithFlags(&exec, graph, 0);
    cudaGraphDestroy(graph);
    MAMBA_CUDA_CHECK(inst);
    ++s.live_graphs;
    return exec;
}

void graph_capture_abandon(mamba_context & ctx) noexcept {
    CudaState * s = ctx.cuda;
    if (s == nullptr || !s->capturing) return;
    join_l2_prefetch_for_abandon(ctx);
    s->capturing = false;
    forget_writes(ctx);
    cudaGraph_t graph = nullptr;
    if (cudaStreamEndCapture(s->stream, &graph) == cudaSuccess && graph) cudaGraphDestroy(graph);
    (void)cudaGetLastError();
}

void graph_launch(mamba_context & ctx, void * exec) {
    CudaState & s = *ctx.cuda;
    if (s.capturing) fail_argument("a graph cannot be launched while the context is capturing another");
    MAMBA_CUDA_CHECK(cudaSetDevice(ctx.device_id));
    count_queued(ctx);
    MAMBA_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec), s.stream));
}

void graph_destroy(mamba_context & ctx, void * exec) noexcept {
    CudaState * s = ctx.cuda;
    if (s == nullptr) return;
    cudaSetDevice(ctx.device_id);
    if (!s->capturing) cudaStreamSynchronize(s->stream);  // a replay may still be running
    cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec));
    if (--s->live_graphs == 0 && !s->capturing) {
        for (void * p : s->retired_workspaces) cudaFree(p);
        s->retired_workspaces.clear();
    }
    (void)cudaGetLastError();
}

}  // namespace mamba::cuda
