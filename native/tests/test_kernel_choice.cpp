// Which CUDA kernels a call launches: the result tests compare values only, and a fused kernel and its
// fallback give the same values. A context made with MAMBA_CUDA_TRACE=1 prints one "mamba trace NAME ..."
// line to stderr for each kernel the library launches itself (cuBLAS's kernels are not among them), which
// these tests read back.
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <utility>

#include "support.h"

namespace {

using mt::DType;
using mt::Tensor;

class KernelChoiceTest : public ::testing::Test {
protected:
    void SetUp() override {
        MAMBA_REQUIRE_CUDA();
        // Read when the context is made: tracing on, PDL and early reads as the library chooses.
        const mt::ScopedEnv trace("MAMBA_CUDA_TRACE", "1");
        const mt::ScopedEnv pdl("MAMBA_CUDA_PDL", nullptr);
        const mt::ScopedEnv early("MAMBA_CUDA_EARLY_WEIGHTS", nullptr);
        ctx_ = mt::make_context(MAMBA_DEVICE_CUDA);
        ASSERT_NE(ctx_, nullptr);
    }

    // Early reads need PDL, which needs compute capability 9.0 (launch.cuh).
    static bool pdl_device(std::string & why) {
        mamba_device_info info{};
        if (mamba_device_get_info(MAMBA_DEVICE_CUDA, 0, &info) != MAMBA_STATUS_OK) return false;
        why = "early reads need PDL (compute capability 9.0 or newer); this GPU has " + std::to_string(info.compute_capability_major) + "." +
              std::to_string(info.compute_capability_minor);
        return info.compute_capability_major >= 9;
    }
    mamba_context * ctx() { return ctx_.get(); }

    // The library's own choices: kernel-selection variables set around the test run are cleared.
    const mt::ScopedEnv gemv_default_{"MAMBA_CUDA_GEMV_VARIANT", nullptr};
    const mt::ScopedEnv conv_default_{"MAMBA_CUDA_LINEAR_CONV", nullptr};

    // The trace lines one call printed; the call must succeed.
    template <class Call>
    std::string traced(Call && call) {
        ::testing::internal::CaptureStderr();
        const mamba_status status = call();
        const std::string log = ::testing::internal::GetCapturedStderr();
        EXPECT_EQ(status, MAMBA_STATUS_OK) << mamba_last_error();
        return log;
    }

    static bool launched(const std::string & log, const std::string & kernel) { return log.find("mamba trace " + kernel + " ") != std::string::npos; }
    // Whether the last kernel in the log is `kernel` (its full trace name).
    static bool launched_last(const std::string & log, const std::string & kernel) {
        const size_t at = log.rfind("mamba trace ");
        return at != std::string::npos && log.compare(at, 13 + kernel.size(), "mamba trace " + kernel + " ") == 0;
    }

    // x (rows, in), W (out, in) and y (rows, out) of one dtype, random, on the device.
    struct Linear {
        Tensor x, w, y;
        mamba_linear_args args{};
    };
    Linear linear(int64_t rows, int64_t in, int64_t out, DType dtype) {
        std::mt19937_64 rng(uint64_t(rows * 131 + in * 7 + out));
        Linear l{Tensor({rows, in}, dtype), Tensor({out, in}, dtype), Tensor({rows, out}, dtype)};
        l.x.fill_uniform(rng, -1, 1);
        l.w.fill_uniform(rng, -1, 1);
        l.x.upload(ctx());
        l.w.upload(ctx());
        l.y.upload_poisoned(ctx());
        l.args.x = l.x.dl();
        l.args.weight = l.w.dl();
        l.args.y = l.y.dl();
        return l;
    }

    // The Mamba-1 decode step's x_proj -> state update with dt_proj fused: x_proj (bf16, 256 channels) writes the dt_low
    // (rank 16), B and C of `batch` rows, which the update's arguments (args()) view; state, x, A and the weight random.
    struct XProjUpdate {
        static constexpr int64_t kDim = 256, kRank = 16;
        Linear xproj;
        Tensor state, x, A, W, y;
        std::unique_ptr<mt::View> dt, B, C;  // held by pointer: a View cannot move
        mamba_selective_state_update_args args() {
            mamba_selective_state_update_args a{};
            a.state = state.dl();
            a.x = x.dl();
            a.dt = dt->dl();
            a.A = A.dl();
            a.B = B->dl();
            a.C = C->dl();
            a.y = y.dl();
            a.dt_softplus = 1;
            a.dt_proj_weight = W.dl();
            return a;
        }
    };
    XProjUpdate xproj_update(int64_t batch, int64_t dstate, uint64_t seed) {
        using U = XProjUpdate;
        std::mt19937_64 rng(seed);
        U u{linear(batch, U::kDim, U::kRank + 2 * dstate, DType::BF16), Tensor({batch, U::kDim, dstate}, DType::F32), Tensor({batch, U::kDim}, DType::BF16),
            Tensor({U::kDim, dstate}, DType::F32), Tensor({U::kDim, U::kRank}, DType::BF16), Tensor({batch, U::kDim}, DType::BF16), {}, {}, {}};
        for (Tensor * t : {&u.state, &u.x, &u.A, &u.W}) {
            t->fill_uniform(rng, -1, 0);
            t->upload(ctx());
        }
        u.y.upload_poisoned(ctx());
        const int64_t width = U::kRank + 2 * dstate;
        u.dt = std::make_unique<mt::View>(u.xproj.y, std::vector<int64_t>{batch, U::kRank}, std::vector<int64_t>{width, 1});
        u.B = std::make_unique<mt::View>(u.xproj.y, std::vector<int64_t>{batch, 1, dstate}, std::vector<int64_t>{width, dstate, 1}, uint64_t(U::kRank) * 2);
        u.C = std::make_unique<mt::View>(u.xproj.y, std::vector<int64_t>{batch, 1, dstate}, std::vector<int64_t>{width, dstate, 1},
                                         uint64_t(U::kRank + dstate) * 2);
        return u;
    }

