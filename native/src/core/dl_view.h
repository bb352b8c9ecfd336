// A DLTensor over part of another tensor's buffer, owning its shape and strides: for tests and benchmarks
// that pass the library strided views of one allocation (the x / z halves of an in-projection's output, the
// dt / B / C columns of an x-projection's output), as the model does.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "mamba/mamba.h"

namespace mamba {

struct DLView {
    std::vector<int64_t> shape, strides;
    DLTensor dl{};

    DLView() = default;
    // Shape and strides in elements; offset in elements from the base tensor's first element.
    DLView(const DLTensor * base, std::vector<int64_t> shape_, std::vector<int64_t> strides_, int64_t offset) {
        bind(base, std::move(shape_), std::move(strides_), offset);
    }
    // dl points into this object's vectors: a view is bound in place and neither copied nor moved.
    DLView(const DLView &) = delete;
    DLView & operator=(const DLView &) = delete;

    void bind(const DLTensor * base, std::vector<int64_t> shape_, std::vector<int64_t> strides_, int64_t offset) {
        shape = std::move(shape_);
        strides = std::move(strides_);
        dl = *base;
        dl.ndim = int32_t(shape.size());
        dl.shape = shape.data();
        dl.strides = strides.data();
        dl.byte_offset = base->byte_offset + uint64_t(offset) * uint64_t(base->dtype.bits / 8);
    }
};

}  // namespace mamba
