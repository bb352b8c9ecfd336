// mamba_linear against a float64 reference, per backend, over dtype combinations, sizes that do not fill
// a vector register, the decode (few rows) and prefill (many rows) paths, strided views and bad arguments.
#include <dlfcn.h>

#include "backend_test.h"

namespace {

using mt::DType;
using mt::Tensor;

struct Reference {
    std::vector<double> y;
    // sum_k |x_k w_k| per output: the scale of the rounding error of a float32 dot product.
    std::vector<double> magnitude;
};

Reference reference_linear(const Tensor & x, const Tensor & w, const Tensor * bias) {
    const int64_t rows = x.shape()[0], in = x.shape()[1], out = w.shape()[0];
    Reference ref;
    ref.y.assign(size_t(rows * out), 0.0);
    ref.magnitude.assign(size_t(rows * out), 0.0);
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t o = 0; o < out; ++o) {
            double sum = bias ? bias->at(o) : 0.0, mag = bias ? std::fabs(bias->at(o)) : 0.0;
            for (int64_t k = 0; k < in; ++k) {
                const double term = x.at(r * in + k) * w.at(o * in + k);
                sum += term;
                mag += std::fabs(term);
            }
            ref.y[size_t(r * out + o)] = sum;
            ref.magnitude[size_t(r * out + o)] = mag;
        }
    }
    return ref;
}

struct Case {
    int64_t rows, in, out;
    DType x_dtype, w_dtype, y_dtype;
    bool bias = false;
    bool strided_x = false;
    bool strided_w = false;
    bool strided_y = false;
    int64_t bias_stride = 1;
    bool softplus = false;  // mamba_linear_softplus
    int64_t x_pad = 3, y_pad = 4;  // row padding of the strided views
};

std::string describe(const Case & c) {
    return "rows " + std::to_string(c.rows) + " in " + std::to_string(c.in) + " out " + std::to_string(c.out) + " x " +
           mt::dtype_name(c.x_dtype) + " w " + mt::dtype_name(c.w_dtype) + " y " + mt::dtype_name(c.y_dtype) + (c.bias ? " bias" : "") +
           (c.strided_x ? " strided-x" : "") + (c.strided_w ? " strided-w" : "") + (c.strided_y ? " strided-y" : "") + (c.softplus ? " softplus" : "");
}

// The CUDA GEMV kernels (gemv.cu): MAMBA_CUDA_GEMV_VARIANT forces one of them; the CPU backend ignores it.
const char * const kGemvVariants[] = {"tiled", "warp", "gemm"};
const char * const kEarlyWeightKernels[] = {"tiled", "warp"};

}  // namespace

class LinearTest : public mt::BackendTest {
protected:
    // `context`: another context than the fixture's (another thread count); the fixture's by default.
    // With lead_in_ an op whose outputs libmamba records runs just before the call (mt::LeadIn), so that on
    // CUDA the call's kernel loads its first weights before its launch wait.
    void run(const Case & c, mamba_context * context = nullptr) {
        SCOPED_TRACE(describe(c));
        mamba_context * const cx = context ? context : ctx();
        std::mt19937_64 rng(99 + uint64_t(c.rows * 1000003 + c.in * 1009 + c.out));
        const std::vector<int64_t> x_shape{c.rows, c.in}, w_shape{c.out, c.in}, y_shape{c.rows, c.out};
        Tensor x(x_shape, c.x_dtype, c.strided_x ? mt::padded_strides(x_shape, 1, c.x_pad) : std::vector<int64_t>{});
        Tensor w(w_shape, c.w_dtype, c.strided_w ? mt::padded_strides(w_shape, 1, 9) : std::vector<int64_t>{});
        Tensor y(y_shape, c.y_dtype, c.strided_y ? mt::padded_strides(y_shape, 1, c.y_pad) : std::vector<int64_t>{});
        Tensor b({c.out}, c.w_dtype, {c.bias_stride});
        x.fill_uniform(rng, -1, 1);
        w.fill_uniform(rng, -1, 1);
        b.fill_uniform(rng, -1, 1);
        x.upload(cx);
        w.upload(cx);
        y.upload_poisoned(cx);
        mamba_linear_args a{};
        a.x = x.dl();
        a.weight = w.dl();
        a.y = y.dl();
        if (c.bias) {
            b.upload(cx);
            a.bias = b.dl();
        }
        mt::LeadIn lead(cx);
        if (lead_in_) lead.queue();
        MAMBA_ASSERT_OK(c.softplus ? mamba_linear_softplus(cx, &a) : mamba_linear(cx, &a));
        y.download(cx);
        Reference ref = reference_linear(x, w, c.bias ? &b : nullptr);
        if (c.softplus) apply_softplus(ref);
        expect_matches(y.values(), ref, c.y_dtype);
    }

    // The reference of mamba_linear_softplus: softplus of each float64 sum. Its error scale shrinks with the
    // slope of the softplus (the logistic function), so that a sum rounded to y's dtype before the softplus
    // fails where the softplus is small: at a sum of -8 a bfloat16 rounding of the sum alone moves e^-8 by up
    // to 1.6%, four times y's own rounding.
    static void apply_softplus(Reference & ref) {
        for (size_t i = 0; i < ref.y.size(); ++i) {
            const double s = ref.y[i];
            ref.y[i] = s > 30.0 ? s + std::log1p(std::exp(-s)) : std::log1p(std::exp(s));
            ref.magnitude[i] *= 1.0 / (1.0 + std::exp(-s));
        }
    }

