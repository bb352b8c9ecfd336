// Prefill GEMM for bfloat16 weights on AMX tiles: y[m, n] = sum_k x[m, k] W[n, k] (+ bias[n]).
// Bytes: x read once and written as bfloat16 hi and lo parts (M*K*(4 + 4)), W read once and packed (N*K*2*2),
// y written once; FLOPs: 2*M*N*K per part of x (two parts for a float32 or float16 x, one for bfloat16).
// Design: x is split once into row-major bfloat16 hi = bf16(x) and lo = bf16(x - hi), K padded to a multiple of
// 32 with zeros. Threads own column shares of W (and row shares where there are fewer column blocks than
// threads); a thread packs a panel of its columns into the tiles' pair layout (16 rows of 16 columns x 2
// consecutive k, 1 KB a tile), then for every 32 rows of x and 32 columns of the panel keeps four 16 x 16
// float32 accumulator tiles while it walks K 32 at a time: two A tiles (16 rows each) and two B tiles, four
// TDPBF16PS, then the lo rows into the same A tiles and four more. The accumulators go through a 32 x 32
// float32 block to y (bias added, converted to y's dtype), so rows and columns past the ends are never stored.
#include "cpu/gemm_amx.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "cpu/convert.h"
#include "cpu/gemv.h"
#include "cpu/scratch.h"
#include "cpu/shares.h"

#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512BF16__) && defined(__AVX512F__) && defined(__linux__)
#define MAMBA_CPU_AMX 1
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#else
#define MAMBA_CPU_AMX 0
#endif

namespace mamba::cpu {

#if MAMBA_CPU_AMX

namespace {

constexpr int64_t kTileK = 32;       // bfloat16 values of x along K in a tile row (64 bytes)
constexpr int64_t kTileSide = 16;    // rows of an A or C tile, columns of a B or C tile
constexpr int64_t kBlockRows = 32;   // rows of x per step: two A tiles
constexpr int64_t kBlockCols = 32;   // columns of W per step: two B tiles
constexpr int64_t kTileBytes = 1024;

// The layout _tile_loadconfig reads (palette 1).
struct TileConfig {
    uint8_t palette = 1;
    uint8_t start_row = 0;
    uint8_t reserved[14] = {};
    uint16_t colsb[16] = {};
    uint8_t rows[16] = {};
};

// Tiles 0-3: accumulators (row half r, column half c at 2r + c); 4, 5: A (rows 0-15, 16-31); 6, 7: B (columns 0-15,
// 16-31). Every tile is 16 rows of 64 bytes.
void configure_tiles() {
    TileConfig c;
    for (int t = 0; t < 8; ++t) {
        c.colsb[t] = 64;
        c.rows[t] = 16;
    }
    _tile_loadconfig(&c);
}

// x's row as bfloat16 hi (and lo where lo is given), zero past K up to Kp.
void split_row(const float * x, int64_t K, int64_t Kp, uint16_t * hi, uint16_t * lo) {
    split_to_bf16(x, K, hi, lo);
    std::memset(hi + K, 0, size_t(Kp - K) * 2);
    if (lo) std::memset(lo + K, 0, size_t(Kp - K) * 2);
}

// Columns [n0, n0 + cols) of W (bfloat16 rows of K with unit stride, row stride ldw elements) in the B tiles'
// layout: for each 32 columns, for each 32 values of K, two tiles (columns 0-15, 16-31) whose row j holds, per
// column, the pair k = 2j, 2j + 1 (as one 32-bit word). Columns past `cols` and K past its end are zero.
void pack_panel(const uint16_t * w, int64_t ldw, int64_t K, int64_t Kp, int64_t cols, uint32_t * packed) {
    const int64_t col_blocks = (cols + kBlockCols - 1) / kBlockCols, k_blocks = Kp / kTileK;
    for (int64_t cb = 0; cb < col_blocks; ++cb)
        for (int64_t half = 0; half < 2; ++half)
            for (int64_t c = 0; c < kTileSide; ++c) {
                const int64_t n = cb * kBlockCols + half * kTileSide + c;
                const uint16_t * row = n < cols ? w + n * ldw : nullptr;
                for (int64_t kb = 0; kb < k_blocks; ++kb) {
                    // Tile (cb, kb, half) starts at ((cb * k_blocks + kb) * 2 + half) * 256 words.
                    uint32_t * tile = packed + ((cb * k_blocks + kb) * 2 + half) * (kTileBytes / 4);
                    for (int64_t j = 0; j < kTileSide; ++j) {
                        const int64_t k = kb * kTileK + 2 * j;
                        uint32_t pair = 0;
                        if (row && k + 1 < K) std::memcpy(&pair, row + k, 4);
                        else if (row && k < K) pair = row[k];
                        tile[j * kTileSide + c] = pair;
                    }
                }
            }
}

// Rows [m0, m0 + 32) of the split x (row stride Kp) times 32 packed columns (k_blocks tile pairs): the sums into
// `out` (32 x 32 float32, row stride 32).
void multiply_block(const uint16_t * hi, const uint16_t * lo, int64_t Kp, const uint32_t * packed_cols, float * out) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    const int64_t k_blocks = Kp / kTileK, stride = Kp * 2;
    // One part of x's 32 rows at K block kb (at `part`) into the A tiles, times the B tiles loaded for kb.
    const auto multiply_part = [&](const uint16_t * part) {
        _tile_loadd(4, part, stride);
        _tile_loadd(5, part + kTileSide * Kp, stride);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    };
    for (int64_t kb = 0; kb < k_blocks; ++kb) {
        const uint32_t * b = packed_cols + kb * 2 * (kTileBytes / 4);
        _tile_loadd(6, b, 64);
        _tile_loadd(7, b + kTileBytes / 4, 64);
        multiply_part(hi + kb * kTileK);
        if (lo) multiply_part(lo + kb * kTileK);
    }
    constexpr int64_t ld = kBlockCols * 4;
    _tile_stored(0, out, ld);
    _tile_stored(1, out + kTileSide, ld);
    _tile_stored(2, out + kTileSide * kBlockCols, ld);
    _tile_stored(3, out + kTileSide * kBlockCols + kTileSide, ld);
}

// Output columns per packed panel: about 512 KB of packed W, which stays in L2 while the rows stream past it.
int64_t panel_cols(int64_t Kp) { return std::clamp<int64_t>((int64_t(1) << 19) / (Kp * 2) / kBlockCols * kBlockCols, kBlockCols, 1024); }

}  // namespace

