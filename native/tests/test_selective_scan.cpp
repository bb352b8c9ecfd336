// mamba_selective_scan and mamba_selective_state_update against a float64 reference, per backend, dtype,
// layout and option; scan/state-update consistency; argument errors.
#include "backend_test.h"
#include "selective_scan_problems.h"

using namespace scan_test;

// Kernels of the CUDA scan's contiguous channel and (b, l, d) rows paths (MAMBA_CUDA_SCAN_VARIANT): duo
// (the channel path's default; on the rows path it runs split, that path's default), split, base.
const char * const kScanVariants[] = {"duo", "split", "base"};

class SelectiveScanTest : public mt::BackendTest {
protected:
    // Calls run() once per scan variant (CUDA; the CPU backend once) with MAMBA_CUDA_SCAN_VARIANT set.
    template <class F>
    void for_each_scan_variant(F && run) {
        for (const char * variant : kernel_variants(kScanVariants)) {
            SCOPED_TRACE(std::string("MAMBA_CUDA_SCAN_VARIANT=") + variant);
            const mt::ScopedEnv scoped("MAMBA_CUDA_SCAN_VARIANT", variant);
            run();
        }
    }

    // Runs the problem with every scan variant and compares y and the final state with the float64
    // reference; outputs are poisoned again before each run.
    void check(ScanProblem & p) {
        const auto ref = reference_scan(p);
        for_each_scan_variant([&] {
            p.upload(ctx());
            auto a = p.args();
            MAMBA_ASSERT_OK(mamba_selective_scan(ctx(), &a));
            p.y.download(ctx());
            EXPECT_CLOSE(p.y.values(), ref.y, tolerance(p.dt.out), tolerance(p.dt.out));
            if (p.o.final_state) {
                p.final_state.download(ctx());
                EXPECT_CLOSE(p.final_state.values(), ref.final_state, tolerance(DType::F32), tolerance(DType::F32));
            }
        });
    }

    // Each shape in float32, bfloat16 and float16, with and without z, delta bias and softplus, through check().
    template <size_t N>
    void check_in_every_dtype(const ScanShape (&shapes)[N], Layout layout, uint64_t seed) {
        const Dtypes dtypes[] = {{DType::F32, DType::F32, DType::F32}, {DType::BF16, DType::BF16, DType::BF16}, {DType::F16, DType::F16, DType::F16}};
        for (const auto & dt : dtypes) {
            for (int options = 0; options < 2; ++options) {
                ScanOptions o;
                o.z = o.delta_bias = o.softplus = options == 0;
                for (const auto & s : shapes) {
                    SCOPED_TRACE(std::string(mt::dtype_name(dt.in)) + " options " + std::to_string(options) + " batch " + std::to_string(s.batch) + " dim " +
                                 std::to_string(s.dim) + " len " + std::to_string(s.len) + " dstate " + std::to_string(s.dstate));
                    ScanProblem p(s, o, dt, layout, seed++);
                    check(p);
                }
            }
        }
    }
};

TEST_P(SelectiveScanTest, MatchesFloat64Reference) {
    const ScanShape shapes[] = {
        {1, 8, 1, 4, 1, true},       // a single step
        {2, 24, 37, 16, 2, true},    // odd length, groups whose channels do not fill a vector block
        {1, 40, 300, 16, 1, false},  // long, time-invariant B and C, several time tiles
        {3, 16, 5, 1, 4, true},      // dstate 1, four groups of four channels
        {2, 20, 70, 64, 1, true},    // tiles of a larger state
        {2, 64, 300, 16, 2, true},   // enough work to be split over threads
    };
    const Dtypes dtypes[] = {{DType::F32, DType::F32, DType::F32},
                             {DType::F16, DType::F16, DType::F16},
                             {DType::BF16, DType::BF16, DType::BF16},
                             {DType::BF16, DType::F16, DType::F32}};
    uint64_t seed = 1;
    for (const auto & dt : dtypes) {
        for (Layout layout : {Layout::Contiguous, Layout::Padded, Layout::Permuted}) {
            for (const auto & s : shapes) {
                SCOPED_TRACE(std::string(mt::dtype_name(dt.in)) + "/" + mt::dtype_name(dt.bc) + "/" + mt::dtype_name(dt.out) + " " +
                             layout_name(layout) + " batch " + std::to_string(s.batch) + " dim " + std::to_string(s.dim) + " len " +
                             std::to_string(s.len) + " dstate " + std::to_string(s.dstate) + " groups " + std::to_string(s.groups));
                ScanProblem p(s, ScanOptions{}, dt, layout, seed++);
                check(p);
            }
        }
    }
}

