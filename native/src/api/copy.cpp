#include "ops/copy.h"

#include "core/context.h"

extern "C" mamba_status mamba_copy(mamba_context * context, const DLTensor * src, DLTensor * dst) {
    return MAMBA_GUARDED({
        mamba::check_not_null("context", context);
        mamba::CopyParams p;
        p.src = mamba::required(*context, "src", src);
        p.dst = mamba::required(*context, "dst", dst);
        if (p.src.ndim != p.dst.ndim) mamba::fail_argument("argument 'dst' has shape ", p.dst.shape_string(), ", expected ", p.src.shape_string(), " like 'src'");
        for (int i = 0; i < p.src.ndim; ++i)
            if (p.src.shape[i] != p.dst.shape[i]) mamba::fail_argument("argument 'dst' has shape ", p.dst.shape_string(), ", expected ", p.src.shape_string(), " like 'src'");
        if (mamba::is_floating(p.src.dtype) != mamba::is_floating(p.dst.dtype))
            mamba::fail(MAMBA_STATUS_UNSUPPORTED, "cannot convert ", mamba::dtype_name(p.src.dtype), " to ", mamba::dtype_name(p.dst.dtype));
        if (p.src.numel() == 0) return;
        if (mamba::same_memory(p.src, p.dst) && !(p.src.data == p.dst.data && p.src.dtype == p.dst.dtype))
            mamba::fail_argument("arguments 'src' and 'dst' overlap in memory");
        if (context->is_cuda()) MAMBA_CUDA_ONLY(mamba::cuda::copy(*context, p));
        else mamba::cpu::copy(*context, p);
    });
}
