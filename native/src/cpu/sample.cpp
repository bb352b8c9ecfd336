// CPU token sampling, one row per task. The steps follow mamba.h's order: repetition penalty, temperature,
// top-k, top-p, min-p; the draw then walks the surviving tokens in increasing id order and takes the first
// whose running weight exceeds u * total, u in [0, 1) from Philox keyed by the seed at counter (step, row).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/context.h"
#include "core/rng.h"
#include "cpu/convert.h"
#include "ops/sampling.h"

namespace mamba::cpu {

namespace {

int64_t load_id(const Tensor & t, std::initializer_list<int64_t> index) {
    const char * p = element(t, index);
    return t.dtype == DType::I32 ? int64_t(*reinterpret_cast<const int32_t *>(p)) : *reinterpret_cast<const int64_t *>(p);
}

// Buffers of one worker, sized before the parallel region so that nothing allocates inside it.
struct Scratch {
    std::vector<float> logits, weight;
    std::vector<int64_t> order, history;
    Scratch(int64_t vocab, int64_t history_len) : logits(size_t(vocab)), weight(size_t(vocab)) {
        order.reserve(size_t(vocab));
        history.reserve(size_t(history_len));
    }
};

// The first index of the largest value; NaN never wins.
int64_t argmax(const std::vector<float> & v) {
    int64_t best = 0;
    float best_value = -std::numeric_limits<float>::infinity();
    bool found = false;
    for (size_t i = 0; i < v.size(); ++i) {
        if (v[i] > best_value || (!found && v[i] == best_value)) {
            best = int64_t(i);
            best_value = v[i];
            found = true;
        }
    }
    return best;
}

// HF's definition: each distinct token of the history once, positive logits divided, negative multiplied.
void apply_repetition_penalty(const SampleParams & p, int64_t row, Scratch & s) {
    s.history.clear();
    for (int64_t t = 0; t < p.history_len; ++t) {
        const int64_t id = load_id(*p.history, {row, t});
        if (id >= 0) s.history.push_back(id);
    }
    std::sort(s.history.begin(), s.history.end());
    s.history.erase(std::unique(s.history.begin(), s.history.end()), s.history.end());
    const float penalty = p.params.repetition_penalty;
    for (int64_t id : s.history) {
        float & v = s.logits[size_t(id)];
        v = v < 0.0f ? v * penalty : v / penalty;
    }
}

int64_t sample_row(const SampleParams & p, int64_t row, Scratch & s) {
    const mamba_sampling_params & sp = p.params;
    load_floats(p.logits.dtype, element(p.logits, {row, 0}), p.vocab, p.logits.stride[1], s.logits.data());
    if (p.history && sp.repetition_penalty != 1.0f) apply_repetition_penalty(p, row, s);
    if (sp.temperature <= 0.0f) return argmax(s.logits);

    std::vector<float> & v = s.logits;
    for (float & x : v) x /= sp.temperature;
    const int64_t top = argmax(v);
    const float max_value = v[size_t(top)];
    if (!(max_value > -std::numeric_limits<float>::infinity())) return top;  // nothing has any probability

    // Unnormalized probabilities relative to the most likely token; tokens that underflow to 0 can never be drawn.
    s.order.clear();
    for (int64_t i = 0; i < p.vocab; ++i) {
        const float w = std::exp(v[size_t(i)] - max_value);
        s.weight[size_t(i)] = w > 0.0f ? w : 0.0f;  // also maps NaN to 0
        if (s.weight[size_t(i)] > 0.0f) s.order.push_back(i);
    }
    // Most likely first; equal logits: the lower id first, so top_k keeps exactly k tokens.
    const auto more_likely = [&v](int64_t a, int64_t b) { return v[size_t(a)] > v[size_t(b)] || (v[size_t(a)] == v[size_t(b)] && a < b); };

    bool filtered = false;
    if (sp.top_k > 0 && int64_t(sp.top_k) < int64_t(s.order.size())) {
        std::nth_element(s.order.begin(), s.order.begin() + (sp.top_k - 1), s.order.end(), more_likely);
        s.order.resize(size_t(sp.top_k));
        filtered = true;
    }
    if (sp.top_p < 1.0f) {
        double total = 0.0;
        for (int64_t i : s.order) total += s.weight[size_t(i)];
        const double needed = double(sp.top_p) * total;
        // Sorting all candidates is slow for a large vocabulary, and only the most likely matter: keep
        // those above a weight threshold whose mass already reaches top_p (a prefix of the sorted order,
        // so the cut below is the same as on the full list).
        for (float threshold : {1e-3f, 1e-6f, 1e-9f}) {
            double mass = 0.0;
            for (int64_t i : s.order)
                if (s.weight[size_t(i)] >= threshold) mass += s.weight[size_t(i)];
            if (mass >= needed) {
                s.order.erase(std::remove_if(s.order.begin(), s.order.end(), [&](int64_t i) { return s.weight[size_t(i)] < threshold; }),
                              s.order.end());
                break;
            }
        }
        std::sort(s.order.begin(), s.order.end(), more_likely);
        double cumulative = 0.0;
        size_t keep = s.order.size();
        for (size_t k = 0; k < s.order.size(); ++k) {
            cumulative += s.weight[size_t(s.order[k])];
            if (cumulative >= needed) {
                keep = k + 1;
                break;
            }
        }
        s.order.resize(keep);
        filtered = true;
    }
    if (sp.min_p > 0.0f) {
        float most = 0.0f;
        for (int64_t i : s.order) most = std::max(most, s.weight[size_t(i)]);
        const float floor = sp.min_p * most;
        s.order.erase(std::remove_if(s.order.begin(), s.order.end(), [&](int64_t i) { return s.weight[size_t(i)] < floor; }), s.order.end());
        filtered = true;
    }
    if (filtered) std::sort(s.order.begin(), s.order.end());

    double total = 0.0;
    for (int64_t i : s.order) total += s.weight[size_t(i)];
    const Philox4x32 bits = sampling_random_bits(sp.seed, p.step, uint64_t(row));
    const double target = uniform_double(bits.v[0], bits.v[1]) * total;
    double cumulative = 0.0;
    for (int64_t i : s.order) {
        cumulative += s.weight[size_t(i)];
        if (cumulative > target) return i;
    }
    return s.order.empty() ? top : s.order.back();  // rounding left target at the very end
}

void check_history_ids(const SampleParams & p) {
    for (int64_t b = 0; b < p.batch; ++b)
        for (int64_t t = 0; t < p.history_len; ++t) {
            const int64_t id = load_id(*p.history, {b, t});
            if (id >= p.vocab) fail_argument("history[", b, ", ", t, "] is ", id, ", outside the vocabulary [0, ", p.vocab, ")");
        }
}

}  // namespace

void sample(mamba_context & ctx, const SampleParams & p) {
    if (p.history) check_history_ids(p);
    const int threads = int(std::max<int64_t>(1, std::min<int64_t>(ctx.num_threads, p.batch)));
    std::vector<Scratch> scratch;
    scratch.reserve(size_t(threads));
    for (int t = 0; t < threads; ++t) scratch.emplace_back(p.vocab, p.history_len);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < p.batch; ++b) {
        const int64_t token = sample_row(p, b, scratch[size_t(omp_get_thread_num())]);
        char * out = element(p.tokens, {b});
        if (p.tokens.dtype == DType::I32) *reinterpret_cast<int32_t *>(out) = int32_t(token);
        else *reinterpret_cast<int64_t *>(out) = token;
    }
}

}  // namespace mamba::cpu
