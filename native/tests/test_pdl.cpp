// Programmatic Dependent Launch (sm_90+): a chain of dependent decode kernels run with PDL gives exactly
// what the same chain gives with PDL off (MAMBA_CUDA_PDL=0 when the context is created), directly and
// replayed from a captured graph. Every op of the chain reads what the previous one wrote and the
// recurrent states are updated in place, so a kernel that touched its inputs before waiting for its
// producer would read stale values and the results would drift apart. The kernels are deterministic, so
// the comparison is exact. A CPU context has no PDL (both contexts would run the same code and could only
// agree), so the CPU instances are skipped, and so are the CUDA ones on a GPU below sm_90 (no PDL there).
#include <cmath>
#include <string>

#include "backend_test.h"
#include "core/dl_view.h"

namespace {

using mt::DType;
using mt::Tensor;

// A context created with MAMBA_CUDA_PDL set to "1" or "0" (read once, when the context is created); the
// variable is restored afterwards.
mt::ContextPtr context_with_pdl(mamba_device_type type, bool pdl) {
    const mt::ScopedEnv scoped("MAMBA_CUDA_PDL", pdl ? "1" : "0");
    return mt::make_context(type);
}

using View = mamba::DLView;  // core/dl_view.h

// A decode-like chain on one context: per layer, add + RMSNorm -> in_proj -> conv step -> x_proj ->
// dt_proj -> selective state update -> SSD state update -> gated RMSNorm -> out_proj, batch 2, bf16
// weights, float32 activations: every decode-path kernel, each feeding the next.
struct Chain {
    static constexpr int64_t kBatch = 2, kHidden = 512, kInner = 1024, kState = 16, kRank = 32, kWidth = 4, kLayers = 6;
    static constexpr int64_t kHeads = 16, kHeadDim = kInner / kHeads, kXdbl = kRank + 2 * kState;

    mamba_context * ctx = nullptr;
    Tensor hidden{{kBatch, kHidden}, DType::F32}, residual{{kBatch, kHidden}, DType::F32}, norm_w{{kHidden}, DType::F32};
    Tensor normed{{kBatch, kHidden}, DType::F32}, xz{{kBatch, 2 * kInner}, DType::F32}, xc{{kBatch, kInner}, DType::F32};
    Tensor xdbl{{kBatch, kXdbl}, DType::F32}, dt{{kBatch, kInner}, DType::F32}, y1{{kBatch, kInner}, DType::F32};
    Tensor y2{{kBatch, kHeads, kHeadDim}, DType::F32}, gated{{kBatch, kInner}, DType::F32};
    Tensor conv_w{{kInner, kWidth}, DType::F32}, conv_b{{kInner}, DType::F32}, A{{kInner, kState}, DType::F32}, D{{kInner}, DType::F32};
    Tensor dt_bias{{kInner}, DType::F32}, A2{{kHeads}, DType::F32}, D2{{kHeads}, DType::F32}, dt_bias2{{kHeads}, DType::F32};
    Tensor gate_w{{kInner}, DType::F32};
    std::vector<Tensor> w_in, w_x, w_dt, w_out, conv_state, ssm_state, ssd_state;
    View x_half, z_half, dt_in, B, C, ssd_x, ssd_dt, y2_flat;

    explicit Chain(mamba_context * c) : ctx(c) {
        for (int64_t l = 0; l < kLayers; ++l) {
            w_in.emplace_back(std::vector<int64_t>{2 * kInner, kHidden}, DType::BF16);
            w_x.emplace_back(std::vector<int64_t>{kXdbl, kInner}, DType::BF16);
            w_dt.emplace_back(std::vector<int64_t>{kInner, kRank}, DType::BF16);
            w_out.emplace_back(std::vector<int64_t>{kHidden, kInner}, DType::BF16);
            conv_state.emplace_back(std::vector<int64_t>{kBatch, kInner, kWidth - 1}, DType::F32);
            ssm_state.emplace_back(std::vector<int64_t>{kBatch, kInner, kState}, DType::F32);
            ssd_state.emplace_back(std::vector<int64_t>{kBatch, kHeads, kHeadDim, kState}, DType::F32);
        }
    }