    // Each output within float32 accumulation (or bfloat16 pairs holding ~16 bits of x) relative to
    // sum |x w|, plus the rounding of the stored output, of the reference; reports the worst.
    static void expect_matches(const std::vector<double> & got, const Reference & ref, DType y_dtype) {
        ASSERT_EQ(got.size(), ref.y.size());
        const double y_eps = mt::dtype_epsilon(y_dtype);
        double worst = 0.0;
        int64_t worst_at = -1;
        for (size_t i = 0; i < ref.y.size(); ++i) {
            const double tol = 2e-5 * ref.magnitude[i] + 1.01 * y_eps * std::fabs(ref.y[i]) + 1e-6;
            const double err = std::fabs(got[i] - ref.y[i]) / tol;
            if (!(err <= worst)) {  // NaN counts as the worst
                worst = std::isnan(err) ? INFINITY : err;
                worst_at = int64_t(i);
            }
        }
        EXPECT_LE(worst, 1.0) << "at flat index " << worst_at << ": got " << got[size_t(worst_at)] << ", expected " << ref.y[size_t(worst_at)];
    }

    mamba_status call(const DLTensor * x, const DLTensor * w, const DLTensor * bias, DLTensor * y) {
        mamba_linear_args a{};
        a.x = x;
        a.weight = w;
        a.bias = bias;
        a.y = y;
        return mamba_linear(ctx(), &a);
    }

    bool lead_in_ = false;
};

TEST_P(LinearTest, EveryDtypeCombinationMatchesFloat64Reference) {
    const DType all[] = {DType::F32, DType::F16, DType::BF16};
    int variant = 0;
    for (DType xd : all)
        for (DType wd : all)
            for (DType yd : all)
                for (int64_t rows : {1, 3, 64}) {
                    ++variant;
                    run({rows, 67, 45, xd, wd, yd, variant % 2 == 0, variant % 3 == 0});
                }
}

TEST_P(LinearTest, OddSizesOnBothPaths) {
    for (DType wd : {DType::F32, DType::F16, DType::BF16})
        for (int64_t in : {1, 7, 31, 33, 129})
            for (int64_t out : {1, 3, 17})
                for (int64_t rows : {1, 2, 5, 8, 12, 13, 17}) run({rows, in, out, DType::F32, wd, DType::F32, (in + out) % 2 == 1});
}

TEST_P(LinearTest, DecodeAndPrefillShapesOfMamba130m) {
    for (DType wd : {DType::F32, DType::BF16}) {
        for (int64_t rows : {1, 3, 8, 64}) {
            run({rows, 768, 1536, DType::F32, wd, DType::F32, false});
            run({rows, 1536, 768, DType::BF16, wd, DType::BF16, true});
        }
    }
}

TEST_P(LinearTest, ManyRowsAndManyPanels) {
    // More rows than one staging block and more output features than one panel.
    run({600, 40, 2100, DType::BF16, DType::BF16, DType::BF16, true});
    run({600, 40, 2100, DType::F32, DType::F32, DType::F32, true, true});
    run({130, 96, 5, DType::F32, DType::F16, DType::F32, true});
}

TEST_P(LinearTest, StridedViews) {
    for (DType wd : {DType::F32, DType::BF16})
        for (int64_t rows : {1, 4, 33}) {
            Case c{rows, 70, 50, DType::F32, wd, DType::F32, true, true, true, true};
            c.bias_stride = 3;
            run(c);
            run({rows, 70, 50, DType::F16, wd, DType::F16, false, false, true, true});
        }
}

TEST_P(LinearTest, EmptyInputGivesTheBias) {
    for (int64_t rows : {1, 20}) {
        run({rows, 0, 6, DType::F32, DType::F32, DType::F32, true});
        run({rows, 0, 6, DType::F32, DType::BF16, DType::F16, false});
    }
}

TEST_P(LinearTest, DecodeResultsDoNotDependOnTheThreadCount) {
    // Each output of the GEMV path is one thread's dot product: the same bits for any number of threads.
    std::vector<mt::ContextPtr> contexts;  // outlive the tensors, whose buffers they own
    for (int32_t threads : {1, 2, 3}) {
        contexts.push_back(mt::make_context(GetParam(), 0, threads));
        ASSERT_NE(contexts.back(), nullptr);
    }
    std::mt19937_64 rng(3);
    Tensor x({3, 300}, DType::F32), w({777, 300}, DType::BF16), b({777}, DType::F32), y({3, 777}, DType::F32);
    x.fill_uniform(rng, -1, 1);
    w.fill_uniform(rng, -1, 1);
    b.fill_uniform(rng, -1, 1);
    std::vector<std::vector<double>> results;
    for (const mt::ContextPtr & context : contexts) {
        for (Tensor * t : {&x, &w, &b}) t->upload(context.get());
        y.upload_poisoned(context.get());
        mamba_linear_args a{};
        a.x = x.dl();
        a.weight = w.dl();
        a.bias = b.dl();
        a.y = y.dl();
        MAMBA_ASSERT_OK(mamba_linear(context.get(), &a));
        y.download(context.get());
        results.push_back(y.values());
    }
    EXPECT_EQ(results[0], results[1]);
    EXPECT_EQ(results[0], results[2]);
}

TEST_P(LinearTest, PrefillMatchesFloat64ReferenceForAnyThreadCount) {
    // The GEMM path splits the output features between threads in column shares; widths that do not divide
    // evenly leave some shares short or empty, and each must still be computed exactly once.
    for (int32_t threads : {1, 2, 3, 5, 8}) {
        SCOPED_TRACE("threads " + std::to_string(threads));
        const mt::ContextPtr context = mt::make_context(GetParam(), 0, threads);
        ASSERT_NE(context, nullptr);
        for (int64_t out : {17, 40, 200, 1001}) {
            run({40, 50, out, DType::F32, DType::F32, DType::F32, true}, context.get());
            run({40, 50, out, DType::F32, DType::BF16, DType::F32, false, false, false, true}, context.get());
        }
    }
}

