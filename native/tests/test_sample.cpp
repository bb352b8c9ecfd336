// mamba_sample: greedy and filtered sampling against a float64 model of the filters, the repetition
// penalty, reproducibility of the seeded draws, and bad parameters. Also the Philox generator itself.
#include <algorithm>
#include <map>
#include <numeric>
#include <set>

#include "../src/core/rng.h"
#include "backend_test.h"

namespace {

using mt::DType;
using mt::Tensor;

// Random123's published known-answer vectors for Philox-4x32-10.
TEST(Philox, MatchesKnownAnswers) {
    const mamba::Philox4x32 zero = mamba::philox4x32_10({{0, 0, 0, 0}}, 0, 0);
    EXPECT_EQ(zero.v[0], 0x6627e8d5u);
    EXPECT_EQ(zero.v[1], 0xe169c58du);
    EXPECT_EQ(zero.v[2], 0xbc57ac4cu);
    EXPECT_EQ(zero.v[3], 0x9b00dbd8u);
    const mamba::Philox4x32 ones = mamba::philox4x32_10({{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}}, 0xffffffffu, 0xffffffffu);
    EXPECT_EQ(ones.v[0], 0x408f276du);
    EXPECT_EQ(ones.v[1], 0x41c83b0eu);
    EXPECT_EQ(ones.v[2], 0xa20bc7c6u);
    EXPECT_EQ(ones.v[3], 0x6d5451fdu);
    const mamba::Philox4x32 pi = mamba::philox4x32_10({{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}}, 0xa4093822u, 0x299f31d0u);
    EXPECT_EQ(pi.v[0], 0xd16cfe09u);
    EXPECT_EQ(pi.v[1], 0x94fdccebu);
    EXPECT_EQ(pi.v[2], 0x5001e420u);
    EXPECT_EQ(pi.v[3], 0x24126ea1u);
}

TEST(Philox, UniformDoubleCoversTheUnitInterval) {
    EXPECT_EQ(mamba::uniform_double(0, 0), 0.0);
    EXPECT_LT(mamba::uniform_double(0xffffffffu, 0xffffffffu), 1.0);
    EXPECT_GT(mamba::uniform_double(0xffffffffu, 0xffffffffu), 1.0 - 1e-15);
    EXPECT_EQ(mamba::uniform_double(0x80000000u, 0), 0.5);
}

// The first index of the largest value.
int64_t reference_argmax(const double * v, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; ++i)
        if (v[i] > v[best]) best = i;
    return best;
}

std::vector<double> apply_penalty(std::vector<double> v, const std::vector<int64_t> & history, double penalty) {
    const std::set<int64_t> seen(history.begin(), history.end());
    for (int64_t id : seen)
        if (id >= 0) v[size_t(id)] = v[size_t(id)] < 0 ? v[size_t(id)] * penalty : v[size_t(id)] / penalty;
    return v;
}

// The distribution the filters leave, in float64: penalty, temperature, top-k, top-p, min-p, renormalized.
std::vector<double> filtered_probabilities(const std::vector<double> & logits, const std::vector<int64_t> & history,
                                           const mamba_sampling_params & s) {
    std::vector<double> v = apply_penalty(logits, history, s.repetition_penalty);
    for (double & x : v) x /= s.temperature;
    std::vector<int64_t> order(v.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return v[size_t(a)] > v[size_t(b)]; });
    if (s.top_k > 0 && size_t(s.top_k) < order.size()) order.resize(size_t(s.top_k));
    double total = 0.0;
    for (int64_t i : order) total += std::exp(v[size_t(i)] - v[size_t(order[0])]);
    std::vector<double> p(v.size(), 0.0);
    for (int64_t i : order) p[size_t(i)] = std::exp(v[size_t(i)] - v[size_t(order[0])]) / total;
    if (s.top_p < 1.0f) {
        double cumulative = 0.0;
        size_t keep = order.size();
        for (size_t k = 0; k < order.size(); ++k) {
            cumulative += p[size_t(order[k])];
            if (cumulative >= s.top_p) {
                keep = k + 1;
                break;
            }
        }
        for (size_t k = keep; k < order.size(); ++k) p[size_t(order[k])] = 0.0;
    }
    const double most = p[size_t(order[0])];
    for (double & x : p)
        if (x < s.min_p * most) x = 0.0;
    const double kept = std::accumulate(p.begin(), p.end(), 0.0);
    for (double & x : p) x /= kept;
    return p;
}

