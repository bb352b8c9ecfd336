// mamba_ssd_state_update at shapes that reach every tail of the CUDA kernel (ssd_state_update.cu): a
// headdim spread over several 64-row blocks with a partial last block and a partial last warp, dstate
// over two 128-state passes, dstate not a multiple of 4 (element path), a misaligned state (element
// path). Against a float64 reference of one recurrence step; outputs poisoned.
#include "backend_test.h"

namespace {

using mt::DType;
using mt::Tensor;

struct UpdateShape {
    int64_t batch, heads, headdim, groups, dstate;
    bool misaligned_state = false;  // the state view starts one float past a 16-byte boundary
};

std::string describe(const UpdateShape & s) {
    return "B" + std::to_string(s.batch) + " H" + std::to_string(s.heads) + " P" + std::to_string(s.headdim) + " G" + std::to_string(s.groups) + " N" +
           std::to_string(s.dstate) + (s.misaligned_state ? " misaligned" : "");
}

}  // namespace

class SsdStateUpdateShapesTest : public mt::BackendTest {
protected:
    void check(const UpdateShape & s, uint64_t seed) {
        SCOPED_TRACE(describe(s));
        const int64_t Bn = s.batch, H = s.heads, P = s.headdim, G = s.groups, N = s.dstate;
        std::mt19937_64 rng(seed);
        // The state lives in a buffer one float longer; the view starts at element 0 or 1 of it.
        const int64_t shift = s.misaligned_state ? 1 : 0;
        Tensor state_buf({Bn * H * P * N + 1}, DType::F32);
        Tensor x({Bn, H, P}, DType::BF16), dt({Bn, H}, DType::BF16), A({H}, DType::F32), Bm({Bn, G, N}, DType::BF16), Cm({Bn, G, N}, DType::BF16);
        Tensor D({H}, DType::F32), z({Bn, H, P}, DType::BF16), bias({H}, DType::F32), y({Bn, H, P}, DType::F32);
        state_buf.fill_uniform(rng, -1, 1);
        x.fill_uniform(rng, -1, 1);
        dt.fill_uniform(rng, -3, 0);
        A.fill_uniform(rng, -4, -0.5);
        Bm.fill_uniform(rng, -1, 1);
        Cm.fill_uniform(rng, -1, 1);
        D.fill_uniform(rng, -1, 1);
        z.fill_uniform(rng, -2, 2);
        bias.fill_uniform(rng, -0.5, 0.5);
        for (Tensor * t : {&state_buf, &x, &dt, &A, &Bm, &Cm, &D, &z, &bias}) t->upload(ctx());
        y.upload_poisoned(ctx());
        int64_t st_shape[4] = {Bn, H, P, N}, st_strides[4] = {H * P * N, P * N, N, 1};
        DLTensor state = *state_buf.dl();
        state.ndim = 4;
        state.shape = st_shape;
        state.strides = st_strides;
        state.byte_offset = uint64_t(shift) * sizeof(float);
        mamba_ssd_state_update_args a{};
        a.state = &state;
        a.x = x.dl();
        a.dt = dt.dl();
        a.A = A.dl();
        a.B = Bm.dl();
        a.C = Cm.dl();
        a.D = D.dl();
        a.z = z.dl();
        a.dt_bias = bias.dl();
        a.y = y.dl();
        a.dt_softplus = 1;
        a.dt_min = 0.0f;
        a.dt_max = INFINITY;
        MAMBA_ASSERT_OK(mamba_ssd_state_update(ctx(), &a));

        std::vector<double> want_state = state_buf.values(), want_y(size_t(Bn * H * P));
        for (int64_t b = 0; b < Bn; ++b)
            for (int64_t h = 0; h < H; ++h) {
                const int64_t g = h / (H / G);
                double v = dt.at(b * H + h) + bias.at(h);
                v = v > 20 ? v : std::log1p(std::exp(v));
                const double decay = std::exp(v * A.at(h));
                for (int64_t p = 0; p < P; ++p) {
                    const double xv = x.at((b * H + h) * P + p);
                    double acc = 0;
                    for (int64_t n = 0; n < N; ++n) {
                        double & st = want_state[size_t(shift + ((b * H + h) * P + p) * N + n)];
                        st = decay * st + v * xv * Bm.at((b * G + g) * N + n);
                        acc += st * Cm.at((b * G + g) * N + n);
                    }
                    const double zv = z.at((b * H + h) * P + p);
                    want_y[size_t((b * H + h) * P + p)] = (acc + D.at(h) * xv) * zv / (1 + std::exp(-zv));
                }
            }
        y.download(ctx());
        state_buf.download(ctx());
        EXPECT_CLOSE(y.values(), want_y, 1e-4, 1e-4);
        EXPECT_CLOSE(state_buf.values(), want_state, 1e-5, 1e-5);
    }
};

TEST_P(SsdStateUpdateShapesTest, TailsOfRowsAndStatesMatchFloat64Reference) {
    const UpdateShape shapes[] = {
        {2, 3, 64, 1, 128},         // one full 64-row block per head, one 128-state pass
        {2, 2, 65, 2, 128},         // a second row block holding one row
        {1, 4, 77, 2, 132},         // partial last warp; a second pass with one float4 per lane for 1 lane
        {2, 2, 19, 1, 252},         // two passes, the second partial (31 lanes)
        {1, 2, 5, 1, 256},          // the largest dstate: two full passes
        {1, 2, 9, 1, 130},          // dstate not a multiple of 4: element path
        {2, 2, 7, 2, 3},            // fewer states than one float4
        {2, 2, 33, 1, 128, true},   // misaligned state: element path
        {1, 2, 64, 1, 64},          // half a pass
    };
    uint64_t seed = 7;
    for (const UpdateShape & s : shapes) check(s, seed++);
}

MAMBA_INSTANTIATE_BACKENDS(SsdStateUpdateShapesTest);
