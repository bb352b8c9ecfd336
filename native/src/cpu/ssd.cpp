// CPU Mamba-2 SSD scan in chunks. Each (sequence, head) is one task (or a few, over blocks of the
// head's channels) that walks its chunks in order, carrying the (headdim x dstate) state. Within a chunk of T steps (at most 64, cpu_chunk), with a_t = dt_t A the log decay,
// dA_t = exp(a_t) and decay(t, s) = dA_{s+1} ... dA_t:
//   intra-chunk   Y  = (L o C B^T) X         L[t, s] = decay(t, s) dt_s for s <= t, else 0
//   from the past Y += diag(decay(t, -1)) C S^T
//   state         S  = decay(T-1, -1) S + (w o X)^T B     w_s = decay(T-1, s) dt_s
// The products run on AVX-512 registers (chunk_product.h) where the library has them and MAMBA_CPU_GEMM is not
// "blas", else on OpenBLAS; the decays are running products of dA, so a chunk costs T exponentials, not T^2.
// On registers a task keeps its state transposed (N x P: the products' operands are then all row-major).
// Inputs of a chunk are converted to float32 once. C B^T depends only on the group, so when heads share
// groups it is computed once per chunk, for a window of chunks, before the heads run over that window.
#include <algorithm>
#include <exception>
#include <mutex>
#include <optional>
#include <vector>

#include "core/context.h"
#include "core/error.h"
#include "cpu/chunk_product.h"
#include "cpu/convert.h"
#include "cpu/denormals.h"
#include "cpu/blas_threads.h"
#include "cpu/gemm_avx512.h"
#include "cpu/ssd_common.h"
#include "ops/ssd.h"

namespace mamba::cpu {

namespace {

// The CPU scans in chunks of at most 64 steps, whatever chunk_size asks (results do not depend on it beyond
// rounding): the quadratic intra-chunk part costs T P per step and head, and a chunk's products then stay in
// the core's caches. mamba2-130m's shapes (P 64, N 128), ms for 2048 steps of 24 heads on this backend's
// 2-core Xeon, runs interleaved: chunks of 256 26-30, 128 21-24, 96 18-23, 64 18-21, 48 18-20, 32 22-23.
constexpr int64_t kMaxCpuChunk = 64;

int64_t cpu_chunk(const SsdParams & p) { return std::min(p.chunk_size, kMaxCpuChunk); }

// One independent recurrence: rows [start, start + len) of batch entry b; states are indexed by seq.
struct Sequence {
    int64_t seq, b, start, len;
};

// Per-thread float32 work buffers for one chunk.
struct ChunkBuffers {
    std::vector<float> group, x, past, x_weighted, cb, y, state, dt, dA, decay_in, decay_row, weight, d, row, b_t, state_row;

    ChunkBuffers(int64_t Q, int64_t P, int64_t N) {
        auto size = [](std::vector<float> & v, int64_t n) { v = std::vector<float>(size_t(n)); };
        size(group, Q * Q + 2 * Q * N), size(x, Q * P), size(past, Q * P), size(x_weighted, Q * P);
        size(cb, Q * Q), size(y, Q * P), size(state, P * N);
        size(dt, Q), size(dA, Q), size(decay_in, Q), size(decay_row, Q), size(weight, Q), size(d, P), size(row, P);
        size(b_t, N * Q), size(state_row, N);
    }
};

// A range of a head's channels: rows of the state and columns of x and y evolve independently, so a
// head's channels can be split over tasks when there are fewer heads than threads.
struct Channels {
    int64_t p0, pn;
};

class ChunkedScan {
public:
    // registers: the products on chunk_product, the state transposed; else on OpenBLAS.
    ChunkedScan(const SsdParams & p, bool registers)
        : p_(p), dt_(p.dt_softplus, p.dt_min, p.dt_max), Q_(cpu_chunk(p)), N_(p.dstate),
          heads_per_group_(p.heads / p.groups), registers_(registers) {}

    // Number of chunks of a sequence.
    int64_t chunks(const Sequence & s) const { return (s.len + Q_ - 1) / Q_; }

    // Floats of one group's chunk data: C B^T (Q x Q), then B and C in float32 (Q x N each).
    int64_t group_chunk_floats() const { return Q_ * Q_ + 2 * Q_ * N_; }