using mt::sampling;

}  // namespace

class SampleTest : public mt::BackendTest {
protected:
    // Draws one token per row of `logits` and returns them.
    std::vector<int64_t> draw(Tensor & logits, const mamba_sampling_params & s, uint64_t step = 0, Tensor * history = nullptr,
                              DType token_dtype = DType::I64) {
        return mt::sample_tokens(ctx(), logits, s, step, history, token_dtype);
    }

    // `rows` copies of one row of logits (and history), uploaded.
    static Tensor repeated(const std::vector<double> & row, int64_t rows, DType dtype) {
        Tensor t({rows, int64_t(row.size())}, dtype);
        for (int64_t r = 0; r < rows; ++r) std::copy(row.begin(), row.end(), t.values().begin() + r * int64_t(row.size()));
        return t;
    }

    // Counts of each token over rows x steps draws of the same logits.
    std::vector<int64_t> histogram(const std::vector<double> & row, const std::vector<int64_t> & history_row, const mamba_sampling_params & s,
                                   int64_t rows, int steps) {
        Tensor logits = repeated(row, rows, DType::F32);
        logits.upload(ctx());
        Tensor history({rows, int64_t(history_row.size())}, DType::I32);
        for (int64_t r = 0; r < rows; ++r)
            for (size_t t = 0; t < history_row.size(); ++t) history.at(r * int64_t(history_row.size()) + int64_t(t)) = double(history_row[t]);
        if (!history_row.empty()) history.upload(ctx());
        std::vector<int64_t> counts(row.size(), 0);
        for (int step = 0; step < steps; ++step)
            for (int64_t token : draw(logits, s, uint64_t(step), history_row.empty() ? nullptr : &history)) {
                if (token < 0 || token >= int64_t(row.size())) {
                    ADD_FAILURE() << "token " << token << " outside the vocabulary";
                    continue;
                }
                ++counts[size_t(token)];
            }
        return counts;
    }

    // Tokens drawn over many draws.
    // Of 3000 draws from `row` under s: how many tokens the reference keeps, and how many draws fell outside them.
    std::pair<int64_t, int64_t> kept_and_drawn_outside(const std::vector<double> & row, const mamba_sampling_params & s) {
        const auto expected = filtered_probabilities(row, {}, s);
        const auto counts = histogram(row, {}, s, 1000, 3);
        int64_t kept = 0, outside = 0;
        for (size_t i = 0; i < row.size(); ++i) {
            kept += expected[i] > 0.0;
            if (expected[i] == 0.0) outside += counts[i];
        }
        return {kept, outside};
    }

    std::set<int64_t> support(const std::vector<double> & row, const mamba_sampling_params & s) {
        const auto counts = histogram(row, {}, s, 500, 4);
        std::set<int64_t> seen;
        for (size_t i = 0; i < counts.size(); ++i)
            if (counts[i] > 0) seen.insert(int64_t(i));
        return seen;
    }
};

TEST_P(SampleTest, GreedyEqualsArgmax) {
    std::mt19937_64 rng(5);
    for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
        for (DType token_dtype : {DType::I32, DType::I64}) {
            SCOPED_TRACE(std::string(mt::dtype_name(dt)) + " -> " + mt::dtype_name(token_dtype));
            const int64_t rows = 6, vocab = 1003;
            Tensor logits({rows, vocab}, dt, mt::padded_strides({rows, vocab}, 1, 7));
            logits.fill_uniform(rng, -8, 8);
            // A tie for the maximum in row 1: the lower id wins.
            logits.at(vocab + 10) = logits.at(vocab + 900) = 20.0;
            logits.upload(ctx());
            const auto tokens = draw(logits, sampling(0.0f), 0, nullptr, token_dtype);
            ASSERT_EQ(tokens.size(), size_t(rows));
            for (int64_t r = 0; r < rows; ++r) EXPECT_EQ(tokens[size_t(r)], reference_argmax(&logits.values()[size_t(r * vocab)], vocab)) << "row " << r;
            EXPECT_EQ(tokens[1], 10);
            // A negative temperature is greedy too (mamba.h: <= 0 picks the most likely token).
            EXPECT_EQ(draw(logits, sampling(-1.0f, 3, 0.5f, 0.2f), 7, nullptr, token_dtype), tokens);
        }
    }
}

