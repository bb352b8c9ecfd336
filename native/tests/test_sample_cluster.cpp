// The two CUDA sampling kernels (sampling_cluster.cu: one thread-block cluster a row; sampling.cu: one
// block a row) against the CPU backend: with every filter, ties at the cuts, masked and penalized logits,
// on vocabularies on both sides of the cluster kernel's size classes, all three draw the same tokens.
// Also how MAMBA_CUDA_SAMPLE_KERNEL chooses and refuses.
#include <random>
#include <string>

#include "support.h"

namespace {

using mt::DType;
using mt::Tensor;
using mt::sampling;

// The tokens one context draws; `kernel` is MAMBA_CUDA_SAMPLE_KERNEL for the call (nullptr: unset).
std::vector<int64_t> draw(mamba_context * ctx, const char * kernel, Tensor & logits, Tensor * history, const mamba_sampling_params & s,
                          uint64_t step) {
    const mt::ScopedEnv choice("MAMBA_CUDA_SAMPLE_KERNEL", kernel);
    SCOPED_TRACE(kernel ? kernel : "default kernel");
    logits.upload(ctx);
    if (history) history->upload(ctx);
    return mt::sample_tokens(ctx, logits, s, step, history);
}

// Rows that exercise the filters' corners: plain random logits; 100 tied maxima (top-k and top-p cut
// inside the tie, by id); a row masked to a few tokens; a row whose largest logits sit at its end (the
// last block of a cluster); a row of mostly equal weights (top-p's cut falls deep into the vocabulary).
Tensor corner_rows(int64_t vocab, DType dtype, std::mt19937_64 & rng) {
    const int64_t rows = 5;
    Tensor logits({rows, vocab}, dtype);
    logits.fill_uniform(rng, -4, 4);
    for (int64_t i = 0; i < 100; ++i) logits.at(vocab + 7 * i) = 6.0;
    for (int64_t i = 0; i < vocab; ++i) logits.at(2 * vocab + i) = (i % 997 == 3) ? double(i % 5) : -INFINITY;
    for (int64_t i = vocab - 40; i < vocab; ++i) logits.at(3 * vocab + i) = 7.0 + 0.01 * double(i % 13);
    for (int64_t i = 0; i < vocab; ++i) logits.at(4 * vocab + i) = 0.001 * double(i % 3);
    logits.round_to_dtype();
    return logits;
}

}  // namespace

TEST(SampleKernels, BlockAndClusterKernelsDrawTheCpuTokens) {
    MAMBA_REQUIRE_CUDA();
    const mt::ContextPtr cpu = mt::make_context(MAMBA_DEVICE_CPU), gpu = mt::make_context(MAMBA_DEVICE_CUDA);
    ASSERT_NE(cpu, nullptr);
    ASSERT_NE(gpu, nullptr);
    mamba_device_info info{};
    ASSERT_EQ(mamba_device_get_info(MAMBA_DEVICE_CUDA, 0, &info), MAMBA_STATUS_OK);
    const bool clusters = info.compute_capability_major >= 9;
    struct Setting {
        const char * name;
        mamba_sampling_params params;
        bool history;
    };
    const Setting settings[] = {
        {"greedy", sampling(0.0f, 0, 1.0f, 0.0f, 1.0f, 1), false},
        {"greedy + penalty", sampling(0.0f, 0, 1.0f, 0.0f, 1.5f, 1), true},
        {"temperature 0.9", sampling(0.9f, 0, 1.0f, 0.0f, 1.0f, 2), false},
        {"top_k 50 + penalty 1.2", sampling(0.8f, 50, 1.0f, 0.0f, 1.2f, 3), true},
        {"top_k 1", sampling(1.0f, 1, 1.0f, 0.0f, 1.0f, 4), false},
        {"top_p 0.9 + min_p 0.05", sampling(0.8f, 0, 0.9f, 0.05f, 1.0f, 5), false},
        {"top_p 0.3", sampling(1.0f, 0, 0.3f, 0.0f, 1.0f, 6), false},
        {"every filter", sampling(1.3f, 200, 0.8f, 0.02f, 1.1f, 7), true},
    };
    std::mt19937_64 rng(21);
    // 1003 and 32768: the small class; 32769, 50280 and 65536: the large one; 70000: the block kernel only.
    for (int64_t vocab : {int64_t(1003), int64_t(32768), int64_t(32769), int64_t(50280), int64_t(65536), int64_t(70000)}) {
        for (DType dtype : {DType::F32, DType::BF16}) {
            Tensor logits = corner_rows(vocab, dtype, rng);
            Tensor history({logits.shape()[0], 24}, DType::I32);
            std::uniform_int_distribution<int64_t> id(0, vocab - 1);
            for (int64_t i = 0; i < history.numel(); ++i) history.at(i) = i % 11 == 0 ? -1.0 : double(id(rng));
            for (int64_t i = 0; i < 24; ++i) history.at(24 + i) = double(7 * i);  // penalize some of row 1's tied maxima
            for (const Setting & setting : settings) {
                for (uint64_t step : {0u, 1u, 2u}) {
                    SCOPED_TRACE(std::string(setting.name) + ", vocabulary " + std::to_string(vocab) + ", " + mt::dtype_name(dtype) + ", step " +
                                 std::to_string(step));
                    Tensor * h = setting.history ? &history : nullptr;
                    const auto expected = draw(cpu.get(), nullptr, logits, h, setting.params, step);
                    ASSERT_EQ(expected.size(), size_t(logits.shape()[0]));
                    EXPECT_EQ(draw(gpu.get(), "block", logits, h, setting.params, step), expected) << "block kernel";
                    if (clusters && vocab <= 65536) {
                        EXPECT_EQ(draw(gpu.get(), "cluster", logits, h, setting.params, step), expected) << "cluster kernel";
                    }
                    EXPECT_EQ(draw(gpu.get(), nullptr, logits, h, setting.params, step), expected) << "default kernel";
                }
            }
        }
    }
}