bool amx_usable() {
    static const bool usable = [] {
        // Linux hands out the tile data state (XFEATURE_XTILEDATA, 18) only on request (ARCH_REQ_XCOMP_PERM).
        constexpr long kReqXcompPerm = 0x1023, kXtileData = 18;
        return syscall(SYS_arch_prctl, kReqXcompPerm, kXtileData) == 0;
    }();
    return usable;
}

bool linear_gemm_amx(int num_threads, const LinearParams & p) {
    if (p.weight.dtype != DType::BF16 || !amx_usable()) return false;
    const int64_t M = p.rows, N = p.out_features, K = p.in_features;
    const int64_t Kp = (K + kTileK - 1) / kTileK * kTileK, Mp = (M + kBlockRows - 1) / kBlockRows * kBlockRows;
    const bool split = p.x.dtype != DType::BF16;

    // x as bfloat16 hi (and lo) rows of Kp, Mp rows (the padding rows zero): Mp * Kp * 2 bytes each.
    const size_t part_floats = size_t(Mp * Kp / 2);
    float * x_parts = thread_scratch(ScratchSlot::LinearInput, part_floats * (split ? 2 : 1));
    if (!x_parts) fail(MAMBA_STATUS_OUT_OF_MEMORY, "linear: no memory for the bfloat16 parts of x (", Mp * Kp * (split ? 4 : 2), " bytes)");
    uint16_t * const hi = reinterpret_cast<uint16_t *>(x_parts);
    uint16_t * const lo = split ? reinterpret_cast<uint16_t *>(x_parts + part_floats) : nullptr;
    std::atomic<bool> out_of_memory{false};
#pragma omp parallel num_threads(num_threads)
    {
        float * widened = split && p.x.dtype != DType::F32 ? thread_scratch(ScratchSlot::LinearOutput, size_t(K)) : nullptr;
        if (split && p.x.dtype != DType::F32 && !widened) out_of_memory = true;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < Mp; ++r) {
            uint16_t * h = hi + r * Kp;
            uint16_t * l = lo ? lo + r * Kp : nullptr;
            if (r >= M) {
                std::memset(h, 0, size_t(Kp) * 2);
                if (l) std::memset(l, 0, size_t(Kp) * 2);
            } else if (!split) {
                std::memcpy(h, element(p.x, {r, 0}), size_t(K) * 2);
                std::memset(h + K, 0, size_t(Kp - K) * 2);
            } else if (p.x.dtype == DType::F32) {
                split_row(reinterpret_cast<const float *>(element(p.x, {r, 0})), K, Kp, h, l);
            } else if (widened) {
                widen_to_float(p.x.dtype, element(p.x, {r, 0}), K, widened);
                split_row(widened, K, Kp, h, l);
            }
        }
    }
    if (out_of_memory) fail(MAMBA_STATUS_OUT_OF_MEMORY, "linear: no memory for a float32 row of x");

    std::vector<float> bias;
    if (p.bias) {
        bias.resize(size_t(N));
        load_floats(p.bias->dtype, p.bias->data, N, p.bias->stride[0], bias.data());
    }
    const uint16_t * const w = reinterpret_cast<const uint16_t *>(p.weight.data);
    const int64_t ldw = p.weight.stride[0];
    const int64_t width = panel_cols(Kp);
    // Column shares for the threads; where there are fewer 32-column blocks than threads, row shares too.
    const int64_t col_groups = std::min<int64_t>((N + kBlockCols - 1) / kBlockCols, num_threads);
    const int64_t row_groups = std::max<int64_t>(1, std::min<int64_t>(num_threads / col_groups, Mp / kBlockRows));
    const int tasks = int(col_groups * row_groups);
