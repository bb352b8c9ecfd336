// CPU softmax / log-softmax over rows. A row is split into pieces when there are fewer rows than threads
// (one vocabulary-sized row at decode time): each piece first reduces to a running (max, sum of
// exp(v - max)) pair, the pairs of a row are merged, then every piece writes its outputs. Within a piece
// work goes in blocks that stay in L1, converted to float32 once per pass.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/context.h"
#include "cpu/convert.h"
#include "cpu/vec_math.h"
#include "ops/sampling.h"

namespace mamba::cpu {

namespace {

constexpr int64_t kBlock = 2048;
constexpr int64_t kMinPieceElements = 8192;
constexpr int64_t kMinParallelElements = 1 << 14;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Running statistics of part of a row: every value v contributes exp(v - max) to sum.
struct Partial {
    float max = kNegInf;
    double sum = 0.0;
};

// Folds a block into a running partial. -inf inputs contribute exactly 0 even while the max is still -inf
// (where v - max would be NaN); a NaN anywhere makes the sum NaN.
void fold(const float * v, int64_t n, Partial & part) {
    float block_max = kNegInf;
#pragma omp simd reduction(max : block_max)
    for (int64_t i = 0; i < n; ++i) block_max = std::max(block_max, v[i]);
    if (block_max > part.max) {
        if (part.max != kNegInf) part.sum *= double(exp_fast(part.max - block_max));
        part.max = block_max;
    }
    const float m = part.max;
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < n; ++i) sum += double(v[i] == kNegInf ? 0.0f : exp_fast(v[i] - m));
    part.sum += sum;
}

Partial merge(const Partial * parts, int64_t count) {
    Partial row;
    for (int64_t i = 0; i < count; ++i) row.max = std::max(row.max, parts[i].max);
    for (int64_t i = 0; i < count; ++i)
        row.sum += parts[i].max == kNegInf ? parts[i].sum : parts[i].sum * double(exp_fast(parts[i].max - row.max));
    return row;
}

// A block of a row as float32: the tensor itself when it already is contiguous float32, else `scratch`.
const float * block_values(const Tensor & x, int64_t row, int64_t i0, int64_t n, float * scratch) {
    if (x.dtype == DType::F32 && (x.stride[1] == 1 || n == 1)) return reinterpret_cast<const float *>(element(x, {row, i0}));
    load_floats(x.dtype, element(x, {row, i0}), n, x.stride[1], scratch);
    return scratch;
}

}  // namespace

void softmax(mamba_context & ctx, const SoftmaxParams & p) {
    const int64_t threads = std::max<int64_t>(1, ctx.num_threads);
    int64_t pieces = 1;
    if (p.rows < threads) pieces = std::max<int64_t>(1, std::min((threads + p.rows - 1) / p.rows, p.n / kMinPieceElements));
    const int64_t items = p.rows * pieces;
    std::vector<Partial> partials(static_cast<size_t>(items));
    const bool y_contiguous = p.y.stride[1] == 1 || p.n == 1;

#pragma omp parallel num_threads(ctx.num_threads) if (p.rows * p.n >= kMinParallelElements)
    {
        std::vector<float> in(kBlock), out(kBlock);
#pragma omp for schedule(static)
        for (int64_t item = 0; item < items; ++item) {
            const int64_t row = item / pieces, piece = item % pieces;
            const int64_t begin = p.n * piece / pieces, end = p.n * (piece + 1) / pieces;
            Partial part;
            for (int64_t i0 = begin; i0 < end; i0 += kBlock) {
                const int64_t n = std::min(kBlock, end - i0);
                fold(block_values(p.x, row, i0, n, in.data()), n, part);
            }
            partials[size_t(item)] = part;
        }
        // (implicit barrier: every partial of every row is ready)
#pragma omp for schedule(static)
        for (int64_t item = 0; item < items; ++item) {
            const int64_t row = item / pieces, piece = item % pieces;
            const int64_t begin = p.n * piece / pieces, end = p.n * (piece + 1) / pieces;
            const Partial total = merge(&partials[size_t(row * pieces)], pieces);
            const float max = total.max;
            const float inv_sum = float(1.0 / total.sum);
            const float log_sum = float(std::log(total.sum));
            for (int64_t i0 = begin; i0 < end; i0 += kBlock) {
                const int64_t n = std::min(kBlock, end - i0);
                const float * v = block_values(p.x, row, i0, n, in.data());
                float * o = y_contiguous ? reinterpret_cast<float *>(element(p.y, {row, i0})) : out.data();
                if (p.log) {
#pragma omp simd
                    for (int64_t i = 0; i < n; ++i) o[i] = (v[i] - max) - log_sum;
                } else {
#pragma omp simd
                    for (int64_t i = 0; i < n; ++i) o[i] = exp_fast(v[i] - max) * inv_sum;
                }
                if (!y_contiguous) store_floats(DType::F32, element(p.y, {row, i0}), n, p.y.stride[1], o);
            }
        }
    }
}

}  // namespace mamba::cpu
