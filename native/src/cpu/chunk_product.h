// The small dense products of the CPU SSD's chunks (C B^T, (L o C B^T) X, C S^T, B^T (w o X)) on AVX-512
// registers, in place of OpenBLAS, whose kernels for these 64-row shapes run at a fraction of the FMA rate and
// pay a packing copy per call.
#pragma once

#include <cstdint>

namespace mamba::cpu {

// Whether the library was built with AVX-512, so that chunk_product runs.
bool chunk_product_built();

// out[i][j] = beta out[i][j] + sum over k of A(i, k) b[k * ldb + j], for i < rows, j < cols, k < depth, where
// A(i, k) = a[i * a_row + k * a_depth]: A read through any two strides (a row-major matrix, or the transpose of
// one), b and out row-major. With lower, row i sums k <= i only and A's entries above its diagonal must hold
// zeros (they are read, times b, for rows of the same register block). beta == 0 never reads out. float32
// products and sums, each output summed over k in order. Single-threaded.
// Call only where chunk_product_built().
void chunk_product(int64_t rows, int64_t cols, int64_t depth, const float * a, int64_t a_row, int64_t a_depth, const float * b, int64_t ldb,
                   float * out, int64_t ldo, float beta, bool lower);

}  // namespace mamba::cpu
