// The prefill GEMM on AVX-512 registers, for CPUs without AMX tiles: packed weight panels and a register-blocked
// micro-kernel, in float32 FMAs, or in AVX512-BF16 dot products where x and the weight are both bfloat16.
#pragma once

#include "ops/linear.h"

namespace mamba::cpu {

// Whether the library was built with AVX-512 (-march=native on a CPU that has it), so that linear_gemm_avx512 runs.
bool avx512_gemm_built();

// y = x W^T (+ bias) for any float dtypes of x, W and y. A float32 x is read in place, another x is widened to
// float32 first, W is widened panel by panel: float32 products and sums, as OpenBLAS's sgemm. Where x and W are both
// bfloat16 (K even, the library built with AVX512-BF16), vdpbf16ps multiplies them as they are: each product of
// two bfloat16 values is exact in float32, so this loses nothing against widening them. Returns false, having done
// nothing, where the library was built without AVX-512.
bool linear_gemm_avx512(int num_threads, const LinearParams & p);

}  // namespace mamba::cpu