    // Converts B and C of chunk k of a sequence and group and forms C B^T, lower triangle only (the whole square on
    // registers). b_t: N x Q floats of scratch.
    void group_chunk(const Sequence & s, int64_t g, int64_t k, float * slot, float * b_t) const {
        const int64_t c0 = k * Q_, T = std::min(Q_, s.len - c0);
        float *cb = slot, *b = cb + Q_ * Q_, *c = b + Q_ * N_;
        for (int64_t t = 0; t < T; ++t) {
            load_floats(p_.B.dtype, element(p_.B, {s.b, s.start + c0 + t, g, 0}), N_, p_.B.stride[3], b + t * N_);
            load_floats(p_.C.dtype, element(p_.C, {s.b, s.start + c0 + t, g, 0}), N_, p_.C.stride[3], c + t * N_);
        }
        lower_cb(T, c, b, cb, b_t);
    }

    // Chunks [k0, k1) of one (sequence, head), channels ch of it. `state` (those channels' rows of the
    // headdim x dstate state, as pn x N; on registers transposed, N x pn) carries over between calls.
    // `shared`, when given, holds group_chunk() of those chunks for this head's group; without it the
    // head forms its own.
    void run(const Sequence & s, int64_t h, const Channels & ch, int64_t k0, int64_t k1, float * state, const float * shared,
             ChunkBuffers & w) const {
        const int64_t last = chunks(s) - 1;
        if (k0 > 0 && last < k0) return;  // finished in an earlier window
        const float A = *reinterpret_cast<const float *>(element(p_.A, {h}));
        const float bias = p_.dt_bias ? *reinterpret_cast<const float *>(element(*p_.dt_bias, {h})) : 0.0f;
        load_D(h, ch, w.d.data());
        bool has_state = k0 > 0 || p_.initial_states.has_value();
        if (k0 == 0 && p_.initial_states)
            for (int64_t i = 0; i < ch.pn; ++i) {
                float * row = registers_ ? w.state_row.data() : state + i * N_;
                load_floats(DType::F32, element(*p_.initial_states, {s.seq, h, ch.p0 + i, 0}), N_, p_.initial_states->stride[3], row);
                if (registers_)
                    for (int64_t n = 0; n < N_; ++n) state[n * ch.pn + i] = row[n];
            }
        if (k0 == 0 && !p_.initial_states) std::fill(state, state + ch.pn * N_, 0.0f);
        for (int64_t k = k0; k < std::min(k1, last + 1); ++k) {
            const int64_t c0 = k * Q_, T = std::min(Q_, s.len - c0);
            const int64_t t0 = s.start + c0;
            const float * slot = shared ? shared + (k - k0) * group_chunk_floats() : w.group.data();
            if (!shared) group_chunk(s, h / heads_per_group_, k, w.group.data(), w.b_t.data());
            const float *cb = slot, *b = cb + Q_ * Q_, *c = b + Q_ * N_;
            load_chunk(s.b, t0, T, h, ch, A, bias, w);
            mask_cb(T, cb, w);
            intra_chunk(T, ch, w);
            if (has_state) from_state(T, ch, c, state, w);
            if (k != last || p_.final_states) update_state(T, ch, b, has_state, state, w);
            has_state = true;
            store_output(s.b, t0, T, h, ch, w);
        }
        if (p_.final_states && last < k1)
            for (int64_t i = 0; i < ch.pn; ++i) {
                float * row = registers_ ? w.state_row.data() : state + i * N_;
                if (registers_)
                    for (int64_t n = 0; n < N_; ++n) row[n] = state[n * ch.pn + i];
                store_floats(DType::F32, element(*p_.final_states, {s.seq, h, ch.p0 + i, 0}), N_, p_.final_states->stride[3], row);
            }
    }

private:
    static constexpr int64_t kAhead = 8;  // rows prefetched ahead

    // Rows of an x-like (batch, len, heads, headdim) view for one batch entry and head from step t0.
    Rows rows(const Tensor & v, int64_t b, int64_t t0, int64_t h, const Channels & ch) const {
        const int64_t es = int64_t(dtype_size(v.dtype));
        return Rows{element(v, {b, t0, h, ch.p0}), v.stride[1] * es, ch.pn * std::abs(v.stride[3]) * es};
    }

