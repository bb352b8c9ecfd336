// mamba_prefetch_l2: a hint that never changes results. A decode-like chain (in_proj GEMV, a norm, out_proj
// GEMV) with prefetches of the weights between its calls matches a float64 reference and, bit for bit, the
// same chain without prefetches, for every fetch mode (MAMBA_CUDA_L2_PREFETCH), run directly and replayed
// from a captured graph; a capture that contains prefetches ends (the side stream is joined), also after a
// failing call, and on a borrowed stream captured by its owner; bad arguments and environment values are
// errors. On the CPU the call is a checked no-op.
#include "backend_test.h"

namespace {

using mt::DType;
using mt::Tensor;

constexpr const char * kModes[] = {"off", "prefetch", "prefetch_normal", "load", "bulk"};

bool contains(const std::string & text, const std::string & part) { return text.find(part) != std::string::npos; }

mt::ContextPtr context_with_mode(mamba_device_type type, const char * mode, const char * blocks = nullptr) {
    const mt::ScopedEnv scoped_mode("MAMBA_CUDA_L2_PREFETCH", mode);
    const mt::ScopedEnv scoped_blocks("MAMBA_CUDA_L2_PREFETCH_BLOCKS", blocks);
    return mt::make_context(type);
}

struct GraphDeleter {
    void operator()(mamba_graph * g) const { mamba_graph_free(g); }
};
using GraphPtr = std::unique_ptr<mamba_graph, GraphDeleter>;

// Byte address and size of a device tensor's storage (contiguous tensors only).
const void * data_of(const Tensor & t) { return static_cast<const char *>(t.dl()->data) + t.dl()->byte_offset; }
size_t bytes_of(const Tensor & t) { return size_t(t.numel()) * mt::dtype_size(t.dtype()); }

// hidden -> in_proj (kInner x kHidden) -> rms_norm -> out_proj (kHidden x kInner), one row, bf16 weights:
// the GEMV path of decode. Weights larger than one kernel's first wave so the GEMVs stream them.
struct Chain {
    static constexpr int64_t kHidden = 512, kInner = 1024;
    mamba_context * ctx;
    Tensor x{{1, kHidden}, DType::BF16}, w_in{{kInner, kHidden}, DType::BF16}, norm_w{{kInner}, DType::F32};
    Tensor w_out{{kHidden, kInner}, DType::BF16}, h{{1, kInner}, DType::F32}, normed{{1, kInner}, DType::F32};
    Tensor y{{1, kHidden}, DType::F32};

    explicit Chain(mamba_context * c, uint64_t seed) : ctx(c) {
        std::mt19937_64 rng(seed);
        x.fill_uniform(rng, -1, 1);
        w_in.fill_uniform(rng, -0.05, 0.05);
        norm_w.fill_uniform(rng, 0.5, 1.5);
        w_out.fill_uniform(rng, -0.05, 0.05);
        for (Tensor * t : {&x, &w_in, &w_out}) t->round_to_dtype();
        for (Tensor * t : {&x, &w_in, &norm_w, &w_out}) t->upload(ctx);
        for (Tensor * t : {&h, &normed, &y}) t->upload_poisoned(ctx);
    }

    // The decode pattern: after in_proj, prefetch this layer's out_proj and part of the next in_proj (here
    // the same in_proj, from an odd byte offset and with an odd size, so that partial lines are covered).
    mamba_status step(bool prefetch) {
        mamba_linear_args in{x.dl(), w_in.dl(), nullptr, h.dl()};
        mamba_status s = mamba_linear(ctx, &in);
        if (s != MAMBA_STATUS_OK) return s;
        if (prefetch) {
            if ((s = mamba_prefetch_l2(ctx, data_of(w_out), bytes_of(w_out))) != MAMBA_STATUS_OK) return s;
            const char * part = static_cast<const char *>(data_of(w_in)) + 77;
            if ((s = mamba_prefetch_l2(ctx, part, bytes_of(w_in) / 3 + 5)) != MAMBA_STATUS_OK) return s;
        }
        mamba_rms_norm_args n{};
        n.x = h.dl();
        n.weight = norm_w.dl();
        n.y = normed.dl();
        n.eps = 1e-5f;
        if ((s = mamba_rms_norm(ctx, &n)) != MAMBA_STATUS_OK) return s;
        mamba_linear_args out{normed.dl(), w_out.dl(), nullptr, y.dl()};
        return mamba_linear(ctx, &out);
    }

