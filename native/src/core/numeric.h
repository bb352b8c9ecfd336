// Scalar types of the tensors libmamba reads: IEEE half and bfloat16 stored as raw bits, converted to
// float32 for all arithmetic. Usable from host and device code.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define MAMBA_HD __host__ __device__ __forceinline__
#else
#define MAMBA_HD inline
#endif

namespace mamba {

struct bf16 {
    uint16_t bits;
};
struct f16 {
    uint16_t bits;
};

MAMBA_HD float bits_to_float(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
MAMBA_HD uint32_t float_to_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

MAMBA_HD float to_float(float v) { return v; }
MAMBA_HD float to_float(bf16 v) { return bits_to_float(uint32_t(v.bits) << 16); }
MAMBA_HD float to_float(f16 v) {
    const uint32_t sign = uint32_t(v.bits & 0x8000u) << 16;
    const uint32_t exp = (v.bits >> 10) & 0x1fu;
    const uint32_t mant = v.bits & 0x3ffu;
    if (exp == 0) {
        // zero or subnormal: mant * 2^-24
        const float m = float(mant) * 5.9604644775390625e-8f;
        return sign ? -m : m;
    }
    if (exp == 31) return bits_to_float(sign | 0x7f800000u | (mant << 13));
    return bits_to_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

// Round to nearest even, NaN kept quiet.
MAMBA_HD bf16 to_bf16(float f) {
    uint32_t u = float_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{uint16_t((u >> 16) | 0x40u)};
    u += 0x7fffu + ((u >> 16) & 1u);
    return bf16{uint16_t(u >> 16)};
}

MAMBA_HD f16 to_f16(float f) {
    const uint32_t u = float_to_bits(f);
    const uint32_t sign = (u >> 16) & 0x8000u;
    const uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return f16{uint16_t(sign | 0x7e00u)};  // NaN
    if (abs >= 0x477ff000u) return f16{uint16_t(sign | 0x7c00u)};  // overflow rounds to infinity
    if (abs < 0x38800000u) {
        // result is subnormal or zero: round abs / 2^-24 to nearest even
        const float scaled = bits_to_float(abs) * 16777216.0f;
        const float r = rintf(scaled);
        return f16{uint16_t(sign | uint32_t(r))};
    }
    uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u);
    return f16{uint16_t(sign | ((rounded - 0x38000000u) >> 13))};
}

template <class T>
MAMBA_HD T from_float(float f);
template <>
MAMBA_HD float from_float<float>(float f) { return f; }
template <>
MAMBA_HD bf16 from_float<bf16>(float f) { return to_bf16(f); }
template <>
MAMBA_HD f16 from_float<f16>(float f) { return to_f16(f); }

MAMBA_HD float silu(float x) { return x / (1.0f + expf(-x)); }
// log(1 + e^x), exact for large x where e^x overflows.
MAMBA_HD float softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

}  // namespace mamba
