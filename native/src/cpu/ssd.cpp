// CPU Mamba-2 SSD scan in chunks. Each (sequence, head) is one task that walks its chunks in order,
// carrying the (headdim x dstate) state. Within a chunk of T steps, with a_t = dt_t A the log decay,
// dA_t = exp(a_t) and decay(t, s) = dA_{s+1} ... dA_t:
//   intra-chunk   Y  = (L o C B^T) X         L[t, s] = decay(t, s) dt_s for s <= t (lower triangular)
//   from the past Y += diag(decay(t, -1)) C S^T
//   state         S  = decay(T-1, -1) S + (w o X)^T B     w_s = decay(T-1, s) dt_s
// The three products go to BLAS; the decays are running products of dA, so a chunk costs T
// exponentials, not T^2. Inputs of a chunk are converted to float32 once.
#include <algorithm>
#include <exception>
#include <optional>
#include <vector>

#include "core/context.h"
#include "cpu/convert.h"
#include "cpu/ssd_common.h"
#include "ops/ssd.h"

namespace mamba::cpu {

namespace {

// One independent recurrence: rows [start, start + len) of batch entry b; states are indexed by seq.
struct Sequence {
    int64_t seq, b, start, len;
};

// Per-thread float32 work buffers for one chunk.
struct ChunkBuffers {
    std::vector<float> x, b, c, c_scaled, x_weighted, cb, y, z, state, dt, dA, decay_in, decay_row, weight, d, row;

    ChunkBuffers(int64_t Q, int64_t P, int64_t N) {
        auto size = [](std::vector<float> & v, int64_t n) { v.assign(size_t(n), 0.0f); };
        size(x, Q * P), size(b, Q * N), size(c, Q * N), size(c_scaled, Q * N), size(x_weighted, Q * P);
        size(cb, Q * Q), size(y, Q * P), size(z, Q * P), size(state, P * N);
        size(dt, Q), size(dA, Q), size(decay_in, Q), size(decay_row, Q), size(weight, Q), size(d, P), size(row, P);
    }
};

class ChunkedScan {
public:
    explicit ChunkedScan(const SsdParams & p)
        : p_(p), dt_(p.dt_softplus, p.dt_min, p.dt_max), Q_(p.chunk_size), P_(p.headdim), N_(p.dstate),
          heads_per_group_(p.heads / p.groups) {}

    void run(const Sequence & s, int64_t h, ChunkBuffers & w) const {
        const float A = *reinterpret_cast<const float *>(element(p_.A, {h}));
        const float bias = p_.dt_bias ? *reinterpret_cast<const float *>(element(*p_.dt_bias, {h})) : 0.0f;
        load_D(h, w.d.data());
        bool has_state = p_.initial_states.has_value();
        if (has_state)
            for (int64_t i = 0; i < P_; ++i)
                load_floats(DType::F32, element(*p_.initial_states, {s.seq, h, i, 0}), N_, p_.initial_states->stride[3], &w.state[size_t(i * N_)]);
        for (int64_t c0 = 0; c0 < s.len; c0 += Q_) {
            const int64_t T = std::min(Q_, s.len - c0);
            const int64_t t0 = s.start + c0;
            load_chunk(s.b, t0, T, h, A, bias, w);
            intra_chunk(T, w);
            if (has_state) from_state(T, w);
            const bool last = c0 + T >= s.len;
            if (!last || p_.final_states) update_state(T, has_state, w);
            has_state = true;
            store_output(s.b, t0, T, h, w);
        }
        if (p_.final_states) {
            if (!has_state) std::fill(w.state.begin(), w.state.end(), 0.0f);  // empty sequence, no initial state
            for (int64_t i = 0; i < P_; ++i)
                store_floats(DType::F32, element(*p_.final_states, {s.seq, h, i, 0}), N_, p_.final_states->stride[3], &w.state[size_t(i * N_)]);
        }
    }

private:
    void load_D(int64_t h, float * d) const {
        if (!p_.D) {
            std::fill(d, d + P_, 0.0f);
        } else if (p_.D_per_channel) {
            load_floats(DType::F32, element(*p_.D, {h, 0}), P_, p_.D->stride[1], d);
        } else {
            std::fill(d, d + P_, *reinterpret_cast<const float *>(element(*p_.D, {h})));
        }
    }