TEST_P(LinearTest, GemvRowCountsEveryDtypeCombination) {
    // Up to 16 rows take the CUDA GEMV kernel (row buckets 1, 2, 4, 8, 16), 17 the GEMM path. 771 columns:
    // odd, not a multiple of the 16-byte vector, and more than one x tile at 16 rows; 45 outputs: not a
    // multiple of the 4 outputs per warp.
    const DType all[] = {DType::F32, DType::F16, DType::BF16};
    int variant = 0;
    for (DType xd : all)
        for (DType wd : all)
            for (DType yd : all)
                for (int64_t rows : {1, 2, 5, 16, 17}) {
                    ++variant;
                    run({rows, 771, 45, xd, wd, yd, variant % 2 == 0, variant % 3 == 0});
                }
}
TEST_P(LinearTest, GemvVectorTailsAndOutputSplits) {
    for (DType wd : {DType::F32, DType::F16, DType::BF16}) {
        for (int64_t rows : {1, 2, 5, 16}) {
            // Columns not a multiple of the vector width (4 float32 or 8 half elements), some below one vector.
            for (int64_t in : {1, 3, 13, 36, 261}) run({rows, in, 37, DType::F32, wd, DType::F32, in % 2 == 1, rows == 5});
            // A W row stride that is not a whole number of 16-byte vectors (element loads).
            run({rows, 64, 29, DType::BF16, wd, DType::F32, true, false, true});
        }
        // Output counts that give 1, 2 and 8 warps per block along the outputs (the rest split the columns).
        for (int64_t out : {200, 2200, 9000}) run({2, 40, out, DType::F32, wd, DType::BF16, true, true});
        // One row with more columns than one x tile (8192).
        run({1, 8203, 5, DType::F32, wd, DType::F32, true});
    }
}
TEST_P(LinearTest, GemvMisalignedViewsUseElementLoads) {
    // x, W and y each start one element past a 16-byte boundary, so no 16-byte load of W is allowed; every
    // GEMV kernel variant.
    for (const char * variant : kernel_variants(kGemvVariants))
        for (DType wd : {DType::F32, DType::F16, DType::BF16})
            for (int64_t rows : {1, 5, 16}) {
                const mt::ScopedEnv forced("MAMBA_CUDA_GEMV_VARIANT", variant);
                SCOPED_TRACE(std::string("variant ") + variant + " w " + mt::dtype_name(wd) + " rows " + std::to_string(rows));
                const int64_t in = 72, out = 19;
                std::mt19937_64 rng(uint64_t(rows) * 31 + uint64_t(wd));
                // Buffers one element longer per row; the views skip the first element of the buffer.
                Tensor x_buf({rows, in + 1}, DType::F32), w_buf({out, in + 8}, wd), y_buf({rows, out + 1}, DType::BF16);
                x_buf.fill_uniform(rng, -1, 1);
                w_buf.fill_uniform(rng, -1, 1);
                x_buf.upload(ctx());
                w_buf.upload(ctx());
                y_buf.upload_poisoned(ctx());
                mt::View xv(x_buf, {rows, in}, {in + 1, 1}, sizeof(float));
                mt::View wv(w_buf, {out, in}, {in + 8, 1}, mt::dtype_size(wd));
                mt::View yv(y_buf, {rows, out}, {out + 1, 1}, 2);  // one bfloat16
                ASSERT_EQ(call(xv.dl(), wv.dl(), nullptr, yv.dl()), MAMBA_STATUS_OK) << mamba_last_error();
                y_buf.download(ctx());
                // What the views hold, for the reference and the comparison.
                Tensor x_seen({rows, in}, DType::F32), w_seen({out, in}, wd);
                std::vector<double> y_seen;
                for (int64_t r = 0; r < rows; ++r)
                    for (int64_t k = 0; k < in; ++k) x_seen.at(r * in + k) = x_buf.at(r * (in + 1) + k + 1);
                for (int64_t o = 0; o < out; ++o)
                    for (int64_t k = 0; k < in; ++k) w_seen.at(o * in + k) = w_buf.at(o * (in + 8) + k + 1);
                for (int64_t r = 0; r < rows; ++r)
                    for (int64_t o = 0; o < out; ++o) y_seen.push_back(y_buf.at(r * (out + 1) + o + 1));
                expect_matches(y_seen, reference_linear(x_seen, w_seen, nullptr), DType::BF16);
                // The element before each y row is outside the view and stays poisoned.
                for (int64_t r = 0; r < rows; ++r) EXPECT_TRUE(std::isnan(y_buf.at(r * (out + 1)))) << "row " << r;
            }
}
TEST_P(LinearTest, GemvEveryVariantEveryRowCount) {
    // Each GEMV kernel variant over rows 1..16 (every row bucket, counts between buckets), every dtype mix
    // in turn, bias, padded (misaligned) row strides of x, W and y, and 261 columns (not a multiple of the
    // 16-byte vector: a tail vector, and x tails that must read as zero).
    const DType all[] = {DType::F32, DType::F16, DType::BF16};
    int mix = 0;
    for (const char * variant : kernel_variants(kGemvVariants)) {
        SCOPED_TRACE(std::string("variant ") + variant);
        const mt::ScopedEnv forced("MAMBA_CUDA_GEMV_VARIANT", variant);
        for (int64_t rows = 1; rows <= 16; ++rows) {
            ++mix;
            run({rows, 261, 37, all[mix % 3], all[(mix / 3) % 3], all[(mix / 9) % 3], rows % 2 == 1, rows % 3 == 0, rows % 4 == 1, rows % 5 == 2});
        }
    }
}
TEST_P(LinearTest, GemvEveryVariantOverTheLaunchPlans) {
    // Shapes that take each branch of the warp kernel's plan: lanes per output 4, 8, 16 and 32 (rows of
    // 13, 38, 88 and 320 bfloat16 vectors), column splits over 2..8 warps (few outputs, long rows: the
    // x_proj shape), short rows with many outputs (dt_proj), a partial last lane group, and more outputs
    // than one wave; float32 W (4-element vectors) and half W (8).
    for (const char * variant : kernel_variants(kGemvVariants)) {
        SCOPED_TRACE(std::string("variant ") + variant);
        const mt::ScopedEnv forced("MAMBA_CUDA_GEMV_VARIANT", variant);
        for (DType wd : {DType::F32, DType::BF16, DType::F16}) {
            for (int64_t in : {100, 300, 700, 2560}) run({1, in, 45, DType::F32, wd, DType::F32, in != 300});
            run({1, 5120, 24, DType::F32, wd, DType::F32, true});
            run({2, 5120, 7, DType::BF16, wd, DType::F32, false, false, true});
            run({1, 160, 1000, DType::F32, wd, DType::BF16, true});
            run({2, 40, 3001, DType::F16, wd, DType::F32, true, true});
            run({1, 2560, 1030, DType::BF16, wd, DType::F32});
            run({4, 1000, 300, DType::F32, wd, DType::F32, true});
        }
        for (int64_t in : {0, 1, 8}) run({2, in, 20, DType::F32, DType::BF16, DType::F32, true});
    }
}
TEST_P(LinearTest, GemvFirstWeightsLoadedBeforeTheLaunchWait) {
    // After an op whose outputs are recorded (lead_in_), the one-row tiled kernel loads its first W batch
    // before the PDL wait, the warp kernel its two batches (test_kernel_choice.cpp checks that they do).
    // The tiled kernel with 4 and 32 outputs a block (32: 8448 outputs), rows longer than one x tile (8192
    // columns: the later tiles load as before), the warp kernel's column splits, a vector tail, misaligned W
    // (element loads), no columns, and more rows (the tiled kernel loads W after the wait there).
    lead_in_ = true;
    for (const char * variant : kernel_variants(kEarlyWeightKernels)) {
        SCOPED_TRACE(std::string("variant ") + variant);
        const mt::ScopedEnv forced("MAMBA_CUDA_GEMV_VARIANT", variant);
        const bool tiled = std::string(variant) == "tiled";
        for (DType wd : {DType::F32, DType::BF16, DType::F16}) {
            run({1, 2560, 1030, DType::BF16, wd, DType::F32});
            run({1, 5120, 200, DType::BF16, wd, DType::BF16, true});
            if (tiled) run({1, 8200, 96, DType::F32, wd, DType::F32});
            run({1, 261, 37, DType::F16, wd, DType::F32, true, false, true, true});
            run({2, 700, 45, DType::F32, wd, DType::F32, true});
            run({1, 0, 20, DType::F32, wd, DType::F32, true});
            if (tiled) run({3, 700, 45, DType::F32, wd, DType::F32, true});
        }
        if (tiled) run({1, 64, 8448, DType::BF16, DType::BF16, DType::BF16});  // 32 outputs a block on 132 SMs
    }
}
TEST_P(LinearTest, GemvEvictFirstChangesNoResult) {
    // MAMBA_CUDA_GEMV_EVICT=first only changes W's L2 priority: each GEMV kernel, with and without its first
    // loads before the launch wait, 16-byte and element loads (padded W rows), a vector tail, several x tiles
    // and several rows still match the reference. The CPU backend reads no such variable.
    const mt::ScopedEnv evict("MAMBA_CUDA_GEMV_EVICT", "first");
    for (const bool lead : {false, true}) {
        lead_in_ = lead;
        for (const char * variant : kernel_variants(kEarlyWeightKernels)) {
            SCOPED_TRACE(std::string("variant ") + variant + (lead ? ", after a recorded op" : ""));
            const mt::ScopedEnv forced("MAMBA_CUDA_GEMV_VARIANT", variant);
            for (DType wd : {DType::F32, DType::BF16, DType::F16}) {
                run({1, 2560, 1030, DType::BF16, wd, DType::F32});
                run({2, 261, 37, DType::F16, wd, DType::F32, true, false, true, true});
                run({1, 5120, 200, DType::BF16, wd, DType::BF16, true});
            }
            if (std::string(variant) == "tiled") run({3, 8200, 96, DType::F32, DType::BF16, DType::F32});
        }
    }
}
TEST_P(LinearTest, UnknownGemvEvictIsRejected) {
    // A misspelt MAMBA_CUDA_GEMV_EVICT fails every call (also those that cuBLAS takes) and launches nothing.
    // (Rows past the GEMV's 16 too: linear.cu asks the GEMV first.)
    if (!on_cuda()) GTEST_SKIP() << "the CPU backend has no GEMV kernels";
    Tensor x({1, 64}, DType::F32), w({16, 64}, DType::BF16), y({1, 16}, DType::F32);
    std::mt19937_64 rng(6);
    x.fill_uniform(rng, -1, 1);
    w.fill_uniform(rng, -1, 1);
    x.upload(ctx());
    w.upload(ctx());
    y.upload_poisoned(ctx());
    for (const char * variant : {"", "gemm"}) {
        const mt::ScopedEnv forced("MAMBA_CUDA_GEMV_VARIANT", variant);
        const mt::ScopedEnv evict("MAMBA_CUDA_GEMV_EVICT", "last");
        EXPECT_EQ(call(x.dl(), w.dl(), nullptr, y.dl()), MAMBA_STATUS_INVALID_ARGUMENT) << "variant '" << variant << "'";
        EXPECT_STREQ(mamba_last_error(), "mamba_linear: MAMBA_CUDA_GEMV_EVICT must be one of first, normal, conv, plain (or unset), not 'last'");
    }
    y.download(ctx());
    for (double v : y.values()) EXPECT_TRUE(std::isnan(v));
    const mt::ScopedEnv normal("MAMBA_CUDA_GEMV_EVICT", "normal");
    MAMBA_ASSERT_OK(call(x.dl(), w.dl(), nullptr, y.dl()));
    y.download(ctx());
    expect_matches(y.values(), reference_linear(x, w, nullptr), DType::F32);
}
TEST_P(LinearTest, Bf16WeightsWithWiderInputOnTheGemmPath) {
    // More rows than the GEMV takes: on CUDA a float32/float16 x is split into two bfloat16 parts for
    // the tensor cores, which must keep float32 accuracy, also over long dot products.
    for (DType xd : {DType::F32, DType::F16})
        for (DType yd : {DType::F32, DType::BF16, DType::F16}) {
            run({17, 4096, 70, xd, DType::BF16, yd, true});
            run({40, 1000, 33, xd, DType::BF16, yd, false, true, false, true});
            run({130, 257, 129, xd, DType::BF16, yd, yd == DType::F32});
        }
}
// MAMBA_CPU_GEMM picks the CPU's prefill GEMM: AMX tiles for bfloat16 weights ("auto" where the CPU, the build and
// the operating system allow them; "amx" fails elsewhere), the AVX-512 register kernels ("auto" next, where the library
// was built with AVX-512; "avx512" fails elsewhere), or OpenBLAS ("blas"). Shapes with partial tiles in every
// dimension (rows, in and out not multiples of 32), several weight panels, few outputs (row shares), every x and y
// dtype (a bfloat16 x is not split), strided views and a bias, on 1, 2 and 3 threads.
class CpuGemmTest : public LinearTest {
protected:
    void SetUp() override {
        LinearTest::SetUp();
        if (on_cuda()) GTEST_SKIP() << "MAMBA_CPU_GEMM is read by the CPU backend";
    }
    // Whether "amx" runs here: a small call that either succeeds or says why not.
    bool amx_runs() {
        Tensor x({13, 32}, DType::F32), w({16, 32}, DType::BF16), y({13, 16}, DType::F32);
        for (Tensor * t : {&x, &w}) t->upload(ctx());
        y.upload(ctx());
        const mt::ScopedEnv amx("MAMBA_CPU_GEMM", "amx");
        const mamba_status st = call(x.dl(), w.dl(), nullptr, y.dl());
        if (st == MAMBA_STATUS_OK) return true;
        EXPECT_EQ(st, MAMBA_STATUS_UNSUPPORTED);
        EXPECT_STREQ(mamba_last_error(), "mamba_linear: MAMBA_CPU_GEMM=amx, but this CPU, build or operating system has no usable AMX tiles");
        return false;
    }
    // The AVX-512 kernels over run_shapes and shapes of their own (Avx512RegistersMatchFloat64Reference).
    void run_avx512_shapes();
    void run_shapes(const char * gemm) {
        const mt::ScopedEnv env("MAMBA_CPU_GEMM", gemm);
        for (int32_t threads : {1, 2, 3}) {
            SCOPED_TRACE(std::string("MAMBA_CPU_GEMM=") + gemm + ", threads " + std::to_string(threads));
            const mt::ContextPtr context = mt::make_context(GetParam(), 0, threads);
            ASSERT_NE(context, nullptr);
            run({13, 67, 45, DType::F32, DType::BF16, DType::F32, true}, context.get());
            run({77, 33, 100, DType::F16, DType::BF16, DType::BF16}, context.get());
            run({64, 1000, 600, DType::F32, DType::BF16, DType::F32, true}, context.get());
            run({40, 50, 17, DType::BF16, DType::BF16, DType::F16, true}, context.get());
            run({200, 96, 20, DType::F32, DType::BF16, DType::F32, true}, context.get());
            Case strided{33, 70, 50, DType::F32, DType::BF16, DType::F32, true, true, true, true};
            strided.bias_stride = 3;
            run(strided, context.get());
        }
    }
};

