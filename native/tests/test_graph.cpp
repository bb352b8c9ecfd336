// mamba_graph_*: captured calls replay like the same calls run directly, read the current contents of
// their tensors at each replay, and a failure during capture leaves the context usable. CPU contexts
// report graphs as unsupported.
#include "backend_test.h"

namespace {

using mt::DType;
using mt::Tensor;

struct GraphDeleter {
    void operator()(mamba_graph * g) const { mamba_graph_free(g); }
};
using GraphPtr = std::unique_ptr<mamba_graph, GraphDeleter>;

bool contains(const std::string & text, const std::string & part) { return text.find(part) != std::string::npos; }

}  // namespace

// Replays run the same kernels on the same data as direct calls; the tolerance only allows for a linear
// whose reduction order is not fixed from call to call.
class GraphTest : public mt::BackendTest {
protected:
    std::mt19937_64 rng_{29};
    static constexpr int64_t kCount = 3, kVocab = 40, kHidden = 64, kOut = 48;

    // Buffers of a small decode-like step: ids -> embedding -> rms_norm -> linear.
    Tensor ids_{{kCount}, DType::I32}, table_{{kVocab, kHidden}, DType::F32}, norm_w_{{kHidden}, DType::F32};
    Tensor weight_{{kOut, kHidden}, DType::BF16}, emb_{{kCount, kHidden}, DType::F32}, normed_{{kCount, kHidden}, DType::F32};
    Tensor y_{{kCount, kOut}, DType::F32};

    void SetUpStep() {
        table_.fill_uniform(rng_, -2, 2);
        norm_w_.fill_uniform(rng_, 0.5, 1.5);
        weight_.fill_uniform(rng_, -1, 1);
        ids_.values() = {5, 0, kVocab - 1};
        for (Tensor * t : {&ids_, &table_, &norm_w_, &weight_}) t->upload(ctx());
        for (Tensor * t : {&emb_, &normed_, &y_}) t->upload_poisoned(ctx());
    }

    // Queues the step; returns the first failing status.
    mamba_status step() {
        mamba_embedding_args e{ids_.dl(), table_.dl(), emb_.dl()};
        mamba_status s = mamba_embedding(ctx(), &e);
        if (s != MAMBA_STATUS_OK) return s;
        mamba_rms_norm_args n{};
        n.x = emb_.dl();
        n.weight = norm_w_.dl();
        n.y = normed_.dl();
        n.eps = 1e-5f;
        if ((s = mamba_rms_norm(ctx(), &n)) != MAMBA_STATUS_OK) return s;
        // bf16 weight with float32 x: the CUDA linear stages through the workspace.
        mamba_linear_args l{normed_.dl(), weight_.dl(), nullptr, y_.dl()};
        return mamba_linear(ctx(), &l);
    }

    GraphPtr capture_step() {
        EXPECT_EQ(mamba_graph_capture_begin(ctx()), MAMBA_STATUS_OK) << mamba_last_error();
        EXPECT_EQ(step(), MAMBA_STATUS_OK) << mamba_last_error();
        mamba_graph * g = nullptr;
        EXPECT_EQ(mamba_graph_capture_end(ctx(), &g), MAMBA_STATUS_OK) << mamba_last_error();
        return GraphPtr(g);
    }

    std::vector<double> eager_y() {
        EXPECT_EQ(step(), MAMBA_STATUS_OK) << mamba_last_error();
        y_.download(ctx());
        return y_.values();
    }
};

TEST_P(GraphTest, SupportMatchesTheBackend) {
    int32_t supported = -1;
    MAMBA_ASSERT_OK(mamba_graph_is_supported(ctx(), &supported));
    EXPECT_EQ(supported, on_cuda() ? 1 : 0);
    if (on_cuda()) return;
    EXPECT_EQ(mamba_graph_capture_begin(ctx()), MAMBA_STATUS_UNSUPPORTED);
    EXPECT_TRUE(contains(mamba_last_error(), "graph capture needs a CUDA context")) << mamba_last_error();
    mamba_graph * g = reinterpret_cast<mamba_graph *>(0x1);
    EXPECT_EQ(mamba_graph_capture_end(ctx(), &g), MAMBA_STATUS_UNSUPPORTED);
    EXPECT_EQ(g, nullptr);
    mamba_graph_free(nullptr);
}