    void load_chunk(int64_t b, int64_t t0, int64_t T, int64_t h, float A, float bias, ChunkBuffers & w) const {
        const int64_t g = h / heads_per_group_;
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
        for (int64_t t = 0; t < T; ++t) {
            load_floats(p_.x.dtype, element(p_.x, {b, t0 + t, h, 0}), P_, p_.x.stride[3], &w.x[size_t(t * P_)]);
            load_floats(p_.B.dtype, element(p_.B, {b, t0 + t, g, 0}), N_, p_.B.stride[3], &w.b[size_t(t * N_)]);
            load_floats(p_.C.dtype, element(p_.C, {b, t0 + t, g, 0}), N_, p_.C.stride[3], &w.c[size_t(t * N_)]);
        }
    }

    // y = (L o C B^T) x over the chunk.
    void intra_chunk(int64_t T, ChunkBuffers & w) const {
        float * cb = w.cb.data();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(T), int(T), int(N_), 1.0f, w.c.data(), int(N_), w.b.data(), int(N_), 0.0f,
                    cb, int(Q_));
        float * decay = w.decay_row.data();
        for (int64_t t = 0; t < T; ++t) {
            // decay[s] = decay(t, s) = dA_{s+1} ... dA_t for s < t: the previous row's times dA_t
            const float dA = w.dA[t];
            float * row = cb + t * Q_;
            for (int64_t s = 0; s < t; ++s) {
                decay[s] *= dA;
                row[s] *= decay[s] * w.dt[s];
            }
            decay[t] = 1.0f;
            row[t] *= w.dt[t];
        }
        std::copy(w.x.begin(), w.x.begin() + T * P_, w.y.begin());
        cblas_strmm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, int(T), int(P_), 1.0f, cb, int(Q_), w.y.data(), int(P_));
    }

    // y += diag(decay from chunk start) C S^T: what the state entering the chunk contributes.
    void from_state(int64_t T, ChunkBuffers & w) const {
        for (int64_t t = 0; t < T; ++t) {
            const float f = w.decay_in[t];
            const float * src = &w.c[size_t(t * N_)];
            float * dst = &w.c_scaled[size_t(t * N_)];
            for (int64_t n = 0; n < N_; ++n) dst[n] = f * src[n];
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(T), int(P_), int(N_), 1.0f, w.c_scaled.data(), int(N_), w.state.data(),
                    int(N_), 1.0f, w.y.data(), int(P_));
    }

    // S = decay(whole chunk) S + (w o X)^T B.
    void update_state(int64_t T, bool has_state, ChunkBuffers & w) const {
        for (int64_t t = 0; t < T; ++t) {
            const float f = w.weight[t];
            const float * src = &w.x[size_t(t * P_)];
            float * dst = &w.x_weighted[size_t(t * P_)];
            for (int64_t i = 0; i < P_; ++i) dst[i] = f * src[i];
        }
        const float keep = has_state ? w.decay_in[size_t(T - 1)] : 0.0f;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(P_), int(N_), int(T), 1.0f, w.x_weighted.data(), int(P_), w.b.data(), int(N_),
                    keep, w.state.data(), int(N_));
    }

    void store_output(int64_t b, int64_t t0, int64_t T, int64_t h, ChunkBuffers & w) const {
        for (int64_t t = 0; t < T; ++t) {
            float * y = &w.y[size_t(t * P_)];
            const float * x = &w.x[size_t(t * P_)];
            for (int64_t i = 0; i < P_; ++i) y[i] += w.d[i] * x[i];
            if (p_.z) {
                float * z = w.row.data();
                load_floats(p_.z->dtype, element(*p_.z, {b, t0 + t, h, 0}), P_, p_.z->stride[3], z);
                for (int64_t i = 0; i < P_; ++i) y[i] *= silu(z[i]);
            }
            store_floats(p_.y.dtype, element(p_.y, {b, t0 + t, h, 0}), P_, p_.y.stride[3], y);
        }
    }

    const SsdParams & p_;
    const DtTransform dt_;
    const int64_t Q_, P_, N_, heads_per_group_;
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
    const auto seqs = sequences(p);
    const ChunkedScan scan(p);
    const int64_t tasks = int64_t(seqs.size()) * p.heads;
    SingleThreadedBlas single_threaded_blas;
    // Exceptions must not leave an OpenMP region: the first is kept and rethrown after it, and every
    // thread still meets the worksharing loop.
    std::exception_ptr error;
#pragma omp parallel num_threads(ctx.num_threads)
    {
        std::optional<ChunkBuffers> buffers;
        try {
            buffers.emplace(p.chunk_size, p.headdim, p.dstate);
        } catch (...) {
#pragma omp critical(mamba_ssd_error)
            if (!error) error = std::current_exception();
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < tasks; ++task)
            if (buffers) scan.run(seqs[size_t(task / p.heads)], task % p.heads, *buffers);
    }
    if (error) std::rethrow_exception(error);
}

}  // namespace mamba::cpu
