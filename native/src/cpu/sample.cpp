// CPU token sampling, one row per task. The steps follow mamba.h's order: repetition penalty, temperature,
// top-k, top-p, min-p; the draw then walks the surviving tokens in increasing id order and takes the first
// whose running weight exceeds u * total, u in [0, 1) from Philox keyed by the seed at counter (step, row).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
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
    std::vector<int64_t> order, history, undecided;

    void reserve(int64_t vocab, int64_t history_len) {
        if (logits.size() != size_t(vocab)) {
            logits.resize(size_t(vocab));
            weight.resize(size_t(vocab));
            kept.resize(size_t(vocab));
        }
        order.reserve(size_t(vocab));
        undecided.reserve(size_t(vocab));
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

// An order-preserving key of a logit: a larger float has a larger key (-0 counts as +0, as the comparison of floats has
// it); NaN and -inf never reach it (their weight is 0, so they are no candidates).
inline uint32_t logit_key(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    if ((u << 1) == 0) u = 0;
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// How many of the most likely candidates top-p keeps: the smallest prefix of the candidates sorted by more likely first
// (a larger logit, then the lower id) whose weight reaches `needed`. Radix selection over the logits' keys, in three
// digits from the top: each pass adds up the undecided candidates' weights by digit, keeps every digit above the one
// where the mass still needed is reached, and goes on inside that digit; candidates whose logits are equal are then
// taken in increasing id order. Three passes over all the candidates (the first digit's sums, the narrowing to its
// digit, the final partition) and two over those left undecided, against the repeated partitions of a quickselect (a
// row of 50280 tokens: 0.80-0.84 -> 0.48-0.53 ms, docs/performance.md). On return the kept candidates are the first
// `count` entries of `order`, in no order. Sums in double, in another order than a sort would add them, which can only
// matter where the mass lands exactly on `needed`.
size_t top_p_count(std::vector<int64_t> & order, const std::vector<float> & logits, const std::vector<float> & weight, double needed,
                   std::vector<int64_t> & undecided) {
    if (order.empty()) return 0;
    constexpr int kShift[3] = {21, 10, 0}, kBits[3] = {11, 11, 10};
    double mass[1 << 11];
    undecided.assign(order.begin(), order.end());
    uint32_t prefix = 0;  // the key's digits decided so far
    double remaining = needed;
    for (int level = 0; level < 3; ++level) {
        const uint32_t digits = 1u << kBits[level], mask = digits - 1;
        const int shift = kShift[level];
        std::fill(mass, mass + digits, 0.0);
        for (int64_t i : undecided) mass[(logit_key(logits[size_t(i)]) >> shift) & mask] += weight[size_t(i)];
        // Candidates have positive weights, so a digit holds some exactly where its mass is positive.
        double above = 0.0;
        int64_t cut = -1;
        for (int64_t d = int64_t(mask); d >= 0; --d) {
            if (mass[d] <= 0.0) continue;
            if (above + mass[d] >= remaining) {
                cut = d;
                break;
            }
            above += mass[d];
        }
        if (cut < 0) return order.size();  // rounding left the whole mass short of `needed`: every candidate stays
        remaining -= above;
        prefix |= uint32_t(cut) << shift;
        undecided.erase(std::remove_if(undecided.begin(), undecided.end(),
                                       [&](int64_t i) { return ((logit_key(logits[size_t(i)]) >> shift) & mask) != uint32_t(cut); }),
                        undecided.end());
    }
    // The candidates left have one logit: the lower ids first, until the mass still needed is reached.
    std::sort(undecided.begin(), undecided.end());
    int64_t last = undecided.back();
    double tied = 0.0;
    for (int64_t i : undecided) {
        tied += weight[size_t(i)];
        if (tied >= remaining) {
            last = i;
            break;
        }
    }
    const auto split = std::partition(order.begin(), order.end(), [&](int64_t i) {
        const uint32_t key = logit_key(logits[size_t(i)]);
        return key > prefix || (key == prefix && i <= last);
    });
    return size_t(split - order.begin());
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
        s.order.resize(top_p_count(s.order, v, s.weight, double(sp.top_p) * total, s.undecided));
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