#pragma omp parallel num_threads(num_threads)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        const bool has_task = t < tasks;
        // The packed panel (width x Kp bfloat16) and one 32 x 32 float32 block of sums.
        float * scratch = has_task ? thread_scratch(ScratchSlot::LinearWeights, size_t(width * Kp / 2 + kBlockRows * kBlockCols)) : nullptr;
        if (has_task && !scratch) out_of_memory = true;
        if (scratch) {
            uint32_t * const packed = reinterpret_cast<uint32_t *>(scratch);
            float * const block = scratch + width * Kp / 2;
            configure_tiles();
            for (int task = t; task < tasks; task += nt) {
                const int64_t row_group = task % row_groups, col_group = task / row_groups;
                const int64_t row_begin = Mp / kBlockRows * row_group / row_groups * kBlockRows;
                const int64_t row_end = Mp / kBlockRows * (row_group + 1) / row_groups * kBlockRows;
                const int64_t col_begin = share_begin(N, col_group, col_groups, kBlockCols), col_end = share_begin(N, col_group + 1, col_groups, kBlockCols);
                for (int64_t n0 = col_begin; n0 < col_end; n0 += width) {
                    const int64_t cols = std::min(width, col_end - n0);
                    pack_panel(w + n0 * ldw, ldw, K, Kp, cols, packed);
                    for (int64_t m0 = row_begin; m0 < row_end; m0 += kBlockRows) {
                        const int64_t rows = std::min(kBlockRows, M - m0);
                        if (rows <= 0) break;
                        for (int64_t c0 = 0; c0 < cols; c0 += kBlockCols) {
                            const int64_t block_cols = std::min(kBlockCols, cols - c0);
                            const uint32_t * packed_cols = packed + (c0 / kBlockCols) * (Kp / kTileK) * 2 * (kTileBytes / 4);
                            multiply_block(hi + m0 * Kp, lo ? lo + m0 * Kp : nullptr, Kp, packed_cols, block);
                            for (int64_t r = 0; r < rows; ++r) {
                                float * sums = block + r * kBlockCols;
                                if (!bias.empty())
                                    for (int64_t j = 0; j < block_cols; ++j) sums[j] += bias[size_t(n0 + c0 + j)];
                                store_floats(p.y.dtype, element(p.y, {m0 + r, n0 + c0}), block_cols, 1, sums);
                            }
                        }
                    }
                }
            }
            _tile_release();
        }
    }
    if (out_of_memory) fail(MAMBA_STATUS_OUT_OF_MEMORY, "linear: no memory for the packed bfloat16 weight panels");
    return true;
}

#else

bool amx_usable() { return false; }
bool linear_gemm_amx(int, const LinearParams &) { return false; }

#endif

}  // namespace mamba::cpu
