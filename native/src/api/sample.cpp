#include <cmath>
#include <limits>

#include "core/context.h"
#include "ops/sampling.h"

namespace mamba {

namespace {

void check_sampling_params(const mamba_sampling_params & s) {
    if (std::isnan(s.temperature) || std::isinf(s.temperature))
        fail_argument("params.temperature is ", s.temperature, "; expected a finite number (<= 0 for greedy)");
    if (s.top_k < 0) fail_argument("params.top_k is ", s.top_k, "; expected 0 (off) or a positive count");
    if (!(s.top_p > 0.0f && s.top_p <= 1.0f)) fail_argument("params.top_p is ", s.top_p, "; expected a value in (0, 1] (1 is off)");
    if (!(s.min_p >= 0.0f && s.min_p <= 1.0f)) fail_argument("params.min_p is ", s.min_p, "; expected a value in [0, 1] (0 is off)");
    if (!(s.repetition_penalty > 0.0f) || std::isinf(s.repetition_penalty))
        fail_argument("params.repetition_penalty is ", s.repetition_penalty, "; expected a finite positive number (1 is off)");
}

}  // namespace

SampleParams validate_sample(const mamba_context & ctx, const mamba_sample_args & a) {
    SampleParams p;
    p.logits = required(ctx, "logits", a.logits);
    check_floating("logits", p.logits);
    check_ndim("logits", p.logits, 2);
    p.batch = p.logits.size(0);
    p.vocab = p.logits.size(1);
    p.tokens = required(ctx, "tokens", a.tokens);
    check_integer("tokens", p.tokens);
    check_shape("tokens", p.tokens, {p.batch});
    if (p.batch > 0 && p.vocab == 0) fail_argument("argument 'logits' has shape ", p.logits.shape_string(), ": there is no token to draw");
    if (p.tokens.dtype == DType::I32 && p.vocab > std::numeric_limits<int32_t>::max())
        fail_argument("argument 'tokens' is int32 but the vocabulary has ", p.vocab, " entries");
    p.history = optional(ctx, "history", a.history);
    if (p.history) {
        check_integer("history", *p.history);
        check_ndim("history", *p.history, 2);
        check_shape("history", *p.history, {p.batch, -1});
        p.history_len = p.history->size(1);
        check_no_overlap("tokens", p.tokens, "history", *p.history);
    }
    check_no_overlap("tokens", p.tokens, "logits", p.logits);
    check_sampling_params(a.params);
    p.step = a.step;
    p.params = a.params;
    return p;
}

}  // namespace mamba

extern "C" {

mamba_sampling_params mamba_sampling_default_params(void) {
    mamba_sampling_params s{};
    s.temperature = 0.0f;
    s.top_k = 0;
    s.top_p = 1.0f;
    s.min_p = 0.0f;
    s.repetition_penalty = 1.0f;
    s.seed = 0;
    return s;
}

mamba_status mamba_sample(mamba_context * context, const mamba_sample_args * args) {
    return MAMBA_GUARDED({
        mamba::check_not_null("context", context);
        mamba::check_not_null("args", args);
        const auto p = mamba::validate_sample(*context, *args);
        if (p.batch == 0) return;
        if (context->is_cuda()) MAMBA_CUDA_ONLY(mamba::cuda::sample(*context, p));
        else mamba::cpu::sample(*context, p);
    });
}

}  // extern "C"
