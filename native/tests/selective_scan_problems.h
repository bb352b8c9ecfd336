// Problems for the Mamba-1 selective scan tests: every tensor of a call with random values, in chosen
// dtypes and memory layouts, and float64 references of the scan and its decode step written from the
// definitions in mamba.h.
#pragma once

#include "support.h"

namespace scan_test {

using mt::DType;
using mt::Tensor;

// ---- the float64 reference -------------------------------------------------------------------------

inline double softplus_ref(double x) { return x > 30.0 ? x : std::log1p(std::exp(x)); }
inline double silu_ref(double x) { return x / (1.0 + std::exp(-x)); }

struct ScanShape {
    int64_t batch, dim, len, dstate, groups;
    bool variable_bc;
};

struct ScanOptions {
    bool D = true, z = true, delta_bias = true, softplus = true, initial_state = true, final_state = true;
};

// How tensors are laid out in memory: row-major, rows padded, or permuted so that the channel (or state)
// axis is the innermost one, like a view of a (batch, len, dim) buffer.
enum class Layout { Contiguous, Padded, Permuted };

inline const char * layout_name(Layout l) { return l == Layout::Contiguous ? "contiguous" : l == Layout::Padded ? "padded" : "permuted"; }

inline std::vector<int64_t> strides_for(const std::vector<int64_t> & shape, Layout layout, std::vector<int64_t> permuted) {
    if (layout == Layout::Contiguous) return {};
    if (layout == Layout::Padded) return mt::padded_strides(shape, int(shape.size()) - 1, 3);
    return permuted;
}

struct Dtypes {
    DType in = DType::F32;  // u, delta, z
    DType bc = DType::F32;  // B, C
    DType out = DType::F32; // y
};

// Every tensor of one mamba_selective_scan call, with the test's float64 view of its values.
struct ScanProblem {
    ScanShape s;
    ScanOptions o;
    Dtypes dt;
    Tensor u, delta, A, B, C, D, z, delta_bias, initial_state, y, final_state;

    ScanProblem(const ScanShape & shape, const ScanOptions & opts, Dtypes dtypes, Layout layout, uint64_t seed) : s(shape), o(opts), dt(dtypes) {
        const int64_t Bt = s.batch, Dm = s.dim, L = s.len, N = s.dstate, G = s.groups;
        const std::vector<int64_t> seq{Bt, Dm, L}, mat{Dm, N}, vec{Dm}, state{Bt, Dm, N};
        const auto seq_strides = strides_for(seq, layout, {L * Dm, 1, Dm});
        u = Tensor(seq, dt.in, seq_strides);
        delta = Tensor(seq, dt.in, seq_strides);
        z = Tensor(seq, dt.in, seq_strides);
        y = Tensor(seq, dt.out, seq_strides);
        A = Tensor(mat, DType::F32, strides_for(mat, layout, {1, Dm}));
        if (s.variable_bc) {
            const std::vector<int64_t> bc{Bt, G, N, L};
            const auto bc_strides = strides_for(bc, layout, {L * G * N, N, 1, G * N});
            B = Tensor(bc, dt.bc, bc_strides);
            C = Tensor(bc, dt.bc, bc_strides);
        } else {
            B = Tensor(mat, dt.bc, strides_for(mat, layout, {1, Dm}));
            C = Tensor(mat, dt.bc, strides_for(mat, layout, {1, Dm}));
        }
        D = Tensor(vec, DType::F32, strides_for(vec, layout, {2}));
        delta_bias = Tensor(vec, DType::F32, strides_for(vec, layout, {2}));
        initial_state = Tensor(state, DType::F32, strides_for(state, layout, {Dm * N, 1, Dm}));
        final_state = Tensor(state, DType::F32, strides_for(state, layout, {Dm * N, 1, Dm}));

        std::mt19937_64 rng(seed);
        u.fill_uniform(rng, -1, 1);
        // dt = softplus(delta + bias) lands in about [0.05, 1]; without softplus delta is dt itself.
        if (o.softplus) delta.fill_uniform(rng, -3, 0.5);
        else delta.fill_uniform(rng, 0.02, 0.6);
        delta_bias.fill_uniform(rng, o.softplus ? -0.5 : 0.0, 0.3);
        A.fill_uniform(rng, -2.0, -0.1);  // decaying, as A = -exp(A_log) in trained models
        B.fill_uniform(rng, -1, 1);
        C.fill_uniform(rng, -1, 1);
        D.fill_uniform(rng, -1, 1);
        z.fill_uniform(rng, -3, 3);
        initial_state.fill_uniform(rng, -1, 1);
    }

