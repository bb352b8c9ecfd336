// L2 prefetch hint. A CPU context has nothing to prefetch into (its caches fill on use), so the call is a
// checked no-op there.
#include "core/context.h"

extern "C" mamba_status mamba_prefetch_l2(mamba_context * context, const void * data, size_t bytes) {
    return MAMBA_GUARDED({
        mamba::check_not_null("context", context);
        if (bytes == 0) return;
        if (data == nullptr) mamba::fail_argument("argument 'data' is null but bytes is ", bytes);
        if (reinterpret_cast<uintptr_t>(data) + bytes < reinterpret_cast<uintptr_t>(data))
            mamba::fail_argument("the range of ", bytes, " bytes at 'data' wraps around the address space");
        if (context->is_cuda()) MAMBA_CUDA_ONLY(mamba::cuda::prefetch_to_l2(*context, data, bytes));
    });
}
