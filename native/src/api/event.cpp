// Events: CUDA events on a CUDA context; host timestamps on a CPU context, where work is synchronous.
#include <memory>

#include "core/context.h"

extern "C" {

mamba_status mamba_event_create(mamba_context * context, mamba_event ** out_event) {
    return MAMBA_GUARDED({
        mamba::check_not_null("context", context);
        mamba::check_not_null("out_event", out_event);
        *out_event = nullptr;
        auto event = std::make_unique<mamba_event>();
        event->context = context;
        if (context->is_cuda()) MAMBA_CUDA_ONLY(mamba::cuda::event_create(*event));
        *out_event = event.release();
    });
}

void mamba_event_free(mamba_event * event) {
    if (event == nullptr) return;
#if MAMBA_WITH_CUDA
    if (event->cuda_event) mamba::cuda::event_destroy(*event);
#endif
    delete event;
}

mamba_status mamba_event_record(mamba_event * event) {
    return MAMBA_GUARDED({
        mamba::check_not_null("event", event);
        if (event->context->is_cuda()) MAMBA_CUDA_ONLY(mamba::cuda::event_record(*event));
        else event->cpu_time = std::chrono::steady_clock::now();
        event->recorded = true;
    });
}

mamba_status mamba_event_synchronize(mamba_event * event) {
    return MAMBA_GUARDED({
        mamba::check_not_null("event", event);
        if (!event->recorded) mamba::fail_argument("the event was never recorded");
        if (event->context->is_cuda()) MAMBA_CUDA_ONLY(mamba::cuda::event_synchronize(*event));
    });
}

mamba_status mamba_event_elapsed_ms(const mamba_event * start, const mamba_event * end, float * out_ms) {
    return MAMBA_GUARDED({
        mamba::check_not_null("start", start);
        mamba::check_not_null("end", end);
        mamba::check_not_null("out_ms", out_ms);
        if (start->context != end->context) mamba::fail_argument("the events belong to different contexts");
        if (!start->recorded || !end->recorded) mamba::fail_argument("both events must be recorded");
        if (start->context->is_cuda()) {
            MAMBA_CUDA_ONLY(*out_ms = mamba::cuda::event_elapsed_ms(*start, *end));
        } else {
            *out_ms = std::chrono::duration<float, std::milli>(end->cpu_time - start->cpu_time).count();
        }
    });
}

}  // extern "C"
