// GEMV kernels: each weight row is read once and dotted with every input row while it is in registers.
// The instruction set is chosen at compile time (the library is built for the host, -march=native):
// AVX-512 (with AVX512-BF16's vdpbf16ps for bfloat16 weights), AVX2 + FMA + F16C, or plain C++.
#include "cpu/gemv.h"

#include <algorithm>
#include <vector>

#include "core/context.h"
#include "cpu/convert.h"

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

// vdpbf16ps for bfloat16 weights when the CPU has it; a build can turn it off to compare with widening.
#if defined(__AVX512BF16__) && !defined(MAMBA_GEMV_NO_DPBF16)
#define MAMBA_GEMV_USE_DPBF16 1
#else
#define MAMBA_GEMV_USE_DPBF16 0
#endif

// Software prefetch distance along the weights, in bytes (0: none). The weights are one long stream;
// the hardware prefetcher alone keeps too few lines in flight per core when each line costs more
// instructions (bfloat16 weights with a split float32 input).
#ifndef MAMBA_GEMV_PREFETCH_BYTES
#define MAMBA_GEMV_PREFETCH_BYTES 2048
#endif

namespace mamba::cpu {

namespace {

template <class T>
inline void prefetch_ahead(const T * p) {
#if MAMBA_GEMV_PREFETCH_BYTES > 0 && (defined(__AVX512F__) || defined(__AVX2__))
    _mm_prefetch(reinterpret_cast<const char *>(p) + MAMBA_GEMV_PREFETCH_BYTES, _MM_HINT_T0);
#else
    (void)p;
#endif
}

#if defined(__AVX512F__)
constexpr int kLanes = 16;
using Vec = __m512;
inline Vec vzero() { return _mm512_setzero_ps(); }
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
inline Vec vadd(Vec a, Vec b) { return _mm512_add_ps(a, b); }
inline float vsum(Vec a) { return _mm512_reduce_add_ps(a); }
inline Vec vload(const float * p) { return _mm512_loadu_ps(p); }
inline Vec vload(const bf16 * p) {
    // bfloat16 is the high half of a float32: widen and shift.
    const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}
inline Vec vload(const f16 * p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(p))); }
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
constexpr int kLanes = 8;
using Vec = __m256;
inline Vec vzero() { return _mm256_setzero_ps(); }
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
inline Vec vadd(Vec a, Vec b) { return _mm256_add_ps(a, b); }
inline float vsum(Vec a) {
    const __m128 half = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    const __m128 pairs = _mm_add_ps(half, _mm_movehl_ps(half, half));
    return _mm_cvtss_f32(_mm_add_ss(pairs, _mm_movehdup_ps(pairs)));
}
inline Vec vload(const float * p) { return _mm256_loadu_ps(p); }
inline Vec vload(const bf16 * p) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}
inline Vec vload(const f16 * p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p))); }
#else
constexpr int kLanes = 0;  // no vector unit assumed: scalar loop only
#endif

// out[r] = dot(w[0..n), x[r * ldx + 0..n)) for r < R, with U vectors of weights in flight per step so
// that enough independent FMA chains hide the FMA latency when R is small.
template <class T, int R, int U>
void dot_rows(const T * w, const float * x, int64_t ldx, int64_t n, float * out) {
    int64_t i = 0;
    float sums[R];
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__) && defined(__F16C__))
    Vec acc[R][U];
    for (int r = 0; r < R; ++r)
        for (int u = 0; u < U; ++u) acc[r][u] = vzero();
    for (; i + U * kLanes <= n; i += U * kLanes) {
        Vec wv[U];
        for (int u = 0; u < U; ++u) {
            if ((u * kLanes * sizeof(T)) % 64 == 0) prefetch_ahead(w + i + u * kLanes);
            wv[u] = vload(w + i + u * kLanes);
        }
        for (int r = 0; r < R; ++r)
            for (int u = 0; u < U; ++u) acc[r][u] = vfma(wv[u], vload(x + r * ldx + i + u * kLanes), acc[r][u]);
    }
    for (; i + kLanes <= n; i += kLanes) {
        const Vec wv = vload(w + i);
        for (int r = 0; r < R; ++r) acc[r][0] = vfma(wv, vload(x + r * ldx + i), acc[r][0]);
    }
    for (int r = 0; r < R; ++r) {
        Vec total = acc[r][0];
        for (int u = 1; u < U; ++u) total = vadd(total, acc[r][u]);
        sums[r] = vsum(total);
    }
#else
    for (int r = 0; r < R; ++r) sums[r] = 0.0f;
#endif
    for (; i < n; ++i) {
        const float wi = to_float(w[i]);
        for (int r = 0; r < R; ++r) sums[r] += wi * x[r * ldx + i];
    }
    for (int r = 0; r < R; ++r) out[r] = sums[r];
}

