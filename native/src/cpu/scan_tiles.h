// Moves small 2-D blocks of strided tensors of any float dtype to and from float32 scratch, for the
// selective-scan kernels. A block is `rows` x `cols` elements, `row_stride` / `col_stride` elements apart
// in the tensor and `ld` floats apart (per row) in the scratch. Whichever of the two axes is closer
// together in memory is walked innermost, so both (batch, dim, len) and (batch, len, dim) layouts read
// whole cache lines.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <type_traits>

#include "core/numeric.h"
#include "core/tensor.h"

#if defined(__AVX2__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

namespace mamba::cpu::scan_tiles {

#if defined(__AVX2__)
// Eight consecutive elements as floats (exact conversions).
inline __m256 load8(const float * p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const bf16 * p) {
    const __m128i bits = _mm_loadu_si128(reinterpret_cast<const __m128i *>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bits), 16));
}
inline __m256 load8(const f16 * p) {
#if defined(__F16C__)
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p)));
#else
    alignas(32) float v[8];
    for (int i = 0; i < 8; ++i) v[i] = to_float(p[i]);
    return _mm256_load_ps(v);
#endif
}

// Transposes an 8 x 8 block held as eight rows: three rounds of shuffles instead of 64 scalar moves.
inline void transpose_8x8(const __m256 (&r)[8], __m256 (&out)[8]) {
    __m256 t[8], s[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        s[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        s[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        s[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        s[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; ++i) {
        out[i] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x20);
        out[i + 4] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x31);
    }
}

// out[r * ld + c] = src[c * col_stride + r] for an 8 x 8 block whose rows are contiguous in src.
template <class T>
inline void load_transposed_8x8(const T * src, int64_t col_stride, float * out, int64_t ld) {
    __m256 r[8], t[8];
    for (int i = 0; i < 8; ++i) r[i] = load8(src + i * col_stride);
    transpose_8x8(r, t);
    for (int i = 0; i < 8; ++i) _mm256_storeu_ps(out + i * ld, t[i]);
}

// dst[c * col_stride + r] = in[r * ld + c] for an 8 x 8 block of a float32 tensor whose rows are contiguous.
inline void store_transposed_8x8(float * dst, int64_t col_stride, const float * in, int64_t ld) {
    __m256 r[8], t[8];
    for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(in + i * ld);
    transpose_8x8(r, t);
    for (int i = 0; i < 8; ++i) _mm256_storeu_ps(dst + i * col_stride, t[i]);
}
#endif

// Walk rows in the outer loop when a row's elements are the closer ones (or there is only one row).
inline bool rows_outer(int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride) {
    return rows == 1 || (cols != 1 && std::llabs(col_stride) <= std::llabs(row_stride));
}

template <class T>
void load_typed(const T * src, int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride, float * out, int64_t ld) {
    if (rows_outer(rows, cols, row_stride, col_stride)) {
        for (int64_t r = 0; r < rows; ++r) {
            const T * s = src + r * row_stride;
            float * o = out + r * ld;
            if (col_stride == 1) {
                for (int64_t c = 0; c < cols; ++c) o[c] = to_float(s[c]);
            } else {
                for (int64_t c = 0; c < cols; ++c) o[c] = to_float(s[c * col_stride]);
            }
        }
    } else {
        int64_t c = 0;
#if defined(__AVX2__)
        // Rows contiguous, as in a (batch, dim, len) tensor read as [step][channel]: 8 x 8 blocks.
        if (row_stride == 1) {
            for (; c + 8 <= cols; c += 8) {
                int64_t r = 0;
                for (; r + 8 <= rows; r += 8) load_transposed_8x8(src + c * col_stride + r, col_stride, out + r * ld + c, ld);
                for (; r < rows; ++r)
                    for (int64_t k = c; k < c + 8; ++k) out[r * ld + k] = to_float(src[k * col_stride + r]);
            }
        }
#endif
        for (; c < cols; ++c) {
            const T * s = src + c * col_stride;
            for (int64_t r = 0; r < rows; ++r) out[r * ld + c] = to_float(s[r * row_stride]);
        }
    }
}

template <class T>
void store_typed(T * dst, int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride, const float * in, int64_t ld) {
    if (rows_outer(rows, cols, row_stride, col_stride)) {
        for (int64_t r = 0; r < rows; ++r) {
            T * d = dst + r * row_stride;
            const float * i = in + r * ld;
            for (int64_t c = 0; c < cols; ++c) d[c * col_stride] = from_float<T>(i[c]);
        }
    } else {
        int64_t c = 0;
#if defined(__AVX2__)
        if constexpr (std::is_same_v<T, float>) {
            if (row_stride == 1) {
                for (; c + 8 <= cols; c += 8) {
                    int64_t r = 0;
                    for (; r + 8 <= rows; r += 8) store_transposed_8x8(dst + c * col_stride + r, col_stride, in + r * ld + c, ld);
                    for (; r < rows; ++r)
                        for (int64_t k = c; k < c + 8; ++k) dst[k * col_stride + r] = in[r * ld + k];
                }
            }
        }
#endif
        for (; c < cols; ++c) {
            T * d = dst + c * col_stride;
            for (int64_t r = 0; r < rows; ++r) d[r * row_stride] = from_float<T>(in[r * ld + c]);
        }
    }
}

// `src` points at the block's first element.
inline void load_tile(DType dtype, const char * src, int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride, float * out,
                      int64_t ld) {
    switch (dtype) {
        case DType::F32: load_typed(reinterpret_cast<const float *>(src), rows, cols, row_stride, col_stride, out, ld); break;
        case DType::F16: load_typed(reinterpret_cast<const f16 *>(src), rows, cols, row_stride, col_stride, out, ld); break;
        case DType::BF16: load_typed(reinterpret_cast<const bf16 *>(src), rows, cols, row_stride, col_stride, out, ld); break;
        default: break;  // validation admits float dtypes only
    }
}

inline void store_tile(DType dtype, char * dst, int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride, const float * in,
                       int64_t ld) {
    switch (dtype) {
        case DType::F32: store_typed(reinterpret_cast<float *>(dst), rows, cols, row_stride, col_stride, in, ld); break;
        case DType::F16: store_typed(reinterpret_cast<f16 *>(dst), rows, cols, row_stride, col_stride, in, ld); break;
        case DType::BF16: store_typed(reinterpret_cast<bf16 *>(dst), rows, cols, row_stride, col_stride, in, ld); break;
        default: break;
    }
}

// Asks for the cache lines of a block ahead of its load (only along an axis with unit stride, where
// lines are contiguous): rows of a (batch, len, dim) layout lie pages apart, which hardware prefetchers
// do not follow.
inline void prefetch_tile(DType dtype, const char * src, int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride) {
    constexpr int64_t kLine = 64;
    const int64_t es = int64_t(dtype_size(dtype));
    if (col_stride == 1) {
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t off = 0; off < cols * es; off += kLine) __builtin_prefetch(src + r * row_stride * es + off);
    } else if (row_stride == 1) {
        for (int64_t c = 0; c < cols; ++c)
            for (int64_t off = 0; off < rows * es; off += kLine) __builtin_prefetch(src + c * col_stride * es + off);
    }
}

}  // namespace mamba::cpu::scan_tiles
