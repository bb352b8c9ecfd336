// Overlap rules for ops that may run in place: an output may be the very same view as an input (same
// data, dtype and strides), because the kernels read each unit of work before writing it, but must not
// otherwise share memory with it.
#pragma once

#include "core/tensor.h"

namespace mamba {

inline bool same_view(const Tensor & a, const Tensor & b) {
    if (a.data != b.data || a.dtype != b.dtype || a.ndim != b.ndim) return false;
    for (int i = 0; i < a.ndim; ++i)
        if (a.shape[i] != b.shape[i] || (a.shape[i] > 1 && a.stride[i] != b.stride[i])) return false;
    return true;
}

inline void check_same_or_disjoint(const char * name_a, const Tensor & a, const char * name_b, const Tensor & b) {
    if (same_memory(a, b) && !same_view(a, b))
        fail_argument("arguments '", name_a, "' and '", name_b, "' overlap in memory without being the same view");
}

}  // namespace mamba
