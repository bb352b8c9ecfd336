#include "core/context.h"
#include "ops/linear.h"

namespace mamba {

EmbeddingParams validate_embedding(const mamba_context & ctx, const mamba_embedding_args & a) {
    EmbeddingParams p;
    p.ids = required(ctx, "ids", a.ids);
    check_integer("ids", p.ids);
    check_ndim("ids", p.ids, 1);
    p.count = p.ids.size(0);
    p.table = required(ctx, "table", a.table);
    check_floating("table", p.table);
    check_ndim("table", p.table, 2);
    p.vocab = p.table.size(0);
    p.hidden = p.table.size(1);
    p.y = required(ctx, "y", a.y);
    check_floating("y", p.y);
    check_shape("y", p.y, {p.count, p.hidden});
    check_no_overlap("y", p.y, "table", p.table);
    check_no_overlap("y", p.y, "ids", p.ids);
    // The ids themselves are checked against vocab by the backend, which can read them.
    if (p.count > 0 && p.vocab == 0) fail_argument("argument 'table' has shape ", p.table.shape_string(), ": an empty vocabulary has no rows to look up");
    return p;
}

}  // namespace mamba

extern "C" mamba_status mamba_embedding(mamba_context * context, const mamba_embedding_args * args) {
    return MAMBA_GUARDED({
        mamba::check_not_null("context", context);
        mamba::check_not_null("args", args);
        const auto p = mamba::validate_embedding(*context, *args);
        if (p.count == 0) return;
        if (context->is_cuda()) MAMBA_CUDA_ONLY(mamba::cuda::embedding(*context, p));
        else mamba::cpu::embedding(*context, p);
    });
}
