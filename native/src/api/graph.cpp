// Graph capture and replay. A capture is tied to the thread that began it (CUDA's thread-local capture
// mode), so the capture in progress is remembered per thread: a failing call on that thread ends it
// and keeps the reason for mamba_graph_capture_end.
#include <memory>
#include <string>

#include "core/context.h"

namespace {

thread_local mamba_context * t_capturing = nullptr;
thread_local mamba_context * t_abandoned = nullptr;
thread_local std::string t_abandoned_reason;

void require_cuda_graphs(const mamba_context & ctx) {
    if (!ctx.is_cuda())
        mamba::fail(MAMBA_STATUS_UNSUPPORTED, "graph capture needs a CUDA context; a CPU context runs every call directly, so there is nothing to replay");
}

}  // namespace

namespace mamba {

void forget_capture(const mamba_context * ctx) noexcept {
    if (t_capturing == ctx) t_capturing = nullptr;
    if (t_abandoned == ctx) t_abandoned = nullptr;
}

void abandon_capture_after_failure() noexcept {
    mamba_context * ctx = t_capturing;
    if (ctx == nullptr) return;
    t_capturing = nullptr;
#if MAMBA_WITH_CUDA
    cuda::graph_capture_abandon(*ctx);
#endif
    t_abandoned = ctx;
    t_abandoned_reason = mamba_last_error();
}

}  // namespace mamba

extern "C" {

mamba_status mamba_graph_is_supported(const mamba_context * context, int32_t * out_supported) {
    return MAMBA_GUARDED({
        mamba::check_not_null("context", context);
        mamba::check_not_null("out_supported", out_supported);
        *out_supported = context->is_cuda() ? 1 : 0;
    });
}

mamba_status mamba_graph_capture_begin(mamba_context * context) {
    return MAMBA_GUARDED({
        mamba::check_not_null("context", context);
        require_cuda_graphs(*context);
        if (t_capturing != nullptr) mamba::fail_argument("this thread is already capturing a graph; end it with mamba_graph_capture_end first");
        if (t_abandoned == context) t_abandoned = nullptr;
        MAMBA_CUDA_ONLY(mamba::cuda::graph_capture_begin(*context));
        t_capturing = context;
    });
}

mamba_status mamba_graph_capture_end(mamba_context * context, mamba_graph ** out_graph) {
    if (out_graph != nullptr) *out_graph = nullptr;
    return MAMBA_GUARDED({
        mamba::check_not_null("context", context);
        mamba::check_not_null("out_graph", out_graph);
        require_cuda_graphs(*context);
        if (t_capturing != context) {
            if (t_abandoned == context) {
                t_abandoned = nullptr;
                mamba::fail_argument("the capture was ended by a call that failed during it: ", t_abandoned_reason);
            }
            mamba::fail_argument("no graph capture is in progress for this context on this thread (call mamba_graph_capture_begin first)");
        }
        t_capturing = nullptr;
        auto graph = std::make_unique<mamba_graph>();
        graph->context = context;
        MAMBA_CUDA_ONLY(graph->cuda_exec = mamba::cuda::graph_capture_end(*context));
        *out_graph = graph.release();
    });
}

mamba_status mamba_graph_launch(mamba_context * context, const mamba_graph * graph) {
    return MAMBA_GUARDED({
        mamba::check_not_null("context", context);
        mamba::check_not_null("graph", graph);
        if (graph->context != context) mamba::fail_argument("the graph was captured on another context");
        require_cuda_graphs(*context);
        MAMBA_CUDA_ONLY(mamba::cuda::graph_launch(*context, graph->cuda_exec));
    });
}

void mamba_graph_free(mamba_graph * graph) {
    if (graph == nullptr) return;
#if MAMBA_WITH_CUDA
    if (graph->cuda_exec) mamba::cuda::graph_destroy(*graph->context, graph->cuda_exec);
#endif
    delete graph;
}

}  // extern "C"