    void load_D(int64_t h, const Channels & ch, float * d) const {
        if (!p_.D) {
            std::fill(d, d + ch.pn, 0.0f);
        } else if (p_.D_per_channel) {
            load_floats(DType::F32, element(*p_.D, {h, ch.p0}), ch.pn, p_.D->stride[1], d);
        } else {
            std::fill(d, d + ch.pn, *reinterpret_cast<const float *>(element(*p_.D, {h})));
        }
    }

    void load_chunk(int64_t b, int64_t t0, int64_t T, int64_t h, const Channels & ch, float A, float bias, ChunkBuffers & w) const {
        load_floats(p_.dt.dtype, element(p_.dt, {b, t0, h}), T, p_.dt.stride[1], w.dt.data());
        for (int64_t t = 0; t < T; ++t) {
            w.dt[t] = dt_(w.dt[t], bias);
            w.dA[t] = std::exp(w.dt[t] * A);
            // decay from the chunk's start through step t
            w.decay_in[t] = (t ? w.decay_in[t - 1] : 1.0f) * w.dA[t];
        }
        // decay from step s (exclusive) to the chunk's end, times dt_s
        float tail = 1.0f;
        for (int64_t t = T - 1; t >= 0; --t) {
            w.weight[t] = w.dt[t] * tail;
            tail *= w.dA[t];
        }
        const Rows x = rows(p_.x, b, t0, h, ch);
        for (int64_t t = 0; t < T; ++t) {
            if (t + kAhead < T) x.fetch(t + kAhead);
            load_floats(p_.x.dtype, x[t], ch.pn, p_.x.stride[3], &w.x[size_t(t * ch.pn)]);
        }
    }

    // cb = C B^T on and below the diagonal, in row blocks so the upper triangle is (mostly) skipped; on registers
    // the whole T x T square, from B transposed into b_t (N x Q).
    void lower_cb(int64_t T, const float * c, const float * b, float * cb, float * b_t) const {
        if (registers_) {
            for (int64_t t = 0; t < T; ++t)
                for (int64_t n = 0; n < N_; ++n) b_t[n * Q_ + t] = b[t * N_ + n];
            chunk_product(T, T, N_, c, N_, 1, b_t, Q_, cb, Q_, 0.0f, false);
            return;
        }
        constexpr int64_t kRows = 64;
        for (int64_t r0 = 0; r0 < T; r0 += kRows) {
            const int64_t rows = std::min(kRows, T - r0);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), int(r0 + rows), int(N_), 1.0f, c + r0 * N_, int(N_), b, int(N_), 0.0f,
                        cb + r0 * Q_, int(Q_));
        }
    }

    // w.cb = L o cb with L[t, s] = decay(t, s) dt_s on and below the diagonal, zeros above it (chunk_product's lower
    // product reads them); cb may be w.cb itself.
    void mask_cb(int64_t T, const float * cb, ChunkBuffers & w) const {
        float * decay = w.decay_row.data();
        for (int64_t t = 0; t < T; ++t) {
            // decay[s] = decay(t, s) = dA_{s+1} ... dA_t for s < t: the previous row's times dA_t
            const float dA = w.dA[t];
            const float * in = cb + t * Q_;
            float * out = w.cb.data() + t * Q_;
            for (int64_t s = 0; s < t; ++s) {
                decay[s] *= dA;
                out[s] = in[s] * decay[s] * w.dt[s];
            }
            decay[t] = 1.0f;
            out[t] = in[t] * w.dt[t];
            std::fill(out + t + 1, out + T, 0.0f);
        }
    }