// Long sequences over few channels: on CUDA these run 1 to 16 lanes per channel with the sequence split
// into segments (state carried across segment boundaries), masked final chunks, blocks only partly
// filled with channels, padded state sizes, rows too misaligned for 16-byte loads, and (batch, len, dim)
// buffers read in place (shared memory tiles, or one step at a time when dim is not whole 16-byte pieces).
TEST_P(SelectiveScanTest, LongSequencesOverFewChannels) {
    const ScanShape shapes[] = {
        {1, 256, 3000, 16, 2, true},  // many segments, two groups of 128 channels, length not a multiple of 8
        {2, 200, 1096, 16, 1, true},  // dim not a multiple of the block, a final chunk of 8 steps
        {1, 64, 2056, 5, 1, true},    // dstate 5 padded to 8, last segment shorter than the others
        {1, 128, 520, 1, 1, true},    // dstate 1, two segments
        {1, 96, 1001, 16, 1, true},   // odd length: rows not 16-byte aligned
        {1, 8, 4096, 4, 1, true},     // very few channels, long
    };
    const Dtypes dtypes[] = {{DType::F32, DType::F32, DType::F32}, {DType::BF16, DType::BF16, DType::BF16}, {DType::F16, DType::F16, DType::F16}};
    uint64_t seed = 500;
    for (const auto & dt : dtypes) {
        for (Layout layout : {Layout::Contiguous, Layout::Permuted}) {  // (b, d, l) and (b, l, d) buffers
            for (const auto & s : shapes) {
                SCOPED_TRACE(std::string(mt::dtype_name(dt.in)) + " " + layout_name(layout) + " batch " + std::to_string(s.batch) + " dim " +
                             std::to_string(s.dim) + " len " + std::to_string(s.len) + " dstate " + std::to_string(s.dstate) + " groups " +
                             std::to_string(s.groups));
                ScanProblem p(s, ScanOptions{}, dt, layout, seed++);
                check(p);
            }
        }
    }
}

// (batch, len, dim) views of u, delta, z, y and (batch, len, groups, dstate) views of B, C, as the model
// passes them: on CUDA these are staged in shared memory tiles of whole time rows (16-byte copies) when
// dim is a whole number of 16-byte pieces, else read step by step. Lengths not a multiple of the tile,
// blocks partly filled with channels, dims that allow 16-byte pieces only for float32, groups, batch > 1,
// segments over few channels, dstate padded or too small for 16-byte B/C rows, with and without z and
// initial/final state.
TEST_P(SelectiveScanTest, TimeMajorViewsThroughSharedTiles) {
    const ScanShape shapes[] = {
        {1, 256, 1000, 16, 1, true},  // segments, length not a multiple of 16
        {2, 136, 77, 16, 1, true},    // batch 2, the last block only partly filled with channels
        {1, 52, 300, 16, 1, true},    // dim 52: 16-byte pieces for float32 only; 16-bit types fall back
        {3, 256, 50, 16, 2, true},    // three rows, two groups of 128 channels
        {1, 64, 2000, 8, 1, true},    // dstate 8, very few channels, many segments
        {1, 128, 600, 5, 1, true},    // dstate 5 padded to 8: B/C staged element by element
        {1, 128, 333, 4, 2, true},    // dstate 4: B/C rows of 8 bytes for 16-bit types
        {2, 128, 1, 16, 1, true},     // a single step
        {1, 1024, 129, 16, 1, true},  // many blocks, one step past a whole number of tiles
    };
    const Dtypes dtypes[] = {{DType::F32, DType::F32, DType::F32}, {DType::BF16, DType::BF16, DType::BF16}, {DType::F16, DType::F16, DType::F16}};
    uint64_t seed = 700;
    for (const auto & dt : dtypes) {
        for (int variant = 0; variant < 3; ++variant) {
            ScanOptions o;
            o.z = variant != 1;
            o.initial_state = o.final_state = variant != 2;
            o.delta_bias = variant != 1;
            for (const auto & s : shapes) {
                SCOPED_TRACE(std::string(mt::dtype_name(dt.in)) + " variant " + std::to_string(variant) + " batch " + std::to_string(s.batch) + " dim " +
                             std::to_string(s.dim) + " len " + std::to_string(s.len) + " dstate " + std::to_string(s.dstate) + " groups " +
                             std::to_string(s.groups));
                ScanProblem p(s, o, dt, Layout::Permuted, seed++);
                check(p);
            }
        }
    }
}

