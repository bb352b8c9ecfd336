// Register layouts of mma.sync.aligned.m16n8k16 with 16-bit operands and float32 accumulators, and the
// ldmatrix (m8n8, x4) lane addresses that produce its operand fragments, as derived from the PTX ISA's
// fragment tables. Lane l has group g = l / 4 and thread-in-group c = l % 4:
//   A (16 x 16, M x K), 4 registers of 2 halves: register r, half e -> row g + 8 (r % 2), col 2c + e + 8 (r / 2)
//   B (16 x 8,  K x N), 2 registers of 2 halves: register r, half e -> row (k) 2c + e + 8 r, col (n) g
//   D (16 x 8,  M x N), 4 floats:                element i          -> row g + 8 (i / 2), col 2c + i % 2
// ldmatrix x4: lanes 8m .. 8m+7 give the row addresses of 8 x 8 matrix m; register m of lane l receives
// row l / 4, columns 2 (l % 4) + {0, 1} of matrix m (with .trans: rows 2 (l % 4) + {0, 1}, column l / 4).
//
// Accumulator -> A operand: a 16 x 16 product held as two n8 accumulators D0 (columns 0-7) and D1
// (8-15) gives lane l rows g and g + 8 at columns 2c + {0, 1} and 8 + 2c + {0, 1}: exactly the elements
// of A's registers, register r = the pair (D_{r / 2}[2 (r % 2)], D_{r / 2}[2 (r % 2) + 1]). So a warp
// turns its C = P Q^T tile into the A operand of the next product without leaving its registers.
//
// Plain functions of the lane, host-callable, so that a host emulation can check them.
#pragma once

#if defined(__CUDACC__)
#define MAMBA_FRAG_FN __host__ __device__ __forceinline__ constexpr
#else
#define MAMBA_FRAG_FN inline constexpr
#endif

namespace mamba::cuda::frag {

// Accumulator element i (0..3) of lane l: its row and column in the 16 x 8 tile.
MAMBA_FRAG_FN int acc_row(int lane, int i) { return lane / 4 + 8 * (i / 2); }
MAMBA_FRAG_FN int acc_col(int lane, int i) { return 2 * (lane % 4) + i % 2; }

// A operand register r (0..3) of the 16 x 16 tile built from two accumulators: which accumulator (0:
// columns 0-7, 1: columns 8-15) and which of its elements go to the low and high halves.
MAMBA_FRAG_FN int a_from_acc_tile(int r) { return r / 2; }
MAMBA_FRAG_FN int a_from_acc_elem(int r, int half) { return 2 * (r % 2) + half; }

// A operand register r, half e (0, 1) of lane l: its column in the 16 x 16 tile (its row, g + 8 (r % 2),
// is the accumulators' row: see the table above).
MAMBA_FRAG_FN int a_col(int lane, int r, int e) { return 2 * (lane % 4) + e + 8 * (r / 2); }

// ldmatrix x4 .trans for the A operand of a tile stored K-major ([k][m], m contiguous: A = Y^T for a
// row-major Y): matrices (k 0-7, m 0-7), (k 0-7, m 8-15), (k 8-15, m 0-7), (k 8-15, m 8-15) = a0..a3.
MAMBA_FRAG_FN int ldsm_at_row(int lane) { return lane % 8 + 8 * (lane / 16); }  // k
MAMBA_FRAG_FN int ldsm_at_col(int lane) { return 8 * ((lane / 8) % 2); }       // m

// ldmatrix x4 row address (row, column of the 16 x 16 tile) of lane l for the A operand of a row-major
// (M rows, K contiguous) tile: matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15),
// (rows 8-15, k 8-15) = registers a0..a3.
MAMBA_FRAG_FN int ldsm_a_row(int lane) { return lane % 16; }
MAMBA_FRAG_FN int ldsm_a_col(int lane) { return 8 * (lane / 16); }

// ldmatrix x4 (no transpose) for the B operands of two n8 tiles stored N-major ([n][k], k contiguous:
// B = Y^T for a row-major Y): matrices (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15)
// = registers b0, b1 of the first n8 tile, then b0, b1 of the second.
MAMBA_FRAG_FN int ldsm_bt_row(int lane) { return lane % 8 + 8 * (lane / 16); }  // n
MAMBA_FRAG_FN int ldsm_bt_col(int lane) { return 8 * ((lane / 8) % 2); }       // k

// ldmatrix x4 .trans for the B operands of two n8 tiles stored K-major ([k][n], n contiguous): matrices
// (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15), same register order as above.
MAMBA_FRAG_FN int ldsm_b_row(int lane) { return lane % 8 + 8 * ((lane / 8) % 2); }  // k
MAMBA_FRAG_FN int ldsm_b_col(int lane) { return 8 * (lane / 16); }                // n

}  // namespace mamba::cuda::frag

#undef MAMBA_FRAG_FN
