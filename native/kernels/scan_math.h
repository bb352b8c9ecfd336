// Math of the selective scan's inner step that can run on the FMA pipe instead of the special-function
// unit (MUFU). Plain C++ usable on the host too, so that the CPU tests measure the exact device
// arithmetic (same operations, same float32 roundings; only the MUFU approximations differ).
//
// exp2_poly: 2^x for the state decays exp2(dt * A * log2(e)). The MUFU does 16 exp2 a clock per SM, the
// FMA pipe 128 FMAs: moving a few of the 16 states' exp2 onto the FMA pipe balances the two pipes.
//   - Range: x is clamped to [-126, 126] (decays below 2^-126 are zero for the recurrence anyway; above,
//     the state overflows float whatever the decay is).
//   - Reduction: x = j + f with j = rint(x) (the 1.5 * 2^23 rounding constant leaves j in the low mantissa
//     bits of x + 1.5 * 2^23) and f = x - j in [-0.5, 0.5], exact in float.
//   - 2^f: degree-5 polynomial 1 + f q(f), coefficients from a Remez exchange minimizing the maximum
//     relative error against 2^f on [-0.5, 0.5] (9.1e-8 in exact arithmetic), rounded to float; Horner:
//     5 FMAs.
//   - 2^j: j added to the exponent field of 2^f by one integer shift-add (LEA).
//   Cost: 12 FMA/ALU-pipe instructions (mul, 2 clamps, 3 adds, 5 FMAs, 1 LEA) instead of mul + MUFU.
//   Maximum relative error over [-126, 126] with float32 evaluation: checked by test_scan_math.cpp
//   (about 1.5e-7, the same order as ex2.approx.f32's 2 ulp).
// log1p_unit: log(1 + e) for e in [0, 1], the non-linear part of softplus(x) = max(x, 0) + log1p(e^-|x|),
//   as 2 atanh(s) with s = e / (2 + e) <= 1/3: odd series up to s^13 (truncation below 1.5e-8 relative),
//   no branch (the generic log1pf costs about 30 instructions and two branches a step).
#pragma once

#include <math.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define MAMBA_SCAN_MATH __host__ __device__ __forceinline__
#else
#define MAMBA_SCAN_MATH inline
#endif

namespace mamba::scan_math {

constexpr float kExp2Min = -126.0f, kExp2Max = 126.0f;
constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23: x + kRoundMagic rounds x to an integer
// 2^f ~ 1 + c1 f + ... + c5 f^5 on [-0.5, 0.5] (Remez exchange on the relative error with the
// constant term fixed at 1: 9.1e-8 in exact arithmetic).
// c0 = 1 exactly, so that rounding c0 to float adds no bias (a biased decay drifts the state).
constexpr float kExp2C1 = 0.6931470036506653f;
constexpr float kExp2C2 = 0.24022242426872253f;
constexpr float kExp2C3 = 0.05550733581185341f;
constexpr float kExp2C4 = 0.009671512991189957f;
constexpr float kExp2C5 = 0.001326472731307149f;

MAMBA_SCAN_MATH uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(x);
#else
    uint32_t u;
    std::memcpy(&u, &x, 4);
    return u;
#endif
}
MAMBA_SCAN_MATH float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float x;
    std::memcpy(&x, &u, 4);
    return x;
#endif
}
// Rounded adds the compiler may not contract into an FMA with an earlier multiply.
MAMBA_SCAN_MATH float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}
MAMBA_SCAN_MATH float fma_f(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
    return __fmaf_rn(a, b, c);
#else
    return std::fma(a, b, c);
#endif
}

MAMBA_SCAN_MATH float exp2_poly(float x) {
    x = fminf(fmaxf(x, kExp2Min), kExp2Max);
    const float t = add_rn(x, kRoundMagic);    // low mantissa bits: rint(x) (two's complement)
    const float j = add_rn(t, -kRoundMagic);   // rint(x) as a float
    const float f = add_rn(x, -j);             // exact, in [-0.5, 0.5]
    float p = fma_f(kExp2C5, f, kExp2C4);
    p = fma_f(p, f, kExp2C3);
    p = fma_f(p, f, kExp2C2);
    p = fma_f(p, f, kExp2C1);
    p = fma_f(p, f, 1.0f);
    // The rounding constant's own bits shift out: t << 23 is rint(x) << 23 modulo 2^32.
    return bits_float(float_bits(p) + (float_bits(t) << 23));
}

// e / (2 + e): the fast reciprocal on the device (MUFU.RCP, about 1 ulp), a division on the host.
MAMBA_SCAN_MATH float ratio_2pe(float e) {
#if defined(__CUDA_ARCH__)
    return __fdividef(e, 2.0f + e);
#else
    return e / (2.0f + e);
#endif
}

// log(1 + e) for e in [0, 1].
MAMBA_SCAN_MATH float log1p_unit(float e) {
    const float s = ratio_2pe(e);
    const float s2 = s * s;
    // 2 atanh(s) = s * (2 + 2/3 s^2 + 2/5 s^4 + ... + 2/13 s^12)
    float q = fma_f(2.0f / 13.0f, s2, 2.0f / 11.0f);
    q = fma_f(q, s2, 2.0f / 9.0f);
    q = fma_f(q, s2, 2.0f / 7.0f);
    q = fma_f(q, s2, 2.0f / 5.0f);
    q = fma_f(q, s2, 2.0f / 3.0f);
    q = fma_f(q, s2, 2.0f);
    return s * q;
}

}  // namespace mamba::scan_math
