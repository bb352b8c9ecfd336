// RMSNorm cases: rows of the mamba-2.8b hidden size, bf16, with the fused residual add in float32.
#include "bench.h"

namespace {

// rows x 2560 bf16 x and y, float32 residual updated in place.
std::function<void()> rms_norm_case(mb::Bench & b, double & bytes, double & flops, int64_t rows) {
    const int64_t H = 2560;
    mamba_rms_norm_args a{};
    a.x = b.tensor({rows, H}, mb::kBF16);
    a.residual = b.tensor({rows, H}, mb::kF32);
    a.weight = b.tensor({H}, mb::kBF16);
    a.y = b.tensor({rows, H}, mb::kBF16);
    a.residual_out = const_cast<DLTensor *>(a.residual);
    a.eps = 1e-5f;
    bytes = double(rows * H) * (2 + 4 + 4 + 2);
    flops = double(rows * H) * 5;
    return [&b, a] { mb::check(mamba_rms_norm(b.ctx(), &a), "mamba_rms_norm"); };
}

mb::Register rms_norm_decode("rms_norm bf16 rows=16 hidden=2560 residual f32",
                             [](mb::Bench & b, double & bytes, double & flops) { return rms_norm_case(b, bytes, flops, 16); });
mb::Register rms_norm_prefill("rms_norm bf16 rows=16384 hidden=2560 residual f32",
                              [](mb::Bench & b, double & bytes, double & flops) { return rms_norm_case(b, bytes, flops, 16384); });

}  // namespace