// Shapes aimed at the contiguous channel path, which every scan variant implements (check() runs each):
// segments with a masked last chunk, dstate 12 padded to 16, dstate 4 and 8, channels enough to fill an
// H200 without segments, a length ending in a partial 16-byte piece, one step, and no z, no bias and no
// softplus.
TEST_P(SelectiveScanTest, EveryVariantOnTheChannelPath) {
    const ScanShape shapes[] = {
        {1, 256, 1500, 16, 1, true},  // segments, a masked last chunk
        {2, 128, 700, 12, 2, true},   // dstate 12 padded to 16, two groups
        {1, 128, 904, 8, 1, true},    // dstate 8, segments, last chunk of 8 steps
        {2, 64, 328, 4, 1, true},     // dstate 4
        {1, 35840, 24, 16, 1, true},  // channels enough to fill an H200 without segments
        {1, 64, 1, 16, 1, true},      // one step
    };
    check_in_every_dtype(shapes, Layout::Contiguous, 900);
}

// Shapes aimed at the (b, l, d) rows path, which every scan variant runs (check() runs each; duo runs split
// there): split's 64-channel tiles partly filled (dim 200: 3 tiles and 8 channels; dim 36 for float32
// only), segments
// with a masked last tile, dstate 12 padded to 16 (B/C staged element by element), dstate 8 with 16-byte
// B/C rows, two groups of 128 channels, batch 2, a single step, and no z, no bias and no softplus.
TEST_P(SelectiveScanTest, EveryVariantOnTheRowsPath) {
    const ScanShape shapes[] = {
        {1, 200, 1500, 16, 1, true},  // segments, a masked last tile, the last tile 8 channels wide
        {2, 256, 700, 12, 2, true},   // dstate 12 padded to 16, two groups
        {1, 128, 904, 8, 1, true},    // dstate 8, segments, a last tile of 8 steps
        {1, 36, 77, 16, 1, true},     // float32: one tile of 36 channels; 16-bit types read step by step
        {2, 64, 1, 16, 1, true},      // one step
        {1, 5120, 300, 16, 1, true},  // the 2.8b width: 7 segments of 48 steps on an H200 (the workspace limit binds)
        {1, 5120, 1000, 16, 1, true}, // split's one-wave plan: 8 segments of 128 steps on an H200, the last partial
        {4, 5120, 64, 16, 1, true},   // B4 at the 2.8b width: no segments on an H200 (the one-wave plan keeps it whole)
    };
    check_in_every_dtype(shapes, Layout::Permuted, 1000);
}

// The model's prefill call on CUDA: dt made by mamba_linear_softplus, so neither a delta bias nor a softplus
// (the rows path's kernels built without them), with z, D and the states, over segments at the 2.8b width.
TEST_P(SelectiveScanTest, DtGivenWithGateOnTheRowsPath) {
    const ScanShape shapes[] = {{1, 5120, 1000, 16, 1, true}, {1, 200, 1500, 16, 1, true}, {2, 128, 300, 8, 1, true}};
    const Dtypes dtypes[] = {{DType::F32, DType::F32, DType::F32}, {DType::BF16, DType::BF16, DType::BF16}};
    uint64_t seed = 1200;
    for (const auto & dt : dtypes)
        for (const auto & s : shapes) {
            SCOPED_TRACE(std::string(mt::dtype_name(dt.in)) + " dim " + std::to_string(s.dim) + " len " + std::to_string(s.len));
            ScanOptions o;
            o.delta_bias = o.softplus = false;
            ScanProblem p(s, o, dt, Layout::Permuted, seed++);
            check(p);
        }
}