TEST_P(CpuGemmTest, OpenBlasMatchesFloat64Reference) { run_shapes("blas"); }

TEST_P(CpuGemmTest, Avx512RegistersMatchFloat64Reference) {
    {
        Tensor x({13, 32}, DType::F32), w({16, 32}, DType::BF16), y({13, 16}, DType::F32);
        for (Tensor * t : {&x, &w}) t->upload(ctx());
        y.upload(ctx());
        const mt::ScopedEnv avx512("MAMBA_CPU_GEMM", "avx512");
        const mamba_status st = call(x.dl(), w.dl(), nullptr, y.dl());
        if (st != MAMBA_STATUS_OK) {
            EXPECT_EQ(st, MAMBA_STATUS_UNSUPPORTED);
            EXPECT_STREQ(mamba_last_error(), "mamba_linear: MAMBA_CPU_GEMM=avx512, but this library was built without AVX-512");
            GTEST_SKIP() << "built without AVX-512";
        }
    }
    // A bfloat16 x and W on vdpbf16ps ("dot", where the build has AVX512-BF16), widened to float32 FMAs ("widen"), or
    // as timed on this CPU ("auto").
    std::vector<const char *> products{"auto", "widen"};
    {
        Tensor x({13, 32}, DType::BF16), w({16, 32}, DType::BF16), y({13, 16}, DType::F32);
        for (Tensor * t : {&x, &w}) t->upload(ctx());
        y.upload(ctx());
        const mt::ScopedEnv avx512("MAMBA_CPU_GEMM", "avx512"), dot("MAMBA_CPU_GEMM_BF16", "dot");
        const mamba_status st = call(x.dl(), w.dl(), nullptr, y.dl());
        if (st == MAMBA_STATUS_OK) {
            products.push_back("dot");
        } else {
            EXPECT_EQ(st, MAMBA_STATUS_UNSUPPORTED);
            EXPECT_STREQ(mamba_last_error(), "mamba_linear: MAMBA_CPU_GEMM_BF16=dot, but this library was built without AVX512-BF16");
        }
    }
    for (const char * choice : products) {
        SCOPED_TRACE(std::string("MAMBA_CPU_GEMM_BF16=") + choice);
        const mt::ScopedEnv bf16_products("MAMBA_CPU_GEMM_BF16", choice);
        run_avx512_shapes();
    }
    // A misspelt value fails every call, those the GEMV takes (1 row) too.
    const mt::ScopedEnv misspelt("MAMBA_CPU_GEMM_BF16", "bf16");
    for (const int64_t rows : {13, 1}) {
        Tensor x({rows, 32}, DType::F32), w({16, 32}, DType::F32), y({rows, 16}, DType::F32);
        for (Tensor * t : {&x, &w}) t->upload(ctx());
        y.upload(ctx());
        EXPECT_EQ(call(x.dl(), w.dl(), nullptr, y.dl()), MAMBA_STATUS_INVALID_ARGUMENT) << rows << " rows";
        EXPECT_STREQ(mamba_last_error(), "mamba_linear: MAMBA_CPU_GEMM_BF16 must be one of auto, dot, widen (or unset), not 'bf16'");
    }
}