TEST_P(SampleTest, TopKOfOneEqualsGreedy) {
    std::mt19937_64 rng(6);
    Tensor logits({32, 500}, DType::BF16);
    logits.fill_uniform(rng, -3, 3);
    logits.upload(ctx());
    const auto greedy = draw(logits, sampling(0.0f));
    for (uint64_t seed : {1u, 2u, 3u})
        for (uint64_t step : {0u, 17u}) EXPECT_EQ(draw(logits, sampling(1.5f, 1, 1.0f, 0.0f, 1.0f, seed), step), greedy);
}

TEST_P(SampleTest, FrequenciesMatchTheFilteredDistribution) {
    const std::vector<double> row{1.2, -0.3, 0.8, 2.0, -1.5, 0.1, 1.9, -0.7, 0.4, 1.0, -2.2, 0.6};
    const std::vector<int64_t> history{3, 7, 3, -1, 11};
    struct Setting {
        const char * name;
        mamba_sampling_params params;
        bool with_history;
    };
    const Setting settings[] = {
        {"temperature 1", sampling(1.0f), false},
        {"temperature 0.6, top_k 5", sampling(0.6f, 5), false},
        {"top_p 0.8", sampling(1.0f, 0, 0.8f), false},
        {"temperature 1.7, min_p 0.2", sampling(1.7f, 0, 1.0f, 0.2f), false},
        {"repetition penalty 1.8", sampling(1.0f, 0, 1.0f, 0.0f, 1.8f), true},
        {"all filters", sampling(1.3f, 9, 0.85f, 0.1f, 1.3f, 7), true},
    };
    for (const Setting & setting : settings) {
        SCOPED_TRACE(setting.name);
        const std::vector<int64_t> hist = setting.with_history ? history : std::vector<int64_t>{};
        const auto expected = filtered_probabilities(row, hist, setting.params);
        const int64_t rows = 2000;
        const int steps = 10;
        const auto counts = histogram(row, hist, setting.params, rows, steps);
        const double draws = double(rows * steps);
        double chi_square = 0.0;
        int categories = 0;
        for (size_t i = 0; i < row.size(); ++i) {
            if (expected[i] == 0.0) {
                EXPECT_EQ(counts[i], 0) << "token " << i << " was filtered out but drawn";
                continue;
            }
            const double e = expected[i] * draws;
            chi_square += (double(counts[i]) - e) * (double(counts[i]) - e) / e;
            ++categories;
        }
        // At most 11 degrees of freedom: the 0.9999 quantile is about 35.
        EXPECT_LT(chi_square, 35.0) << "over " << categories << " tokens";
    }
}

TEST_P(SampleTest, TopPAndMinPKeepTheRightTokens) {
    // Probabilities 0.5, 0.25, 0.15, 0.1 at temperature 1.
    const std::vector<double> row{std::log(0.5), std::log(0.25), std::log(0.15), std::log(0.1)};
    EXPECT_EQ(support(row, sampling(1.0f, 0, 0.45f)), (std::set<int64_t>{0}));
    EXPECT_EQ(support(row, sampling(1.0f, 0, 0.7f)), (std::set<int64_t>{0, 1}));
    EXPECT_EQ(support(row, sampling(1.0f, 0, 0.8f)), (std::set<int64_t>{0, 1, 2}));
    EXPECT_EQ(support(row, sampling(1.0f, 0, 1.0f)), (std::set<int64_t>{0, 1, 2, 3}));
    // min_p keeps tokens at least min_p times as likely as the top one: 0.25 -> p >= 0.125.
    EXPECT_EQ(support(row, sampling(1.0f, 0, 1.0f, 0.25f)), (std::set<int64_t>{0, 1, 2}));
    EXPECT_EQ(support(row, sampling(1.0f, 0, 1.0f, 0.4f)), (std::set<int64_t>{0, 1}));
    EXPECT_EQ(support(row, sampling(1.0f, 0, 1.0f, 1.0f)), (std::set<int64_t>{0}));
    // top_k then top_p on the renormalized survivors: {0.5, 0.25, 0.15} / 0.9 -> 0.556, 0.833, ...
    EXPECT_EQ(support(row, sampling(1.0f, 3, 0.8f)), (std::set<int64_t>{0, 1}));
    EXPECT_EQ(support(row, sampling(1.0f, 2)), (std::set<int64_t>{0, 1}));
}