#if MAMBA_GEMV_USE_DPBF16
// bfloat16 weights with vdpbf16ps, which multiplies pairs of bfloat16 values into float32 sums. A float32
// input is split into x_hi + x_lo, both bfloat16 (x_lo is absent when x is bfloat16 already), keeping
// about 16 bits of the input's precision; the extra multiply is free next to the weight traffic.
template <int R, int U>
void dot_rows_bf16_pairs(const bf16 * w, const uint16_t * x_hi, const uint16_t * x_lo, const float * x, int64_t ldx, int64_t n,
                         float * out) {
    // U independent chains per row hide the latency of vdpbf16ps.
    __m512 acc_hi[R][U], acc_lo[R][U];
    for (int r = 0; r < R; ++r)
        for (int u = 0; u < U; ++u) acc_hi[r][u] = acc_lo[r][u] = _mm512_setzero_ps();
    int64_t i = 0;
    const bool split = x_lo != nullptr;
    for (; i + 32 * U <= n; i += 32 * U) {
        __m512bh wv[U];
        for (int u = 0; u < U; ++u) {
            prefetch_ahead(w + i + 32 * u);
            wv[u] = (__m512bh)_mm512_loadu_si512(w + i + 32 * u);
        }
        for (int r = 0; r < R; ++r)
            for (int u = 0; u < U; ++u) {
                acc_hi[r][u] = _mm512_dpbf16_ps(acc_hi[r][u], wv[u], (__m512bh)_mm512_loadu_si512(x_hi + r * ldx + i + 32 * u));
                if (split) acc_lo[r][u] = _mm512_dpbf16_ps(acc_lo[r][u], wv[u], (__m512bh)_mm512_loadu_si512(x_lo + r * ldx + i + 32 * u));
            }
    }
    for (; i + 32 <= n; i += 32) {
        const __m512bh wv = (__m512bh)_mm512_loadu_si512(w + i);
        for (int r = 0; r < R; ++r) {
            acc_hi[r][0] = _mm512_dpbf16_ps(acc_hi[r][0], wv, (__m512bh)_mm512_loadu_si512(x_hi + r * ldx + i));
            if (split) acc_lo[r][0] = _mm512_dpbf16_ps(acc_lo[r][0], wv, (__m512bh)_mm512_loadu_si512(x_lo + r * ldx + i));
        }
    }
    float sums[R];
    for (int r = 0; r < R; ++r) {
        __m512 total = _mm512_add_ps(acc_hi[r][0], acc_lo[r][0]);
        for (int u = 1; u < U; ++u) total = _mm512_add_ps(total, _mm512_add_ps(acc_hi[r][u], acc_lo[r][u]));
        sums[r] = _mm512_reduce_add_ps(total);
    }
    for (; i < n; ++i) {
        const float wi = to_float(w[i]);
        for (int r = 0; r < R; ++r) sums[r] += wi * x[r * ldx + i];
    }
    for (int r = 0; r < R; ++r) out[r] = sums[r];
}
#endif

// The input rows in float32 (and, for vdpbf16ps, as bfloat16 pairs), contiguous with stride `in`.
struct Inputs {
    int64_t rows = 0, in = 0;
    std::vector<float> x;
    std::vector<uint16_t> x_hi, x_lo;
};

template <class T>
void dot_block(const T * w, const Inputs & in, float * out) {
    const int64_t n = in.in;
    for (int64_t r0 = 0; r0 < in.rows; r0 += 4) {
        const float * x = in.x.data() + r0 * n;
        switch (std::min<int64_t>(4, in.rows - r0)) {
            case 1: dot_rows<T, 1, 4>(w, x, n, n, out + r0); break;
            case 2: dot_rows<T, 2, 2>(w, x, n, n, out + r0); break;
            case 3: dot_rows<T, 3, 2>(w, x, n, n, out + r0); break;
            default: dot_rows<T, 4, 2>(w, x, n, n, out + r0); break;
        }
    }
}

#if MAMBA_GEMV_USE_DPBF16
template <>
void dot_block<bf16>(const bf16 * w, const Inputs & in, float * out) {
    const int64_t n = in.in;
    const uint16_t * lo_base = in.x_lo.empty() ? nullptr : in.x_lo.data();
    for (int64_t r0 = 0; r0 < in.rows; r0 += 4) {
        const float * x = in.x.data() + r0 * n;
        const uint16_t * hi = in.x_hi.data() + r0 * n;
        const uint16_t * lo = lo_base ? lo_base + r0 * n : nullptr;
        switch (std::min<int64_t>(4, in.rows - r0)) {
            case 1: dot_rows_bf16_pairs<1, 4>(w, hi, lo, x, n, n, out + r0); break;
            case 2: dot_rows_bf16_pairs<2, 2>(w, hi, lo, x, n, n, out + r0); break;
            case 3: dot_rows_bf16_pairs<3, 2>(w, hi, lo, x, n, n, out + r0); break;
            default: dot_rows_bf16_pairs<4, 2>(w, hi, lo, x, n, n, out + r0); break;
        }
    }
}
#endif