// An unknown MAMBA_CUDA_SCAN_VARIANT is an argument error that names the variable and the accepted values
// (CUDA); the CPU backend ignores the variable.
TEST_P(SelectiveScanTest, UnknownScanVariantIsRejected) {
    ScanProblem p({1, 256, 300, 16, 1, true}, ScanOptions{}, {}, Layout::Contiguous, 950);
    p.upload(ctx());
    const auto a = p.args();
    {
        const mt::ScopedEnv scoped("MAMBA_CUDA_SCAN_VARIANT", "bogus");
        const mamba_status status = mamba_selective_scan(ctx(), &a);
        if (on_cuda()) {
            EXPECT_EQ(status, MAMBA_STATUS_INVALID_ARGUMENT);
            const std::string error = mamba_last_error();
            EXPECT_NE(error.find("MAMBA_CUDA_SCAN_VARIANT"), std::string::npos) << error;
            EXPECT_NE(error.find("one of base, split, duo (or unset)"), std::string::npos) << error;
            EXPECT_NE(error.find("'bogus'"), std::string::npos) << error;
        } else {
            EXPECT_EQ(status, MAMBA_STATUS_OK) << mamba_last_error();
        }
    }
    // The context stays usable: the same call with the variable unset gives the reference.
    const mt::ScopedEnv unset("MAMBA_CUDA_SCAN_VARIANT", nullptr);
    check(p);
}

// The model's exact views: u, delta, y (1, dim, len) over (len, dim) buffers, z the second half of the
// (len, 2 * dim) in_proj output, and B, C columns of the x_proj output (len, rank + 2 * dstate) at offsets
// rank and rank + dstate; the final state written over the initial state. On CUDA: the shared tile path
// with 16-byte B/C row copies; one 512-step chunk split into segments.
TEST_P(SelectiveScanTest, ModelChunkViewsOfProjectionOutputs) {
    const int64_t Dm = 256, L = 520, N = 16, rank = 24, W = rank + 2 * N;
    const Dtypes dtypes[] = {{DType::F32, DType::F32, DType::F32}, {DType::BF16, DType::BF16, DType::BF16}, {DType::F16, DType::F16, DType::F16}};
    uint64_t seed = 800;
    for (const auto & dt : dtypes) {
        SCOPED_TRACE(mt::dtype_name(dt.in));
        ScanProblem p({1, Dm, L, N, 1, true}, ScanOptions{}, dt, Layout::Permuted, seed++);
        // z inside a (len, 2 * dim) buffer, B and C inside a (len, W) buffer, unused parts random.
        std::mt19937_64 rng(seed++);
        Tensor xz({1, L, 2 * Dm}, dt.in), xdbl({1, L, W}, dt.bc);
        xz.fill_uniform(rng, -1, 1);
        xdbl.fill_uniform(rng, -1, 1);
        for (int64_t t = 0; t < L; ++t) {
            for (int64_t d = 0; d < Dm; ++d) xz.at(t * 2 * Dm + Dm + d) = p.z.at(d * L + t);
            for (int64_t n = 0; n < N; ++n) {
                xdbl.at(t * W + rank + n) = p.B.at(n * L + t);
                xdbl.at(t * W + rank + N + n) = p.C.at(n * L + t);
            }
        }
        p.upload(ctx());
        xz.upload(ctx());
        xdbl.upload(ctx());
        const auto ref = reference_scan(p);
        const int64_t es = int64_t(mt::dtype_size(dt.in));
        mt::View z(xz, {1, Dm, L}, {L * 2 * Dm, 1, 2 * Dm}, uint64_t(Dm * es));
        mt::View B(xdbl, {1, 1, N, L}, {L * W, N, 1, W}, uint64_t(rank * es));
        mt::View C(xdbl, {1, 1, N, L}, {L * W, N, 1, W}, uint64_t((rank + N) * es));
        const std::vector<double> initial = p.initial_state.values();
        for_each_scan_variant([&] {
            p.initial_state.values() = initial;  // the previous run downloaded its final state into it
            p.upload(ctx());                     // y poisoned again
            auto a = p.args();
            a.z = z.dl();
            a.B = B.dl();
            a.C = C.dl();
            a.final_state = p.initial_state.dl();
            MAMBA_ASSERT_OK(mamba_selective_scan(ctx(), &a));
            p.y.download(ctx());
            p.initial_state.download(ctx());
            EXPECT_CLOSE(p.y.values(), ref.y, tolerance(dt.out), tolerance(dt.out));
            EXPECT_CLOSE(p.initial_state.values(), ref.final_state, tolerance(DType::F32), tolerance(DType::F32));
        });
    }
}

