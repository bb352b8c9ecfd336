// Launch overhead: a chain of tiny kernels the size of a mamba-130m decode step (24 layers x 7 ops = 168
// launches of an RMSNorm over one 768-wide row), run call by call and replayed as one captured graph.
// The bytes are negligible, so the difference between the two rows is what graphs save per decode step.
// Skipped on a CPU context (no graphs there).
#include <memory>

#include "bench.h"

namespace {

constexpr int kLaunches = 168;
constexpr int64_t kHidden = 768;

struct Chain {
    mamba_rms_norm_args a{};
    void run(mamba_context * ctx) const {
        for (int i = 0; i < kLaunches; ++i) mb::check(mamba_rms_norm(ctx, &a), "mamba_rms_norm");
    }
};

Chain make_chain(mb::Bench & b, double & bytes, double & flops) {
    Chain c;
    c.a.x = b.tensor({1, kHidden}, mb::kF32);
    c.a.weight = b.tensor({kHidden}, mb::kF32);
    c.a.y = b.tensor({1, kHidden}, mb::kF32);
    c.a.eps = 1e-5f;
    bytes = double(kLaunches) * double(kHidden) * 4 * 3;
    flops = double(kLaunches) * double(kHidden) * 4;
    return c;
}

mb::Register eager("cuda launch chain 168 x rms_norm f32 1x768, direct calls", [](mb::Bench & b, double & bytes, double & flops) -> std::function<void()> {
    if (!b.on_cuda()) return {};
    const Chain c = make_chain(b, bytes, flops);
    return [&b, c] { c.run(b.ctx()); };
});

mb::Register replay("cuda launch chain 168 x rms_norm f32 1x768, graph replay", [](mb::Bench & b, double & bytes, double & flops) -> std::function<void()> {
    if (!b.on_cuda()) return {};
    const Chain c = make_chain(b, bytes, flops);
    c.run(b.ctx());  // warm-up: kernels loaded, workspace sized
    mb::check(mamba_graph_capture_begin(b.ctx()), "mamba_graph_capture_begin");
    c.run(b.ctx());
    mamba_graph * raw = nullptr;
    mb::check(mamba_graph_capture_end(b.ctx(), &raw), "mamba_graph_capture_end");
    std::shared_ptr<mamba_graph> graph(raw, mamba_graph_free);
    return [&b, graph] { mb::check(mamba_graph_launch(b.ctx(), graph.get()), "mamba_graph_launch"); };
});

}  // namespace
