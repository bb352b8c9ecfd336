// The prefill GEMM on AVX-512 registers, for CPUs without AMX tiles: packed weight panels and a register-blocked
// micro-kernel, in float32 FMAs, or in AVX512-BF16 dot products where x and the weight are both bfloat16.
#pragma once

#include "ops/linear.h"

namespace mamba::cpu {

// Whether the library was built with AVX-512 (-march=native on a CPU that has it), so that linear_gemm_avx512 runs.
bool avx512_gemm_built();

// MAMBA_CPU_GEMM as set ("auto", "amx", "avx512", "blas"; unset: Auto), the kernels of the CPU's matrix products: the
// linear layer's (AMX tiles, then these AVX-512 kernels, then OpenBLAS) and the SSD's chunk products (chunk_product.h
// or OpenBLAS). A misspelt value fails (INVALID_ARGUMENT); both read it at the start of every call.
enum class CpuGemm { Auto, Amx, Avx512, Blas };
CpuGemm cpu_gemm_setting();

// How a bfloat16 x meets a bfloat16 W in linear_gemm_avx512 (MAMBA_CPU_GEMM_BF16): on vdpbf16ps where it timed faster
// than float32 FMAs on this CPU, always on vdpbf16ps, or widened to float32 FMAs.
enum class Bf16Products { Auto, Dot, Widen };

// MAMBA_CPU_GEMM_BF16 as set ("auto", "dot", "widen"; unset: Auto); a misspelt value fails (INVALID_ARGUMENT). The
// linear layer reads it at the start of every call, so that a misspelt value never goes unnoticed.
Bf16Products bf16_products_setting();

// y = x W^T (+ bias) for any float dtypes of x, W and y. A float32 x is read in place, another x is widened to
// float32 first, W is widened panel by panel: float32 products and sums, as OpenBLAS's sgemm. Where x and W are both
// bfloat16 (K even, the library built with AVX512-BF16), vdpbf16ps multiplies them as they are: each product of
// two bfloat16 values is exact in float32, so this loses nothing against widening them. Returns false, having done
// nothing, where the library was built without AVX-512. Fails (UNSUPPORTED) where `products` is Dot, x and W are
// bfloat16 and the build has no AVX512-BF16.
bool linear_gemm_avx512(int num_threads, const LinearParams & p, Bf16Products products);

}  // namespace mamba::cpu