// The final state written over the initial state it was read from (one tensor for both), on a problem
// long enough to be split into segments on CUDA: the result must not depend on which part ran first.
TEST_P(SelectiveScanTest, FinalStateOverwritesInitialStateInPlace) {
    ScanProblem p({1, 128, 2000, 16, 1, true}, ScanOptions{}, {}, Layout::Contiguous, 600);
    const auto ref = reference_scan(p);
    const std::vector<double> initial = p.initial_state.values();
    for_each_scan_variant([&] {
        p.initial_state.values() = initial;  // the previous run downloaded its final state into it
        p.upload(ctx());                     // y poisoned again
        auto a = p.args();
        a.final_state = p.initial_state.dl();
        MAMBA_ASSERT_OK(mamba_selective_scan(ctx(), &a));
        p.y.download(ctx());
        p.initial_state.download(ctx());
        EXPECT_CLOSE(p.y.values(), ref.y, tolerance(DType::F32), tolerance(DType::F32));
        EXPECT_CLOSE(p.initial_state.values(), ref.final_state, tolerance(DType::F32), tolerance(DType::F32));
    });
}

TEST_P(SelectiveScanTest, EveryOptionalPresentAndAbsent) {
    for (int mask = 0; mask < 64; ++mask) {
        ScanOptions o;
        o.D = mask & 1;
        o.z = mask & 2;
        o.delta_bias = mask & 4;
        o.softplus = mask & 8;
        o.initial_state = mask & 16;
        o.final_state = mask & 32;
        for (bool variable : {true, false}) {
            SCOPED_TRACE("options mask " + std::to_string(mask) + (variable ? " variable B/C" : " fixed B/C"));
            ScanProblem p({2, 20, 11, 8, variable ? 2 : 1, variable}, o, {}, Layout::Contiguous, 100 + uint64_t(mask));
            check(p);
        }
    }
}

TEST_P(SelectiveScanTest, LargestStateSize) {
    ScanProblem p({1, 18, 9, MAMBA_MAX_DSTATE, 1, true}, ScanOptions{}, {}, Layout::Padded, 7);
    check(p);
}

TEST_P(SelectiveScanTest, ExtremeDeltasThroughSoftplus) {
    // delta + bias far into both tails of softplus: dt from ~1e-13 to ~30.
    ScanProblem p({1, 16, 24, 8, 1, true}, ScanOptions{}, {}, Layout::Contiguous, 11);
    std::mt19937_64 rng(12);
    p.delta.fill_uniform(rng, -30, 30);
    check(p);
}

TEST_P(SelectiveScanTest, ZeroLengthCopiesInitialState) {
    ScanProblem p({2, 8, 0, 4, 1, true}, ScanOptions{}, {}, Layout::Contiguous, 13);
    check(p);
}