    void upload(mamba_context * ctx) {
        for (Tensor * t : {&u, &delta, &A, &B, &C, &D, &z, &delta_bias, &initial_state}) t->upload(ctx);
        y.upload_poisoned(ctx);
        final_state.upload_poisoned(ctx);
    }

    mamba_selective_scan_args args() {
        mamba_selective_scan_args a{};
        a.u = u.dl();
        a.delta = delta.dl();
        a.A = A.dl();
        a.B = B.dl();
        a.C = C.dl();
        a.D = o.D ? D.dl() : nullptr;
        a.z = o.z ? z.dl() : nullptr;
        a.delta_bias = o.delta_bias ? delta_bias.dl() : nullptr;
        a.initial_state = o.initial_state ? initial_state.dl() : nullptr;
        a.y = y.dl();
        a.final_state = o.final_state ? final_state.dl() : nullptr;
        a.delta_softplus = o.softplus ? 1 : 0;
        return a;
    }
};

struct ScanResult {
    std::vector<double> y, final_state;
};

inline ScanResult reference_scan(const ScanProblem & p) {
    const int64_t Bt = p.s.batch, Dm = p.s.dim, L = p.s.len, N = p.s.dstate, G = p.s.groups;
    ScanResult r;
    r.y.assign(size_t(Bt * Dm * L), 0.0);
    r.final_state.assign(size_t(Bt * Dm * N), 0.0);
    std::vector<double> h(static_cast<size_t>(N));
    for (int64_t b = 0; b < Bt; ++b) {
        for (int64_t d = 0; d < Dm; ++d) {
            const int64_t g = d / (Dm / G);
            for (int64_t n = 0; n < N; ++n) h[size_t(n)] = p.o.initial_state ? p.initial_state.at((b * Dm + d) * N + n) : 0.0;
            for (int64_t t = 0; t < L; ++t) {
                const int64_t i = (b * Dm + d) * L + t;
                double dt = p.delta.at(i) + (p.o.delta_bias ? p.delta_bias.at(d) : 0.0);
                if (p.o.softplus) dt = softplus_ref(dt);
                const double u = p.u.at(i);
                double y = 0.0;
                for (int64_t n = 0; n < N; ++n) {
                    const int64_t bc = p.s.variable_bc ? ((b * G + g) * N + n) * L + t : d * N + n;
                    h[size_t(n)] = std::exp(dt * p.A.at(d * N + n)) * h[size_t(n)] + dt * p.B.at(bc) * u;
                    y += p.C.at(bc) * h[size_t(n)];
                }
                if (p.o.D) y += p.D.at(d) * u;
                if (p.o.z) y *= silu_ref(p.z.at(i));
                r.y[size_t(i)] = y;
            }
            for (int64_t n = 0; n < N; ++n) r.final_state[size_t((b * Dm + d) * N + n)] = h[size_t(n)];
        }
    }
    return r;
}

// Every tensor of one mamba_selective_state_update call.
struct StepShape {
    int64_t batch, dim, dstate, groups;
};

struct StepOptions {
    bool D = true, z = true, dt_bias = true, softplus = true;
};

struct StepProblem {
    StepShape s;
    StepOptions o;
    Dtypes dtypes;
    Tensor state, x, dt, A, B, C, D, z, dt_bias, y;

