// Products of the CPU SSD's chunks on AVX-512 registers (chunk_product.h).
// Bytes: A and b read from L1/L2 (a chunk's operands are at most 64 x 128 floats each), out written once (read
// once more where beta != 0). FLOPs: 2 * rows * cols * depth (about half of that with lower).
// Design: a register block of 6 rows x 64 columns (24 zmm sums) walks k: per k four vector loads of b's row and,
// per row, one broadcast of A(i, k) and four FMAs, 24 FMAs against 10 loads, so the FMA pipes set the pace. Columns
// past a multiple of 16 are masked; fewer than 6 rows take the same block with fewer rows.
#include "cpu/chunk_product.h"

#include <algorithm>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace mamba::cpu {

#if defined(__AVX512F__)

namespace {

constexpr int kBlockRows = 6;
constexpr int kBlockVecs = 4;  // 64 columns

template <int R, int V>
void product_block(int64_t depth, const float * a, int64_t a_row, int64_t a_depth, const float * b, int64_t ldb, float * out, int64_t ldo, float beta,
                   __mmask16 last) {
    // Every loop over r and v unrolled, so that the sums stay in registers (GCC otherwise keeps a copy on the stack).
    __m512 sum[R][V];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) sum[r][v] = _mm512_setzero_ps();
    for (int64_t k = 0; k < depth; ++k) {
        const float * brow = b + k * ldb;
        __m512 bv[V];
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) bv[v] = v == V - 1 ? _mm512_maskz_loadu_ps(last, brow + 16 * v) : _mm512_loadu_ps(brow + 16 * v);
        const float * acol = a + k * a_depth;
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
            const __m512 av = _mm512_set1_ps(acol[r * a_row]);
#pragma GCC unroll 4
            for (int v = 0; v < V; ++v) sum[r][v] = _mm512_fmadd_ps(av, bv[v], sum[r][v]);
        }
    }
    const __m512 keep = _mm512_set1_ps(beta);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
        float * o = out + r * ldo;
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) {
            const __mmask16 m = v == V - 1 ? last : __mmask16(0xffff);
            __m512 s = sum[r][v];
            if (beta != 0.0f) s = _mm512_fmadd_ps(keep, _mm512_maskz_loadu_ps(m, o + 16 * v), s);
            _mm512_mask_storeu_ps(o + 16 * v, m, s);
        }
    }
}

// One register block: R rows, V vectors of columns (the last masked by `last`).
template <int R>
void product_rows(int64_t depth, const float * a, int64_t a_row, int64_t a_depth, const float * b, int64_t ldb, float * out, int64_t ldo, float beta,
                  int vecs, __mmask16 last) {
    switch (vecs) {
        case 1: return product_block<R, 1>(depth, a, a_row, a_depth, b, ldb, out, ldo, beta, last);
        case 2: return product_block<R, 2>(depth, a, a_row, a_depth, b, ldb, out, ldo, beta, last);
        case 3: return product_block<R, 3>(depth, a, a_row, a_depth, b, ldb, out, ldo, beta, last);
        default: return product_block<R, 4>(depth, a, a_row, a_depth, b, ldb, out, ldo, beta, last);
    }
}

}  // namespace

bool chunk_product_built() { return true; }

void chunk_product(int64_t rows, int64_t cols, int64_t depth, const float * a, int64_t a_row, int64_t a_depth, const float * b, int64_t ldb,
                   float * out, int64_t ldo, float beta, bool lower) {
    constexpr int64_t kBlockCols = 16 * kBlockVecs;
    for (int64_t j0 = 0; j0 < cols; j0 += kBlockCols) {
        const int64_t width = std::min(kBlockCols, cols - j0);
        const int vecs = int((width + 15) / 16);
        const int tail = int(width - 16 * (vecs - 1));
        const __mmask16 last = __mmask16((1u << tail) - 1u);
        for (int64_t i0 = 0; i0 < rows; i0 += kBlockRows) {
            const int64_t block = std::min<int64_t>(kBlockRows, rows - i0);
            const int64_t k_end = lower ? std::min(depth, i0 + block) : depth;
            const float * ab = a + i0 * a_row;
            const float * bb = b + j0;
            float * ob = out + i0 * ldo + j0;
            switch (block) {
                case 1: product_rows<1>(k_end, ab, a_row, a_depth, bb, ldb, ob, ldo, beta, vecs, last); break;
                case 2: product_rows<2>(k_end, ab, a_row, a_depth, bb, ldb, ob, ldo, beta, vecs, last); break;
                case 3: product_rows<3>(k_end, ab, a_row, a_depth, bb, ldb, ob, ldo, beta, vecs, last); break;
                case 4: product_rows<4>(k_end, ab, a_row, a_depth, bb, ldb, ob, ldo, beta, vecs, last); break;
                case 5: product_rows<5>(k_end, ab, a_row, a_depth, bb, ldb, ob, ldo, beta, vecs, last); break;
                default: product_rows<kBlockRows>(k_end, ab, a_row, a_depth, bb, ldb, ob, ldo, beta, vecs, last); break;
            }
        }
    }
}

#else

bool chunk_product_built() { return false; }

void chunk_product(int64_t, int64_t, int64_t, const float *, int64_t, int64_t, const float *, int64_t, float *, int64_t, float, bool) {}

#endif

}  // namespace mamba::cpu
