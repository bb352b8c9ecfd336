// Gated RMSNorm at mamba2-2.7b's d_inner (5120, one group), bf16 x, z and y: decode rows and a prompt.
#include "bench.h"

namespace {

mb::Case gated(int64_t rows) {
    return {"gated_rms_norm bf16 rows=" + std::to_string(rows) + " dim=5120 gate", [rows](mb::Bench & b, double & bytes, double & flops) {
                const int64_t D = 5120;
                mamba_gated_rms_norm_args a{};
                a.x = b.tensor({rows, D}, mb::kBF16);
                a.z = b.tensor({rows, D}, mb::kBF16);
                a.weight = b.tensor({D}, mb::kBF16);
                a.y = b.tensor({rows, D}, mb::kBF16);
                a.eps = 1e-5f;
                bytes = double(rows * D) * (2 + 2 + 2);
                flops = double(rows * D) * 10;
                return [&b, a] { mb::check(mamba_gated_rms_norm(b.ctx(), &a), "mamba_gated_rms_norm"); };
            }};
}


const bool registered = [] {
    for (const mb::Case & c : {gated(16), gated(8192)}) mb::registry().push_back(c);
    return true;
}();

}  // namespace