    // The in_proj + conv step op over linear(rows, in, out): a conv state (rows, dim, width - 1) of
    // `state_dtype` and a bf16 filter (dim, width), random; its conv_y poisoned.
    struct LinearConv {
        Linear l;
        Tensor state, cw, cy;
        mamba_linear_conv1d_update_args args{};
    };
    LinearConv linear_conv(int64_t rows, int64_t in, int64_t out, int64_t dim, int64_t width, DType state_dtype, uint64_t seed) {
        std::mt19937_64 rng(seed);
        LinearConv c{linear(rows, in, out, DType::BF16), Tensor({rows, dim, width - 1}, state_dtype), Tensor({dim, width}, DType::BF16),
                     Tensor({rows, dim}, DType::BF16)};
        c.state.fill_uniform(rng, -1, 1);
        c.cw.fill_uniform(rng, -1, 1);
        for (Tensor * t : {&c.state, &c.cw}) t->upload(ctx());
        c.cy.upload_poisoned(ctx());
        c.args.x = c.l.x.dl();
        c.args.weight = c.l.w.dl();
        c.args.y = c.l.y.dl();
        c.args.conv_offset = 0;
        c.args.conv_state = c.state.dl();
        c.args.conv_weight = c.cw.dl();
        c.args.conv_y = c.cy.dl();
        c.args.silu = true;
        return c;
    }

    // A one-row linear of 64 outputs (the warp kernel), the consumer, whose whole weight w another one-row
    // linear, the producer, writes: where the producer is the work just before, the consumer must load w
    // after its wait.
    struct ProducedWeight {
        static constexpr int64_t kOut = 64, kIn = 64;
        Tensor px{{1, kIn}, DType::BF16}, pw{{kOut * kIn, kIn}, DType::BF16}, w{{kOut, kIn}, DType::BF16};
        Tensor x{{1, kIn}, DType::BF16}, y{{1, kOut}, DType::BF16};
        std::optional<mt::View> produced;  // w seen as the producer's one row; made once w is on the device
        mamba_linear_args producer{}, consumer{};

        ProducedWeight(mamba_context * ctx, uint64_t seed) {
            std::mt19937_64 rng(seed);
            for (Tensor * t : {&px, &pw, &x}) {
                t->fill_uniform(rng, -1, 1);
                t->upload(ctx);
            }
            w.upload_poisoned(ctx);
            y.upload_poisoned(ctx);
            // A View copies its base's DLTensor, device pointer included, so it is made after the upload.
            produced.emplace(w, std::vector<int64_t>{1, kOut * kIn}, std::vector<int64_t>{});
            producer.x = px.dl();
            producer.weight = pw.dl();
            producer.y = produced->dl();
            consumer.x = x.dl();
            consumer.weight = w.dl();
            consumer.y = y.dl();
        }
    };

