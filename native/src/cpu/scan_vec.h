// A small float vector type for the selective-scan kernels: 16 lanes with AVX-512, 8 with AVX2 + FMA,
// one lane (plain C++) otherwise, chosen at compile time from the target flags. exp and SiLU apply the
// CPU backend's one float approximation (vec_math.h) to each lane, so every build and every CPU op runs
// the same math; exp2 and softplus, which only the scans need, are written here on top of the type.
#pragma once

#include <cstdint>
#include <cstring>

#include "cpu/vec_math.h"

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
// GCC 12's AVX-512 headers trip its own -Wmaybe-uninitialized (GCC bug 105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

namespace mamba::cpu::scan_vec {

#if defined(__AVX512F__)

constexpr int kWidth = 16;
struct Vec {
    __m512 v;
};
inline Vec load(const float * p) { return {_mm512_loadu_ps(p)}; }
inline void store(float * p, Vec a) { _mm512_storeu_ps(p, a.v); }
inline Vec set1(float x) { return {_mm512_set1_ps(x)}; }
inline Vec operator+(Vec a, Vec b) { return {_mm512_add_ps(a.v, b.v)}; }
inline Vec operator-(Vec a, Vec b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline Vec operator*(Vec a, Vec b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline Vec operator/(Vec a, Vec b) { return {_mm512_div_ps(a.v, b.v)}; }
// a * b + c
inline Vec fmadd(Vec a, Vec b, Vec c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
inline Vec max(Vec a, Vec b) { return {_mm512_max_ps(a.v, b.v)}; }
inline Vec min(Vec a, Vec b) { return {_mm512_min_ps(a.v, b.v)}; }
inline Vec abs(Vec a) { return {_mm512_abs_ps(a.v)}; }
inline float sum(Vec a) { return _mm512_reduce_add_ps(a.v); }
// p * 2^n where n is in the low bits of `shifted` (see exp2_fast); p * 2^n must be a normal float.
inline Vec add_to_exponent(Vec p, Vec shifted) {
    return {_mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(p.v), _mm512_slli_epi32(_mm512_castps_si512(shifted.v), 23)))};
}

#elif defined(__AVX2__) && defined(__FMA__)

constexpr int kWidth = 8;
struct Vec {
    __m256 v;
};
inline Vec load(const float * p) { return {_mm256_loadu_ps(p)}; }
inline void store(float * p, Vec a) { _mm256_storeu_ps(p, a.v); }
inline Vec set1(float x) { return {_mm256_set1_ps(x)}; }
inline Vec operator+(Vec a, Vec b) { return {_mm256_add_ps(a.v, b.v)}; }
inline Vec operator-(Vec a, Vec b) { return {_mm256_sub_ps(a.v, b.v)}; }
inline Vec operator*(Vec a, Vec b) { return {_mm256_mul_ps(a.v, b.v)}; }
inline Vec operator/(Vec a, Vec b) { return {_mm256_div_ps(a.v, b.v)}; }
inline Vec fmadd(Vec a, Vec b, Vec c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
inline Vec max(Vec a, Vec b) { return {_mm256_max_ps(a.v, b.v)}; }
inline Vec min(Vec a, Vec b) { return {_mm256_min_ps(a.v, b.v)}; }
inline Vec abs(Vec a) { return {_mm256_andnot_ps(_mm256_set1_ps(-0.0f), a.v)}; }
inline float sum(Vec a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
inline Vec add_to_exponent(Vec p, Vec shifted) {
    return {_mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p.v), _mm256_slli_epi32(_mm256_castps_si256(shifted.v), 23)))};
}

#else

// Portable fallback: one lane. The compiler may still vectorize the loops around it.
constexpr int kWidth = 1;
struct Vec {
    float v;
};
inline Vec load(const float * p) { return {*p}; }
inline void store(float * p, Vec a) { *p = a.v; }
inline Vec set1(float x) { return {x}; }
inline Vec operator+(Vec a, Vec b) { return {a.v + b.v}; }
inline Vec operator-(Vec a, Vec b) { return {a.v - b.v}; }
inline Vec operator*(Vec a, Vec b) { return {a.v * b.v}; }
inline Vec operator/(Vec a, Vec b) { return {a.v / b.v}; }
inline Vec fmadd(Vec a, Vec b, Vec c) { return {a.v * b.v + c.v}; }
inline Vec max(Vec a, Vec b) { return {a.v > b.v ? a.v : b.v}; }
inline Vec min(Vec a, Vec b) { return {a.v < b.v ? a.v : b.v}; }
inline Vec abs(Vec a) { return {a.v < 0.0f ? -a.v : a.v}; }
inline float sum(Vec a) { return a.v; }
inline Vec add_to_exponent(Vec p, Vec shifted) {
    uint32_t pb, sb;
    std::memcpy(&pb, &p.v, 4);
    std::memcpy(&sb, &shifted.v, 4);
    pb += sb << 23;
    float r;
    std::memcpy(&r, &pb, 4);
    return {r};
}

#endif

constexpr float kLog2e = 1.4426950408889634f;

// 2^x. Relative error below 3e-7 for x in [-126, 127]; at most 1.2e-38 below -126 and clamped above 127.
// 2^x = 2^n * 2^f with n = round(x), |f| <= 1/2; 2^f by a degree-5 polynomial fitted for least maximum
// relative error on [-1/2, 1/2], constant term exactly 1 so that 2^0 = 1, evaluated in Estrin's form: the
// scan issues one exp2 per state element, and a short dependency chain lets more of them overlap.
// Rounding adds 1.5 * 2^23, which leaves n in the low mantissa bits; shifted into the exponent field
// they scale the polynomial by 2^n with an integer add.
inline Vec exp2_fast(Vec x) {
    x = min(max(x, set1(-126.0f)), set1(127.0f));
    const Vec shifted = x + set1(12582912.0f);
    const Vec f = x - (shifted - set1(12582912.0f));
    const Vec f2 = f * f;
    const Vec f4 = f2 * f2;
    const Vec p01 = fmadd(set1(0.6931469440460205f), f, set1(1.0f));
    const Vec p23 = fmadd(set1(0.05550713092088699f), f, set1(0.24022120237350464f));
    const Vec p45 = fmadd(set1(0.0013276472454890609f), f, set1(0.009675540961325169f));
    return add_to_exponent(fmadd(p45, f4, fmadd(p23, f2, p01)), shifted);
}

// Applies a scalar function with a `#pragma omp declare simd` variant to every lane; the loop compiles
// to the function's vector form, so no lane is computed on its own.
template <float (*F)(float)>
inline Vec each_lane(Vec x) {
    alignas(64) float lanes[kWidth];
    store(lanes, x);
#pragma omp simd
    for (int i = 0; i < kWidth; ++i) lanes[i] = F(lanes[i]);
    return load(lanes);
}

// e^x by vec_math.h's exp_fast (within 2 ulp of expf).
inline Vec exp_fast(Vec x) { return each_lane<cpu::exp_fast>(x); }

// log(1 + y) for y in [0, 1], accurate to a few ulp relative even for tiny y:
// log(1 + y) = 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...) with s = y / (2 + y) <= 1/3, so s^2 <= 1/9 and
// the series stopped after s^13/13 leaves an error below 2e-8.
inline Vec log1p_unit(Vec y) {
    const Vec s = y / (set1(2.0f) + y);
    const Vec s2 = s * s;
    Vec p = set1(1.0f / 13.0f);
    p = fmadd(p, s2, set1(1.0f / 11.0f));
    p = fmadd(p, s2, set1(1.0f / 9.0f));
    p = fmadd(p, s2, set1(1.0f / 7.0f));
    p = fmadd(p, s2, set1(1.0f / 5.0f));
    p = fmadd(p, s2, set1(1.0f / 3.0f));
    p = fmadd(p, s2, set1(1.0f));
    return set1(2.0f) * s * p;
}

// log(1 + e^x) = max(x, 0) + log(1 + e^-|x|), stable for every x.
inline Vec softplus(Vec x) { return max(x, set1(0.0f)) + log1p_unit(exp_fast(set1(0.0f) - abs(x))); }

// x * sigmoid(x) by vec_math.h's silu_fast.
inline Vec silu(Vec x) { return each_lane<cpu::silu_fast>(x); }

}  // namespace mamba::cpu::scan_vec
