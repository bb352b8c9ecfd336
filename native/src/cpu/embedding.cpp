// CPU embedding lookup: every id is checked before anything is written, then rows are copied in
// parallel, as raw bytes when table and y share a dtype and both rows are contiguous.
#include <cstring>
#include <vector>

#include "core/context.h"
#include "cpu/convert.h"
#include "ops/linear.h"

namespace mamba::cpu {

namespace {

constexpr int64_t kMinParallelElements = 1 << 15;

int64_t read_id(const Tensor & ids, int64_t i) {
    const char * p = element(ids, {i});
    return ids.dtype == DType::I32 ? int64_t(*reinterpret_cast<const int32_t *>(p)) : *reinterpret_cast<const int64_t *>(p);
}

}  // namespace

void embedding(mamba_context & ctx, const EmbeddingParams & p) {
    for (int64_t i = 0; i < p.count; ++i) {
        const int64_t id = read_id(p.ids, i);
        if (id < 0 || id >= p.vocab)
            fail_argument("argument 'ids' holds ", id, " at position ", i, ", outside the table's rows [0, ", p.vocab, ")");
    }
    if (p.hidden == 0) return;
    const bool raw_copy = p.table.dtype == p.y.dtype && (p.hidden == 1 || (p.table.stride[1] == 1 && p.y.stride[1] == 1));
    const size_t row_bytes = size_t(p.hidden) * dtype_size(p.y.dtype);

#pragma omp parallel num_threads(ctx.num_threads) if (p.count * p.hidden >= kMinParallelElements)
    {
        std::vector<float> row(raw_copy ? 0 : size_t(p.hidden));
#pragma omp for schedule(static)
        for (int64_t i = 0; i < p.count; ++i) {
            const char * src = element(p.table, {read_id(p.ids, i), 0});
            char * dst = element(p.y, {i, 0});
            if (raw_copy) {
                std::memcpy(dst, src, row_bytes);
            } else {
                load_floats(p.table.dtype, src, p.hidden, p.table.stride[1], row.data());
                store_floats(p.y.dtype, dst, p.hidden, p.y.stride[1], row.data());
            }
        }
    }
}

}  // namespace mamba::cpu
