// Splitting a range of columns between threads.
#pragma once

#include <algorithm>
#include <cstdint>

namespace mamba::cpu {

// First column of share `i` of `n` columns split in `shares` nearly equal parts, rounded to a multiple of
// `multiple` (a kernel's column block); share `shares` begins at n.
inline int64_t share_begin(int64_t n, int64_t i, int64_t shares, int64_t multiple) {
    if (i >= shares) return n;
    return std::min(n, (n * i / shares + multiple / 2) / multiple * multiple);
}

}  // namespace mamba::cpu