    std::vector<double> result() {
        y.download(ctx);
        return y.values();
    }

    // float64 reference of the chain from the test's (dtype-rounded) values.
    std::vector<double> reference() const {
        std::vector<double> hv(static_cast<size_t>(kInner)), out(static_cast<size_t>(kHidden));
        double ss = 0;
        for (int64_t i = 0; i < kInner; ++i) {
            double a = 0;
            for (int64_t k = 0; k < kHidden; ++k) a += w_in.at(i * kHidden + k) * x.at(k);
            hv[size_t(i)] = a;
            ss += a * a;
        }
        const double scale = 1.0 / std::sqrt(ss / double(kInner) + 1e-5);
        for (int64_t o = 0; o < kHidden; ++o) {
            double a = 0;
            for (int64_t i = 0; i < kInner; ++i) a += w_out.at(o * kInner + i) * hv[size_t(i)] * scale * norm_w.at(i);
            out[size_t(o)] = a;
        }
        return out;
    }
};

// Exact equality, every value finite.
void expect_identical(const std::vector<double> & a, const std::vector<double> & b, const std::string & where) {
    ASSERT_EQ(a.size(), b.size()) << where;
    int64_t differing = 0, non_finite = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        if (!std::isfinite(a[i]) || !std::isfinite(b[i])) ++non_finite;
        if (a[i] != b[i]) ++differing;
    }
    EXPECT_EQ(non_finite, 0) << where;
    EXPECT_EQ(differing, 0) << where << ": " << differing << " of " << a.size() << " values differ";
}

}  // namespace

class L2PrefetchTest : public mt::BackendTest {
protected:
    // The modes to run: all of them on CUDA; the CPU ignores the variable, so once.
    std::vector<const char *> modes() const { return kernel_variants(kModes); }
};