    // y = (L o C B^T) x over the chunk, with the masked matrix in w.cb.
    void intra_chunk(int64_t T, const Channels & ch, ChunkBuffers & w) const {
        if (registers_) return chunk_product(T, ch.pn, T, w.cb.data(), Q_, 1, w.x.data(), ch.pn, w.y.data(), ch.pn, 0.0f, true);
        std::copy(w.x.begin(), w.x.begin() + T * ch.pn, w.y.begin());
        cblas_strmm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, int(T), int(ch.pn), 1.0f, w.cb.data(), int(Q_), w.y.data(), int(ch.pn));
    }

    // y += diag(decay from chunk start) C S^T: what the state entering the chunk contributes.
    void from_state(int64_t T, const Channels & ch, const float * c, const float * state, ChunkBuffers & w) const {
        // C S^T first, then scaled per row: P columns to scale instead of N.
        float * past = w.past.data();
        if (registers_) chunk_product(T, ch.pn, N_, c, N_, 1, state, ch.pn, past, ch.pn, 0.0f, false);  // state: N x pn
        else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(T), int(ch.pn), int(N_), 1.0f, c, int(N_), state, int(N_), 0.0f, past, int(ch.pn));
        for (int64_t t = 0; t < T; ++t) {
            const float f = w.decay_in[t];
            float * y = &w.y[size_t(t * ch.pn)];
            const float * from = past + t * ch.pn;
            for (int64_t i = 0; i < ch.pn; ++i) y[i] += f * from[i];
        }
    }

    // S = decay(whole chunk) S + (w o X)^T B.
    void update_state(int64_t T, const Channels & ch, const float * b, bool has_state, float * state, ChunkBuffers & w) const {
        for (int64_t t = 0; t < T; ++t) {
            const float f = w.weight[t];
            const float * src = &w.x[size_t(t * ch.pn)];
            float * dst = &w.x_weighted[size_t(t * ch.pn)];
            for (int64_t i = 0; i < ch.pn; ++i) dst[i] = f * src[i];
        }
        const float keep = has_state ? w.decay_in[size_t(T - 1)] : 0.0f;
        if (registers_) return chunk_product(N_, ch.pn, T, b, 1, N_, w.x_weighted.data(), ch.pn, state, ch.pn, keep, false);  // S^T
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(ch.pn), int(N_), int(T), 1.0f, w.x_weighted.data(), int(ch.pn), b, int(N_),
                    keep, state, int(N_));
    }

    void store_output(int64_t b, int64_t t0, int64_t T, int64_t h, const Channels & ch, ChunkBuffers & w) const {
        const Rows y_rows = rows(p_.y, b, t0, h, ch);
        const Rows z_rows = p_.z ? rows(*p_.z, b, t0, h, ch) : Rows{};
        for (int64_t t = 0; t < T; ++t) {
            float * y = &w.y[size_t(t * ch.pn)];
            const float * x = &w.x[size_t(t * ch.pn)];
            for (int64_t i = 0; i < ch.pn; ++i) y[i] += w.d[i] * x[i];
            if (p_.z) {
                float * z = w.row.data();
                if (t + kAhead < T) z_rows.fetch(t + kAhead);
                load_floats(p_.z->dtype, z_rows[t], ch.pn, p_.z->stride[3], z);
                multiply_by_silu(y, z, ch.pn);
            }
            if (t + kAhead < T) y_rows.fetch(t + kAhead, true);
            store_floats(p_.y.dtype, y_rows[t], ch.pn, p_.y.stride[3], y);
        }
    }

    const SsdParams & p_;
    const DtTransform dt_;
    const int64_t Q_, N_, heads_per_group_;
    const bool registers_;
};

std::vector<Sequence> sequences(const SsdParams & p) {
    std::vector<Sequence> out;
    if (p.cu_seqlens) {
        for (int64_t i = 0; i < p.nseq; ++i) out.push_back({i, 0, p.seq_starts[size_t(i)], p.seq_starts[size_t(i + 1)] - p.seq_starts[size_t(i)]});
    } else {
        for (int64_t b = 0; b < p.batch; ++b) out.push_back({b, b, 0, p.len});
    }
    return out;
}

}  // namespace

