#include "api/aliasing.h"
#include "core/context.h"
#include "ops/sampling.h"

namespace mamba {

SoftmaxParams validate_softmax(const mamba_context & ctx, const DLTensor * x, DLTensor * y, int32_t log_softmax) {
    SoftmaxParams p;
    p.x = required(ctx, "x", x);
    check_floating("x", p.x);
    check_ndim("x", p.x, 2);
    p.rows = p.x.size(0);
    p.n = p.x.size(1);
    p.y = required(ctx, "y", y);
    // Probabilities are consumed by sampling and losses: keep them in full precision.
    check_dtype("y", p.y, DType::F32);
    check_shape("y", p.y, {p.rows, p.n});
    check_same_or_disjoint("y", p.y, "x", p.x);
    p.log = log_softmax != 0;
    return p;
}

}  // namespace mamba

extern "C" mamba_status mamba_softmax(mamba_context * context, const DLTensor * x, DLTensor * y, int32_t log_softmax) {
    return MAMBA_GUARDED({
        mamba::check_not_null("context", context);
        const auto p = mamba::validate_softmax(*context, x, y, log_softmax);
        if (p.rows == 0 || p.n == 0) return;
        if (context->is_cuda()) MAMBA_CUDA_ONLY(mamba::cuda::softmax(*context, p));
        else mamba::cpu::softmax(*context, p);
    });
}