TEST_P(GraphTest, NullArgumentsAreNamed) {
    int32_t supported = -1;
    EXPECT_EQ(mamba_graph_is_supported(nullptr, &supported), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_graph_is_supported: argument 'context' is null");
    EXPECT_EQ(supported, -1);
    EXPECT_EQ(mamba_graph_is_supported(ctx(), nullptr), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_graph_is_supported: argument 'out_supported' is null");
    EXPECT_EQ(mamba_graph_capture_begin(nullptr), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_graph_capture_begin: argument 'context' is null");
    mamba_graph * g = reinterpret_cast<mamba_graph *>(0x1);
    EXPECT_EQ(mamba_graph_capture_end(nullptr, &g), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_graph_capture_end: argument 'context' is null");
    EXPECT_EQ(g, nullptr);
    EXPECT_EQ(mamba_graph_capture_end(ctx(), nullptr), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_graph_capture_end: argument 'out_graph' is null");
    EXPECT_EQ(mamba_graph_launch(nullptr, nullptr), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_graph_launch: argument 'context' is null");
    EXPECT_EQ(mamba_graph_launch(ctx(), nullptr), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_graph_launch: argument 'graph' is null");
    mamba_graph_free(nullptr);
    // Without a capture in progress, ending one is an error that names the missing begin (CUDA).
    if (!on_cuda()) return;
    EXPECT_EQ(mamba_graph_capture_end(ctx(), &g), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_TRUE(contains(mamba_last_error(), "no graph capture is in progress")) << mamba_last_error();
    EXPECT_EQ(g, nullptr);
}

TEST_P(GraphTest, ReplayEqualsDirectCallsAndReadsCurrentInputs) {
    if (!on_cuda()) GTEST_SKIP() << "graphs need CUDA";
    SetUpStep();
    const std::vector<double> expected_first = eager_y();  // also grows the workspace
    y_.upload_poisoned(ctx());
    GraphPtr g = capture_step();
    ASSERT_NE(g, nullptr);
    // Capturing records without running: y is still poisoned.
    y_.download(ctx());
    for (double v : y_.values()) ASSERT_TRUE(std::isnan(v));
    MAMBA_ASSERT_OK(mamba_graph_launch(ctx(), g.get()));
    y_.download(ctx());
    EXPECT_CLOSE(y_.values(), expected_first, 1e-5, 1e-5);

    // New ids in the same buffer: the replay follows them.
    ids_.values() = {kVocab - 2, 7, 7};
    ids_.upload(ctx());
    const std::vector<double> expected_second = eager_y();
    EXPECT_NE(expected_second, expected_first);
    y_.upload_poisoned(ctx());
    for (int i = 0; i < 3; ++i) MAMBA_ASSERT_OK(mamba_graph_launch(ctx(), g.get()));
    y_.download(ctx());
    EXPECT_CLOSE(y_.values(), expected_second, 1e-5, 1e-5);
}

TEST_P(GraphTest, FailingCallEndsTheCaptureAndLeavesTheContextUsable) {
    if (!on_cuda()) GTEST_SKIP() << "graphs need CUDA";
    SetUpStep();
    const std::vector<double> expected = eager_y();
    MAMBA_ASSERT_OK(mamba_graph_capture_begin(ctx()));
    mamba_rms_norm_args n{};
    n.x = emb_.dl();
    n.weight = norm_w_.dl();
    n.y = y_.dl();  // wrong shape: (count, out) instead of (count, hidden)
    n.eps = 1e-5f;
    EXPECT_EQ(mamba_rms_norm(ctx(), &n), MAMBA_STATUS_INVALID_ARGUMENT);
    mamba_graph * g = nullptr;
    EXPECT_EQ(mamba_graph_capture_end(ctx(), &g), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(g, nullptr);
    EXPECT_TRUE(contains(mamba_last_error(), "ended by a call that failed")) << mamba_last_error();
    EXPECT_TRUE(contains(mamba_last_error(), "mamba_rms_norm")) << mamba_last_error();
    // Direct calls work again, and so does a new capture.
    y_.upload_poisoned(ctx());
    EXPECT_CLOSE(eager_y(), expected, 1e-5, 1e-5);
    GraphPtr again = capture_step();
    ASSERT_NE(again, nullptr);
    y_.upload_poisoned(ctx());
    MAMBA_ASSERT_OK(mamba_graph_launch(ctx(), again.get()));
    y_.download(ctx());
    EXPECT_CLOSE(y_.values(), expected, 1e-5, 1e-5);
}

TEST_P(GraphTest, SynchronizingDuringCaptureIsRefused) {
    if (!on_cuda()) GTEST_SKIP() << "graphs need CUDA";
    MAMBA_ASSERT_OK(mamba_graph_capture_begin(ctx()));
    EXPECT_EQ(mamba_context_synchronize(ctx()), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_TRUE(contains(mamba_last_error(), "captured into a graph")) << mamba_last_error();
    mamba_graph * g = nullptr;
    EXPECT_EQ(mamba_graph_capture_end(ctx(), &g), MAMBA_STATUS_INVALID_ARGUMENT);
    MAMBA_ASSERT_OK(mamba_context_synchronize(ctx()));
}

TEST_P(GraphTest, WorkspaceCannotGrowDuringCapture) {
    if (!on_cuda()) GTEST_SKIP() << "graphs need CUDA";
    // A fresh context and a linear that stages through the workspace: float32 x against bf16 W with more
    // rows than the GEMV takes (the GEMM path splits x into two bf16 halves there). The step's own linear
    // (3 rows) takes the GEMV, which needs no workspace.
    constexpr int64_t rows = 24, in = 64, out = 40;
    Tensor x({rows, in}, DType::F32), w({out, in}, DType::BF16), y({rows, out}, DType::F32);
    x.fill_uniform(rng_, -1, 1);
    w.fill_uniform(rng_, -1, 1);
    x.upload(ctx());
    w.upload(ctx());
    y.upload_poisoned(ctx());
    mamba_linear_args l{x.dl(), w.dl(), nullptr, y.dl()};
    MAMBA_ASSERT_OK(mamba_graph_capture_begin(ctx()));
    EXPECT_EQ(mamba_linear(ctx(), &l), MAMBA_STATUS_UNSUPPORTED);
    EXPECT_TRUE(contains(mamba_last_error(), "workspace cannot grow")) << mamba_last_error();
    mamba_graph * g = nullptr;
    EXPECT_EQ(mamba_graph_capture_end(ctx(), &g), MAMBA_STATUS_INVALID_ARGUMENT);
    // The same call made once directly grows the workspace; then it captures and replays.
    MAMBA_ASSERT_OK(mamba_linear(ctx(), &l));
    y.download(ctx());
    const std::vector<double> expected = y.values();
    for (double v : expected) ASSERT_TRUE(std::isfinite(v));
    y.upload_poisoned(ctx());
    MAMBA_ASSERT_OK(mamba_graph_capture_begin(ctx()));
    MAMBA_ASSERT_OK(mamba_linear(ctx(), &l));
    mamba_graph * captured = nullptr;
    MAMBA_ASSERT_OK(mamba_graph_capture_end(ctx(), &captured));
    GraphPtr replay(captured);
    MAMBA_ASSERT_OK(mamba_graph_launch(ctx(), replay.get()));
    y.download(ctx());
    EXPECT_CLOSE(y.values(), expected, 1e-5, 1e-5);
}

TEST_P(GraphTest, BadEmbeddingIdInAReplayIsReportedAtTheNextSynchronize) {
    if (!on_cuda()) GTEST_SKIP() << "graphs need CUDA";
    SetUpStep();
    eager_y();
    GraphPtr g = capture_step();
    ASSERT_NE(g, nullptr);
    MAMBA_ASSERT_OK(mamba_graph_launch(ctx(), g.get()));
    MAMBA_ASSERT_OK(mamba_context_synchronize(ctx()));
    ids_.values() = {3, kVocab + 3, 1};
    ids_.upload(ctx());
    emb_.upload_poisoned(ctx());
    MAMBA_ASSERT_OK(mamba_graph_launch(ctx(), g.get()));
    EXPECT_EQ(mamba_context_synchronize(ctx()), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_TRUE(contains(mamba_last_error(), "outside the table at position 1")) << mamba_last_error();
    // Reported once; the bad row is zeros, the good rows are the table's.
    MAMBA_ASSERT_OK(mamba_context_synchronize(ctx()));
    emb_.download(ctx());
    for (int64_t j = 0; j < kHidden; ++j) {
        EXPECT_EQ(emb_.at(0 * kHidden + j), table_.at(3 * kHidden + j));
        EXPECT_EQ(emb_.at(1 * kHidden + j), 0.0);
        EXPECT_EQ(emb_.at(2 * kHidden + j), table_.at(1 * kHidden + j));
    }
}

TEST_P(GraphTest, BadEmbeddingIdInAReplayIsReportedByTheNextCopyToTheHost) {
    if (!on_cuda()) GTEST_SKIP() << "graphs need CUDA";
    SetUpStep();
    eager_y();
    GraphPtr g = capture_step();
    ASSERT_NE(g, nullptr);
    ids_.values() = {-4, 2, 2};
    ids_.upload(ctx());
    MAMBA_ASSERT_OK(mamba_graph_launch(ctx(), g.get()));
    // The copy is made, then the deferred error is reported.
    std::vector<int32_t> host(kCount, 99);
    EXPECT_EQ(mamba_memcpy(ctx(), host.data(), ids_.dl()->data, host.size() * sizeof(int32_t), MAMBA_MEMCPY_DEVICE_TO_HOST),
              MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_TRUE(contains(mamba_last_error(), "outside the table at position 0")) << mamba_last_error();
    EXPECT_EQ(host, (std::vector<int32_t>{-4, 2, 2}));
    MAMBA_ASSERT_OK(mamba_context_synchronize(ctx()));
}

MAMBA_INSTANTIATE_BACKENDS(GraphTest);