void CpuGemmTest::run_avx512_shapes() {
    run_shapes("avx512");
    // Beyond run_shapes' bfloat16 weights: float32 and float16 weights (widened as they are packed), K over several
    // ranges of steps (768 float32 values, 768 bfloat16 pairs), an odd K of bfloat16 x and W (no whole pairs: widened),
    // more columns than one packed block, and one column.
    const mt::ScopedEnv env("MAMBA_CPU_GEMM", "avx512");
    for (int32_t threads : {1, 2, 3}) {
        SCOPED_TRACE("threads " + std::to_string(threads));
        const mt::ContextPtr context = mt::make_context(GetParam(), 0, threads);
        ASSERT_NE(context, nullptr);
        run({45, 300, 97, DType::F32, DType::F32, DType::F32, true}, context.get());
        run({30, 129, 50, DType::BF16, DType::F16, DType::BF16, true}, context.get());
        run({21, 1700, 70, DType::F32, DType::F16, DType::F32}, context.get());
        run({19, 3100, 53, DType::BF16, DType::BF16, DType::F32, true}, context.get());
        run({26, 77, 40, DType::BF16, DType::BF16, DType::BF16}, context.get());
        run({17, 64, 1000, DType::BF16, DType::BF16, DType::F32}, context.get());
        run({50, 96, 1, DType::F32, DType::BF16, DType::F32, true}, context.get());
        Case strided{35, 130, 60, DType::BF16, DType::BF16, DType::F16, true, true, true, true};
        strided.bias_stride = 2;
        run(strided, context.get());
    }
}

