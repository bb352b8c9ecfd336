// Branch-free float32 exp and SiLU for the CPU kernels' inner loops. The libm versions are calls that
// stop the compiler from vectorizing a loop; these are plain arithmetic and bit operations, so loops
// marked `#pragma omp simd` over them become AVX2 / AVX-512 code. Accuracy: within 2 ulp of expf over
// the float range; NaN propagates; exp of anything below about -87 (including -inf), where the true
// value is near FLT_MIN, is exactly 0. This is the CPU backend's only copy of these approximations: the
// SIMD type of the scans (scan_vec.h) and the SSD's gate (ssd_common.h) apply them too.
#pragma once

#include <cstdint>
#include <cstring>

namespace mamba::cpu {

#pragma omp declare simd notinbranch
inline float exp_fast(float x) {
    // exp(x) = 2^k * exp(r) with k = round(x / ln2) and |r| <= ln2 / 2.
    constexpr float kLog2e = 1.44269504088896341f;
    constexpr float kLn2Hi = 0.693359375f;          // ln2 split so that k * kLn2Hi is exact
    constexpr float kLn2Lo = -2.12194440e-4f;
    constexpr float kRoundMagic = 12582912.0f;      // 1.5 * 2^23: adding it rounds to an integer
    x = x < -87.0f ? -87.0f : x;                    // k >= -126; k = -126 flushes to 0 below
    x = x > 88.72283935546875f ? 88.72283935546875f : x;  // log(FLT_MAX)
    const float shifted = x * kLog2e + kRoundMagic;
    const float k = shifted - kRoundMagic;
    uint32_t shifted_bits;
    std::memcpy(&shifted_bits, &shifted, 4);
    float r = x - k * kLn2Hi;
    r = r - k * kLn2Lo;
    // Taylor series of e^r to degree 7: the truncation error, |r|^8 / 8! < 6e-9, is below float rounding.
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    // 2^k from the integer k held in the low bits of `shifted` (two's complement, |k| <= 128).
    const uint32_t k_int = shifted_bits - 0x4B400000u;
    // Scale by 2^(k-1), then double: k = 128 (x near log(FLT_MAX)) fits, and k = -126 gives an exponent
    // field of 0, i.e. exactly 0.
    const uint32_t half_scale_bits = (k_int + 126u) << 23;
    float half_scale;
    std::memcpy(&half_scale, &half_scale_bits, 4);
    return p * half_scale * 2.0f;
}

// x * sigmoid(x)
#pragma omp declare simd notinbranch
inline float silu_fast(float x) { return x / (1.0f + exp_fast(-x)); }

}  // namespace mamba::cpu