TEST_P(SampleTest, FiltersOnALargeVocabularyKeepTheReferenceSet) {
    std::mt19937_64 rng(13);
    std::uniform_real_distribution<double> dist(-3.0, 3.0);
    std::vector<double> row(3000);
    for (double & v : row) v = double(float(dist(rng)));
    for (const auto & s : {sampling(0.9f, 0, 0.4f), sampling(1.1f, 700, 0.6f, 0.05f)}) {
        const auto [kept, drawn_outside] = kept_and_drawn_outside(row, s);
        EXPECT_EQ(drawn_outside, 0) << "of " << kept << " kept tokens";
        EXPECT_GT(kept, 50);
        EXPECT_LT(kept, 2000);
    }
}

TEST_P(SampleTest, TopPTakesTiedLogitsInIdOrder) {
    // Equal logits at the cut: the lower ids are the more likely ones, as in the reference's stable sort.
    const double a = std::log(0.4), b = std::log(0.2);
    EXPECT_EQ(support({a, b, b, b}, sampling(1.0f, 0, 0.5f)), (std::set<int64_t>{0, 1}));
    EXPECT_EQ(support({a, b, b, b}, sampling(1.0f, 0, 0.7f)), (std::set<int64_t>{0, 1, 2}));
    EXPECT_EQ(support({a, b, b, b}, sampling(1.0f, 0, 0.85f)), (std::set<int64_t>{0, 1, 2, 3}));
    EXPECT_EQ(support({b, a, a}, sampling(1.0f, 0, 0.3f)), (std::set<int64_t>{1}));
    EXPECT_EQ(support({b, a, a}, sampling(1.0f, 0, 0.5f)), (std::set<int64_t>{1, 2}));
    // 1200 tokens over four logits, the cut inside a group of 300 equal ones (it keeps 146 of them): only the
    // reference's, the group's lower ids, may be drawn.
    std::vector<double> row(1200);
    const double levels[4] = {0.5, 0.25, 0.0, -0.5};
    for (size_t i = 0; i < row.size(); ++i) row[i] = levels[(i * 7) % 4];
    const auto [kept, drawn_outside] = kept_and_drawn_outside(row, sampling(1.0f, 0, 0.5f));
    EXPECT_EQ(drawn_outside, 0) << "of " << kept << " kept tokens";
    EXPECT_GT(kept, 300);
    EXPECT_LT(kept, 600);
}

TEST_P(SampleTest, MaskedLogitsAreNeverDrawn) {
    const double inf = INFINITY;
    EXPECT_EQ(support({-inf, 0.3, -inf, 0.1, -inf}, sampling(2.0f)), (std::set<int64_t>{1, 3}));
    // NaN logits count as impossible, for sampling and for greedy decoding.
    EXPECT_EQ(support({NAN, 0.3, NAN, 0.1}, sampling(1.0f)), (std::set<int64_t>{1, 3}));
    EXPECT_EQ(support({NAN, 0.3, NAN, 0.1}, sampling(0.0f)), (std::set<int64_t>{1}));
}

TEST_P(SampleTest, RepetitionPenaltyFollowsTheHuggingFaceDefinition) {
    // Positive logits are divided, negative ones multiplied, and each distinct token counts once.
    Tensor logits({3, 4}, DType::F32);
    logits.values() = {2.0, 1.5, -0.5, -0.6,    // 0: 2.0 / 1.5 = 1.33 < 1.5 -> token 1 wins
                       2.0, 1.0, -0.5, -0.6,    // 1: 0 twice in history, still divided once: 1.33 > 1.0 -> token 0
                       -1.0, -1.2, -3.0, -4.0};  // 2: -1.0 * 1.5 = -1.5 < -1.2 -> token 1
    logits.upload(ctx());
    Tensor history({3, 3}, DType::I64);
    history.values() = {0, -1, -1, 0, 0, -5, 0, 2, -1};
    history.upload(ctx());
    EXPECT_EQ(draw(logits, sampling(0.0f, 0, 1.0f, 0.0f, 1.5f), 0, &history), (std::vector<int64_t>{1, 0, 1}));
    // Penalty 1 is off; without history nothing changes either.
    EXPECT_EQ(draw(logits, sampling(0.0f, 0, 1.0f, 0.0f, 1.0f), 0, &history), (std::vector<int64_t>{0, 0, 0}));
    EXPECT_EQ(draw(logits, sampling(0.0f, 0, 1.0f, 0.0f, 1.5f), 0, nullptr), (std::vector<int64_t>{0, 0, 0}));
    // The logits are not modified.
    Tensor before({3, 4}, DType::F32);
    before.values() = logits.values();
    before.round_to_dtype();
    logits.download(ctx());
    EXPECT_EQ(logits.values(), before.values());
}

