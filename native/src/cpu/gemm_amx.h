// The prefill GEMM for bfloat16 weights on AMX tiles (Intel's Advanced Matrix Extensions, TDPBF16PS), where the
// library is built for a CPU that has them (-march=native) and the operating system lets the process use them.
#pragma once

#include "ops/linear.h"

namespace mamba::cpu {

// Whether linear_gemm_amx can run in this process: built with AMX-BF16, and the kernel granted the tile state
// (asked once, on the first call).
bool amx_usable();

// y = x W^T (+ bias) for bfloat16 W (unit stride along in_features) and any float x and y dtypes: x is split into
// two bfloat16 parts (x = hi + lo to about 16 bits; a bfloat16 x is taken as is), each multiplied with W on the
// tiles into float32 sums. Returns false, having done nothing, where it does not apply (W not bfloat16, or AMX
// unusable).
bool linear_gemm_amx(int num_threads, const LinearParams & p);

}  // namespace mamba::cpu
