// Context lifetime and stream control.
#include <omp.h>

#include <memory>

#include "core/context.h"

extern "C" {

mamba_context_params mamba_context_default_params(void) {
    mamba_context_params p{};
    p.device_type = MAMBA_DEVICE_CPU;
    p.device_id = 0;
    p.num_threads = 0;
    return p;
}

mamba_status mamba_context_create(const mamba_context_params * params, mamba_context ** out_context) {
    return MAMBA_GUARDED({
        mamba::check_not_null("params", params);
        mamba::check_not_null("out_context", out_context);
        *out_context = nullptr;
        if (params->num_threads < 0) mamba::fail_argument("num_threads is ", params->num_threads, "; expected 0 (all cores) or more");
        auto ctx = std::make_unique<mamba_context>();
        ctx->device_type = params->device_type;
        ctx->device_id = params->device_id;
        ctx->num_threads = params->num_threads > 0 ? params->num_threads : omp_get_num_procs();
        if (params->device_type == MAMBA_DEVICE_CPU) {
            if (params->device_id != 0) mamba::fail_argument("CPU device ", params->device_id, " does not exist (there is one CPU device, 0)");
        } else if (params->device_type == MAMBA_DEVICE_CUDA) {
            MAMBA_CUDA_ONLY(mamba::cuda::context_init(*ctx));
        } else {
            mamba::fail_argument("unknown device type ", int(params->device_type), " (expected MAMBA_DEVICE_CPU=1 or MAMBA_DEVICE_CUDA=2)");
        }
        *out_context = ctx.release();
    });
}

void mamba_context_free(mamba_context * context) {
    if (context == nullptr) return;
    mamba::forget_capture(context);
#if MAMBA_WITH_CUDA
    if (context->is_cuda()) mamba::cuda::context_destroy(*context);
#endif
    delete context;
}

mamba_status mamba_context_get_device(const mamba_context * context, DLDevice * out_device) {
    return MAMBA_GUARDED({
        mamba::check_not_null("context", context);
        mamba::check_not_null("out_device", out_device);
        out_device->device_type = context->is_cuda() ? kDLCUDA : kDLCPU;
        out_device->device_id = context->device_id;
    });
}

mamba_status mamba_context_synchronize(mamba_context * context) {
    return MAMBA_GUARDED({
        mamba::check_not_null("context", context);
        if (context->is_cuda()) MAMBA_CUDA_ONLY(mamba::cuda::synchronize(*context));
    });
}

mamba_status mamba_context_set_stream(mamba_context * context, void * stream) {
    return MAMBA_GUARDED({
        mamba::check_not_null("context", context);
        if (context->is_cuda()) {
            MAMBA_CUDA_ONLY(mamba::cuda::set_stream(*context, stream));
        } else if (stream != nullptr) {
            mamba::fail_argument("a CPU context has no stream; only NULL is accepted");
        }
    });
}

mamba_status mamba_context_get_stream(const mamba_context * context, void ** out_stream) {
    return MAMBA_GUARDED({
        mamba::check_not_null("context", context);
        mamba::check_not_null("out_stream", out_stream);
        *out_stream = nullptr;
        if (context->is_cuda()) MAMBA_CUDA_ONLY(*out_stream = mamba::cuda::get_stream(*context));
    });
}

}  // extern "C"