    // The same values for every chain built from the same seed; activations poisoned.
    void upload(uint64_t seed) {
        std::mt19937_64 rng(seed);
        auto up = [&](Tensor & t, double lo, double hi) {
            t.fill_uniform(rng, lo, hi);
            t.upload(ctx);
        };
        up(hidden, -1, 1);
        up(residual, -1, 1);
        up(norm_w, 0.5, 1.5);
        up(conv_w, -0.5, 0.5);
        up(conv_b, -0.2, 0.2);
        up(A, -2.0, -0.5);
        up(D, -1, 1);
        up(dt_bias, -3.0, -1.0);
        up(A2, -2.0, -0.5);
        up(D2, -1, 1);
        up(dt_bias2, -3.0, -1.0);
        up(gate_w, 0.5, 1.5);
        for (int64_t l = 0; l < kLayers; ++l) {
            // Uniform in +-sqrt(3 / fan_in): unit-variance outputs for unit-variance inputs.
            up(w_in[l], -std::sqrt(3.0 / kHidden), std::sqrt(3.0 / kHidden));
            up(w_x[l], -std::sqrt(3.0 / kInner), std::sqrt(3.0 / kInner));
            up(w_dt[l], -std::sqrt(3.0 / kRank), std::sqrt(3.0 / kRank));
            up(w_out[l], -std::sqrt(3.0 / kInner), std::sqrt(3.0 / kInner));
        }
        reset_states(seed + 1);
        for (Tensor * t : {&normed, &xz, &xc, &xdbl, &dt, &y1, &y2, &gated}) t->upload_poisoned(ctx);
        x_half.bind(xz.dl(), {kBatch, kInner}, {2 * kInner, 1}, 0);
        z_half.bind(xz.dl(), {kBatch, kInner}, {2 * kInner, 1}, kInner);
        dt_in.bind(xdbl.dl(), {kBatch, kRank}, {kXdbl, 1}, 0);
        B.bind(xdbl.dl(), {kBatch, 1, kState}, {kXdbl, kState, 1}, kRank);
        C.bind(xdbl.dl(), {kBatch, 1, kState}, {kXdbl, kState, 1}, kRank + kState);
        ssd_x.bind(y1.dl(), {kBatch, kHeads, kHeadDim}, {kInner, kHeadDim, 1}, 0);
        ssd_dt.bind(xdbl.dl(), {kBatch, kHeads}, {kXdbl, 1}, 0);
        y2_flat.bind(y2.dl(), {kBatch, kInner}, {kInner, 1}, 0);
    }

    // New recurrent states (and a new input): the same for every chain given the same seed.
    void reset_states(uint64_t seed) {
        std::mt19937_64 rng(seed);
        hidden.fill_uniform(rng, -1, 1);
        hidden.upload(ctx);
        residual.fill_uniform(rng, -1, 1);
        residual.upload(ctx);
        for (int64_t l = 0; l < kLayers; ++l) {
            conv_state[l].fill_uniform(rng, -1, 1);
            conv_state[l].upload(ctx);
            ssm_state[l].fill_uniform(rng, -0.5, 0.5);
            ssm_state[l].upload(ctx);
            ssd_state[l].fill_uniform(rng, -0.5, 0.5);
            ssd_state[l].upload(ctx);
        }
    }

    // Queues one step of every layer; returns the first failing status.
    mamba_status step() {
        mamba_status s = MAMBA_STATUS_OK;
        for (int64_t l = 0; l < kLayers && s == MAMBA_STATUS_OK; ++l) s = layer(l);
        return s;
    }

    mamba_status layer(int64_t l) {
        mamba_rms_norm_args n{};
        n.x = hidden.dl();
        n.residual = residual.dl();
        n.weight = norm_w.dl();
        n.y = normed.dl();
        n.residual_out = residual.dl();
        n.eps = 1e-5f;
        mamba_status s = mamba_rms_norm(ctx, &n);
        if (s != MAMBA_STATUS_OK) return s;
        mamba_linear_args in{normed.dl(), w_in[l].dl(), nullptr, xz.dl()};
        if ((s = mamba_linear(ctx, &in)) != MAMBA_STATUS_OK) return s;
        mamba_causal_conv1d_update_args cv{&x_half.dl, conv_state[l].dl(), conv_w.dl(), conv_b.dl(), xc.dl(), 1};
        if ((s = mamba_causal_conv1d_update(ctx, &cv)) != MAMBA_STATUS_OK) return s;
        mamba_linear_args xp{xc.dl(), w_x[l].dl(), nullptr, xdbl.dl()};
        if ((s = mamba_linear(ctx, &xp)) != MAMBA_STATUS_OK) return s;
        mamba_linear_args dp{&dt_in.dl, w_dt[l].dl(), nullptr, dt.dl()};
        if ((s = mamba_linear(ctx, &dp)) != MAMBA_STATUS_OK) return s;
        mamba_selective_state_update_args su{};
        su.state = ssm_state[l].dl();
        su.x = xc.dl();
        su.dt = dt.dl();
        su.A = A.dl();
        su.B = &B.dl;
        su.C = &C.dl;
        su.D = D.dl();
        su.z = &z_half.dl;
        su.dt_bias = dt_bias.dl();
        su.y = y1.dl();
        su.dt_softplus = 1;
        if ((s = mamba_selective_state_update(ctx, &su)) != MAMBA_STATUS_OK) return s;
        mamba_ssd_state_update_args sd{};
        sd.state = ssd_state[l].dl();
        sd.x = &ssd_x.dl;
        sd.dt = &ssd_dt.dl;
        sd.A = A2.dl();
        sd.B = &B.dl;
        sd.C = &C.dl;
        sd.D = D2.dl();
        sd.dt_bias = dt_bias2.dl();
        sd.y = y2.dl();
        sd.dt_min = 0.0f;
        sd.dt_max = INFINITY;
        sd.dt_softplus = 1;
        if ((s = mamba_ssd_state_update(ctx, &sd)) != MAMBA_STATUS_OK) return s;
        mamba_gated_rms_norm_args g{};
        g.x = &y2_flat.dl;
        g.z = &z_half.dl;
        g.weight = gate_w.dl();
        g.y = gated.dl();
        g.group_size = kInner / 4;
        g.eps = 1e-5f;
        if ((s = mamba_gated_rms_norm(ctx, &g)) != MAMBA_STATUS_OK) return s;
        mamba_linear_args out{gated.dl(), w_out[l].dl(), nullptr, hidden.dl()};
        return mamba_linear(ctx, &out);
    }