// Scanning [0, L) equals scanning [0, k) and then [k, L) from the first part's final state; the second
// part writes its final state over its initial state in place.
TEST_P(SelectiveScanTest, TwoHalvesWithCarriedStateEqualTheWhole) {
    const ScanShape whole_shape{2, 24, 29, 16, 2, true};
    const int64_t Bt = whole_shape.batch, Dm = whole_shape.dim, L = whole_shape.len, N = whole_shape.dstate, G = whole_shape.groups;
    const int64_t k = 12;
    ScanProblem whole(whole_shape, ScanOptions{}, {}, Layout::Contiguous, 21);
    whole.upload(ctx());
    auto wa = whole.args();
    MAMBA_ASSERT_OK(mamba_selective_scan(ctx(), &wa));
    whole.y.download(ctx());
    whole.final_state.download(ctx());

    // Copies the time range [t0, t1) of `from` (time is the last axis) into `to`.
    auto take_time = [](const Tensor & from, Tensor & to, int64_t t0, int64_t t1) {
        const int64_t len = from.shape().back(), rows = from.numel() / len;
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t t = t0; t < t1; ++t) to.at(r * (t1 - t0) + t - t0) = from.at(r * len + t);
    };
    std::vector<double> y_parts(size_t(Bt * Dm * L));
    Tensor carried({Bt, Dm, N}, DType::F32);
    carried.values() = whole.initial_state.values();
    carried.upload(ctx());
    for (auto [t0, t1] : {std::pair<int64_t, int64_t>{0, k}, {k, L}}) {
        ScanProblem part({Bt, Dm, t1 - t0, N, G, true}, ScanOptions{}, {}, Layout::Contiguous, 22);
        for (auto [from, to] : {std::pair<Tensor *, Tensor *>{&whole.u, &part.u}, {&whole.delta, &part.delta}, {&whole.z, &part.z},
                                {&whole.B, &part.B}, {&whole.C, &part.C}})
            take_time(*from, *to, t0, t1);
        part.A.values() = whole.A.values();
        part.D.values() = whole.D.values();
        part.delta_bias.values() = whole.delta_bias.values();
        part.upload(ctx());
        auto a = part.args();
        a.initial_state = carried.dl();
        a.final_state = carried.dl();
        MAMBA_ASSERT_OK(mamba_selective_scan(ctx(), &a));
        part.y.download(ctx());
        for (int64_t r = 0; r < Bt * Dm; ++r)
            for (int64_t t = t0; t < t1; ++t) y_parts[size_t(r * L + t)] = part.y.at(r * (t1 - t0) + t - t0);
    }
    carried.download(ctx());
    EXPECT_CLOSE(y_parts, whole.y.values(), 1e-5, 1e-5);
    EXPECT_CLOSE(carried.values(), whole.final_state.values(), 1e-5, 1e-5);
}

// ---- errors ----------------------------------------------------------------------------------------

class SelectiveScanErrorTest : public SelectiveScanTest {
protected:
    // A valid small problem whose arguments each test then breaks one at a time.
    ScanProblem p{{2, 8, 5, 4, 2, true}, ScanOptions{}, {}, Layout::Contiguous, 31};
    void SetUp() override {
        SelectiveScanTest::SetUp();
        if (!IsSkipped()) p.upload(ctx());
    }
    void expect_error(const mamba_selective_scan_args & a, mamba_status status, const std::string & message) {
        EXPECT_EQ(mamba_selective_scan(ctx(), &a), status) << mamba_last_error();
        EXPECT_NE(std::string(mamba_last_error()).find(message), std::string::npos) << mamba_last_error();
    }
};

TEST_P(SelectiveScanErrorTest, ValidProblemPasses) {
    auto a = p.args();
    MAMBA_ASSERT_OK(mamba_selective_scan(ctx(), &a));
}

TEST_P(SelectiveScanErrorTest, ShapeMismatchNamesTheArgument) {
    Tensor delta({2, 8, 6}, DType::F32);
    delta.upload(ctx());
    auto a = p.args();
    a.delta = delta.dl();
    EXPECT_EQ(mamba_selective_scan(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_selective_scan: argument 'delta' has shape (2, 8, 6), expected (2, 8, 5)");

    Tensor D({9}, DType::F32), state({2, 8, 3}, DType::F32), bc3({2, 4, 5}, DType::F32), fixed({8, 4}, DType::F32);
    for (Tensor * t : {&D, &state, &bc3, &fixed}) t->upload(ctx());
    a = p.args();
    a.D = D.dl();
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "argument 'D' has shape (9,), expected (8,)");
    a = p.args();
    a.initial_state = state.dl();
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "argument 'initial_state' has shape (2, 8, 3), expected (2, 8, 4)");
    a = p.args();
    a.B = bc3.dl();
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "argument 'B' has shape (2, 4, 5), expected (batch, groups, dstate, len)");
    a = p.args();
    a.C = fixed.dl();  // time-invariant C with input-dependent B
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "argument 'C' has shape (8, 4), expected (2, 2, 4, 5)");
}

