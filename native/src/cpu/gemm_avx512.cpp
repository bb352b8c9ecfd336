// Prefill GEMM on AVX-512 registers: y[m, n] = sum_k x[m, k] W[n, k] (+ bias[n]).
// Bytes: W read once and packed (N*K*4 bytes, or N*K*2 as bfloat16 pairs, written to and read back from L2), x read
// once per block of columns (from L2 or L3), y written once; FLOPs: 2*M*N*K.
// Design, in the GotoBLAS loop order: both operands are walked in 32-bit "steps", one float32 value of k or one
// bfloat16 pair (k, k + 1). Threads own column shares of W (and row shares where there are fewer column panels than
// threads). A thread packs a block of its columns over a range of steps into panels of 48 columns, step-major (a
// panel's step is 48 32-bit values, three 64-byte vectors), about 480 KB, so that it stays in L2 while every 8 rows
// of x pass it; a range of at most 768 steps keeps those 8 rows of x (24 KB) in L1. The micro-kernel keeps 8 x 48
// float32 sums in 24 registers: per step three vector loads of the panel, and per row one 32-bit broadcast of x and
// three FMAs (or vdpbf16ps), 24 of them against 11 loads, so the FMA pipes set the pace. A block's first range starts
// its sums from zero, later ones from a float32 buffer of partial sums; the last adds the bias and stores y.
#include "cpu/gemm_avx512.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <limits>
#include <vector>

#include "core/env_choice.h"
#include "core/error.h"
#include "cpu/convert.h"
#include "cpu/scratch.h"
#include "cpu/shares.h"

#if defined(__AVX512F__)
#define MAMBA_CPU_AVX512_GEMM 1
#include <immintrin.h>
// GCC 12's headers pass an undefined vector as the unused merge operand of unmasked shuffles, which it then reports
// as maybe uninitialized once they are inlined here.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#else
#define MAMBA_CPU_AVX512_GEMM 0
#endif

