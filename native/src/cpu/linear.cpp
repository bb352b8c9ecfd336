// CPU linear layer. A few rows (decode) go to the GEMV kernels in gemv.cpp, which read the weights once in
// their stored dtype. More rows (prefill) with bfloat16 weights go to the AMX tiles where the CPU has them
// (gemm_amx.cpp), the others to the AVX-512 register kernels where the library was built with AVX-512
// (gemm_avx512.cpp), else to OpenBLAS sgemm (below): the output features are split into panels, each OpenMP thread
// owns a range of panels, converts its float16/bfloat16 weight panels to float32 once and multiplies them with every
// row by a single-threaded sgemm.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "core/context.h"
#include "cpu/gemm_amx.h"
#include "cpu/gemm_avx512.h"
#include "cpu/blas_threads.h"
#include "cpu/convert.h"
#include "cpu/gemv.h"
#include "cpu/scan_vec.h"
#include "cpu/scratch.h"
#include "cpu/shares.h"
#include "ops/linear.h"

namespace mamba::cpu {

namespace {

// Rows of y per sgemm call when y needs a float32 staging buffer (bounds that buffer).
constexpr int64_t kRowBlock = 512;

std::vector<float> load_bias(const LinearParams & p) {
    std::vector<float> bias;
    if (p.bias) {
        bias.resize(size_t(p.out_features));
        load_floats(p.bias->dtype, p.bias->data, p.out_features, p.bias->stride[0], bias.data());
    }
    return bias;
}

// in_features == 0: every dot product is empty, y is the bias (or zero).
void fill_with_bias(const LinearParams & p) {
    const std::vector<float> bias = load_bias(p);
    for (int64_t r = 0; r < p.rows; ++r)
        for (int64_t o = 0; o < p.out_features; ++o) store_float(p.y.dtype, element(p.y, {r, o}), bias.empty() ? 0.0f : bias[size_t(o)]);
}

// Output features per panel: a float32 panel of about 1 MiB stays in L2/L3 while sgemm sweeps the rows,
// and each thread gets at least one panel.
int64_t panel_width(int64_t out_features, int64_t in_features, int threads) {
    int64_t width = std::clamp<int64_t>((int64_t(1) << 18) / in_features, 32, 1024);
    width = std::min(width, (out_features + threads - 1) / threads);
    return std::max<int64_t>(16, (width + 15) / 16 * 16);
}

void linear_gemm(int num_threads, const LinearParams & p) {
    const int64_t M = p.rows, N = p.out_features, K = p.in_features;
    // BLAS takes int sizes; strides of the direct views below are checked the same way.
    constexpr int64_t kBlasMax = 0x7fffffff;
    if (M > kBlasMax || N > kBlasMax || K > kBlasMax)
        fail(MAMBA_STATUS_UNSUPPORTED, "linear: sizes above 2^31 - 1 are not supported on the CPU (rows ", M, ", in ", K, ", out ", N, ")");

    // x as float32 rows with a BLAS-compatible leading dimension.
    const float * x = nullptr;
    int64_t ldx = 0;
    if (p.x.dtype == DType::F32 && p.x.stride[0] >= K && p.x.stride[0] <= kBlasMax) {
        x = p.x.ptr<float>();
        ldx = p.x.stride[0];
    } else {
        float * x_copy = thread_scratch(ScratchSlot::LinearInput, size_t(M * K));
        if (!x_copy) fail(MAMBA_STATUS_OUT_OF_MEMORY, "linear: no memory for a float32 copy of x (", M * K * 4, " bytes)");
#pragma omp parallel for num_threads(num_threads) schedule(static)
        for (int64_t r = 0; r < M; ++r) widen_to_float(p.x.dtype, element(p.x, {r, 0}), K, x_copy + r * K);
        x = x_copy;
        ldx = K;
    }
    const bool weight_direct = p.weight.dtype == DType::F32 && p.weight.stride[0] >= K && p.weight.stride[0] <= kBlasMax;
    const bool y_direct = p.y.dtype == DType::F32 && p.y.stride[0] >= N && p.y.stride[0] <= kBlasMax;
    const std::vector<float> bias = load_bias(p);

    // A grid of threads: panel groups split the output features; when there are fewer panels than
    // threads, row groups split the rows too.
    const int64_t width = panel_width(N, K, num_threads);
    const int64_t panels = (N + width - 1) / width;
    const int64_t panel_groups = std::min<int64_t>(panels, num_threads);
    const int64_t row_groups = std::max<int64_t>(1, std::min<int64_t>(num_threads / panel_groups, (M + 63) / 64));
    const int tasks = int(panel_groups * row_groups);

    ensure_blas_single_threaded();
    std::atomic<bool> out_of_memory{false};
    // The team is always num_threads (libgomp ends and restarts threads when team sizes vary); threads
    // without a task skip the work.
#pragma omp parallel num_threads(num_threads)
    {
        const int t = omp_get_thread_num();
        const int nt = omp_get_num_threads();
        // Nothing may throw inside the parallel region: scratch that cannot grow is reported after it.
        const bool has_task = t < tasks;
        float * weight_panel = weight_direct || !has_task ? nullptr : thread_scratch(ScratchSlot::LinearWeights, size_t(width * K));
        float * y_block = y_direct || !has_task ? nullptr : thread_scratch(ScratchSlot::LinearOutput, size_t(std::min(M, kRowBlock) * width));
        const bool have_scratch = !has_task || ((weight_direct || weight_panel) && (y_direct || y_block));
        if (!have_scratch) out_of_memory = true;
        // The runtime may give fewer threads than asked; the first threads then cover the missing tasks.
        for (int task = t; have_scratch && task < tasks; task += nt) {
            const int64_t row_group = task % row_groups, panel_group = task / row_groups;
            const int64_t row_begin = M * row_group / row_groups, row_end = M * (row_group + 1) / row_groups;
            // Each panel group owns an equal share of the columns (in multiples of 16), cut into panels of at
            // most `width`: whole panels per group left one thread up to a panel's columns more than another.
            const int64_t col_begin = share_begin(N, panel_group, panel_groups, 16), col_end = share_begin(N, panel_group + 1, panel_groups, 16);
            for (int64_t o0 = col_begin; o0 < col_end; o0 += width) {
                const int64_t cols = std::min(width, col_end - o0);
                const float * w = nullptr;
                int64_t ldw = K;
                if (weight_direct) {
                    w = p.weight.ptr<float>() + o0 * p.weight.stride[0];
                    ldw = p.weight.stride[0];
                } else {
                    for (int64_t o = 0; o < cols; ++o) widen_to_float(p.weight.dtype, element(p.weight, {o0 + o, 0}), K, weight_panel + o * K);
                    w = weight_panel;
                }
                for (int64_t r0 = row_begin; r0 < row_end; r0 += kRowBlock) {
                    const int64_t rows = std::min(kRowBlock, row_end - r0);
                    float * c = y_direct ? p.y.ptr<float>() + r0 * p.y.stride[0] + o0 : y_block;
                    const int64_t ldc = y_direct ? p.y.stride[0] : cols;
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), int(cols), int(K), 1.0f, x + r0 * ldx, int(ldx), w, int(ldw),
                                0.0f, c, int(ldc));
                    if (y_direct && bias.empty()) continue;
                    for (int64_t r = 0; r < rows; ++r) {
                        float * row = c + r * ldc;
                        if (!bias.empty())
                            for (int64_t j = 0; j < cols; ++j) row[j] += bias[size_t(o0 + j)];
                        if (!y_direct) store_floats(p.y.dtype, element(p.y, {r0 + r, o0}), cols, 1, row);
                    }
                }
            }
        }
    }
    if (out_of_memory) fail(MAMBA_STATUS_OUT_OF_MEMORY, "linear: no memory for the float32 weight panels");
}