TEST_P(SampleTest, SameSeedAndStepReproduceTheDraw) {
    std::mt19937_64 rng(8);
    Tensor logits({64, 2000}, DType::F16);
    logits.fill_uniform(rng, -1, 1);
    logits.upload(ctx());
    const auto s = sampling(1.0f, 0, 0.95f, 0.0f, 1.0f, 1234);
    const auto first = draw(logits, s, 9);
    EXPECT_EQ(draw(logits, s, 9), first);
    auto other_seed = s;
    other_seed.seed = 1235;
    EXPECT_NE(draw(logits, other_seed, 9), first);
    EXPECT_NE(draw(logits, s, 10), first);
    // Seeds and steps beyond 32 bits reach the generator too.
    auto high_seed = s;
    high_seed.seed = 1234 + (uint64_t(1) << 40);
    EXPECT_NE(draw(logits, high_seed, 9), first);
    EXPECT_NE(draw(logits, s, 9 + (uint64_t(1) << 33)), first);
}

TEST_P(SampleTest, DrawsDoNotDependOnTheThreadCount) {
    std::vector<mt::ContextPtr> contexts;  // outlive the tensors, whose buffers they own
    for (int32_t threads : {1, 2, 5}) {
        contexts.push_back(mt::make_context(GetParam(), 0, threads));
        ASSERT_NE(contexts.back(), nullptr);
    }
    std::mt19937_64 rng(14);
    Tensor logits({9, 700}, DType::F32), tokens({9}, DType::I64);
    logits.fill_uniform(rng, -2, 2);
    std::vector<std::vector<double>> results;
    for (const mt::ContextPtr & context : contexts) {
        logits.upload(context.get());
        tokens.upload_poisoned(context.get());
        mamba_sample_args a{};
        a.logits = logits.dl();
        a.tokens = tokens.dl();
        a.step = 4;
        a.params = sampling(1.0f, 40, 0.9f, 0.01f, 1.0f, 99);
        MAMBA_ASSERT_OK(mamba_sample(context.get(), &a));
        tokens.download(context.get());
        results.push_back(tokens.values());
    }
    EXPECT_EQ(results[0], results[1]);
    EXPECT_EQ(results[0], results[2]);
}

TEST_P(SampleTest, LargeVocabularyWithTopP) {
    // mamba-130m's vocabulary; one token dominates so top_p 0.5 keeps only it.
    std::mt19937_64 rng(10);
    Tensor logits({2, 50280}, DType::BF16);
    logits.fill_uniform(rng, -2, 2);
    logits.at(123) = 30.0;
    logits.at(50280 + 50279) = 30.0;
    logits.upload(ctx());
    EXPECT_EQ(draw(logits, sampling(1.0f, 0, 0.5f), 3), (std::vector<int64_t>{123, 50279}));
    // Without the dominant token every draw stays inside the vocabulary and varies with the step.
    logits.at(123) = 0.0;
    logits.at(50280 + 50279) = 0.0;
    logits.upload(ctx());
    const auto a = draw(logits, sampling(1.0f, 0, 0.9f), 1), b = draw(logits, sampling(1.0f, 0, 0.9f), 2);
    ASSERT_EQ(a.size(), 2u);
    EXPECT_NE(a, b);
}