namespace mamba::cpu {

CpuGemm cpu_gemm_setting() {
    static constexpr EnvChoice<CpuGemm> kChoices[] = {
        {"auto", CpuGemm::Auto}, {"amx", CpuGemm::Amx}, {"avx512", CpuGemm::Avx512}, {"blas", CpuGemm::Blas}};
    return env_choice("MAMBA_CPU_GEMM", kChoices, CpuGemm::Auto);
}

Bf16Products bf16_products_setting() {
    static constexpr EnvChoice<Bf16Products> kChoices[] = {{"auto", Bf16Products::Auto}, {"dot", Bf16Products::Dot}, {"widen", Bf16Products::Widen}};
    return env_choice("MAMBA_CPU_GEMM_BF16", kChoices, Bf16Products::Auto);
}

#if MAMBA_CPU_AVX512_GEMM

namespace {

constexpr int kTileRows = 8;                  // rows of x per micro-tile
constexpr int kTileVecs = 3;                  // 16-column vectors per micro-tile
constexpr int kPanelCols = 16 * kTileVecs;    // columns of a packed panel
constexpr int64_t kMaxRangeSteps = 768;       // steps per range: 8 rows of x in L1
constexpr int64_t kBlockBytes = 480 * 1024;   // packed block: in L2 (1-2 MB a core)

inline uint32_t load_word(const char * p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

// One step's multiply-add: a broadcast float32 of x times 16 float32 columns, or a broadcast bfloat16 pair of x dotted
// with 16 columns' pairs (vdpbf16ps: both products exact in float32, added to the sum).
struct FmaStep {
    static __m512 broadcast(const char * x) { return _mm512_castsi512_ps(_mm512_set1_epi32(int(load_word(x)))); }
    static __m512 madd(__m512 sum, __m512 x, __m512 w) { return _mm512_fmadd_ps(x, w, sum); }
};

#if defined(__AVX512BF16__)
struct DotStep {
    static __m512 broadcast(const char * x) { return _mm512_castsi512_ps(_mm512_set1_epi32(int(load_word(x)))); }
    static __m512 madd(__m512 sum, __m512 x, __m512 w) { return _mm512_dpbf16_ps(sum, (__m512bh)x, (__m512bh)w); }
};
#endif

using TileSums = __m512[kTileRows][kTileVecs];

// The sums of 8 rows of x (row r's steps from x[r]) times one packed panel over `steps` steps.
template <class Step>
__attribute__((always_inline)) inline void multiply_tile(const char * const (&x)[kTileRows], const float * panel, int64_t steps,
                                                         TileSums & sums) {
#pragma GCC unroll 8
    for (int r = 0; r < kTileRows; ++r)
#pragma GCC unroll 3
        for (int v = 0; v < kTileVecs; ++v) sums[r][v] = _mm512_setzero_ps();
    for (int64_t s = 0; s < steps; ++s) {
        const float * w = panel + s * kPanelCols;
        const __m512 w0 = _mm512_loadu_ps(w), w1 = _mm512_loadu_ps(w + 16), w2 = _mm512_loadu_ps(w + 32);
#pragma GCC unroll 8
        for (int r = 0; r < kTileRows; ++r) {
            const __m512 xr = Step::broadcast(x[r] + s * 4);
            sums[r][0] = Step::madd(sums[r][0], xr, w0);
            sums[r][1] = Step::madd(sums[r][1], xr, w1);
            sums[r][2] = Step::madd(sums[r][2], xr, w2);
        }
    }
}

#if defined(__AVX512BF16__)
// Seconds for `reps` micro-tiles of `steps` steps over a panel and rows of x in L1: the inner loop alone.
template <class Step>
double time_tiles(const float * panel, const char * const (&x)[kTileRows], int64_t steps, int reps) {
    TileSums sums;
    __m512 sink = _mm512_setzero_ps();
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) {
        multiply_tile<Step>(x, panel, steps, sums);
        sink = _mm512_add_ps(sink, sums[kTileRows - 1][kTileVecs - 1]);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    volatile float keep = _mm512_reduce_add_ps(sink);
    (void)keep;
    return seconds;
}

// Whether a vdpbf16ps step (two products a lane) takes clearly less than two FMA steps here: the best of 5 timings
// of each, about a millisecond in all, on the first call that could use it. On a 2-core AMD EPYC vdpbf16ps ran at the
// FMA's instruction rate, so twice as fast per product (0.80 against 0.40 TFLOP/s); on a 16-core Intel Xeon with AMX
// it was slower (0.60 against 1.04-1.28).
bool dot_products_faster() {
    static const bool faster = [] {
        constexpr int64_t kSteps = 64;
        constexpr uint32_t kOnes = 0x3f803f80u;  // bfloat16 1.0 twice; as a float32 about 1.004: finite either way
        std::vector<uint32_t> words(size_t(kSteps * (kPanelCols + kTileRows)), kOnes);
        const float * panel = reinterpret_cast<const float *>(words.data());
        const char * x[kTileRows];
        for (int r = 0; r < kTileRows; ++r) x[r] = reinterpret_cast<const char *>(words.data() + kSteps * (kPanelCols + r));
        double fma = std::numeric_limits<double>::infinity(), dot = fma;
        for (int trial = 0; trial < 5; ++trial) {
            fma = std::min(fma, time_tiles<FmaStep>(panel, x, kSteps, 100));
            dot = std::min(dot, time_tiles<DotStep>(panel, x, kSteps, 100));
        }
        return dot < 1.6 * fma;
    }();
    return faster;
}
#endif

struct Plan {
    bool dot = false;                // bfloat16 pairs (vdpbf16ps) instead of float32 values
    const char * x = nullptr;        // row 0 of x as steps (float32 values or bfloat16 pairs)
    int64_t x_row_bytes = 0;
    int64_t steps = 0;               // steps of a row: K, or K / 2 for pairs
    int64_t ranges = 0, range_steps = 0;
    int64_t block_cols = 0;          // columns of a packed block, whole panels
};

// 16 rows of 16 32-bit values transposed in registers: out[c] holds column c of rows 0-15. Unpacks pair the rows'
// values within 128-bit lanes, then two rounds of lane shuffles gather each column's four lanes.
inline void transpose16(const __m512i (&rows)[16], __m512i (&out)[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 8; ++i) {
        t[2 * i] = _mm512_unpacklo_epi32(rows[2 * i], rows[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(rows[2 * i], rows[2 * i + 1]);
    }
    // u[4i + c], 128-bit lane L: rows 4i..4i+3 of column 4L + c.
    for (int i = 0; i < 4; ++i) {
        u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for (int c = 0; c < 4; ++c) {
        const __m512i a0 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x88), a1 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xDD);
        const __m512i a2 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x88), a3 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xDD);
        out[c] = _mm512_shuffle_i32x4(a0, a2, 0x88);
        out[4 + c] = _mm512_shuffle_i32x4(a1, a3, 0x88);
        out[8 + c] = _mm512_shuffle_i32x4(a0, a2, 0xDD);
        out[12 + c] = _mm512_shuffle_i32x4(a1, a3, 0xDD);
    }
}

// Up to 16 steps (mask) of a row of W from `src` (at its first step) as 32-bit values: the words themselves (float32
// W, or bfloat16 pairs), or 16-bit values widened to float32. Masked-off steps are zero.
inline __m512i load_steps(DType dtype, bool words, const char * src, __mmask16 mask) {
    if (words) return _mm512_maskz_loadu_epi32(mask, src);
    const __m256i half = _mm256_maskz_loadu_epi16(mask, src);
    if (dtype == DType::BF16) return _mm512_slli_epi32(_mm512_cvtepu16_epi32(half), 16);
    return _mm512_castps_si512(_mm512_cvtph_ps(half));
}

// Columns [n0, n0 + cols) of W over steps [s0, s0 + steps) as panels of 48 columns, step-major: a column's step is its
// float32 value (16-bit W widened) or its bfloat16 pair as one 32-bit word. Columns past `cols` are zero. Packed 16
// columns by 16 steps at a time, transposed in registers, so that every store is a whole 64-byte line.
void pack_block(const LinearParams & p, const Plan & plan, int64_t n0, int64_t cols, int64_t s0, int64_t steps, float * packed) {
    const bool words = plan.dot || p.weight.dtype == DType::F32;
    const int64_t step_bytes = words ? 4 : 2;
    const int64_t panels = (cols + kPanelCols - 1) / kPanelCols;
    for (int64_t q = 0; q < panels; ++q)
        for (int g = 0; g < kTileVecs; ++g) {
            const int64_t c0 = q * kPanelCols + 16 * g;
            const char * src[16];
            for (int j = 0; j < 16; ++j) src[j] = c0 + j < cols ? element(p.weight, {n0 + c0 + j, 0}) + s0 * step_bytes : nullptr;
            float * dst = packed + q * steps * kPanelCols + 16 * g;
            for (int64_t s = 0; s < steps; s += 16) {
                const int n = int(std::min<int64_t>(16, steps - s));
                const __mmask16 mask = __mmask16((1u << n) - 1u);
                __m512i rows[16], out[16];
                for (int j = 0; j < 16; ++j) rows[j] = src[j] ? load_steps(p.weight.dtype, words, src[j] + s * step_bytes, mask) : _mm512_setzero_si512();
                transpose16(rows, out);
                for (int i = 0; i < n; ++i) _mm512_storeu_si512(dst + (s + i) * kPanelCols, out[i]);
            }
        }
}

template <class Step>
void run_share(const LinearParams & p, const Plan & plan, const float * bias, int64_t row_begin, int64_t row_end, int64_t col_begin,
               int64_t col_end, float * packed, float * partial) {
    const int64_t M = p.rows;
    alignas(64) float out_row[kPanelCols];
    for (int64_t n0 = col_begin; n0 < col_end; n0 += plan.block_cols) {
        const int64_t cols = std::min(plan.block_cols, col_end - n0);
        const int64_t panels = (cols + kPanelCols - 1) / kPanelCols;
        for (int64_t range = 0; range < plan.ranges; ++range) {
            const int64_t s0 = range * plan.range_steps, steps = std::min(plan.range_steps, plan.steps - s0);
            const bool first = range == 0, last = range + 1 == plan.ranges;
            pack_block(p, plan, n0, cols, s0, steps, packed);
            for (int64_t m0 = row_begin; m0 < row_end; m0 += kTileRows) {
                const int rows = int(std::min<int64_t>(kTileRows, row_end - m0));
                // Rows past the share (the next share's, or x's last row repeated) are multiplied, never stored.
                const char * x[kTileRows];
                for (int r = 0; r < kTileRows; ++r) x[r] = plan.x + std::min<int64_t>(m0 + r, M - 1) * plan.x_row_bytes + s0 * 4;
                for (int64_t q = 0; q < panels; ++q) {
                    TileSums sums;
                    multiply_tile<Step>(x, packed + q * steps * kPanelCols, steps, sums);
                    const int64_t c0 = q * kPanelCols;
                    const int valid = int(std::min<int64_t>(kPanelCols, cols - c0));
                    for (int r = 0; r < rows; ++r) {
                        float * part = partial ? partial + (m0 - row_begin + r) * plan.block_cols + c0 : nullptr;
                        for (int v = 0; v < kTileVecs; ++v) {
                            __m512 sum = sums[r][v];
                            if (!first) sum = _mm512_add_ps(sum, _mm512_loadu_ps(part + 16 * v));
                            if (!last) {
                                _mm512_storeu_ps(part + 16 * v, sum);
                            } else {
                                _mm512_store_ps(out_row + 16 * v, _mm512_add_ps(sum, _mm512_loadu_ps(bias + n0 + c0 + 16 * v)));
                            }
                        }
                        if (last) store_floats(p.y.dtype, element(p.y, {m0 + r, n0 + c0}), valid, 1, out_row);
                    }
                }
            }
        }
    }
}

}  // namespace

bool avx512_gemm_built() { return true; }

bool linear_gemm_avx512(int num_threads, const LinearParams & p, Bf16Products products) {
    const int64_t M = p.rows, N = p.out_features, K = p.in_features;
    const bool bf16_pairs = p.x.dtype == DType::BF16 && p.weight.dtype == DType::BF16 && K % 2 == 0;
    Plan plan;
#if defined(__AVX512BF16__)
    plan.dot = bf16_pairs && (products == Bf16Products::Dot || (products == Bf16Products::Auto && dot_products_faster()));
#else
    if (bf16_pairs && products == Bf16Products::Dot)
        fail(MAMBA_STATUS_UNSUPPORTED, "MAMBA_CPU_GEMM_BF16=dot, but this library was built without AVX512-BF16");
#endif
    if (plan.dot || p.x.dtype == DType::F32) {
        plan.x = element(p.x, {0, 0});
        plan.x_row_bytes = p.x.stride[0] * int64_t(dtype_size(p.x.dtype));
    } else {
        float * x_copy = thread_scratch(ScratchSlot::LinearInput, size_t(M * K));
        if (!x_copy) fail(MAMBA_STATUS_OUT_OF_MEMORY, "linear: no memory for a float32 copy of x (", M * K * 4, " bytes)");
#pragma omp parallel for num_threads(num_threads) schedule(static)
        for (int64_t r = 0; r < M; ++r) load_floats(p.x.dtype, element(p.x, {r, 0}), K, 1, x_copy + r * K);
        plan.x = reinterpret_cast<const char *>(x_copy);
        plan.x_row_bytes = K * 4;
    }
    plan.steps = plan.dot ? K / 2 : K;
    plan.ranges = (plan.steps + kMaxRangeSteps - 1) / kMaxRangeSteps;
    plan.range_steps = (plan.steps + plan.ranges - 1) / plan.ranges;
    plan.block_cols = std::max<int64_t>(1, kBlockBytes / (plan.range_steps * 4) / kPanelCols) * kPanelCols;

    // The bias padded with zeros to whole panels, so that the epilogue adds it with full-vector loads.
    std::vector<float> bias(size_t(N + kPanelCols), 0.0f);
    if (p.bias) load_floats(p.bias->dtype, p.bias->data, N, p.bias->stride[0], bias.data());

    // Column shares for the threads, in whole panels; where there are fewer panels than threads, row shares too.
    const int64_t col_groups = std::min<int64_t>((N + kPanelCols - 1) / kPanelCols, num_threads);
    const int64_t tiles = (M + kTileRows - 1) / kTileRows;
    const int64_t row_groups = std::max<int64_t>(1, std::min<int64_t>(num_threads / col_groups, tiles));
    const int tasks = int(col_groups * row_groups);
    const int64_t share_rows = (tiles + row_groups - 1) / row_groups * kTileRows;
    std::atomic<bool> out_of_memory{false};
#pragma omp parallel num_threads(num_threads)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        const bool has_task = t < tasks;
        // The packed block, and the partial sums where K takes several ranges.
        const size_t packed_floats = size_t(plan.block_cols * plan.range_steps);
        const size_t partial_floats = plan.ranges > 1 ? size_t(share_rows * plan.block_cols) : 0;
        float * scratch = has_task ? thread_scratch(ScratchSlot::LinearWeights, packed_floats + partial_floats) : nullptr;
        if (has_task && !scratch) out_of_memory = true;
        for (int task = t; scratch && task < tasks; task += nt) {
            const int64_t row_group = task % row_groups, col_group = task / row_groups;
            const int64_t row_begin = std::min(M, row_group * share_rows), row_end = std::min(M, (row_group + 1) * share_rows);
            const int64_t col_begin = share_begin(N, col_group, col_groups, kPanelCols);
            const int64_t col_end = share_begin(N, col_group + 1, col_groups, kPanelCols);
            if (row_begin >= row_end || col_begin >= col_end) continue;
            float * packed = scratch;
            float * partial = partial_floats ? scratch + packed_floats : nullptr;
#if defined(__AVX512BF16__)
            if (plan.dot) {
                run_share<DotStep>(p, plan, bias.data(), row_begin, row_end, col_begin, col_end, packed, partial);
                continue;
            }
#endif
            run_share<FmaStep>(p, plan, bias.data(), row_begin, row_end, col_begin, col_end, packed, partial);
        }
    }
    if (out_of_memory) fail(MAMBA_STATUS_OUT_OF_MEMORY, "linear: no memory for the packed weight panels");
    return true;
}

#else

bool avx512_gemm_built() { return false; }
bool linear_gemm_avx512(int, const LinearParams &, Bf16Products) { return false; }

#endif

}  // namespace mamba::cpu