// mamba_linear_softplus: the layer into float32 (y itself when it is float32, with the bias), then the softplus
// of each sum (the CPU scans' vector softplus), rounded once to y's dtype.
void linear_softplus(mamba_context & ctx, const LinearParams & p) {
    const int64_t M = p.rows, N = p.out_features;
    LinearParams sums = p;
    sums.softplus = false;
    std::vector<float> staged;
    if (p.y.dtype != DType::F32) {
        staged.resize(size_t(M * N));
        sums.y.data = reinterpret_cast<char *>(staged.data());
        sums.y.dtype = DType::F32;
        sums.y.stride[0] = N;
        sums.y.stride[1] = 1;
    }
    linear(ctx, sums);
#pragma omp parallel for num_threads(ctx.num_threads) schedule(static)
    for (int64_t r = 0; r < M; ++r) {
        float * row = sums.y.ptr<float>() + r * sums.y.stride[0];
        int64_t o = 0;
        for (; o + scan_vec::kWidth <= N; o += scan_vec::kWidth) scan_vec::store(row + o, scan_vec::softplus(scan_vec::load(row + o)));
        if (o < N) {  // the tail through a padded vector, so that every column takes the same softplus
            float tail[scan_vec::kWidth] = {};
            std::copy(row + o, row + N, tail);
            scan_vec::store(tail, scan_vec::softplus(scan_vec::load(tail)));
            std::copy(tail, tail + (N - o), row + o);
        }
        if (p.y.dtype != DType::F32) store_floats(p.y.dtype, element(p.y, {r, 0}), N, 1, row);
    }
}

}  // namespace

void linear(mamba_context & ctx, const LinearParams & p) {
    if (p.softplus) return linear_softplus(ctx, p);
    // MAMBA_CPU_GEMM and MAMBA_CPU_GEMM_BF16 (read at every call, so that a misspelt value never goes unnoticed):
    // "auto" (or unset) takes the AMX tiles for the prefill of bfloat16 weights where the CPU, the build and the OS
    // allow them, the AVX-512 kernels next, OpenBLAS otherwise; "amx" and "avx512" fail where they cannot run; "blas"
    // always takes OpenBLAS.
    const CpuGemm gemm = cpu_gemm_setting();
    const Bf16Products products = bf16_products_setting();
    if (p.in_features == 0) return fill_with_bias(p);
    if (p.rows <= kGemvMaxRows) return linear_gemv(ctx.num_threads, p);
    if (gemm == CpuGemm::Amx && (p.weight.dtype != DType::BF16 || !amx_usable()))
        fail(MAMBA_STATUS_UNSUPPORTED, "MAMBA_CPU_GEMM=amx, but ",
             p.weight.dtype != DType::BF16 ? "the AMX GEMM takes bfloat16 weights only" : "this CPU, build or operating system has no usable AMX tiles");
    if (gemm == CpuGemm::Avx512 && !avx512_gemm_built())
        fail(MAMBA_STATUS_UNSUPPORTED, "MAMBA_CPU_GEMM=avx512, but this library was built without AVX-512");
    if ((gemm == CpuGemm::Auto || gemm == CpuGemm::Amx) && linear_gemm_amx(ctx.num_threads, p)) return;
    if ((gemm == CpuGemm::Auto || gemm == CpuGemm::Avx512) && linear_gemm_avx512(ctx.num_threads, p, products)) return;
    linear_gemm(ctx.num_threads, p);
}

}  // namespace mamba::cpu