    mt::ContextPtr ctx_;
};

TEST_F(KernelChoiceTest, OneRowTakesTheGemvKernels) {
    Linear wide = linear(1, 1024, 4096, DType::BF16);
    EXPECT_TRUE(launched(traced([&] { return mamba_linear(ctx(), &wide.args); }), "gemv_tiled_kernel"));
    Linear narrow = linear(1, 2560, 192, DType::BF16);  // few outputs: the warp kernel
    EXPECT_TRUE(launched(traced([&] { return mamba_linear(ctx(), &narrow.args); }), "gemv_warp_kernel"));
}

TEST_F(KernelChoiceTest, BatchedRowsGoToCublasWhereItWasMeasuredFaster) {
    // 2-7 rows with at least 2048 outputs, and 8 rows or more at any shape: no GEMV kernel, and no staging or
    // epilogue pass around the GEMM either (x, W and y of one 16-bit dtype, no bias).
    for (int64_t rows : {2, 7, 16}) {
        SCOPED_TRACE("rows " + std::to_string(rows));
        Linear l = linear(rows, 1024, 2048, DType::BF16);
        const std::string log = traced([&] { return mamba_linear(ctx(), &l.args); });
        EXPECT_EQ(log.find("mamba trace "), std::string::npos) << log;
    }
    for (int64_t rows : {8, 16}) {
        SCOPED_TRACE("rows " + std::to_string(rows));
        Linear l = linear(rows, 2560, 192, DType::F16);
        const std::string log = traced([&] { return mamba_linear(ctx(), &l.args); });
        EXPECT_EQ(log.find("mamba trace "), std::string::npos) << log;
    }
    // Fewer outputs below 8 rows, and float32 x, stay on the GEMV kernels.
    Linear few = linear(4, 2560, 192, DType::BF16);
    EXPECT_TRUE(launched(traced([&] { return mamba_linear(ctx(), &few.args); }), "gemv_tiled_kernel"));
    Linear f32 = linear(4, 1024, 2048, DType::F32);
    EXPECT_TRUE(launched(traced([&] { return mamba_linear(ctx(), &f32.args); }), "gemv_tiled_kernel"));
}

TEST_F(KernelChoiceTest, ConvStepRunsInTheInProjGemvUnlessCublasTakesTheRows) {
    // The decode step's in_proj + conv op: one fused kernel (the tiled GEMV's conv epilogue) wherever the
    // GEMV takes the projection; the projection and the conv kernel with MAMBA_CUDA_LINEAR_CONV=separate, or
    // where cuBLAS takes the rows (no GEMV kernel then).
    struct Case {
        int64_t rows, out;
        const char * choice;
        const char * projection;  // the kernel expected for the projection; nullptr: cuBLAS
        bool fused;
    };
    const Case cases[] = {
        {1, 1024, "fused", "gemv_tiled_conv_kernel", true},
        {4, 1024, "fused", "gemv_tiled_conv_kernel", true},
        {4, 2048, "fused", nullptr, false},
        {1, 1024, "separate", "gemv_warp_kernel", false},  // what mamba_linear picks for 1 row and 1024 outputs
        {4, 1024, "separate", "gemv_tiled_kernel", false},
    };
    const int64_t in = 256, dim = 512, width = 4;
    for (const Case & c : cases) {
        SCOPED_TRACE("rows " + std::to_string(c.rows) + " out " + std::to_string(c.out) + " " + c.choice);
        const mt::ScopedEnv conv_choice("MAMBA_CUDA_LINEAR_CONV", c.choice);
        LinearConv op = linear_conv(c.rows, in, c.out, dim, width, DType::BF16, uint64_t(c.rows * 10 + c.out));
        const std::string log = traced([&] { return mamba_linear_conv1d_update(ctx(), &op.args); });
        if (c.projection) EXPECT_TRUE(launched(log, c.projection)) << log;
        else EXPECT_EQ(log.find("mamba trace gemv_"), std::string::npos) << log;
        EXPECT_EQ(launched(log, "causal_conv1d_update_kernel"), !c.fused) << log;
    }
}

// ---- sampling (sampling.cu, sampling_cluster.cu) ----

TEST_F(KernelChoiceTest, SamplingRunsOneClusterARowUpTo65536Tokens) {
    const mt::ScopedEnv kernel("MAMBA_CUDA_SAMPLE_KERNEL", nullptr);
    mamba_device_info info{};
    ASSERT_EQ(mamba_device_get_info(MAMBA_DEVICE_CUDA, 0, &info), MAMBA_STATUS_OK);
    std::mt19937_64 rng(31);
    for (int64_t vocab : {int64_t(50280), int64_t(65536), int64_t(65537)}) {
        SCOPED_TRACE("vocabulary " + std::to_string(vocab));
        Tensor logits({3, vocab}, DType::BF16), tokens({3}, DType::I32);
        logits.fill_uniform(rng, -2, 2);
        logits.upload(ctx());
        tokens.upload_poisoned(ctx());
        mamba_sample_args a{};
        a.logits = logits.dl();
        a.tokens = tokens.dl();
        a.params = mamba_sampling_default_params();
        a.params.temperature = 0.7f;
        a.params.top_p = 0.9f;
        const std::string log = traced([&] { return mamba_sample(ctx(), &a); });
        const bool cluster = info.compute_capability_major >= 9 && vocab <= 65536;
        EXPECT_EQ(launched(log, "sample_cluster_kernel"), cluster) << log;
        EXPECT_EQ(launched(log, "sample_kernel"), !cluster) << log;
    }
}

// ---- early weight reads (launch.cuh) ----
// A kernel loads its weights before its launch wait only where the work queued just before it is a
// libmamba op whose outputs were recorded and do not touch those weights; the trace name then ends in
// "early".

TEST_F(KernelChoiceTest, WeightsLoadEarlyOnlyRightAfterARecordedOp) {
    if (std::string why; !pdl_device(why)) GTEST_SKIP() << why;
    Linear wide = linear(1, 1024, 4096, DType::BF16);    // the tiled kernel
    Linear narrow = linear(1, 2560, 192, DType::BF16);   // the warp kernel
    mt::LeadIn lead(ctx());
    // After the uploads (copies, not recorded ops): after the wait.
    std::string log = traced([&] { return mamba_linear(ctx(), &wide.args); });
    EXPECT_TRUE(launched(log, "gemv_tiled_kernel")) << log;
    EXPECT_FALSE(launched(log, "gemv_tiled_kernel early")) << log;
    // Right after a recorded op that writes elsewhere: before the wait, in both kernels.
    log = traced([&] {
        lead.queue();
        return mamba_linear(ctx(), &wide.args);
    });
    EXPECT_TRUE(launched(log, "gemv_tiled_kernel early")) << log;
    log = traced([&] { return mamba_linear(ctx(), &narrow.args); });  // after the wide linear, which wrote its y
    EXPECT_TRUE(launched(log, "gemv_warp_kernel early")) << log;
    // Anything else queued in between (here a memset of an unrelated buffer) keeps the loads after the wait.
    log = traced([&] {
        lead.queue();
        const mamba_status st = mamba_memset(ctx(), wide.y.dl()->data, 0, 16);
        if (st != MAMBA_STATUS_OK) return st;
        return mamba_linear(ctx(), &wide.args);
    });
    EXPECT_TRUE(launched(log, "gemv_tiled_kernel")) << log;
    EXPECT_FALSE(launched(log, "gemv_tiled_kernel early")) << log;
}

TEST_F(KernelChoiceTest, WeightsTheOpBeforeWroteLoadAfterTheWait) {
    if (std::string why; !pdl_device(why)) GTEST_SKIP() << why;
    // A one-row linear writes 64 x 64 values; the next linear reads them as (part of) its weight.
    constexpr int64_t kOut = 64, kIn = 64;
    std::mt19937_64 rng(5);
    Tensor px({1, kIn}, DType::BF16), pw({kOut * kIn, kIn}, DType::BF16), w({2 * kOut, kIn}, DType::BF16);
    Tensor x({1, kIn}, DType::BF16), y({1, kOut}, DType::BF16);
    for (Tensor * t : {&px, &pw, &w, &x}) {
        t->fill_uniform(rng, -1, 1);
        t->upload(ctx());
    }
    y.upload_poisoned(ctx());
    struct Case {
        const char * what;
        uint64_t produced_at;  // byte offset in w of the producer's output
        int64_t produced;      // elements it writes
        bool early;
    };
    const uint64_t half = uint64_t(kOut * kIn) * 2;
    const Case cases[] = {
        {"the whole weight", 0, kOut * kIn, false},
        {"its last element", half - 2, 1, false},
        {"only the element after it", half, 1, true},
    };
    for (const Case & c : cases) {
        SCOPED_TRACE(c.what);
        mt::View produced(w, {1, c.produced}, {c.produced, 1}, c.produced_at);
        mt::View pw_rows(pw, {c.produced, kIn}, {});
        mt::View weight(w, {kOut, kIn}, {});  // w's first half
        mamba_linear_args producer{};
        producer.x = px.dl();
        producer.weight = pw_rows.dl();
        producer.y = produced.dl();
        mamba_linear_args consumer{};
        consumer.x = x.dl();
        consumer.weight = weight.dl();
        consumer.y = y.dl();
        const std::string log = traced([&] {
            const mamba_status st = mamba_linear(ctx(), &producer);
            if (st != MAMBA_STATUS_OK) return st;
            return mamba_linear(ctx(), &consumer);
        });
        EXPECT_TRUE(launched_last(log, c.early ? "gemv_warp_kernel early" : "gemv_warp_kernel")) << log;  // 64 outputs: the warp kernel
    }
}

TEST_F(KernelChoiceTest, StateUpdateLoadsItsProjectionWeightEarlyAfterXProj) {
    if (std::string why; !pdl_device(why)) GTEST_SKIP() << why;
    // The Mamba-1 decode step's x_proj -> state update with dt_proj fused: the weight rows (rank 16,
    // bfloat16: 32 bytes) load before the wait; with a memset queued in between, after it.
    XProjUpdate u = xproj_update(1, 16, 9);
    for (bool memset_between : {false, true}) {
        SCOPED_TRACE(memset_between ? "a memset in between" : "right after x_proj");
        const mamba_selective_state_update_args su = u.args();
        const std::string log = traced([&] {
            mamba_status st = mamba_linear(ctx(), &u.xproj.args);
            if (st == MAMBA_STATUS_OK && memset_between) st = mamba_memset(ctx(), u.y.dl()->data, 0, 16);
            if (st != MAMBA_STATUS_OK) return st;
            return mamba_selective_state_update(ctx(), &su);
        });
        EXPECT_TRUE(launched(log, "selective_state_update_kernel")) << log;
        EXPECT_TRUE(launched_last(log, memset_between ? "selective_state_update_kernel" : "selective_state_update_kernel early")) << log;
    }
}

TEST_F(KernelChoiceTest, BatchedStateUpdateTakesTheRowsKernelAsAsked) {
    if (std::string why; !pdl_device(why)) GTEST_SKIP() << why;
    // x_proj -> state update with dt_proj fused at 4 batch rows: the rows kernel with the rows a block that
    // MAMBA_CUDA_UPDATE_ROWS names (auto: one, as 4 channel blocks of 4 rows are few), loading early right after x_proj;
    // "one": the one-row kernel; dstate 12 has no rows build.
    for (const int64_t state_size : {int64_t(16), int64_t(12)}) {
        XProjUpdate u = xproj_update(4, state_size, 19);
        const mamba_selective_state_update_args su = u.args();
        for (const std::string rows : {"", "2", "4", "one"}) {
            SCOPED_TRACE("dstate " + std::to_string(state_size) + ", MAMBA_CUDA_UPDATE_ROWS=" + rows);
            const mt::ScopedEnv env("MAMBA_CUDA_UPDATE_ROWS", rows.c_str());
            const std::string log = traced([&] {
                const mamba_status st = mamba_linear(ctx(), &u.xproj.args);
                if (st != MAMBA_STATUS_OK) return st;
                return mamba_selective_state_update(ctx(), &su);
            });
            const bool one_row = rows == "one" || state_size != 16;
            const std::string kernel = one_row ? "selective_state_update_kernel early"
                                               : "selective_state_update_rows_kernel " + (rows.empty() ? std::string("1") : rows) + " rows early";
            EXPECT_TRUE(launched_last(log, kernel)) << log;
        }
    }
}

TEST_F(KernelChoiceTest, SsdStateUpdateLoadsItsStateEarlyUnlessTheOpBeforeWroteIt) {
    if (std::string why; !pdl_device(why)) GTEST_SKIP() << why;
    // The Mamba-2 decode step's projection -> SSD state update: the state's first pass, A, dt_bias and D load
    // before the wait, unless the op just before wrote the state. Blocks of 16 rows of a head (the trace's
    // "16 rows") where blocks of 64 would leave SMs idle (4 heads), of 64 where they make several waves (1024
    // heads), or as MAMBA_CUDA_SSD_UPDATE_ROWS forces.
    constexpr int64_t kHeadDim = 64, kState = 128;
    for (const int64_t heads : {int64_t(4), int64_t(1024)}) {
        std::mt19937_64 rng(11);
        Tensor state({1, heads, kHeadDim, kState}, DType::F32), x({1, heads, kHeadDim}, DType::F32), dt({1, heads}, DType::BF16);
        Tensor A({heads}, DType::F32), Bm({1, 1, kState}, DType::BF16), Cm({1, 1, kState}, DType::BF16), y({1, heads, kHeadDim}, DType::BF16);
        for (Tensor * t : {&state, &x, &dt, &A, &Bm, &Cm}) {
            t->fill_uniform(rng, -1, 0);
            t->upload(ctx());
        }
        y.upload_poisoned(ctx());
        // The op before: a one-row linear writing 64 values into x, or into the state's first 64.
        Linear before = linear(1, 64, 64, DType::F32);
        mt::View into_x(x, {1, 64}, {64, 1});
        mt::View into_state(state, {1, 64}, {64, 1});
        mamba_ssd_state_update_args sd{};
        sd.state = state.dl();
        sd.x = x.dl();
        sd.dt = dt.dl();
        sd.A = A.dl();
        sd.B = Bm.dl();
        sd.C = Cm.dl();
        sd.y = y.dl();
        sd.dt_softplus = 1;
        sd.dt_max = INFINITY;
        for (const std::string rows : {"", "64", "32", "16"}) {
            const mt::ScopedEnv env("MAMBA_CUDA_SSD_UPDATE_ROWS", rows.c_str());
            const std::string built_rows = rows.empty() ? (heads == 4 ? "16" : "64") : rows;
            for (bool writes_state : {false, true}) {
                SCOPED_TRACE(std::to_string(heads) + " heads, MAMBA_CUDA_SSD_UPDATE_ROWS=" + rows +
                             (writes_state ? ", the op before writes the state" : ", the op before writes x"));
                before.args.y = writes_state ? into_state.dl() : into_x.dl();
                const std::string log = traced([&] {
                    const mamba_status st = mamba_linear(ctx(), &before.args);
                    if (st != MAMBA_STATUS_OK) return st;
                    return mamba_ssd_state_update(ctx(), &sd);
                });
                const std::string kernel = "ssd_state_update_kernel" + (built_rows == "64" ? "" : " " + built_rows + " rows") + (writes_state ? "" : " early");
                EXPECT_TRUE(launched_last(log, kernel)) << log;
            }
        }
    }
}

TEST_F(KernelChoiceTest, AfterAnUpdateReleasedBeforeItsWaitTheOpBeforeItCountsToo) {
    if (std::string why; !pdl_device(why)) GTEST_SKIP() << why;
    // A one-row linear (the producer) writes 64 values; an SSD state update runs; then a one-row linear (the consumer)
    // whose weight starts with those 64 values. Where the update releases its dependents after its wait, the producer
    // has completed when the consumer starts, so the consumer loads its weight early; where the update releases before
    // its wait (MAMBA_CUDA_UPDATE_RELEASE=before_wait), the consumer may start while the producer runs, so it loads
    // after its wait, unless the producer wrote elsewhere.
    constexpr int64_t kOut = 64, kIn = 64, kHeads = 4, kHeadDim = 64, kState = 128;
    std::mt19937_64 rng(17);
    Tensor px({1, kIn}, DType::BF16), pw({kOut, kIn}, DType::BF16), w({2 * kOut, kIn}, DType::BF16), x({1, kIn}, DType::BF16), y({1, kOut}, DType::BF16);
    Tensor state({1, kHeads, kHeadDim, kState}, DType::F32), ux({1, kHeads, kHeadDim}, DType::F32), dt({1, kHeads}, DType::BF16);
    Tensor A({kHeads}, DType::F32), Bm({1, 1, kState}, DType::BF16), Cm({1, 1, kState}, DType::BF16), uy({1, kHeads, kHeadDim}, DType::BF16);
    for (Tensor * t : {&px, &pw, &w, &x, &state, &ux, &dt, &A, &Bm, &Cm}) {
        t->fill_uniform(rng, -1, 0);
        t->upload(ctx());
    }
    y.upload_poisoned(ctx());
    uy.upload_poisoned(ctx());
    mamba_ssd_state_update_args sd{};
    sd.state = state.dl();
    sd.x = ux.dl();
    sd.dt = dt.dl();
    sd.A = A.dl();
    sd.B = Bm.dl();
    sd.C = Cm.dl();
    sd.y = uy.dl();
    sd.dt_softplus = 1;
    sd.dt_max = INFINITY;
    mt::View weight(w, {kOut, kIn}, {});                       // w's first half: the consumer's weight
    mt::View into_weight(w, {1, kOut}, {kOut, 1});             // its first 64 values
    mt::View past_weight(w, {1, kOut}, {kOut, 1}, uint64_t(kOut * kIn) * 2);  // the first 64 of w's second half
    struct Case {
        const char * release;
        bool into;  // the producer writes into the consumer's weight
        bool early;
    };
    const Case cases[] = {{"start", true, true}, {"before_wait", true, false}, {"before_wait", false, true}};
    for (const Case & c : cases) {
        SCOPED_TRACE(std::string("MAMBA_CUDA_UPDATE_RELEASE=") + c.release + (c.into ? ", the producer writes the weight" : ", the producer writes past it"));
        const mt::ScopedEnv env("MAMBA_CUDA_UPDATE_RELEASE", c.release);
        mamba_linear_args producer{};
        producer.x = px.dl();
        producer.weight = pw.dl();
        producer.y = c.into ? into_weight.dl() : past_weight.dl();
        mamba_linear_args consumer{};
        consumer.x = x.dl();
        consumer.weight = weight.dl();
        consumer.y = y.dl();
        const std::string log = traced([&] {
            mamba_status st = mamba_linear(ctx(), &producer);
            if (st == MAMBA_STATUS_OK) st = mamba_ssd_state_update(ctx(), &sd);
            if (st != MAMBA_STATUS_OK) return st;
            return mamba_linear(ctx(), &consumer);
        });
        EXPECT_TRUE(launched(log, "ssd_state_update_kernel 16 rows early")) << log;  // the producer wrote none of its inputs
        EXPECT_TRUE(launched_last(log, c.early ? "gemv_warp_kernel early" : "gemv_warp_kernel")) << log;
    }
}

TEST_F(KernelChoiceTest, NormsLoadWeightResidualAndGateEarlyUnlessTheOpBeforeWroteThem) {
    if (std::string why; !pdl_device(why)) GTEST_SKIP() << why;
    // The add + RMSNorm after out_proj, and the gated RMSNorm after the SSD state update: the weight and the
    // residual (or z) load before the wait, unless the op just before wrote the residual (or z).
    constexpr int64_t kHidden = 512;
    std::mt19937_64 rng(13);
    Tensor x({1, kHidden}, DType::F32), res({1, kHidden}, DType::F32), z({1, kHidden}, DType::F32), w({kHidden}, DType::F32);
    Tensor y({1, kHidden}, DType::F32);
    for (Tensor * t : {&x, &res, &z, &w}) {
        t->fill_uniform(rng, 0.5, 1.5);
        t->upload(ctx());
    }
    y.upload_poisoned(ctx());
    Linear before = linear(1, 64, kHidden, DType::F32);
    mamba_rms_norm_args norm{};
    norm.x = x.dl();
    norm.residual = res.dl();
    norm.residual_out = res.dl();
    norm.weight = w.dl();
    norm.y = y.dl();
    norm.eps = 1e-5f;
    mamba_gated_rms_norm_args gated{};
    gated.x = x.dl();
    gated.z = z.dl();
    gated.weight = w.dl();
    gated.y = y.dl();
    gated.eps = 1e-5f;
    for (bool writes_input : {false, true}) {
        SCOPED_TRACE(writes_input ? "the op before writes the residual / z" : "the op before writes x");
        before.args.y = writes_input ? res.dl() : x.dl();
        std::string log = traced([&] {
            const mamba_status st = mamba_linear(ctx(), &before.args);
            return st != MAMBA_STATUS_OK ? st : mamba_rms_norm(ctx(), &norm);
        });
        EXPECT_TRUE(launched_last(log, writes_input ? "rms_norm_registers_kernel" : "rms_norm_registers_kernel early")) << log;
        before.args.y = writes_input ? z.dl() : x.dl();
        log = traced([&] {
            const mamba_status st = mamba_linear(ctx(), &before.args);
            return st != MAMBA_STATUS_OK ? st : mamba_gated_rms_norm(ctx(), &gated);
        });
        EXPECT_TRUE(launched_last(log, writes_input ? "gated_rms_norm_registers_kernel" : "gated_rms_norm_registers_kernel early")) << log;
    }
}

TEST_F(KernelChoiceTest, PrefillSizedNormsTakeTheRowsKernels) {
    // At least as many rows (row groups) as SMs, contiguous and aligned, one dtype: the rows kernels; fewer rows (a
    // decode step), strided rows or MAMBA_CUDA_NORM_ROWS=off: the register kernels; a misspelt value: an error naming the
    // variable, on decode-sized calls too.
    mamba_device_info info{};
    ASSERT_EQ(mamba_device_get_info(MAMBA_DEVICE_CUDA, 0, &info), MAMBA_STATUS_OK);
    const int64_t many = info.multiprocessor_count, hidden = 2048, padded = hidden + 3;  // padded rows are not 16-byte aligned
    std::mt19937_64 rng(14);
    Tensor x({many, hidden}, DType::BF16), z({many, hidden}, DType::BF16), w({hidden}, DType::BF16), y({many, hidden}, DType::BF16);
    Tensor res({many, hidden}, DType::F32), x_padded({many, hidden}, DType::BF16, mt::padded_strides({many, hidden}, 1, padded - hidden));
    for (Tensor * t : {&x, &z, &w, &res, &x_padded}) {
        t->fill_uniform(rng, 0.5, 1.5);
        t->upload(ctx());
    }
    y.upload_poisoned(ctx());
    const auto norm_of = [&](const Tensor & input, int64_t row_stride, int64_t rows) {
        mt::View xv(input, {rows, hidden}, {row_stride, 1}), rv(res, {rows, hidden}, {hidden, 1}),
            yv(y, {rows, hidden}, {hidden, 1});
        return traced([&] {
            mamba_rms_norm_args a{xv.dl(), rv.dl(), w.dl(), yv.dl(), rv.dl(), 1e-5f};
            return mamba_rms_norm(ctx(), &a);
        });
    };
    const auto gated_of = [&](int64_t rows) {
        mt::View xv(x, {rows, hidden}, {hidden, 1}), zv(z, {rows, hidden}, {hidden, 1}), yv(y, {rows, hidden}, {hidden, 1});
        return traced([&] {
            mamba_gated_rms_norm_args a{xv.dl(), zv.dl(), w.dl(), yv.dl(), 0, 1e-5f, 0};
            return mamba_gated_rms_norm(ctx(), &a);
        });
    };
    EXPECT_TRUE(launched_last(norm_of(x, hidden, many), "rms_norm_rows_kernel")) << "rows";
    EXPECT_TRUE(launched_last(gated_of(many), "gated_rms_norm_rows_kernel")) << "rows";
    EXPECT_TRUE(launched(norm_of(x, hidden, many - 1), "rms_norm_registers_kernel")) << "fewer rows than SMs";
    EXPECT_TRUE(launched(gated_of(many - 1), "gated_rms_norm_registers_kernel")) << "fewer rows than SMs";
    EXPECT_TRUE(launched(norm_of(x_padded, padded, many), "rms_norm_registers_kernel")) << "strided rows";
    {
        const mt::ScopedEnv off("MAMBA_CUDA_NORM_ROWS", "off");
        EXPECT_TRUE(launched(norm_of(x, hidden, many), "rms_norm_registers_kernel")) << "switched off";
        EXPECT_TRUE(launched(gated_of(many), "gated_rms_norm_registers_kernel")) << "switched off";
    }
    const mt::ScopedEnv misspelt("MAMBA_CUDA_NORM_ROWS", "3");
    for (const int64_t rows : {many, int64_t(1)}) {
        SCOPED_TRACE("rows " + std::to_string(rows));
        mt::View xv(x, {rows, hidden}, {hidden, 1}), zv(z, {rows, hidden}, {hidden, 1}), rv(res, {rows, hidden}, {hidden, 1}),
            yv(y, {rows, hidden}, {hidden, 1});
        const mamba_rms_norm_args norm{xv.dl(), rv.dl(), w.dl(), yv.dl(), rv.dl(), 1e-5f};
        EXPECT_EQ(mamba_rms_norm(ctx(), &norm), MAMBA_STATUS_INVALID_ARGUMENT);
        EXPECT_NE(std::string(mamba_last_error()).find("MAMBA_CUDA_NORM_ROWS"), std::string::npos) << mamba_last_error();
        const mamba_gated_rms_norm_args gated{xv.dl(), zv.dl(), w.dl(), yv.dl(), 0, 1e-5f, 0};
        EXPECT_EQ(mamba_gated_rms_norm(ctx(), &gated), MAMBA_STATUS_INVALID_ARGUMENT);
        EXPECT_NE(std::string(mamba_last_error()).find("MAMBA_CUDA_NORM_ROWS"), std::string::npos) << mamba_last_error();
    }
}

TEST_F(KernelChoiceTest, SsdRecurrenceOfFewBlocksWalksSegments) {
    // float32 x takes the rows kernel. At mamba2-130m's batch-1 prefill shape (24 heads of 64 channels: 48 blocks of
    // 2048 steps) the sequence is cut into segments: the summaries, the combine, the segments. A 64-step prompt, or
    // MAMBA_CUDA_SSD_SEGMENTS=off, walks each sequence in one block.
    std::mt19937_64 rng(16);
    const auto ssd_of = [&](int64_t len) {
        const int64_t heads = 24, headdim = 64, dstate = 128;
        Tensor x({1, len, heads, headdim}, DType::F32), dt({1, len, heads}, DType::F32), A({heads}, DType::F32);
        Tensor B({1, len, 1, dstate}, DType::F32), C({1, len, 1, dstate}, DType::F32), y({1, len, heads, headdim}, DType::F32);
        for (Tensor * t : {&x, &dt, &B, &C}) t->fill_uniform(rng, -1, 1);
        A.fill_uniform(rng, -4, -1);
        for (Tensor * t : {&x, &dt, &A, &B, &C}) t->upload(ctx());
        y.upload_poisoned(ctx());
        mamba_ssd_args a{};
        a.x = x.dl();
        a.dt = dt.dl();
        a.A = A.dl();
        a.B = B.dl();
        a.C = C.dl();
        a.y = y.dl();
        a.chunk_size = 256;
        a.dt_max = INFINITY;
        a.dt_softplus = 1;
        return traced([&] { return mamba_ssd(ctx(), &a); });
    };
    {
        const mt::ScopedEnv unset("MAMBA_CUDA_SSD_SEGMENTS", nullptr);
        std::string log = ssd_of(2048);
        EXPECT_TRUE(launched(log, "ssd_rows_kernel summaries")) << log;
        EXPECT_TRUE(launched(log, "ssd_split_combine_kernel")) << log;
        EXPECT_TRUE(launched_last(log, "ssd_rows_kernel segments")) << log;
        log = ssd_of(64);
        EXPECT_TRUE(launched_last(log, "ssd_rows_kernel")) << "64 steps: " << log;
        EXPECT_FALSE(launched(log, "ssd_split_combine_kernel")) << "64 steps: " << log;
    }
    const mt::ScopedEnv off("MAMBA_CUDA_SSD_SEGMENTS", "off");
    const std::string log = ssd_of(2048);
    EXPECT_TRUE(launched_last(log, "ssd_rows_kernel")) << log;
    EXPECT_FALSE(launched(log, "ssd_split_combine_kernel")) << log;
}

TEST_F(KernelChoiceTest, PrefillConvOfWholeChannelVectorsTakesTheTiledKernel) {
    // A prompt-sized channels-contiguous call whose channels are whole 16-byte vectors: the tiled kernel, at the narrow
    // models' widths too; a channel count cut short of a vector, a prompt too short for blocks of several chunks or MAMBA_CUDA_CONV_KERNEL=runs: the runs
    // kernel; a misspelt value of any of its variables: an error naming the variable, also on calls the runs kernel takes.
    std::mt19937_64 rng(15);
    int64_t len = 2048;
    const auto conv_of = [&](int64_t dim) {
        const int64_t row = (dim + 7) / 8 * 8;  // rows of whole 16-byte vectors, the last partly past dim
        Tensor x({1, len, row}, DType::BF16), w({dim, 4}, DType::BF16), y({1, len, row}, DType::BF16);
        for (Tensor * t : {&x, &w}) {
            t->fill_uniform(rng, -1, 1);
            t->upload(ctx());
        }
        y.upload_poisoned(ctx());
        mt::View xv(x, {1, dim, len}, {len * row, 1, row}), yv(y, {1, dim, len}, {len * row, 1, row});
        mamba_causal_conv1d_args a{xv.dl(), w.dl(), nullptr, nullptr, yv.dl(), nullptr, 1};
        ::testing::internal::CaptureStderr();
        const mamba_status status = mamba_causal_conv1d(ctx(), &a);
        const std::string log = ::testing::internal::GetCapturedStderr();
        return std::make_pair(status, log);
    };
    {
        const mt::ScopedEnv unset("MAMBA_CUDA_CONV_KERNEL", nullptr);
        auto [status, log] = conv_of(5120);  // mamba-2.8b's batch-1 prefill: 20 channel tiles x 64 chunks
        EXPECT_EQ(status, MAMBA_STATUS_OK) << mamba_last_error();
        EXPECT_TRUE(launched_last(log, "causal_conv1d_tiled_kernel")) << log;
        std::tie(status, log) = conv_of(5116);
        EXPECT_EQ(status, MAMBA_STATUS_OK) << mamba_last_error();
        EXPECT_TRUE(launched_last(log, "causal_conv1d_channel_last_kernel")) << "a cut channel vector: " << log;
        // mamba-130m's width: the plan's blocks would have 2 chunks, so it takes 16 segments of 4.
        std::tie(status, log) = conv_of(1536);
        EXPECT_EQ(status, MAMBA_STATUS_OK) << mamba_last_error();
        EXPECT_TRUE(launched_last(log, "causal_conv1d_tiled_kernel")) << "6 channel tiles x 64 chunks: " << log;
        len = 64;
        std::tie(status, log) = conv_of(5120);
        EXPECT_EQ(status, MAMBA_STATUS_OK) << mamba_last_error();
        EXPECT_TRUE(launched_last(log, "causal_conv1d_channel_last_kernel")) << "2 chunks a sequence: " << log;
        len = 2048;
    }
    {
        const mt::ScopedEnv runs("MAMBA_CUDA_CONV_KERNEL", "runs");
        const auto [status, log] = conv_of(5120);
        EXPECT_EQ(status, MAMBA_STATUS_OK) << mamba_last_error();
        EXPECT_TRUE(launched_last(log, "causal_conv1d_channel_last_kernel")) << log;
    }
    for (const char * variable : {"MAMBA_CUDA_CONV_KERNEL", "MAMBA_CUDA_CONV_SEGMENTS", "MAMBA_CUDA_CONV_STAGES"})
        for (const int64_t dim : {5120, 5116}) {  // a call the tiled kernel takes, and a cut vector
            const mt::ScopedEnv misspelt(variable, "7x");
            const auto [status, log] = conv_of(dim);
            EXPECT_EQ(status, MAMBA_STATUS_INVALID_ARGUMENT) << variable << ", dim " << dim;
            EXPECT_NE(std::string(mamba_last_error()).find(variable), std::string::npos) << mamba_last_error();
            EXPECT_FALSE(launched(log, "causal_conv1d_tiled_kernel")) << log;
            EXPECT_FALSE(launched(log, "causal_conv1d_channel_last_kernel")) << log;
        }
}

TEST_F(KernelChoiceTest, InProjConvOperandsLoadEarlyUnlessTheOpBeforeWroteTheConvState) {
    if (std::string why; !pdl_device(why)) GTEST_SKIP() << why;
    // The fused in_proj + conv step at 4 rows (W after the wait there): the conv state, filter and bias
    // load before the wait, unless the op just before wrote the conv state.
    LinearConv op = linear_conv(4, 256, 1024, 512, 4, DType::F32, 17);
    Linear before = linear(1, 64, 256, DType::F32);
    mt::View into_state(op.state, {1, 256}, {256, 1});
    Tensor elsewhere({1, 256}, DType::F32);
    elsewhere.upload(ctx());
    for (bool writes_state : {false, true}) {
        SCOPED_TRACE(writes_state ? "the op before writes the conv state" : "the op before writes elsewhere");
        before.args.y = writes_state ? into_state.dl() : elsewhere.dl();
        const std::string log = traced([&] {
            const mamba_status st = mamba_linear(ctx(), &before.args);
            return st != MAMBA_STATUS_OK ? st : mamba_linear_conv1d_update(ctx(), &op.args);
        });
        EXPECT_TRUE(launched_last(log, writes_state ? "gemv_tiled_conv_kernel" : "gemv_tiled_conv_kernel early")) << log;
    }
}

TEST_F(KernelChoiceTest, NoEarlyReadsWithTheSwitchOffOrOnAStreamNoContextOwns) {
    if (std::string why; !pdl_device(why)) GTEST_SKIP() << why;
    Linear wide = linear(1, 1024, 4096, DType::BF16);
    auto lead_then_linear = [&](mamba_context * c, mt::LeadIn & lead) {
        ::testing::internal::CaptureStderr();
        lead.queue();
        const mamba_status st = mamba_linear(c, &wide.args);
        const std::string log = ::testing::internal::GetCapturedStderr();
        EXPECT_EQ(st, MAMBA_STATUS_OK) << mamba_last_error();
        return log;
    };
    {
        // MAMBA_CUDA_EARLY_WEIGHTS=0 when the context is made.
        const mt::ScopedEnv trace("MAMBA_CUDA_TRACE", "1");
        const mt::ScopedEnv off("MAMBA_CUDA_EARLY_WEIGHTS", "0");
        mt::ContextPtr plain = mt::make_context(MAMBA_DEVICE_CUDA);
        ASSERT_NE(plain, nullptr);
        mt::LeadIn lead(plain.get());
        const std::string log = lead_then_linear(plain.get(), lead);
        EXPECT_TRUE(launched_last(log, "gemv_tiled_kernel")) << log;
    }
    // CUDA's per-thread default stream (the handle cudaStreamPerThread, 0x2): no context owns it, so the
    // library cannot see what else runs there.
    mt::LeadIn lead(ctx());
    MAMBA_ASSERT_OK(mamba_context_set_stream(ctx(), reinterpret_cast<void *>(uintptr_t(2))));
    std::string log = lead_then_linear(ctx(), lead);
    MAMBA_ASSERT_OK(mamba_context_synchronize(ctx()));
    MAMBA_ASSERT_OK(mamba_context_set_stream(ctx(), nullptr));
    EXPECT_TRUE(launched_last(log, "gemv_tiled_kernel")) << log;
    log = lead_then_linear(ctx(), lead);
    EXPECT_TRUE(launched_last(log, "gemv_tiled_kernel early")) << log;
}

TEST_F(KernelChoiceTest, ContextsSharingAStreamCountEachOthersWork) {
    // This context borrows another's own stream: they share what they know of it, so a recorded op of either
    // lets the next call read early, and work of either in between keeps its loads after the wait.
    if (std::string why; !pdl_device(why)) GTEST_SKIP() << why;
    mt::ContextPtr lender = mt::make_context(MAMBA_DEVICE_CUDA);
    ASSERT_NE(lender, nullptr);
    Linear wide = linear(1, 1024, 4096, DType::BF16);
    mt::LeadIn lender_op(lender.get());
    void * stream = nullptr;
    MAMBA_ASSERT_OK(mamba_context_get_stream(lender.get(), &stream));
    MAMBA_ASSERT_OK(mamba_context_set_stream(ctx(), stream));
    std::string log = traced([&] {
        lender_op.queue();  // the lender's recorded op, just before
        return mamba_linear(ctx(), &wide.args);
    });
    EXPECT_TRUE(launched_last(log, "gemv_tiled_kernel early")) << log;
    log = traced([&] {
        const mamba_status st = mamba_linear(ctx(), &wide.args);  // recorded
        if (st != MAMBA_STATUS_OK) return st;
        const mamba_status m = mamba_memset(lender.get(), wide.y.dl()->data, 0, 16);  // the lender's work in between
        return m != MAMBA_STATUS_OK ? m : mamba_linear(ctx(), &wide.args);
    });
    EXPECT_TRUE(launched_last(log, "gemv_tiled_kernel")) << log;
    MAMBA_ASSERT_OK(mamba_context_synchronize(ctx()));
    MAMBA_ASSERT_OK(mamba_context_set_stream(ctx(), nullptr));
}

TEST_F(KernelChoiceTest, WorkOnAnotherStreamLeavesTheOwnStreamsRecordAsItWas) {
    // On the own stream an op writes T; the context moves to another stream, queues a recorded op there and
    // comes back: the next call, reading T as its weight, follows the op that wrote T on this stream.
    if (std::string why; !pdl_device(why)) GTEST_SKIP() << why;
    mt::ContextPtr lender = mt::make_context(MAMBA_DEVICE_CUDA);
    ASSERT_NE(lender, nullptr);
    ProducedWeight produced(ctx(), 19);
    mt::LeadIn elsewhere(ctx());
    void * stream = nullptr;
    MAMBA_ASSERT_OK(mamba_context_get_stream(lender.get(), &stream));
    const std::string log = traced([&] {
        mamba_status st = mamba_linear(ctx(), &produced.producer);  // writes w on the own stream
        if (st == MAMBA_STATUS_OK) st = mamba_context_set_stream(ctx(), stream);
        if (st == MAMBA_STATUS_OK) elsewhere.queue();  // a recorded op on the other stream
        if (st == MAMBA_STATUS_OK) st = mamba_context_set_stream(ctx(), nullptr);
        return st != MAMBA_STATUS_OK ? st : mamba_linear(ctx(), &produced.consumer);
    });
    EXPECT_TRUE(launched_last(log, "gemv_warp_kernel")) << log;
}

TEST_F(KernelChoiceTest, NoEarlyReadsAcrossAGraphCapture) {
    // An op writes T; a graph is captured (its work does not run on the stream); the next direct call reads T
    // as its weight: it must not trust the record the captured ops left.
    if (std::string why; !pdl_device(why)) GTEST_SKIP() << why;
    ProducedWeight produced(ctx(), 23);
    mt::LeadIn captured(ctx());
    mamba_graph * graph = nullptr;
    const std::string log = traced([&] {
        mamba_status st = mamba_linear(ctx(), &produced.producer);  // writes w
        if (st == MAMBA_STATUS_OK) st = mamba_graph_capture_begin(ctx());
        if (st == MAMBA_STATUS_OK) captured.queue();  // recorded while captured
        if (st == MAMBA_STATUS_OK) st = mamba_graph_capture_end(ctx(), &graph);
        return st != MAMBA_STATUS_OK ? st : mamba_linear(ctx(), &produced.consumer);
    });
    mamba_graph_free(graph);
    EXPECT_TRUE(launched_last(log, "gemv_warp_kernel")) << log;
}

}  // namespace
