// CPU token sampling, one row per task. The steps follow mamba.h's order: repetition penalty, temperature,
// top-k, top-p, min-p; the draw then walks the surviving tokens in increasing id order and takes the first
// whose running weight exceeds u * total, u in [0, 1) from Philox keyed by the seed at counter (step, row).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <vector>

#include "core/context.h"
#include "core/rng.h"
#include "cpu/convert.h"
#include "cpu/vec_math.h"
#include "ops/sampling.h"

namespace mamba::cpu {

namespace {

int64_t load_id(const Tensor & t, std::initializer_list<int64_t> index) {
    const char * p = element(t, index);
    return t.dtype == DType::I32 ? int64_t(*reinterpret_cast<const int32_t *>(p)) : *reinterpret_cast<const int64_t *>(p);
}

// Buffers of one worker thread, kept between calls (OpenMP keeps its threads) and sized up front, so that
// nothing allocates while a row is sampled.
struct Scratch {
    std::vector<float> logits, weight;
    std::vector<uint8_t> kept;
    std::vector<int64_t> order, history;

    void reserve(int64_t vocab, int64_t history_len) {
        if (logits.size() != size_t(vocab)) {
            logits.resize(size_t(vocab));
            weight.resize(size_t(vocab));
            kept.resize(size_t(vocab));
        }
        order.reserve(size_t(vocab));
        history.reserve(size_t(history_len));
    }
};

// This thread's scratch, or nullptr when it cannot grow (never throws: it runs inside parallel regions).
Scratch * thread_scratch_for(int64_t vocab, int64_t history_len) noexcept {
    thread_local Scratch scratch;
    try {
        scratch.reserve(vocab, history_len);
    } catch (...) {
        return nullptr;
    }
    return &scratch;
}

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

// How many of the most likely candidates top-p keeps: the smallest prefix of the candidates sorted by
// `more_likely` whose weight reaches `needed`. A quickselect finds it without sorting: it tracks the mass
// of everything known to be more likely than the current range and keeps the side of each pivot where
// the cut falls. On return the kept candidates are the first `count` entries of `order`, in no order.
template <class MoreLikely>
size_t top_p_count(std::vector<int64_t> & order, const std::vector<float> & weight, double needed, MoreLikely more_likely) {
    auto begin = order.begin(), end = order.end();
    double kept_mass = 0.0;  // of [order.begin(), begin)
    while (begin != end) {
        // Median of three as the pivot, so that sorted inputs do not degrade to quadratic time.
        int64_t a = *begin, b = *(begin + (end - begin) / 2), c = *(end - 1);
        if (more_likely(b, a)) std::swap(a, b);
        if (more_likely(c, b)) std::swap(b, c);
        if (more_likely(b, a)) std::swap(a, b);
        const int64_t pivot = b;
        const auto split = std::partition(begin, end, [&](int64_t i) { return more_likely(i, pivot); });
        double mass = 0.0;
        for (auto it = begin; it != split; ++it) mass += weight[size_t(*it)];
        if (kept_mass + mass >= needed) {
            end = split;  // the cut falls among the candidates more likely than the pivot
            continue;
        }
        kept_mass += mass + weight[size_t(pivot)];
        std::iter_swap(split, std::find(split, end, pivot));
        if (kept_mass >= needed) return size_t(split - order.begin()) + 1;
        begin = split + 1;
    }
    return size_t(begin - order.begin());
}

int64_t sample_row(const SampleParams & p, int64_t row, Scratch & s) {
    const mamba_sampling_params & sp = p.params;
    load_floats(p.logits.dtype, element(p.logits, {row, 0}), p.vocab, p.logits.stride[1], s.logits.data());
    if (p.history && sp.repetition_penalty != 1.0f) apply_repetition_penalty(p, row, s);
    if (sp.temperature <= 0.0f) return argmax(s.logits);

    std::vector<float> & v = s.logits;
    const float temperature = sp.temperature;
#pragma omp simd
    for (size_t i = 0; i < v.size(); ++i) v[i] /= temperature;
    const int64_t top = argmax(v);
    const float max_value = v[size_t(top)];
    if (!(max_value > -std::numeric_limits<float>::infinity())) return top;  // nothing has any probability

    // Unnormalized probabilities relative to the most likely token; tokens that underflow to 0 (or are
    // NaN) can never be drawn.
    float * weight = s.weight.data();
#pragma omp simd
    for (int64_t i = 0; i < p.vocab; ++i) {
        const float w = exp_fast(v[size_t(i)] - max_value);
        weight[i] = w > 0.0f ? w : 0.0f;
    }
    s.order.clear();
    for (int64_t i = 0; i < p.vocab; ++i)
        if (weight[i] > 0.0f) s.order.push_back(i);
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
        s.order.resize(top_p_count(s.order, s.weight, double(sp.top_p) * total, more_likely));
        filtered = true;
    }
    if (sp.min_p > 0.0f) {
        float most = 0.0f;
        for (int64_t i : s.order) most = std::max(most, s.weight[size_t(i)]);
        const float floor = sp.min_p * most;
        s.order.erase(std::remove_if(s.order.begin(), s.order.end(), [&](int64_t i) { return s.weight[size_t(i)] < floor; }), s.order.end());
        filtered = true;
    }
    if (filtered) {
        // Walk the survivors in id order: a pass over a mask instead of sorting them.
        std::fill(s.kept.begin(), s.kept.end(), uint8_t(0));
        for (int64_t i : s.order) s.kept[size_t(i)] = 1;
        for (int64_t i = 0; i < p.vocab; ++i)
            if (!s.kept[size_t(i)]) s.weight[size_t(i)] = 0.0f;
    }

    double total = 0.0;
    for (int64_t i = 0; i < p.vocab; ++i) total += s.weight[size_t(i)];
    const Philox4x32 bits = sampling_random_bits(sp.seed, p.step, uint64_t(row));
    const double target = uniform_double(bits.v[0], bits.v[1]) * total;
    double cumulative = 0.0;
    int64_t last = top;
    for (int64_t i = 0; i < p.vocab; ++i) {
        if (s.weight[size_t(i)] <= 0.0f) continue;
        cumulative += s.weight[size_t(i)];
        if (cumulative > target) return i;
        last = i;
    }
    return last;  // rounding left the target at the very end
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
    // One row runs on the calling thread; several use the whole team (libgomp ends and restarts threads
    // when team sizes vary, so the team size stays num_threads).
    const int threads = std::max(1, ctx.num_threads);
    const bool parallel = threads > 1 && p.batch > 1;
    std::atomic<bool> out_of_memory{false};
#pragma omp parallel for num_threads(threads) schedule(static) if (parallel)
    for (int64_t b = 0; b < p.batch; ++b) {
        Scratch * scratch = thread_scratch_for(p.vocab, p.history_len);
        if (!scratch) {
            out_of_memory = true;
            continue;
        }
        const int64_t token = sample_row(p, b, *scratch);
        char * out = element(p.tokens, {b});
        if (p.tokens.dtype == DType::I32) *reinterpret_cast<int32_t *>(out) = int32_t(token);
        else *reinterpret_cast<int64_t *>(out) = token;
    }
    if (out_of_memory) fail(MAMBA_STATUS_OUT_OF_MEMORY, "sample: no memory for a vocabulary of ", p.vocab, " tokens");
}

}  // namespace mamba::cpu