    // Everything the next step depends on, read back.
    std::vector<double> results() {
        std::vector<double> all;
        auto add = [&](Tensor & t) {
            t.download(ctx);
            all.insert(all.end(), t.values().begin(), t.values().end());
        };
        add(hidden);
        add(residual);
        for (int64_t l = 0; l < kLayers; ++l) {
            add(conv_state[l]);
            add(ssm_state[l]);
            add(ssd_state[l]);
        }
        return all;
    }
};

// Exact equality, every value finite; reports the first difference.
void expect_identical(const std::vector<double> & with_pdl, const std::vector<double> & without, const std::string & where) {
    ASSERT_EQ(with_pdl.size(), without.size()) << where;
    int64_t differing = 0, first = -1, non_finite = 0;
    for (size_t i = 0; i < with_pdl.size(); ++i) {
        if (!std::isfinite(with_pdl[i]) || !std::isfinite(without[i])) ++non_finite;
        if (with_pdl[i] != without[i] && differing++ == 0) first = int64_t(i);
    }
    EXPECT_EQ(non_finite, 0) << where;
    EXPECT_EQ(differing, 0) << where << ": " << differing << " of " << with_pdl.size() << " values differ, first at " << first << " ("
                            << (first >= 0 ? with_pdl[size_t(first)] : 0.0) << " with PDL, " << (first >= 0 ? without[size_t(first)] : 0.0)
                            << " without)";
}

constexpr int kSteps = 12;

}  // namespace

class PdlChainTest : public mt::BackendTest {
protected:
    // Visible skips where PDL cannot be on: both contexts would run the same launches and only agree.
    void SetUp() override {
        mt::BackendTest::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        if (!on_cuda()) GTEST_SKIP() << "PDL is a CUDA launch feature";
        mamba_device_info info{};
        MAMBA_ASSERT_OK(mamba_device_get_info(MAMBA_DEVICE_CUDA, 0, &info));
        if (info.compute_capability_major < 9)
            GTEST_SKIP() << "PDL needs compute capability 9.0 or newer; this GPU has " << info.compute_capability_major << "."
                         << info.compute_capability_minor << ", so both contexts would run without it";
    }
};

TEST_P(PdlChainTest, DirectCallsEqualThoseWithoutPdl) {
    mt::ContextPtr on = context_with_pdl(GetParam(), true), off = context_with_pdl(GetParam(), false);
    ASSERT_TRUE(on && off);
    Chain a(on.get()), b(off.get());
    a.upload(101);
    b.upload(101);
    std::vector<double> previous;
    for (int s = 0; s < kSteps; ++s) {
        MAMBA_ASSERT_OK(a.step());
        MAMBA_ASSERT_OK(b.step());
        const std::vector<double> ra = a.results(), rb = b.results();
        expect_identical(ra, rb, "step " + std::to_string(s));
        if (HasFailure()) return;
        EXPECT_NE(ra, previous) << "the chain must change its state at every step";
        previous = ra;
    }
}

TEST_P(PdlChainTest, GraphReplaysEqualDirectCallsWithoutPdl) {
    mt::ContextPtr on = context_with_pdl(GetParam(), true), off = context_with_pdl(GetParam(), false);
    ASSERT_TRUE(on && off);
    Chain a(on.get()), b(off.get());
    a.upload(202);
    b.upload(202);
    MAMBA_ASSERT_OK(a.step());  // sizes the workspace before the capture
    MAMBA_ASSERT_OK(mamba_graph_capture_begin(on.get()));
    const mamba_status captured = a.step();
    mamba_graph * graph = nullptr;
    const mamba_status ended = mamba_graph_capture_end(on.get(), &graph);
    std::unique_ptr<mamba_graph, void (*)(mamba_graph *)> owned(graph, mamba_graph_free);
    ASSERT_EQ(captured, MAMBA_STATUS_OK) << mamba_last_error();
    ASSERT_EQ(ended, MAMBA_STATUS_OK) << mamba_last_error();
    // The same starting states for both; then replays against direct calls on the context without PDL.
    a.reset_states(303);
    b.reset_states(303);
    for (int s = 0; s < kSteps; ++s) {
        // Two replays back to back (no host round trip between them), then the comparison.
        MAMBA_ASSERT_OK(mamba_graph_launch(on.get(), graph));
        MAMBA_ASSERT_OK(mamba_graph_launch(on.get(), graph));
        MAMBA_ASSERT_OK(b.step());
        MAMBA_ASSERT_OK(b.step());
        expect_identical(a.results(), b.results(), "replay pair " + std::to_string(s));
        if (HasFailure()) return;
    }
}

MAMBA_INSTANTIATE_BACKENDS(PdlChainTest);
