// Allocation and raw copies. On a CPU context every pointer is host memory.
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "core/context.h"

namespace {

void * host_alloc(size_t bytes) {
    constexpr size_t kAlign = 256;
    // A size within kAlign of the address limit must not wrap around to a small allocation when rounded up.
    void * p = bytes <= SIZE_MAX - kAlign ? std::aligned_alloc(kAlign, (bytes + kAlign - 1) / kAlign * kAlign) : nullptr;
    if (p == nullptr) mamba::fail(MAMBA_STATUS_OUT_OF_MEMORY, "could not allocate ", bytes, " bytes of host memory");
    return p;
}

void check_bytes(size_t bytes) {
    if (bytes == 0) mamba::fail_argument("bytes is 0");
}

}  // namespace

extern "C" {

mamba_status mamba_alloc(mamba_context * context, size_t bytes, void ** out_ptr) {
    return MAMBA_GUARDED({
        mamba::check_not_null("context", context);
        mamba::check_not_null("out_ptr", out_ptr);
        check_bytes(bytes);
        *out_ptr = nullptr;
        if (context->is_cuda()) MAMBA_CUDA_ONLY(*out_ptr = mamba::cuda::alloc(*context, bytes));
        else *out_ptr = host_alloc(bytes);
    });
}

mamba_status mamba_free(mamba_context * context, void * ptr) {
    return MAMBA_GUARDED({
        mamba::check_not_null("context", context);
        if (ptr == nullptr) return;
        if (context->is_cuda()) MAMBA_CUDA_ONLY(mamba::cuda::free(*context, ptr));
        else std::free(ptr);
    });
}

mamba_status mamba_alloc_host(mamba_context * context, size_t bytes, void ** out_ptr) {
    return MAMBA_GUARDED({
        mamba::check_not_null("context", context);
        mamba::check_not_null("out_ptr", out_ptr);
        check_bytes(bytes);
        *out_ptr = nullptr;
        if (context->is_cuda()) MAMBA_CUDA_ONLY(*out_ptr = mamba::cuda::alloc_host(*context, bytes));
        else *out_ptr = host_alloc(bytes);
    });
}

mamba_status mamba_free_host(mamba_context * context, void * ptr) {
    return MAMBA_GUARDED({
        mamba::check_not_null("context", context);
        if (ptr == nullptr) return;
        if (context->is_cuda()) MAMBA_CUDA_ONLY(mamba::cuda::free_host(*context, ptr));
        else std::free(ptr);
    });
}

mamba_status mamba_memcpy(mamba_context * context, void * dst, const void * src, size_t bytes, mamba_memcpy_kind kind) {
    return MAMBA_GUARDED({
        mamba::check_not_null("context", context);
        if (bytes == 0) return;
        mamba::check_not_null("dst", dst);
        mamba::check_not_null("src", src);
        if (kind < MAMBA_MEMCPY_HOST_TO_HOST || kind > MAMBA_MEMCPY_DEVICE_TO_DEVICE)
            mamba::fail_argument("unknown copy kind ", int(kind));
        if (context->is_cuda()) MAMBA_CUDA_ONLY(mamba::cuda::memcpy(*context, dst, src, bytes, kind));
        else std::memmove(dst, src, bytes);
    });
}

mamba_status mamba_memset(mamba_context * context, void * ptr, int32_t value, size_t bytes) {
    return MAMBA_GUARDED({
        mamba::check_not_null("context", context);
        if (bytes == 0) return;
        mamba::check_not_null("ptr", ptr);
        if (context->is_cuda()) MAMBA_CUDA_ONLY(mamba::cuda::memset(*context, ptr, value, bytes));
        else std::memset(ptr, value & 0xff, bytes);
    });
}

}  // extern "C"