TEST_P(CpuGemmTest, AmxTilesMatchFloat64Reference) {
    if (!amx_runs()) GTEST_SKIP() << "no usable AMX tiles here";
    run_shapes("amx");
    run_shapes("auto");
}

TEST_P(CpuGemmTest, SettingsItCannotHonourAreRejected) {
    Tensor x({13, 32}, DType::F32), w({16, 32}, DType::F32), y({13, 16}, DType::F32);
    for (Tensor * t : {&x, &w}) t->upload(ctx());
    y.upload(ctx());
    {
        const mt::ScopedEnv amx("MAMBA_CPU_GEMM", "amx");
        EXPECT_EQ(call(x.dl(), w.dl(), nullptr, y.dl()), MAMBA_STATUS_UNSUPPORTED);
        EXPECT_STREQ(mamba_last_error(), "mamba_linear: MAMBA_CPU_GEMM=amx, but the AMX GEMM takes bfloat16 weights only");
    }
    const mt::ScopedEnv misspelt("MAMBA_CPU_GEMM", "mkl");
    EXPECT_EQ(call(x.dl(), w.dl(), nullptr, y.dl()), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_linear: MAMBA_CPU_GEMM must be one of auto, amx, avx512, blas (or unset), not 'mkl'");
}

TEST_P(CpuGemmTest, OpenBlasRunsInTheCallingThread) {
    // The CPU backend calls BLAS from its own OpenMP workers; an OpenBLAS that the host application (or its default)
    // left on several threads is set back to one before the call, whatever cblas.h the library was built with. The
    // controls are looked up in this process, which loaded the library's BLAS.
    using GetThreads = int (*)();
    using SetThreads = void (*)(int);
    const auto get = reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
    const auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
    if (get == nullptr || set == nullptr) GTEST_SKIP() << "the BLAS loaded here is not OpenBLAS";
    const int before = get();
    set(2);
    const int two = get();
    if (two == 2) {
        const mt::ScopedEnv blas("MAMBA_CPU_GEMM", "blas");
        run({64, 1000, 600, DType::F32, DType::BF16, DType::F32, true});
        EXPECT_EQ(get(), 1);
    }
    set(before);
    if (two != 2) GTEST_SKIP() << "this OpenBLAS takes no second thread";
}

MAMBA_INSTANTIATE_BACKENDS(CpuGemmTest);

TEST_P(LinearTest, BatchedDecodeOnEitherSideOfTheGemmCrossover) {
    // The default kernel choice on CUDA (gemv.cu's gemv_variant): rows of a 16-bit x and W go to cuBLAS in
    // one GEMM from 2 rows with at least 2048 outputs and from 8 rows at any shape (padded rows of x and y
    // too, as cuBLAS's leading dimensions); one row, fewer outputs below 8 rows, or a bias stay on the GEMV.
    // Every side matches the reference.
    for (int64_t rows : {1, 2, 5, 7, 8, 16}) {
        run({rows, 1024, 2048, DType::BF16, DType::BF16, DType::BF16});
        run({rows, 1024, 2047, DType::BF16, DType::BF16, DType::BF16});
        run({rows, 2560, 192, DType::F16, DType::F16, DType::F32});
    }
    run({16, 160, 5120, DType::BF16, DType::BF16, DType::BF16});
    run({4, 1024, 2048, DType::BF16, DType::BF16, DType::BF16, true});
    run({4, 1024, 2048, DType::BF16, DType::BF16, DType::F32, true});
    run({9, 1024, 2048, DType::BF16, DType::BF16, DType::BF16, false, true, false, true});
}
TEST_P(LinearTest, ZeroRowsIsANoOp) {
    Tensor x({0, 8}, DType::F32), w({4, 8}, DType::F32), y({0, 4}, DType::F32);
    std::mt19937_64 rng(1);
    w.fill_uniform(rng, -1, 1);
    x.upload(ctx());
    w.upload(ctx());
    y.upload_poisoned(ctx());
    MAMBA_ASSERT_OK(call(x.dl(), w.dl(), nullptr, y.dl()));
}

TEST_P(LinearTest, UnknownGemvVariantIsRejected) {
    // A misspelt MAMBA_CUDA_GEMV_VARIANT fails the call instead of quietly running the default kernel;
    // nothing is launched, so y keeps its poison.
    if (!on_cuda()) GTEST_SKIP() << "the CPU backend has no GEMV kernel variants";
    Tensor x({1, 64}, DType::F32), w({16, 64}, DType::BF16), y({1, 16}, DType::F32);
    std::mt19937_64 rng(5);
    x.fill_uniform(rng, -1, 1);
    w.fill_uniform(rng, -1, 1);
    x.upload(ctx());
    w.upload(ctx());
    y.upload_poisoned(ctx());
    {
        const mt::ScopedEnv forced("MAMBA_CUDA_GEMV_VARIANT", "Warp");
        EXPECT_EQ(call(x.dl(), w.dl(), nullptr, y.dl()), MAMBA_STATUS_INVALID_ARGUMENT);
        EXPECT_STREQ(mamba_last_error(), "mamba_linear: MAMBA_CUDA_GEMV_VARIANT must be one of tiled, warp, gemm (or unset), not 'Warp'");
    }
    y.download(ctx());
    for (double v : y.values()) EXPECT_TRUE(std::isnan(v));
    // Empty is the same as unset: the library's own choice.
    const mt::ScopedEnv empty("MAMBA_CUDA_GEMV_VARIANT", "");
    MAMBA_ASSERT_OK(call(x.dl(), w.dl(), nullptr, y.dl()));
    y.download(ctx());
    expect_matches(y.values(), reference_linear(x, w, nullptr), DType::F32);
}

TEST_P(LinearTest, GemvWarpKernelRejectsRowsTooLongToCount) {
    // The warp kernel counts a row's vectors in int: it refuses more than INT32_MAX - 16 input features
    // with an error before any launch. x and weight claim that many columns over a small buffer; nothing
    // reads past it, because the check comes first, and y (the buffer's first element) keeps its poison.
    if (!on_cuda()) GTEST_SKIP() << "the CPU backend has no GEMV kernel variants (and would read the claimed columns)";
    Tensor buffer({64}, DType::F32);
    buffer.upload_poisoned(ctx());
    int64_t long_row[2] = {1, int64_t(INT32_MAX) - 15}, one[2] = {1, 1};
    DLTensor x = *buffer.dl();
    x.ndim = 2;
    x.shape = long_row;
    x.strides = nullptr;
    x.dtype = mt::dl_dtype(DType::BF16);
    x.byte_offset += 64;  // past y
    DLTensor y = *buffer.dl();
    y.ndim = 2;
    y.shape = one;
    y.strides = nullptr;
    const mt::ScopedEnv forced("MAMBA_CUDA_GEMV_VARIANT", "warp");
    EXPECT_EQ(call(&x, &x, nullptr, &y), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(),
                 "mamba_linear: argument 'weight' has 2147483632 input features; the warp GEMV kernel (MAMBA_CUDA_GEMV_VARIANT=warp) takes at most "
                 "2147483631");
    buffer.download(ctx());
    for (double v : buffer.values()) EXPECT_TRUE(std::isnan(v));
}

// mamba_linear_softplus: on CUDA the small-K tensor-core kernel takes bfloat16 or float16 x and W with K a
// multiple of 8 up to 160 and 16-byte aligned x rows (K = 40 and 16 are padded to whole k steps with zeros;
// K = 256, 264 and 37, misaligned x rows and the other dtypes fall back to cuBLAS and the epilogue pass);
// partial row and column tiles, odd output widths, an odd y row stride (element stores) and a bias of stride 3.
TEST_P(LinearTest, SoftplusMatchesFloat64Reference) {
    struct Types {
        DType x, w;
    };
    const Types types[] = {{DType::BF16, DType::BF16}, {DType::F16, DType::F16}, {DType::F32, DType::BF16}, {DType::F32, DType::F32}};
    const int64_t shapes[][3] = {{1, 48, 72}, {33, 160, 200}, {100, 40, 130}, {64, 256, 64}, {7, 264, 9}, {20, 37, 11}, {70, 16, 65}};
    int variant = 0;
    for (const Types & t : types)
        for (DType yd : {DType::F32, DType::BF16, DType::F16})
            for (const auto & s : shapes) {
                Case c{s[0], s[1], s[2], t.x, t.w, yd, ++variant % 2 == 0};
                c.softplus = true;
                run(c);
            }
    // x as columns of a wider buffer (the model's dt_rank columns of x_proj's output), aligned or not; y with
    // an odd row stride.
    for (int64_t x_pad : {32, 3}) {
        Case c{50, 160, 96, DType::BF16, DType::BF16, DType::BF16, true, true, false, true};
        c.softplus = true;
        c.x_pad = x_pad;
        c.y_pad = 1;
        c.bias_stride = 3;
        run(c);
    }
}

// Enough column tiles that the small-K kernel's blocks each take several row tiles in turn (the copy of the
// next tile in flight while the current one is used): mamba-2.8b's dt_proj width with 700 rows.
TEST_P(LinearTest, SoftplusOverManyRowTilesPerBlock) {
    Case c{700, 160, 5120, DType::BF16, DType::BF16, DType::BF16, true};
    c.softplus = true;
    run(c);
}

// More output columns than the small-K kernel's grid holds column tiles of (65535 of 256 columns): it declines, and the
// call runs on the fallback (cuBLAS or the GEMV, then the epilogue pass) with the same result, rather than failing its
// launch. 16777224 columns over K = 8: a 268 MB weight, so only on a GPU.
TEST_P(LinearTest, SoftplusWiderThanTheSmallKGridTakesTheFallback) {
    if (!on_cuda()) GTEST_SKIP() << "a GPU-sized weight (268 MB)";
    Case c{2, 8, 65535 * 256 + 8, DType::BF16, DType::BF16, DType::BF16, true};
    c.softplus = true;
    run(c);
}

TEST_P(LinearTest, SoftplusNamesItsOwnCall) {
    Tensor x({2, 8}, DType::F32), w({4, 7}, DType::F32), y({2, 4}, DType::F32);
    for (Tensor * t : {&x, &w, &y}) t->upload(ctx());
    mamba_linear_args a{};
    a.x = x.dl();
    a.weight = w.dl();
    a.y = y.dl();
    EXPECT_EQ(mamba_linear_softplus(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_linear_softplus: argument 'weight' has shape (4, 7), expected (*, 8)");
    EXPECT_EQ(mamba_linear_softplus(ctx(), nullptr), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_linear_softplus: argument 'args' is null");
}

TEST_P(LinearTest, ShapeMismatchesNameTheArgument) {
    Tensor x({2, 8}, DType::F32), w({4, 7}, DType::F32), w_ok({4, 8}, DType::F32), y({2, 4}, DType::F32), y_bad({3, 4}, DType::F32),
        bias_bad({5}, DType::F32);
    for (Tensor * t : {&x, &w, &w_ok, &y, &y_bad, &bias_bad}) t->upload(ctx());
    EXPECT_EQ(call(x.dl(), w.dl(), nullptr, y.dl()), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_linear: argument 'weight' has shape (4, 7), expected (*, 8)");
    EXPECT_EQ(call(x.dl(), w_ok.dl(), nullptr, y_bad.dl()), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_linear: argument 'y' has shape (3, 4), expected (2, 4)");
    EXPECT_EQ(call(x.dl(), w_ok.dl(), bias_bad.dl(), y.dl()), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_linear: argument 'bias' has shape (5,), expected (4,)");
    EXPECT_EQ(call(x.dl(), w_ok.dl(), nullptr, nullptr), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_linear: argument 'y' is null");
    EXPECT_EQ(mamba_linear(ctx(), nullptr), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_linear: argument 'args' is null");
}

TEST_P(LinearTest, LayoutsItCannotReadAreRejected) {
    // x with a strided last axis (a transposed view).
    Tensor xt({2, 8}, DType::F32, {1, 2}), w({4, 8}, DType::F32), wt({4, 8}, DType::F32, {1, 4}), x({2, 8}, DType::F32),
        y({2, 4}, DType::F32), yt({2, 4}, DType::F32, {1, 2}), xi({2, 8}, DType::I32), w3({4, 8, 1}, DType::F32);
    for (Tensor * t : {&xt, &w, &wt, &x, &y, &yt, &xi, &w3}) t->upload(ctx());
    EXPECT_EQ(call(xt.dl(), w.dl(), nullptr, y.dl()), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_linear: argument 'x' must have stride 1 along its last axis (has 2)");
    EXPECT_EQ(call(x.dl(), wt.dl(), nullptr, y.dl()), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_linear: argument 'weight' must have stride 1 along its last axis (has 4)");
    EXPECT_EQ(call(x.dl(), w.dl(), nullptr, yt.dl()), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_linear: argument 'y' must have stride 1 along its last axis (has 2)");
    EXPECT_EQ(call(x.dl(), w3.dl(), nullptr, y.dl()), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_linear: argument 'weight' has 3 axes (4, 8, 1), expected 2");
    EXPECT_EQ(call(xi.dl(), w.dl(), nullptr, y.dl()), MAMBA_STATUS_UNSUPPORTED);
    EXPECT_NE(std::string(mamba_last_error()).find("argument 'x' has dtype int32"), std::string::npos) << mamba_last_error();
}

TEST_P(LinearTest, OutputOverlappingAnInputIsRejected) {
    Tensor buf({4, 8}, DType::F32), w({8, 8}, DType::F32), y_rows({2, 4}, DType::F32, {2, 1});
    buf.upload(ctx());
    w.upload(ctx());
    y_rows.upload(ctx());
    // y is x itself (in place).
    EXPECT_EQ(call(buf.dl(), w.dl(), nullptr, buf.dl()), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_linear: arguments 'y' and 'x' overlap in memory");
    // y whose rows overlap each other.
    Tensor x({2, 8}, DType::F32), w4({4, 8}, DType::F32);
    x.upload(ctx());
    w4.upload(ctx());
    EXPECT_EQ(call(x.dl(), w4.dl(), nullptr, y_rows.dl()), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_linear: argument 'y' has row stride 2 shorter than its 4 features: its rows overlap");
}

MAMBA_INSTANTIATE_BACKENDS(LinearTest);
