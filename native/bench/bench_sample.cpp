// Sampling cases over mamba-130m's vocabulary: greedy, and the filters that sort (top-k, top-p); on CUDA
// MAMBA_CUDA_SAMPLE_KERNEL=block|cluster picks the kernel (full_check.sh's KERNEL_AB compares them). A case
// passes a history only with a repetition penalty, as the managed session does: with a history, CUDA checks
// its ids after the kernel with a read back to the host, which would otherwise dominate the cheap cases.
#include <string>

#include "bench.h"

namespace {

std::function<void()> sample_case(mb::Bench & b, double & bytes, double & flops, int64_t batch, mamba_sampling_params params) {
    const int64_t vocab = 50280;
    mamba_sample_args a{};
    a.logits = b.tensor({batch, vocab}, mb::kF32, -4.0, 4.0);
    if (params.repetition_penalty != 1.0f) a.history = b.tensor({batch, 64}, DLDataType{kDLInt, 32, 1});  // zeros: token 0 seen 64 times
    a.tokens = b.tensor({batch}, DLDataType{kDLInt, 64, 1});
    a.params = params;
    bytes = double(batch * vocab) * 4;
    flops = double(batch * vocab) * 4;
    return [&b, a]() mutable {
        ++a.step;
        mb::check(mamba_sample(b.ctx(), &a), "mamba_sample");
    };
}

mamba_sampling_params with(float temperature, int32_t top_k, float top_p, float min_p, float penalty) {
    mamba_sampling_params s = mamba_sampling_default_params();
    s.temperature = temperature;
    s.top_k = top_k;
    s.top_p = top_p;
    s.min_p = min_p;
    s.repetition_penalty = penalty;
    s.seed = 7;
    return s;
}

mb::Register greedy("sample greedy batch=1 vocab=50280", [](mb::Bench & b, double & bytes, double & flops) {
    return sample_case(b, bytes, flops, 1, with(0.0f, 0, 1.0f, 0.0f, 1.0f));
});
mb::Register temperature("sample temperature 0.8 batch=1 vocab=50280", [](mb::Bench & b, double & bytes, double & flops) {
    return sample_case(b, bytes, flops, 1, with(0.8f, 0, 1.0f, 0.0f, 1.0f));
});
mb::Register top_k("sample top_k 50 + penalty 1.1 batch=1 vocab=50280", [](mb::Bench & b, double & bytes, double & flops) {
    return sample_case(b, bytes, flops, 1, with(0.8f, 50, 1.0f, 0.0f, 1.1f));
});
mb::Register top_p("sample top_p 0.9 + min_p 0.05 batch=1 vocab=50280", [](mb::Bench & b, double & bytes, double & flops) {
    return sample_case(b, bytes, flops, 1, with(0.8f, 0, 0.9f, 0.05f, 1.0f));
});
// Top-p over batches: one wave of the CUDA cluster kernel's clusters (16 rows) and several (64-128 rows).
const bool top_p_batches = [] {
    for (int64_t batch : {16, 64, 96, 128})
        mb::Register("sample top_p 0.9 batch=" + std::to_string(batch) + " vocab=50280", [batch](mb::Bench & b, double & bytes, double & flops) {
            return sample_case(b, bytes, flops, batch, with(1.0f, 0, 0.9f, 0.0f, 1.0f));
        });
    return true;
}();

}  // namespace
