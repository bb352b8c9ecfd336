// mamba_norm_linear at decode shapes, batch 1, bf16: the norm fused into the GEMV ("fused") against the
// norm and the linear as two kernels ("separate"; MAMBA_CUDA_NORM_LINEAR forces either), each as the
// replay of a captured graph of back-to-back calls cycling through copies of W (cold: ~4x the H200's L2),
// as a captured decode step runs them. The fused call saves one kernel (its launch gap and its own
// load -> reduce -> store latency); the floor is the weight bytes over the copy bandwidth ("% copy").
//   mamba2-2.7b out_proj: gated RMSNorm over d_inner 5120 (x, z bf16) + out_proj 5120 -> 2560.
//   mamba-2.8b in_proj: add + RMSNorm over 2560 (residual float32) + in_proj 2560 -> 10240.
// Skipped on a CPU context.
#include <algorithm>
#include <memory>

#include "bench.h"

namespace {

constexpr double kColdBytes = 192.0 * (1 << 20);

enum class Norm { Gated, Rms };

std::function<void()> norm_linear_case(mb::Bench & b, double & bytes, double & flops, Norm norm, int64_t hidden, int64_t out, const char * mode) {
    if (!b.on_cuda()) return {};
    const double weight_bytes = double(out * hidden) * 2;
    const int copies = std::max(1, int(kColdBytes / weight_bytes + 0.999));
    const int calls = std::max(copies, 8);
    // Norm inputs and outputs shared by the calls (each call's norm reads the same x).
    DLTensor * x = b.tensor({1, hidden}, mb::kBF16);
    DLTensor * other = b.tensor({1, hidden}, norm == Norm::Gated ? mb::kBF16 : mb::kF32);  // z, or the residual
    DLTensor * norm_w = b.tensor({hidden}, mb::kBF16, 0.5, 1.5);
    DLTensor * normed = b.tensor({1, hidden}, mb::kBF16);
    DLTensor * residual_out = b.tensor({1, hidden}, mb::kF32);
    DLTensor * y = b.tensor({1, out}, mb::kBF16);
    auto rms = std::make_shared<mamba_rms_norm_args>();
    auto gated = std::make_shared<mamba_gated_rms_norm_args>();
    rms->x = gated->x = x;
    rms->weight = gated->weight = norm_w;
    rms->y = gated->y = normed;
    rms->eps = gated->eps = 1e-5f;
    rms->residual = other;
    rms->residual_out = residual_out;
    gated->z = other;
    std::vector<mamba_norm_linear_args> args;
    for (int c = 0; c < copies; ++c) {
        mamba_norm_linear_args a{};
        if (norm == Norm::Rms) a.rms_norm = rms.get();
        else a.gated_rms_norm = gated.get();
        a.weight = b.tensor({out, hidden}, mb::kBF16, -0.05, 0.05);
        a.y = y;
        args.push_back(a);
    }
    mamba_graph * raw = nullptr;
    {
        const mb::ScopedEnv forced("MAMBA_CUDA_NORM_LINEAR", mode);
        for (const mamba_norm_linear_args & a : args) mb::check(mamba_norm_linear(b.ctx(), &a), "mamba_norm_linear");  // kernels loaded
        mb::check(mamba_graph_capture_begin(b.ctx()), "mamba_graph_capture_begin");
        for (int c = 0; c < calls; ++c) mb::check(mamba_norm_linear(b.ctx(), &args[size_t(c % copies)]), "mamba_norm_linear");
        mb::check(mamba_graph_capture_end(b.ctx(), &raw), "mamba_graph_capture_end");
    }
    std::shared_ptr<mamba_graph> graph(raw, mamba_graph_free);
    bytes = double(calls) * (weight_bytes + double(hidden) * (2 + 2 + 2 + 2) + double(out) * 2);
    flops = double(calls) * 2.0 * double(out) * double(hidden);
    // The argument structs the args point into stay alive with the graph's lambda (not needed by a
    // replay, which has its arguments baked in, but kept for clarity of ownership).
    return [&b, graph, rms, gated] { mb::check(mamba_graph_launch(b.ctx(), graph.get()), "mamba_graph_launch"); };
}

const bool registered = [] {
    for (const char * mode : {"separate", "fused"}) {
        const std::string m = mode;
        mb::registry().push_back({"norm_linear graph mamba2-2.7b gated_rms_norm 5120 + out_proj 5120->2560 bf16 rows=1 " + m,
                                  [mode](mb::Bench & b, double & bytes, double & flops) { return norm_linear_case(b, bytes, flops, Norm::Gated, 5120, 2560, mode); }});
        mb::registry().push_back({"norm_linear graph mamba-2.8b add+rms_norm 2560 + in_proj 2560->10240 bf16 rows=1 " + m,
                                  [mode](mb::Bench & b, double & bytes, double & flops) { return norm_linear_case(b, bytes, flops, Norm::Rms, 2560, 10240, mode); }});
    }
    return true;
}();

}  // namespace
