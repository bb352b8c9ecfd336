// Moves small 2-D blocks of strided tensors of any float dtype to and from float32 scratch, for the
// selective-scan kernels. A block is `rows` x `cols` elements, `row_stride` / `col_stride` elements apart
// in the tensor and `ld` floats apart (per row) in the scratch. Whichever of the two axes is closer
// together in memory is walked innermost, so both (batch, dim, len) and (batch, len, dim) layouts read
// whole cache lines.
#pragma once

#include <cstdint>
#include <cstdlib>

#include "core/numeric.h"
#include "core/tensor.h"

namespace mamba::cpu::scan_tiles {

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
        for (int64_t c = 0; c < cols; ++c) {
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
        for (int64_t c = 0; c < cols; ++c) {
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
