// GPU-only cases at the sizes of large Mamba models: the selective scan, SSD and the two decode steps,
// next to a cuBLAS bf16 GEMM measured the same way (the matrix ceiling; the copy row is the memory
// ceiling). Inputs that would fit in L2 are rotated over several copies so that timings see HBM.
// Bytes are the fewest each op must move (inputs read once, outputs written once); FLOPs are stated
// per case. Skipped on a CPU context.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bench.h"
#include "core/dl_view.h"

namespace {

// ---- ceilings ------------------------------------------------------------------------------------

mb::Register gemm("cuda gemm bf16 8192x8192x8192 (cuBLAS via mamba_linear)", [](mb::Bench & b, double & bytes, double & flops) -> std::function<void()> {
    if (!b.on_cuda()) return {};
    const int64_t n = 8192;
    mamba_linear_args a{};
    a.x = b.tensor({n, n}, mb::kBF16);
    a.weight = b.tensor({n, n}, mb::kBF16);
    a.y = b.tensor({n, n}, mb::kBF16);
    bytes = 3.0 * double(n * n) * 2;
    flops = 2.0 * double(n) * double(n) * double(n);
    return [&b, a] { mb::check(mamba_linear(b.ctx(), &a), "mamba_linear"); };
});

// ---- Mamba-1 selective scan ----------------------------------------------------------------------

// variant: the MAMBA_CUDA_SCAN_VARIANT kernel (nullptr: the library default).
std::function<void()> scan_case(mb::Bench & b, double & bytes, double & flops, int64_t B, int64_t D, int64_t L, int64_t N, const char * variant = nullptr) {
    if (!b.on_cuda()) return {};
    mamba_selective_scan_args a{};
    a.u = b.tensor({B, D, L}, mb::kBF16);
    a.delta = b.tensor({B, D, L}, mb::kBF16);
    a.A = b.tensor({D, N}, mb::kF32, -8.0, -0.5);
    a.B = b.tensor({B, 1, N, L}, mb::kBF16);
    a.C = b.tensor({B, 1, N, L}, mb::kBF16);
    a.D = b.tensor({D}, mb::kF32);
    a.z = b.tensor({B, D, L}, mb::kBF16);
    a.delta_bias = b.tensor({D}, mb::kF32, -4.0, -2.0);
    a.y = b.tensor({B, D, L}, mb::kBF16);
    a.delta_softplus = 1;
    bytes = double(B * D * L) * 2 * 4 + double(B * N * L) * 2 * 2 + double(D * N) * 4;
    // exp2, two FMAs for h and one for y per state and step
    flops = double(B * D * L) * double(N) * 6;
    if (variant == nullptr) return [&b, a] { mb::check(mamba_selective_scan(b.ctx(), &a), "mamba_selective_scan"); };
    return [&b, a, variant] {
        const mb::ScopedEnv forced("MAMBA_CUDA_SCAN_VARIANT", variant);
        mb::check(mamba_selective_scan(b.ctx(), &a), "mamba_selective_scan");
    };
}

mb::Register scan_b8("cuda selective_scan bf16 B8 D5120 L2048 N16 z bias softplus",
                     [](mb::Bench & b, double & bytes, double & flops) { return scan_case(b, bytes, flops, 8, 5120, 2048, 16); });
mb::Register scan_b1("cuda selective_scan bf16 B1 D5120 L2048 N16 z bias softplus",
                     [](mb::Bench & b, double & bytes, double & flops) { return scan_case(b, bytes, flops, 1, 5120, 2048, 16); });
mb::Register scan_long("cuda selective_scan bf16 B1 D5120 L16384 N16 z bias softplus",
                       [](mb::Bench & b, double & bytes, double & flops) { return scan_case(b, bytes, flops, 1, 5120, 16384, 16); });

// Each kernel of the contiguous channel path side by side; the cases above run the library default.
#define MAMBA_SCAN_VARIANT_CASES(tag)                                                                                                        \
    mb::Register scan_b8_##tag("cuda selective_scan bf16 B8 D5120 L2048 N16 z bias softplus v=" #tag,                                          \
                               [](mb::Bench & b, double & bytes, double & flops) { return scan_case(b, bytes, flops, 8, 5120, 2048, 16, #tag); }); \
    mb::Register scan_long_##tag("cuda selective_scan bf16 B1 D5120 L16384 N16 z bias softplus v=" #tag,                                     \
                                 [](mb::Bench & b, double & bytes, double & flops) { return scan_case(b, bytes, flops, 1, 5120, 16384, 16, #tag); });
MAMBA_SCAN_VARIANT_CASES(base)
MAMBA_SCAN_VARIANT_CASES(split)
MAMBA_SCAN_VARIANT_CASES(duo)
#undef MAMBA_SCAN_VARIANT_CASES


// ---- Mamba-2 SSD ---------------------------------------------------------------------------------

std::function<void()> ssd_case(mb::Bench & b, double & bytes, double & flops, int64_t B, int64_t L, int64_t H, int64_t P, int64_t G, int64_t N,
                               int64_t chunk, bool gated = false, const char * state_kernel = nullptr) {
    if (!b.on_cuda()) return {};
    mamba_ssd_args a{};
    a.x = b.tensor({B, L, H, P}, mb::kBF16);
    if (gated) a.z = b.tensor({B, L, H, P}, mb::kBF16);
    a.dt = b.tensor({B, L, H}, mb::kBF16);
    a.A = b.tensor({H}, mb::kF32, -8.0, -1.0);
    a.B = b.tensor({B, L, G, N}, mb::kBF16);
    a.C = b.tensor({B, L, G, N}, mb::kBF16);
    a.D = b.tensor({H}, mb::kF32);
    a.dt_bias = b.tensor({H}, mb::kF32, -4.0, -2.0);
    a.y = b.tensor({B, L, H, P}, mb::kBF16);
    a.chunk_size = chunk;
    a.dt_min = 0.0f;
    a.dt_max = 1e30f;
    a.dt_softplus = 1;
    bytes = double(B * L * H * P) * 2 * (gated ? 3 : 2) + double(B * L * G * N) * 2 * 2 + double(B * L * H) * 2;
    // The chunked algorithm's matrix work per head and chunk of Q steps: C B^T (Q*Q*N), its product
    // with x (Q*Q*P), the chunk state B^T x (Q*N*P) and its contribution C * state (Q*N*P); 2 FLOPs each.
    const double Q = double(chunk);
    flops = 2.0 * double(B * L * H) * (Q * double(N) / 2 + Q * double(P) / 2 + 2.0 * double(N * P));
    // state_kernel: MAMBA_CUDA_SSD_STATE for this case's calls only
    // (null: the environment as it is, so the unlabeled cases run the library's choice or what the caller
    // forces, as the scan cases do).
    if (state_kernel == nullptr) return [&b, a] { mb::check(mamba_ssd(b.ctx(), &a), "mamba_ssd"); };
    return [&b, a, state_kernel] {
        const mb::ScopedEnv state("MAMBA_CUDA_SSD_STATE", state_kernel);
        mb::check(mamba_ssd(b.ctx(), &a), "mamba_ssd");
    };
}

mb::Register ssd_b8("cuda ssd bf16 B8 L2048 H80 P64 N128 G1 chunk256",
                    [](mb::Bench & b, double & bytes, double & flops) { return ssd_case(b, bytes, flops, 8, 2048, 80, 64, 1, 128, 256); });
mb::Register ssd_b1("cuda ssd bf16 B1 L2048 H80 P64 N128 G1 chunk256",
                    [](mb::Bench & b, double & bytes, double & flops) { return ssd_case(b, bytes, flops, 1, 2048, 80, 64, 1, 128, 256); });
// With the silu(z) gate, as Mamba-2 layers call it.
mb::Register ssd_b8_z("cuda ssd bf16 B8 L2048 H80 P64 N128 G1 chunk256 z",
                      [](mb::Bench & b, double & bytes, double & flops) { return ssd_case(b, bytes, flops, 8, 2048, 80, 64, 1, 128, 256, true); });
mb::Register ssd_b1_z("cuda ssd bf16 B1 L2048 H80 P64 N128 G1 chunk256 z",
                      [](mb::Bench & b, double & bytes, double & flops) { return ssd_case(b, bytes, flops, 1, 2048, 80, 64, 1, 128, 256, true); });
// The chunk-parallel path's state kernel forced (ssd_chunk_parallel.cu; MAMBA_CUDA_SSD_STATE, null = the
// library's choice), against the automatic choice of the cases above (pair at B8, twopass at B1 on an H200).
// Without z is how the Mamba-2 mixer calls it (the gate is applied by the gated RMS norm after it). The one
// output kernel runs in every case (its gated build with z).
#define MAMBA_SSD_KERNEL_CASES(tag, label, state)                                                                                \
    mb::Register ssd_b8_z_##tag("cuda ssd bf16 B8 L2048 H80 P64 N128 G1 chunk256 z " label,                                              \
                                [](mb::Bench & b, double & bytes, double & flops) { return ssd_case(b, bytes, flops, 8, 2048, 80, 64, 1, 128, 256, true, state); }); \
    mb::Register ssd_b1_z_##tag("cuda ssd bf16 B1 L2048 H80 P64 N128 G1 chunk256 z " label,                                              \
                                [](mb::Bench & b, double & bytes, double & flops) { return ssd_case(b, bytes, flops, 1, 2048, 80, 64, 1, 128, 256, true, state); }); \
    mb::Register ssd_b8_##tag("cuda ssd bf16 B8 L2048 H80 P64 N128 G1 chunk256 " label,                                                  \
                              [](mb::Bench & b, double & bytes, double & flops) { return ssd_case(b, bytes, flops, 8, 2048, 80, 64, 1, 128, 256, false, state); }); \
    mb::Register ssd_b1_##tag("cuda ssd bf16 B1 L2048 H80 P64 N128 G1 chunk256 " label,                                                  \
                              [](mb::Bench & b, double & bytes, double & flops) { return ssd_case(b, bytes, flops, 1, 2048, 80, 64, 1, 128, 256, false, state); });
MAMBA_SSD_KERNEL_CASES(state_pair, "state=pair", "pair")
MAMBA_SSD_KERNEL_CASES(state_twopass, "state=twopass", "twopass")
#undef MAMBA_SSD_KERNEL_CASES
// 40 heads of 64 channels: 80 blocks of 32 channels on a 132-SM GPU (the chunked kernel's middle tile).
mb::Register ssd_b1_h40("cuda ssd bf16 B1 L2048 H40 P64 N128 G1 chunk256",
                        [](mb::Bench & b, double & bytes, double & flops) { return ssd_case(b, bytes, flops, 1, 2048, 40, 64, 1, 128, 256); });
mb::Register ssd_long("cuda ssd bf16 B4 L8192 H128 P64 N128 G8 chunk256",
                      [](mb::Bench & b, double & bytes, double & flops) { return ssd_case(b, bytes, flops, 4, 8192, 128, 64, 8, 128, 256); });

// ---- decode steps ----------------------------------------------------------------------------------

// Mamba-2: B64 H80 P64 N128, float32 state (335 MB: larger than L2, no rotation needed).
std::function<void()> ssd_update_case(mb::Bench & b, double & bytes, double & flops) {
    if (!b.on_cuda()) return {};
    const int64_t B = 64, H = 80, P = 64, N = 128, G = 1;
    mamba_ssd_state_update_args a{};
    a.state = b.tensor({B, H, P, N}, mb::kF32);
    a.x = b.tensor({B, H, P}, mb::kBF16);
    a.dt = b.tensor({B, H}, mb::kBF16);
    a.A = b.tensor({H}, mb::kF32, -8.0, -1.0);
    a.B = b.tensor({B, G, N}, mb::kBF16);
    a.C = b.tensor({B, G, N}, mb::kBF16);
    a.D = b.tensor({H}, mb::kF32);
    a.dt_bias = b.tensor({H}, mb::kF32, -4.0, -2.0);
    a.y = b.tensor({B, H, P}, mb::kBF16);
    a.dt_min = 0.0f;
    a.dt_max = 1e30f;
    a.dt_softplus = 1;
    bytes = double(B * H * P * N) * 4 * 2 + double(B * H * P) * 2 * 2 + double(B * G * N) * 2 * 2;
    flops = double(B * H * P * N) * 4;
    return [&b, a] { mb::check(mamba_ssd_state_update(b.ctx(), &a), "mamba_ssd_state_update"); };
}

mb::Register ssd_update("cuda ssd_state_update B64 H80 P64 N128 f32 state",
                        [](mb::Bench & b, double & bytes, double & flops) { return ssd_update_case(b, bytes, flops); });

// The Mamba-2 decode step at smaller batches, its state read from HBM at every call as in a decode step
// (every other layer's state passes through L2 before a layer's state is touched again): B1 H80
// (mamba2-2.7b, 2.6 MB of state) and B16 H24 (mamba2-130m batched, 12.6 MB) fit in L2, so enough state
// sets rotate (>= 160 MB). (B64 H80, 335 MB, is the case above.)
std::function<void()> ssd_update_cold_case(mb::Bench & b, double & bytes, double & flops, int64_t B, int64_t H) {
    if (!b.on_cuda()) return {};
    const int64_t P = 64, N = 128, G = 1;
    const double state_bytes = double(B * H * P * N) * 4;
    const int64_t sets = std::max<int64_t>(1, int64_t(std::ceil(160e6 / state_bytes)));
    const DLTensor * A = b.tensor({H}, mb::kF32, -8.0, -1.0);
    const DLTensor * D = b.tensor({H}, mb::kF32);
    const DLTensor * bias = b.tensor({H}, mb::kF32, -4.0, -2.0);
    std::vector<mamba_ssd_state_update_args> args(static_cast<size_t>(sets));
    for (auto & a : args) {
        a.state = b.tensor({B, H, P, N}, mb::kF32);
        a.x = b.tensor({B, H, P}, mb::kBF16);
        a.dt = b.tensor({B, H}, mb::kBF16);
        a.A = A;
        a.B = b.tensor({B, G, N}, mb::kBF16);
        a.C = b.tensor({B, G, N}, mb::kBF16);
        a.D = D;
        a.dt_bias = bias;
        a.y = b.tensor({B, H, P}, mb::kBF16);
        a.dt_min = 0.0f;
        a.dt_max = 1e30f;
        a.dt_softplus = 1;
    }
    bytes = state_bytes * 2 + double(B * H * P) * 2 * 2 + double(B * G * N) * 2 * 2;
    flops = double(B * H * P * N) * 4;
    auto next = std::make_shared<size_t>(0);
    return [&b, args, next] {
        const auto & a = args[(*next)++ % args.size()];
        mb::check(mamba_ssd_state_update(b.ctx(), &a), "mamba_ssd_state_update");
    };
}

mb::Register ssd_update_b1_cold("cuda ssd_state_update B1 H80 P64 N128 f32 state cold",
                                [](mb::Bench & b, double & bytes, double & flops) { return ssd_update_cold_case(b, bytes, flops, 1, 80); });
mb::Register ssd_update_b16_cold("cuda ssd_state_update B16 H24 P64 N128 f32 state cold",
                                 [](mb::Bench & b, double & bytes, double & flops) { return ssd_update_cold_case(b, bytes, flops, 16, 24); });

// Mamba-1 selective_state_update, D5120 N16 f32 state and bf16 activations: `sets` independent sets of
// states and activations rotate so that each call reads its state from HBM, not from the 50-60 MB L2.
// dt_rank > 0: the fused dt projection, with a bf16 (D, dt_rank) weight per set and dt the (B, dt_rank)
// first columns of a (B, dt_rank + 2N) x_proj output, as in the model.
std::function<void()> scan_update_case(mb::Bench & b, double & bytes, double & flops, int64_t B, int64_t sets, int64_t dt_rank = 0) {
    if (!b.on_cuda()) return {};
    const int64_t D = 5120, N = 16;
    std::vector<mamba_selective_state_update_args> args(static_cast<size_t>(sets));
    // The dt views into the x_proj outputs, kept alive (at fixed addresses) by the timed function.
    auto views = std::make_shared<std::vector<mamba::DLView>>(static_cast<size_t>(dt_rank > 0 ? sets : 0));
    const DLTensor * A = b.tensor({D, N}, mb::kF32, -8.0, -0.5);
    const DLTensor * Dv = b.tensor({D}, mb::kF32);
    const DLTensor * bias = b.tensor({D}, mb::kF32, -4.0, -2.0);
    for (size_t i = 0; i < args.size(); ++i) {
        auto & a = args[i];
        a.state = b.tensor({B, D, N}, mb::kF32);
        a.x = b.tensor({B, D}, mb::kBF16);
        a.dt = b.tensor({B, D}, mb::kBF16);
        a.A = A;
        a.B = b.tensor({B, 1, N}, mb::kBF16);
        a.C = b.tensor({B, 1, N}, mb::kBF16);
        a.D = Dv;
        a.z = b.tensor({B, D}, mb::kBF16);
        a.dt_bias = bias;
        a.y = b.tensor({B, D}, mb::kBF16);
        a.dt_softplus = 1;
        if (dt_rank > 0) {
            const int64_t width = dt_rank + 2 * N;
            mamba::DLView & v = (*views)[i];
            v.bind(b.tensor({B, width}, mb::kBF16), {B, dt_rank}, {width, 1}, 0);
            a.dt = &v.dl;
            a.dt_proj_weight = b.tensor({D, dt_rank}, mb::kBF16, -0.1, 0.1);
        }
    }
    bytes = double(B * D * N) * 4 * 2 + double(B * D) * 2 * 4 + double(D * N) * 4;
    flops = double(B * D * N) * 4;
    if (dt_rank > 0) {
        bytes += double(D * dt_rank) * 2 + double(B * dt_rank) * 2 - double(B * D) * 2;
        flops += 2.0 * double(B * D * dt_rank);
    }
    auto next = std::make_shared<size_t>(0);
    return [&b, args, next, views] {
        const auto & a = args[(*next)++ % args.size()];
        mb::check(mamba_selective_state_update(b.ctx(), &a), "mamba_selective_state_update");
    };
}

// B1: one state is 320 KiB, so 256 copies (80 MiB) rotate.
mb::Register scan_update("cuda selective_state_update B1 D5120 N16 f32 state (256 rotating sets)",
                         [](mb::Bench & b, double & bytes, double & flops) { return scan_update_case(b, bytes, flops, 1, 256); });

// B64 batched decode: a 21 MB state; 4 sets (84 MB) rotate.
mb::Register scan_update_b64("cuda selective_state_update B64 D5120 N16 f32 state (4 rotating sets)",
                             [](mb::Bench & b, double & bytes, double & flops) { return scan_update_case(b, bytes, flops, 64, 4); });

// The same with the dt projection fused (mamba-2.8b: dt_rank 160); compare with the cases above plus
// "linear gemv mamba-2.8b bf16 W 5120x160 (dt_proj) rows=1", the kernel it replaces.
mb::Register scan_update_fused("cuda selective_state_update B1 D5120 N16 fused dt_proj R160 bf16 W f32 state (256 rotating sets)",
                               [](mb::Bench & b, double & bytes, double & flops) { return scan_update_case(b, bytes, flops, 1, 256, 160); });
mb::Register scan_update_fused_b64("cuda selective_state_update B64 D5120 N16 fused dt_proj R160 bf16 W f32 state (4 rotating sets)",
                                   [](mb::Bench & b, double & bytes, double & flops) { return scan_update_case(b, bytes, flops, 64, 4, 160); });
// Batched decode's rows (the model fuses dt_proj up to 8 sequences): MAMBA_CUDA_UPDATE_ROWS compares the rows kernel with
// the one-row kernel; beyond 8 sequences the model runs dt_proj on its own and the update without it (the B16 case
// above). 2.6 MB of state at 8 rows; 64 / 32 / 16 sets (84 MB) rotate.
mb::Register scan_update_b16("cuda selective_state_update B16 D5120 N16 f32 state (16 rotating sets)",
                             [](mb::Bench & b, double & bytes, double & flops) { return scan_update_case(b, bytes, flops, 16, 16); });
mb::Register scan_update_fused_b4("cuda selective_state_update B4 D5120 N16 fused dt_proj R160 bf16 W f32 state (64 rotating sets)",
                                  [](mb::Bench & b, double & bytes, double & flops) { return scan_update_case(b, bytes, flops, 4, 64, 160); });
mb::Register scan_update_fused_b8("cuda selective_state_update B8 D5120 N16 fused dt_proj R160 bf16 W f32 state (32 rotating sets)",
                                  [](mb::Bench & b, double & bytes, double & flops) { return scan_update_case(b, bytes, flops, 8, 32, 160); });
mb::Register scan_update_fused_b16("cuda selective_state_update B16 D5120 N16 fused dt_proj R160 bf16 W f32 state (16 rotating sets)",
                                   [](mb::Bench & b, double & bytes, double & flops) { return scan_update_case(b, bytes, flops, 16, 16, 160); });

}  // namespace