TEST_P(SampleTest, BadParametersNameTheField) {
    Tensor logits({2, 10}, DType::F32), tokens({2}, DType::I32);
    std::mt19937_64 rng(11);
    logits.fill_uniform(rng, -1, 1);
    logits.upload(ctx());
    tokens.upload_poisoned(ctx());
    const auto expect_rejected = [&](mamba_sampling_params s, const std::string & message) {
        mamba_sample_args a{};
        a.logits = logits.dl();
        a.tokens = tokens.dl();
        a.params = s;
        EXPECT_EQ(mamba_sample(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT) << message;
        EXPECT_EQ(std::string(mamba_last_error()), "mamba_sample: " + message);
    };
    expect_rejected(sampling(1.0f, 0, 0.0f), "params.top_p is 0; expected a value in (0, 1] (1 is off)");
    expect_rejected(sampling(1.0f, 0, 1.5f), "params.top_p is 1.5; expected a value in (0, 1] (1 is off)");
    expect_rejected(sampling(1.0f, 0, NAN), "params.top_p is nan; expected a value in (0, 1] (1 is off)");
    expect_rejected(sampling(1.0f, -2), "params.top_k is -2; expected 0 (off) or a positive count");
    expect_rejected(sampling(1.0f, 0, 1.0f, -0.1f), "params.min_p is -0.1; expected a value in [0, 1] (0 is off)");
    expect_rejected(sampling(1.0f, 0, 1.0f, 2.0f), "params.min_p is 2; expected a value in [0, 1] (0 is off)");
    expect_rejected(sampling(1.0f, 0, 1.0f, 0.0f, 0.0f), "params.repetition_penalty is 0; expected a finite positive number (1 is off)");
    expect_rejected(sampling(1.0f, 0, 1.0f, 0.0f, -1.0f), "params.repetition_penalty is -1; expected a finite positive number (1 is off)");
    expect_rejected(sampling(NAN), "params.temperature is nan; expected a finite number (<= 0 for greedy)");
    expect_rejected(sampling(INFINITY), "params.temperature is inf; expected a finite number (<= 0 for greedy)");
    // The parameters are checked even for greedy decoding.
    expect_rejected(sampling(0.0f, 0, 2.0f), "params.top_p is 2; expected a value in (0, 1] (1 is off)");
}

TEST_P(SampleTest, BadTensorsNameTheArgument) {
    Tensor logits({2, 10}, DType::F32), tokens_short({3}, DType::I32), tokens({2}, DType::I32), tokens_float({2}, DType::F32);
    Tensor history_bad_batch({3, 4}, DType::I32), history_big({2, 3}, DType::I64), empty_vocab({2, 0}, DType::F32);
    std::mt19937_64 rng(12);
    logits.fill_uniform(rng, -1, 1);
    history_big.values() = {1, 2, 3, 4, 10, 5};
    for (Tensor * t : {&logits, &tokens_short, &tokens, &tokens_float, &history_bad_batch, &history_big, &empty_vocab}) t->upload(ctx());
    mamba_sample_args a{};
    a.logits = logits.dl();
    a.tokens = tokens_short.dl();
    a.params = sampling(1.0f);
    EXPECT_EQ(mamba_sample(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_sample: argument 'tokens' has shape (3,), expected (2,)");
    a.tokens = tokens_float.dl();
    EXPECT_EQ(mamba_sample(ctx(), &a), MAMBA_STATUS_UNSUPPORTED);
    EXPECT_STREQ(mamba_last_error(), "mamba_sample: argument 'tokens' has dtype float32; expected int32 or int64");
    a.tokens = tokens.dl();
    a.history = history_bad_batch.dl();
    EXPECT_EQ(mamba_sample(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_sample: argument 'history' has shape (3, 4), expected (2, *)");
    a.history = history_big.dl();
    a.params = sampling(1.0f, 0, 1.0f, 0.0f, 1.2f);
    EXPECT_EQ(mamba_sample(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_sample: history[1, 1] is 10, outside the vocabulary [0, 10)");
    a.history = nullptr;
    a.logits = empty_vocab.dl();
    EXPECT_EQ(mamba_sample(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_sample: argument 'logits' has shape (2, 0): there is no token to draw");
    a.logits = nullptr;
    EXPECT_EQ(mamba_sample(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_sample: argument 'logits' is null");
}

TEST(SamplingParams, DefaultsAreNeutral) {
    const mamba_sampling_params s = mamba_sampling_default_params();
    EXPECT_EQ(s.temperature, 0.0f);
    EXPECT_EQ(s.top_k, 0);
    EXPECT_EQ(s.top_p, 1.0f);
    EXPECT_EQ(s.min_p, 0.0f);
    EXPECT_EQ(s.repetition_penalty, 1.0f);
    EXPECT_EQ(s.seed, 0u);
}

MAMBA_INSTANTIATE_BACKENDS(SampleTest);