Inputs load_inputs(const LinearParams & p) {
    Inputs in;
    in.rows = p.rows;
    in.in = p.in_features;
    in.x.resize(size_t(p.rows * p.in_features));
    for (int64_t r = 0; r < p.rows; ++r) load_floats(p.x.dtype, element(p.x, {r, 0}), p.in_features, 1, in.x.data() + r * p.in_features);
#if MAMBA_GEMV_USE_DPBF16
    if (p.weight.dtype == DType::BF16) {
        in.x_hi.resize(in.x.size());
        if (p.x.dtype != DType::BF16) in.x_lo.resize(in.x.size());
        split_to_bf16(in.x.data(), int64_t(in.x.size()), in.x_hi.data(), in.x_lo.empty() ? nullptr : in.x_lo.data());
    }
#endif
    return in;
}

template <class T>
void gemv_typed(int num_threads, const LinearParams & p, const Inputs & in, const std::vector<float> & bias) {
    const int64_t out_features = p.out_features;
    const int64_t w_stride = p.weight.stride[0];
    const T * w = p.weight.ptr<T>();
    // Blocks of output features per task: enough work to amortize scheduling, many blocks to balance.
    constexpr int64_t kBlock = 16;
    const int64_t blocks = (out_features + kBlock - 1) / kBlock;
    // Small weights are read by the calling thread: waking the others costs more than they would read.
    // (The team is otherwise always num_threads: libgomp ends and restarts threads when team sizes vary.)
    const int64_t weight_bytes = out_features * p.in_features * int64_t(sizeof(T));
    const bool parallel = num_threads > 1 && weight_bytes >= (int64_t(128) << 10);
    const int64_t y_row_stride = p.y.stride[0];
#pragma omp parallel for num_threads(num_threads) schedule(static) if (parallel)
    for (int64_t b = 0; b < blocks; ++b) {
        float dots[kGemvMaxRows > 0 ? kGemvMaxRows : 1];
        const int64_t end = std::min(out_features, (b + 1) * kBlock);
        for (int64_t o = b * kBlock; o < end; ++o) {
            dot_block<T>(w + o * w_stride, in, dots);
            const float add = bias.empty() ? 0.0f : bias[size_t(o)];
            if (p.y.dtype == DType::F32) {
                for (int64_t r = 0; r < p.rows; ++r) p.y.ptr<float>()[r * y_row_stride + o] = dots[r] + add;
            } else {
                for (int64_t r = 0; r < p.rows; ++r) store_float(p.y.dtype, element(p.y, {r, o}), dots[r] + add);
            }
        }
    }
}

template <class T>
void widen_typed(const T * src, int64_t n, float * out) {
    int64_t i = 0;
#if defined(__AVX512F__)
    for (; i + kLanes <= n; i += kLanes) _mm512_storeu_ps(out + i, vload(src + i));
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
    for (; i + kLanes <= n; i += kLanes) _mm256_storeu_ps(out + i, vload(src + i));
#endif
    for (; i < n; ++i) out[i] = to_float(src[i]);
}

}  // namespace

void widen_to_float(DType dtype, const void * src, int64_t n, float * out) {
    switch (dtype) {
        case DType::F32: widen_typed(static_cast<const float *>(src), n, out); break;
        case DType::F16: widen_typed(static_cast<const f16 *>(src), n, out); break;
        case DType::BF16: widen_typed(static_cast<const bf16 *>(src), n, out); break;
        default: break;
    }
}

void linear_gemv(int num_threads, const LinearParams & p) {
    const Inputs in = load_inputs(p);
    std::vector<float> bias;
    if (p.bias) {
        bias.resize(size_t(p.out_features));
        load_floats(p.bias->dtype, p.bias->data, p.out_features, p.bias->stride[0], bias.data());
    }
    switch (p.weight.dtype) {
        case DType::F32: gemv_typed<float>(num_threads, p, in, bias); break;
        case DType::F16: gemv_typed<f16>(num_threads, p, in, bias); break;
        case DType::BF16: gemv_typed<bf16>(num_threads, p, in, bias); break;
        default: fail(MAMBA_STATUS_INTERNAL, "linear: weight dtype ", dtype_name(p.weight.dtype), " reached the GEMV kernel");
    }
}

}  // namespace mamba::cpu