    StepProblem(const StepShape & shape, const StepOptions & opts, Dtypes dts, Layout layout, uint64_t seed) : s(shape), o(opts), dtypes(dts) {
        const int64_t Bt = s.batch, Dm = s.dim, N = s.dstate, G = s.groups;
        const std::vector<int64_t> row{Bt, Dm}, st{Bt, Dm, N}, mat{Dm, N}, vec{Dm}, bc{Bt, G, N};
        const auto row_strides = strides_for(row, layout, {1, Bt});
        state = Tensor(st, DType::F32, strides_for(st, layout, {Dm * N, 1, Dm}));
        x = Tensor(row, dtypes.in, row_strides);
        dt = Tensor(row, dtypes.in, row_strides);
        z = Tensor(row, dtypes.in, row_strides);
        y = Tensor(row, dtypes.out, row_strides);
        A = Tensor(mat, DType::F32, strides_for(mat, layout, {1, Dm}));
        B = Tensor(bc, dtypes.bc, strides_for(bc, layout, {G * N, 1, G}));
        C = Tensor(bc, dtypes.bc, strides_for(bc, layout, {G * N, 1, G}));
        D = Tensor(vec, DType::F32, strides_for(vec, layout, {2}));
        dt_bias = Tensor(vec, DType::F32, strides_for(vec, layout, {2}));

        std::mt19937_64 rng(seed);
        state.fill_uniform(rng, -1, 1);
        x.fill_uniform(rng, -1, 1);
        if (o.softplus) dt.fill_uniform(rng, -3, 0.5);
        else dt.fill_uniform(rng, 0.02, 0.6);
        dt_bias.fill_uniform(rng, o.softplus ? -0.5 : 0.0, 0.3);
        A.fill_uniform(rng, -2.0, -0.1);
        B.fill_uniform(rng, -1, 1);
        C.fill_uniform(rng, -1, 1);
        D.fill_uniform(rng, -1, 1);
        z.fill_uniform(rng, -3, 3);
    }

    // Uploads the step's inputs and poisons y; the state is uploaded separately because it carries over.
    void upload_inputs(mamba_context * ctx) {
        for (Tensor * t : {&x, &dt, &A, &B, &C, &D, &z, &dt_bias}) t->upload(ctx);
        y.upload_poisoned(ctx);
    }

    mamba_selective_state_update_args args() {
        mamba_selective_state_update_args a{};
        a.state = state.dl();
        a.x = x.dl();
        a.dt = dt.dl();
        a.A = A.dl();
        a.B = B.dl();
        a.C = C.dl();
        a.D = o.D ? D.dl() : nullptr;
        a.z = o.z ? z.dl() : nullptr;
        a.dt_bias = o.dt_bias ? dt_bias.dl() : nullptr;
        a.y = y.dl();
        a.dt_softplus = o.softplus ? 1 : 0;
        return a;
    }
};

struct StepResult {
    std::vector<double> y, state;
};

// One step from the state values held in p.state.
inline StepResult reference_step(const StepProblem & p) {
    const int64_t Bt = p.s.batch, Dm = p.s.dim, N = p.s.dstate, G = p.s.groups;
    StepResult r;
    r.y.assign(size_t(Bt * Dm), 0.0);
    r.state = p.state.values();
    for (int64_t b = 0; b < Bt; ++b) {
        for (int64_t d = 0; d < Dm; ++d) {
            const int64_t g = d / (Dm / G);
            double dt = p.dt.at(b * Dm + d) + (p.o.dt_bias ? p.dt_bias.at(d) : 0.0);
            if (p.o.softplus) dt = softplus_ref(dt);
            const double x = p.x.at(b * Dm + d);
            double y = 0.0;
            for (int64_t n = 0; n < N; ++n) {
                double & h = r.state[size_t((b * Dm + d) * N + n)];
                h = std::exp(dt * p.A.at(d * N + n)) * h + dt * p.B.at((b * G + g) * N + n) * x;
                y += p.C.at((b * G + g) * N + n) * h;
            }
            if (p.o.D) y += p.D.at(d) * x;
            if (p.o.z) y *= silu_ref(p.z.at(b * Dm + d));
            r.y[size_t(b * Dm + d)] = y;
        }
    }
    return r;
}

// Error allowed on an output of dtype d: its rounding, plus float32 arithmetic over the recurrence.
inline double tolerance(DType d) { return 2 * mt::dtype_epsilon(d) + 1e-5; }

}  // namespace scan_test