TEST(SampleKernels, ClusterKernelRefusesWhatItCannotHold) {
    MAMBA_REQUIRE_CUDA();
    const mt::ContextPtr gpu = mt::make_context(MAMBA_DEVICE_CUDA);
    ASSERT_NE(gpu, nullptr);
    mamba_device_info info{};
    ASSERT_EQ(mamba_device_get_info(MAMBA_DEVICE_CUDA, 0, &info), MAMBA_STATUS_OK);
    Tensor logits({2, 65537}, DType::F32), tokens({2}, DType::I64);
    std::mt19937_64 rng(22);
    logits.fill_uniform(rng, -1, 1);
    logits.upload(gpu.get());
    tokens.upload_poisoned(gpu.get());
    mamba_sample_args a{};
    a.logits = logits.dl();
    a.tokens = tokens.dl();
    a.params = sampling(1.0f, 0, 0.9f, 0.0f, 1.0f, 1);
    {
        const mt::ScopedEnv choice("MAMBA_CUDA_SAMPLE_KERNEL", "cluster");
        EXPECT_EQ(mamba_sample(gpu.get(), &a), MAMBA_STATUS_UNSUPPORTED);
        const std::string why = info.compute_capability_major >= 9 ? "the vocabulary is larger than one cluster holds (65536 ids)"
                                                                    : "thread-block clusters need compute capability 9.0 or newer";
        EXPECT_EQ(std::string(mamba_last_error()),
                  "mamba_sample: MAMBA_CUDA_SAMPLE_KERNEL=cluster cannot sample this call (batch 2, vocabulary 65537): " + why);
    }
    {
        const mt::ScopedEnv choice("MAMBA_CUDA_SAMPLE_KERNEL", "fast");
        EXPECT_EQ(mamba_sample(gpu.get(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
        EXPECT_STREQ(mamba_last_error(), "mamba_sample: MAMBA_CUDA_SAMPLE_KERNEL must be one of block, cluster (or unset), not 'fast'");
    }
    // Unset, the block kernel takes the vocabulary the cluster kernel cannot hold.
    const mt::ScopedEnv unset("MAMBA_CUDA_SAMPLE_KERNEL", nullptr);
    EXPECT_EQ(mamba_sample(gpu.get(), &a), MAMBA_STATUS_OK) << mamba_last_error();
    tokens.download(gpu.get());
    for (double t : tokens.values()) EXPECT_TRUE(t >= 0 && t < 65537) << t;
}