TEST_P(SelectiveScanErrorTest, GroupsMustDivideDim) {
    Tensor B({2, 3, 4, 5}, DType::F32), C({2, 3, 4, 5}, DType::F32);
    B.upload(ctx());
    C.upload(ctx());
    auto a = p.args();
    a.B = B.dl();
    a.C = C.dl();
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "argument 'B' has shape (2, 3, 4, 5): its 3 groups do not divide dim 8 evenly");
}

TEST_P(SelectiveScanErrorTest, NullPointersAreRejected) {
    auto a = p.args();
    a.u = nullptr;
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "mamba_selective_scan: argument 'u' is null");
    a = p.args();
    a.y = nullptr;
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "mamba_selective_scan: argument 'y' is null");
    EXPECT_EQ(mamba_selective_scan(ctx(), nullptr), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_selective_scan: argument 'args' is null");
    a = p.args();
    EXPECT_EQ(mamba_selective_scan(nullptr, &a), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_selective_scan: argument 'context' is null");
}

TEST_P(SelectiveScanErrorTest, UnsupportedDtypesAreRejected) {
    Tensor ui({2, 8, 5}, DType::I32), A16({8, 4}, DType::BF16), hi({2, 8, 4}, DType::F16);
    for (Tensor * t : {&ui, &A16, &hi}) t->upload(ctx());
    auto a = p.args();
    a.u = ui.dl();
    expect_error(a, MAMBA_STATUS_UNSUPPORTED, "argument 'u' has dtype int32; expected float32, float16 or bfloat16");
    a = p.args();
    a.A = A16.dl();
    expect_error(a, MAMBA_STATUS_UNSUPPORTED, "argument 'A' has dtype bfloat16; expected float32");
    a = p.args();
    a.final_state = hi.dl();
    expect_error(a, MAMBA_STATUS_UNSUPPORTED, "argument 'final_state' has dtype float16; expected float32");
}

TEST_P(SelectiveScanErrorTest, StateLargerThan256IsUnsupported) {
    const int64_t N = MAMBA_MAX_DSTATE + 1;
    Tensor A({8, N}, DType::F32), B({2, 2, N, 5}, DType::F32), C({2, 2, N, 5}, DType::F32);
    for (Tensor * t : {&A, &B, &C}) t->upload(ctx());
    auto a = p.args();
    a.A = A.dl();
    a.B = B.dl();
    a.C = C.dl();
    a.initial_state = nullptr;
    a.final_state = nullptr;
    expect_error(a, MAMBA_STATUS_UNSUPPORTED, "argument 'A' has shape (8, 257): dstate 257 is above the largest supported, 256");
}

TEST_P(SelectiveScanErrorTest, EmptyStateIsRejected) {
    Tensor A({8, 0}, DType::F32), B({2, 2, 0, 5}, DType::F32);
    A.upload(ctx());
    B.upload(ctx());
    auto a = p.args();
    a.A = A.dl();
    a.B = B.dl();
    a.C = B.dl();
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "argument 'A' has shape (8, 0): dstate must be at least 1");
}

TEST_P(SelectiveScanErrorTest, OverlappingOutputsAreRejected) {
    auto a = p.args();
    a.y = const_cast<DLTensor *>(a.u);
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "arguments 'y' and 'u' overlap in memory");
    // final_state may be initial_state itself, but not a shifted view of the same memory.
    a = p.args();
    a.final_state = const_cast<DLTensor *>(a.initial_state);
    MAMBA_ASSERT_OK(mamba_selective_scan(ctx(), &a));
    Tensor buffer({2, 8, 5}, DType::F32);  // room for two (2, 8, 4) views one element apart
    buffer.upload(ctx());
    mt::View base(buffer, {2, 8, 4}, {40, 5, 1}), shifted(buffer, {2, 8, 4}, {40, 5, 1}, 4);
    a.initial_state = base.dl();
    a.final_state = shifted.dl();
    expect_error(a, MAMBA_STATUS_INVALID_ARGUMENT, "arguments 'final_state' and 'initial_state' overlap in memory without being the same view");
}

MAMBA_INSTANTIATE_BACKENDS(SelectiveScanTest);
MAMBA_INSTANTIATE_BACKENDS(SelectiveScanErrorTest);
