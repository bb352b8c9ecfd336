// CUDA-only checks for what the shared backend tests do not reach with their small shapes: many
// channels (the selective scan's channel kernel, the library's default variant), dstate 256 and headdim over several row blocks
// (the SSD rows kernel, the 8-row SSD decode step). Float64 references, fresh random inputs, poisoned
// outputs.
#include <cmath>

#include "selective_scan_problems.h"

namespace {

using mt::DType;
using mt::Tensor;

class CudaKernelTest : public ::testing::Test {
protected:
    void SetUp() override {
        MAMBA_REQUIRE_CUDA();
        ctx_ = mt::make_context(MAMBA_DEVICE_CUDA);
        ASSERT_NE(ctx_, nullptr);
    }
    mamba_context * ctx() { return ctx_.get(); }
    mt::ContextPtr ctx_;
};

// ---- Mamba-1 scan with enough channels to fill the GPU without time segments ---------------------------

TEST_F(CudaKernelTest, ManyChannelsScanMatchesFloat64Reference) {
    using namespace scan_test;
    struct Case {
        ScanShape shape;
        Dtypes dtypes;
    };
    const Case cases[] = {
        {{2, 8192, 64, 16, 1, true}, {DType::BF16, DType::BF16, DType::BF16}},
        {{1, 16384, 40, 12, 4, true}, {DType::F32, DType::F32, DType::F32}},  // dstate padded to 16, 4 groups
        {{1, 16384, 24, 16, 2, true}, {DType::F16, DType::F16, DType::F16}},
    };
    uint64_t seed = 1;
    for (const Case & c : cases) {
        SCOPED_TRACE("dim " + std::to_string(c.shape.dim) + " len " + std::to_string(c.shape.len) + " dstate " + std::to_string(c.shape.dstate) + " " +
                     mt::dtype_name(c.dtypes.in));
        ScanProblem p(c.shape, ScanOptions{}, c.dtypes, Layout::Contiguous, seed++);
        p.upload(ctx());
        auto a = p.args();
        MAMBA_ASSERT_OK(mamba_selective_scan(ctx(), &a));
        p.y.download(ctx());
        p.final_state.download(ctx());
        const auto ref = reference_scan(p);
        EXPECT_CLOSE(p.y.values(), ref.y, tolerance(c.dtypes.out), tolerance(c.dtypes.out));
        EXPECT_CLOSE(p.final_state.values(), ref.final_state, tolerance(DType::F32), tolerance(DType::F32));
    }
}

// ---- SSD: dstate 256 and headdim spanning several row blocks -------------------------------------------

struct SsdCase {
    int64_t len, heads, headdim, groups, dstate;
    DType dtype;
};

double silu_ref(double x) { return x / (1 + std::exp(-x)); }

TEST_F(CudaKernelTest, SsdLargeStateMatchesRecurrence) {
    for (const SsdCase c : {SsdCase{70, 3, 72, 1, 256, DType::F32}, SsdCase{50, 4, 40, 2, 200, DType::BF16}}) {
        SCOPED_TRACE("dstate " + std::to_string(c.dstate) + " headdim " + std::to_string(c.headdim));
        const int64_t L = c.len, H = c.heads, P = c.headdim, G = c.groups, N = c.dstate;
        std::mt19937_64 rng(uint64_t(N + P));
        Tensor x({1, L, H, P}, c.dtype), dt({1, L, H}, c.dtype), A({H}, DType::F32), B({1, L, G, N}, c.dtype), C({1, L, G, N}, c.dtype);
        Tensor D({H, P}, DType::F32), z({1, L, H, P}, c.dtype), bias({H}, DType::F32), init({1, H, P, N}, DType::F32);
        Tensor y({1, L, H, P}, c.dtype), fin({1, H, P, N}, DType::F32);
        x.fill_uniform(rng, -1, 1);
        dt.fill_uniform(rng, -3, 0.5);
        A.fill_uniform(rng, -2, -0.1);
        B.fill_uniform(rng, -0.3, 0.3);
        C.fill_uniform(rng, -0.3, 0.3);
        D.fill_uniform(rng, -1, 1);
        z.fill_uniform(rng, -3, 3);
        bias.fill_uniform(rng, -0.5, 0.3);
        init.fill_uniform(rng, -1, 1);
        for (Tensor * t : {&x, &dt, &A, &B, &C, &D, &z, &bias, &init}) t->upload(ctx());
        y.upload_poisoned(ctx());
        fin.upload_poisoned(ctx());
        mamba_ssd_args a{};
        a.x = x.dl();
        a.dt = dt.dl();
        a.A = A.dl();
        a.B = B.dl();
        a.C = C.dl();
        a.D = D.dl();
        a.z = z.dl();
        a.dt_bias = bias.dl();
        a.initial_states = init.dl();
        a.y = y.dl();
        a.final_states = fin.dl();
        a.chunk_size = 64;
        a.dt_min = 0.0f;
        a.dt_max = INFINITY;
        a.dt_softplus = 1;
        MAMBA_ASSERT_OK(mamba_ssd(ctx(), &a));
        y.download(ctx());
        fin.download(ctx());

        std::vector<double> want_y(size_t(L * H * P)), S(size_t(H * P * N));
        for (int64_t i = 0; i < H * P * N; ++i) S[size_t(i)] = init.at(i);
        for (int64_t t = 0; t < L; ++t)
            for (int64_t h = 0; h < H; ++h) {
                const int64_t g = h / (H / G);
                const double d = mt::reference_dt(dt.at(t * H + h), bias.at(h), true, 0.0, INFINITY);
                const double decay = std::exp(d * A.at(h));
                for (int64_t p = 0; p < P; ++p) {
                    const double xv = x.at((t * H + h) * P + p);
                    double acc = 0;
                    for (int64_t n = 0; n < N; ++n) {
                        double & s = S[size_t((h * P + p) * N + n)];
                        s = decay * s + d * xv * B.at((t * G + g) * N + n);
                        acc += C.at((t * G + g) * N + n) * s;
                    }
                    want_y[size_t((t * H + h) * P + p)] = (acc + D.at(h * P + p) * xv) * silu_ref(z.at((t * H + h) * P + p));
                }
            }
        const double tol = 4 * mt::dtype_epsilon(c.dtype) + 2e-4;
        EXPECT_CLOSE(y.values(), want_y, tol, tol);
        EXPECT_CLOSE(fin.values(), S, 2e-4, 2e-4);
    }
}

// ---- SSD decode step with dstate 256 (two float4 passes per lane) -----------------------------------------

TEST_F(CudaKernelTest, SsdStateUpdateLargeStateMatchesReference) {
    const int64_t Bt = 3, H = 4, P = 20, G = 2, N = 256;
    for (bool strided : {false, true}) {
        SCOPED_TRACE(strided ? "strided state" : "contiguous state");
        std::mt19937_64 rng(strided ? 5 : 6);
        // The strided state spreads dstate two elements apart, which rules out 16-byte accesses.
        Tensor state({Bt, H, P, N}, DType::F32, strided ? std::vector<int64_t>{H * P * N * 2, P * N * 2, N * 2, 2} : std::vector<int64_t>{});
        Tensor x({Bt, H, P}, DType::BF16), dt({Bt, H}, DType::F32), A({H}, DType::F32), B({Bt, G, N}, DType::BF16), C({Bt, G, N}, DType::BF16);
        Tensor D({H}, DType::F32), y({Bt, H, P}, DType::F32);
        state.fill_uniform(rng, -1, 1);
        x.fill_uniform(rng, -1, 1);
        dt.fill_uniform(rng, 0.05, 0.8);
        A.fill_uniform(rng, -2, -0.1);
        B.fill_uniform(rng, -0.3, 0.3);
        C.fill_uniform(rng, -0.3, 0.3);
        D.fill_uniform(rng, -1, 1);
        for (Tensor * t : {&state, &x, &dt, &A, &B, &C, &D}) t->upload(ctx());
        y.upload_poisoned(ctx());
        mamba_ssd_state_update_args a{};
        a.state = state.dl();
        a.x = x.dl();
        a.dt = dt.dl();
        a.A = A.dl();
        a.B = B.dl();
        a.C = C.dl();
        a.D = D.dl();
        a.y = y.dl();
        a.dt_min = 0.0f;
        a.dt_max = INFINITY;
        std::vector<double> want_state = state.values();
        mt::SsdStepInputs in;
        in.batch = Bt, in.heads = H, in.headdim = P, in.groups = G, in.dstate = N;
        in.x = &x, in.dt = &dt, in.A = &A, in.B = &B, in.C = &C, in.D = &D;
        in.dt_min = a.dt_min, in.dt_max = a.dt_max;
        const std::vector<double> want_y = mt::reference_ssd_step(in, want_state);
        MAMBA_ASSERT_OK(mamba_ssd_state_update(ctx(), &a));
        state.download(ctx());
        y.download(ctx());
        EXPECT_CLOSE(y.values(), want_y, 1e-4, 1e-4);
        EXPECT_CLOSE(state.values(), want_state, 1e-5, 1e-5);
    }
}

}  // namespace