TEST_P(L2PrefetchTest, NullAndSizeErrorsAreNamed) {
    Tensor buf{{256}, DType::F32};
    buf.upload_poisoned(ctx());
    EXPECT_EQ(mamba_prefetch_l2(nullptr, data_of(buf), 16), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_prefetch_l2: argument 'context' is null");
    EXPECT_EQ(mamba_prefetch_l2(ctx(), nullptr, 16), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_TRUE(contains(mamba_last_error(), "argument 'data' is null but bytes is 16")) << mamba_last_error();
    EXPECT_EQ(mamba_prefetch_l2(ctx(), reinterpret_cast<const void *>(~uintptr_t(0) - 8), 64), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_TRUE(contains(mamba_last_error(), "wraps around")) << mamba_last_error();
    // Nothing to fetch: fine, even without data.
    EXPECT_EQ(mamba_prefetch_l2(ctx(), nullptr, 0), MAMBA_STATUS_OK) << mamba_last_error();
    EXPECT_EQ(mamba_prefetch_l2(ctx(), data_of(buf), 0), MAMBA_STATUS_OK) << mamba_last_error();
    EXPECT_EQ(mamba_prefetch_l2(ctx(), data_of(buf), bytes_of(buf)), MAMBA_STATUS_OK) << mamba_last_error();
    EXPECT_EQ(mamba_context_synchronize(ctx()), MAMBA_STATUS_OK) << mamba_last_error();
}

TEST_P(L2PrefetchTest, UnknownEnvironmentValuesFailContextCreation) {
    if (!on_cuda()) GTEST_SKIP() << "the CPU backend does not read the CUDA variables";
    for (auto [name, value] : {std::pair{"MAMBA_CUDA_L2_PREFETCH", "evict_last"}, std::pair{"MAMBA_CUDA_L2_PREFETCH_BLOCKS", "7"}}) {
        const mt::ScopedEnv scoped(name, value);
        mamba_context_params p = mamba_context_default_params();
        p.device_type = MAMBA_DEVICE_CUDA;
        mamba_context * c = nullptr;
        EXPECT_EQ(mamba_context_create(&p, &c), MAMBA_STATUS_INVALID_ARGUMENT) << name;
        EXPECT_TRUE(contains(mamba_last_error(), name)) << mamba_last_error();
        EXPECT_EQ(c, nullptr);
        mamba_context_free(c);
    }
}

TEST_P(L2PrefetchTest, DirectCallsMatchTheReferenceAndEqualThoseWithoutPrefetch) {
    for (const char * mode : modes()) {
        for (const char * blocks : {"4", "132"}) {
            SCOPED_TRACE(std::string("mode ") + mode + ", blocks " + blocks);
            mt::ContextPtr with = context_with_mode(GetParam(), mode, blocks);
            ASSERT_NE(with, nullptr) << mamba_last_error();
            Chain a(with.get(), 11), b(ctx(), 11);
            MAMBA_ASSERT_OK(a.step(true));
            MAMBA_ASSERT_OK(b.step(false));
            const std::vector<double> ra = a.result();
            EXPECT_CLOSE(ra, a.reference(), 2e-4, 2e-4);
            expect_identical(ra, b.result(), "with against without prefetch");
            // The prefetched weights are only read.
            Tensor copy{{Chain::kHidden, Chain::kInner}, DType::BF16};
            copy.values() = a.w_out.values();
            a.w_out.download(with.get());
            expect_identical(a.w_out.values(), copy.values(), "out_proj weight after the prefetch");
            // Several steps in a row queue several prefetches before anything joins them.
            for (int s = 0; s < 3; ++s) MAMBA_ASSERT_OK(a.step(true));
            MAMBA_ASSERT_OK(mamba_context_synchronize(with.get()));
            expect_identical(a.result(), ra, "repeated steps");
        }
    }
}

// The capture ends (an unjoined side branch would make cudaStreamEndCapture fail) and its replays give the
// direct results. That the graph really holds the prefetch is not observable through the ABI: a prefetch
// left out of the capture would pass too.
TEST_P(L2PrefetchTest, CapturedPrefetchReplaysAndTheCaptureEndsJoined) {
    if (!on_cuda()) GTEST_SKIP() << "graphs need CUDA";
    for (const char * mode : modes()) {
        SCOPED_TRACE(std::string("mode ") + mode);
        mt::ContextPtr with = context_with_mode(GetParam(), mode);
        ASSERT_NE(with, nullptr) << mamba_last_error();
        Chain a(with.get(), 23), b(ctx(), 23);
        // Direct step first: sizes workspaces and leaves an eager prefetch pending at the capture's begin.
        MAMBA_ASSERT_OK(a.step(true));
        MAMBA_ASSERT_OK(mamba_graph_capture_begin(with.get()));
        const mamba_status captured = a.step(true);
        mamba_graph * graph = nullptr;
        const mamba_status ended = mamba_graph_capture_end(with.get(), &graph);
        GraphPtr owned(graph);
        ASSERT_EQ(captured, MAMBA_STATUS_OK) << mamba_last_error();
        ASSERT_EQ(ended, MAMBA_STATUS_OK) << mamba_last_error();
        MAMBA_ASSERT_OK(b.step(false));
        const std::vector<double> expected = b.result();
        a.y.upload_poisoned(with.get());
        for (int r = 0; r < 3; ++r) MAMBA_ASSERT_OK(mamba_graph_launch(with.get(), graph));
        MAMBA_ASSERT_OK(mamba_context_synchronize(with.get()));
        expect_identical(a.result(), expected, "graph replay");
        // A second capture on the same context works too.
        MAMBA_ASSERT_OK(mamba_graph_capture_begin(with.get()));
        const mamba_status again = a.step(true);
        mamba_graph * second = nullptr;
        EXPECT_EQ(again, MAMBA_STATUS_OK) << mamba_last_error();
        EXPECT_EQ(mamba_graph_capture_end(with.get(), &second), MAMBA_STATUS_OK) << mamba_last_error();
        mamba_graph_free(second);
    }
}

TEST_P(L2PrefetchTest, FailingCallAfterAPrefetchEndsTheCaptureAndLeavesTheContextUsable) {
    if (!on_cuda()) GTEST_SKIP() << "graphs need CUDA";
    mt::ContextPtr with = context_with_mode(GetParam(), "prefetch");
    ASSERT_NE(with, nullptr) << mamba_last_error();
    Chain a(with.get(), 31), b(ctx(), 31);
    MAMBA_ASSERT_OK(a.step(true));
    MAMBA_ASSERT_OK(mamba_graph_capture_begin(with.get()));
    MAMBA_ASSERT_OK(mamba_prefetch_l2(with.get(), data_of(a.w_out), bytes_of(a.w_out)));
    mamba_linear_args bad{a.x.dl(), a.w_out.dl(), nullptr, a.y.dl()};  // in_features do not match
    EXPECT_EQ(mamba_linear(with.get(), &bad), MAMBA_STATUS_INVALID_ARGUMENT);
    mamba_graph * g = nullptr;
    EXPECT_EQ(mamba_graph_capture_end(with.get(), &g), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(g, nullptr);
    EXPECT_TRUE(contains(mamba_last_error(), "ended by a call that failed")) << mamba_last_error();
    a.y.upload_poisoned(with.get());
    MAMBA_ASSERT_OK(a.step(true));
    MAMBA_ASSERT_OK(b.step(false));
    expect_identical(a.result(), b.result(), "after the failed capture");
}

// A context borrowing another context's stream: direct prefetches work, and while the owner captures
// that stream the borrower's prefetch stays out of the capture, so the owner's capture still ends.
TEST_P(L2PrefetchTest, BorrowedStreamCapturedByItsOwner) {
    if (!on_cuda()) GTEST_SKIP() << "streams are CUDA's";
    mt::ContextPtr borrower = context_with_mode(GetParam(), "prefetch");
    ASSERT_NE(borrower, nullptr) << mamba_last_error();
    void * stream = nullptr;
    MAMBA_ASSERT_OK(mamba_context_get_stream(ctx(), &stream));
    MAMBA_ASSERT_OK(mamba_context_set_stream(borrower.get(), stream));
    Chain a(borrower.get(), 41), b(ctx(), 41);
    MAMBA_ASSERT_OK(b.step(false));
    const std::vector<double> expected = b.result();
    a.y.upload_poisoned(borrower.get());
    MAMBA_ASSERT_OK(a.step(true));  // leaves a prefetch pending across the owner's capture begin
    MAMBA_ASSERT_OK(mamba_graph_capture_begin(ctx()));
    const mamba_status captured = a.step(true);
    mamba_graph * graph = nullptr;
    const mamba_status ended = mamba_graph_capture_end(ctx(), &graph);
    GraphPtr owned(graph);
    ASSERT_EQ(captured, MAMBA_STATUS_OK) << mamba_last_error();
    ASSERT_EQ(ended, MAMBA_STATUS_OK) << mamba_last_error();
    a.y.upload_poisoned(borrower.get());
    MAMBA_ASSERT_OK(mamba_graph_launch(ctx(), graph));
    expect_identical(a.result(), expected, "borrowed stream, owner's replay");
    // Back to its own stream: the pending prefetch is joined into the borrowed one first. The step ran on
    // the owner's stream, which the borrower's own stream does not wait for: synchronize it before reading.
    a.y.upload_poisoned(borrower.get());
    MAMBA_ASSERT_OK(a.step(true));
    MAMBA_ASSERT_OK(mamba_context_set_stream(borrower.get(), nullptr));
    MAMBA_ASSERT_OK(mamba_context_synchronize(ctx()));
    expect_identical(a.result(), expected, "after returning to its own stream");
}

MAMBA_INSTANTIATE_BACKENDS(L2PrefetchTest);