void ssd(mamba_context & ctx, const SsdParams & p) {
    // MAMBA_CPU_GEMM (read at every call): "blas" keeps the products on OpenBLAS, "avx512" fails where the library has
    // no AVX-512 kernels, "auto" and "amx" (the tiles serve the linear layer only) take them where it has.
    const CpuGemm gemm = cpu_gemm_setting();
    if (gemm == CpuGemm::Avx512 && !chunk_product_built())
        fail(MAMBA_STATUS_UNSUPPORTED, "MAMBA_CPU_GEMM=avx512, but this library was built without AVX-512");
    const auto seqs = sequences(p);
    const ChunkedScan scan(p, gemm != CpuGemm::Blas && chunk_product_built());
    const int64_t nseq = int64_t(seqs.size()), H = p.heads, G = p.groups, PN = p.headdim * p.dstate;
    int64_t max_chunks = 0;
    for (const auto & s : seqs) max_chunks = std::max(max_chunks, scan.chunks(s));

    // C B^T belongs to a group, so when several heads share one it is computed once per chunk, for a
    // window of chunks at a time whose products fit in a fixed budget; otherwise each head computes it.
    constexpr size_t kSharedBudgetBytes = size_t(64) << 20;
    constexpr int64_t kMaxWindow = 16;  // a window of chunks per barrier is plenty to amortize it
    const size_t slot = size_t(scan.group_chunk_floats());
    const size_t cb_bytes_per_chunk = size_t(nseq * G) * slot * sizeof(float);
    const bool shared = H / G > 1 && cb_bytes_per_chunk <= kSharedBudgetBytes && max_chunks > 0;
    const int64_t window = shared ? std::min({max_chunks, kMaxWindow, int64_t(kSharedBudgetBytes / cb_bytes_per_chunk)}) : std::max<int64_t>(max_chunks, 1);
    const int64_t windows = std::max<int64_t>(1, (max_chunks + window - 1) / window);
    std::vector<float> shared_cb(shared ? size_t(nseq * G * window) * slot : 0);
    // States wait between windows; with a single window each task keeps its own in its buffers.
    std::vector<float> states(windows > 1 ? size_t(nseq * H * PN) : 0);

    // With fewer (sequence, head) tasks than two per thread, heads' channels are split into blocks (of at
    // least 16) so that every thread has work.
    const int64_t threads = std::max<int64_t>(1, ctx.num_threads), P = p.headdim;
    int64_t splits = 1;
    while (nseq * H * splits < 2 * threads && (P + 2 * splits - 1) / (2 * splits) >= 16) splits *= 2;
    const int64_t block = (P + splits - 1) / splits;
    splits = (P + block - 1) / block;
    const int64_t tasks = nseq * H * splits;

    ensure_blas_single_threaded();
    // Exceptions must not leave an OpenMP region: the first is kept and rethrown after it, and every
    // thread still meets each worksharing loop.
    std::exception_ptr error;
    std::mutex error_mutex;
#pragma omp parallel num_threads(ctx.num_threads)
    {
        const ScopedFlushDenormals flush;  // the decays' denormals cost microcode assists (denormals.h)
        std::optional<ChunkBuffers> buffers;
        try {
            buffers.emplace(cpu_chunk(p), p.headdim, p.dstate);
        } catch (...) {
            std::lock_guard<std::mutex> lock(error_mutex);
            if (!error) error = std::current_exception();
        }
        for (int64_t win = 0; win < windows; ++win) {
            const int64_t k0 = win * window, k1 = k0 + window;
            if (shared) {
#pragma omp for schedule(dynamic, 1)
                for (int64_t item = 0; item < nseq * G * window; ++item) {
                    const int64_t seq = item / (G * window), g = item / window % G, k = k0 + item % window;
                    if (k < scan.chunks(seqs[size_t(seq)]) && buffers)
                        scan.group_chunk(seqs[size_t(seq)], g, k, &shared_cb[size_t(item) * slot], buffers->b_t.data());
                }
            }
#pragma omp for schedule(dynamic, 1)
            for (int64_t task = 0; task < tasks; ++task) {
                const int64_t seq = task / (H * splits), h = task / splits % H, g = h / (H / G);
                const Channels ch{task % splits * block, std::min(block, P - task % splits * block)};
                const float * cb = shared ? &shared_cb[size_t((seq * G + g) * window) * slot] : nullptr;
                if (!buffers) continue;
                float * state = windows > 1 ? &states[size_t((seq * H + h) * PN + ch.p0 * p.dstate)] : buffers->state.data();
                scan.run(seqs[size_t(seq)], h, ch, k0, k1, state, cb, *buffers);
            }
        }
    }
    if (error) std::rethrow_exception(error);
}

}  // namespace mamba::cpu
