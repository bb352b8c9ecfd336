// mamba_ssd_state_update at shapes and options that reach the tails of the CUDA kernel
// (ssd_state_update.cu): a headdim over several 64-row blocks with a partial last block and a partial
// last warp, a partial last lane of states, dstate over two 128-state passes, dstate not a multiple of 4
// (the element path), strided and misaligned states, groups, D absent / per head / per channel, z and
// dt_bias absent, softplus off, a dt limit, float32 / float16 / bfloat16 inputs, and a grid of many
// blocks. Against the float64 reference of one recurrence step (support.h); outputs poisoned. Each case
// runs twice: after uploads, and right after an op whose outputs libmamba records (mt::LeadIn), where on
// CUDA the kernel loads the state's first pass, A and dt_bias before its launch wait.
#include "backend_test.h"

namespace {

using mt::DType;
using mt::Tensor;

enum class StateLayout { Contiguous, Misaligned, Spread };  // Spread: dstate two floats apart
enum class DKind { None, PerHead, PerChannel };

struct Case {
    int64_t batch, heads, headdim, groups, dstate;
    StateLayout layout = StateLayout::Contiguous;
    DKind d = DKind::PerHead;
    bool z = true, bias = true, softplus = true, limit = false;
    DType dtype = DType::BF16;
};

std::string describe(const Case & c) {
    static const char * const layouts[] = {"", " misaligned", " spread"};
    static const char * const ds[] = {" noD", " D/head", " D/channel"};
    return "B" + std::to_string(c.batch) + " H" + std::to_string(c.heads) + " P" + std::to_string(c.headdim) + " G" + std::to_string(c.groups) + " N" +
           std::to_string(c.dstate) + layouts[int(c.layout)] + ds[int(c.d)] + (c.z ? " z" : "") + (c.bias ? " bias" : "") +
           (c.softplus ? " softplus" : "") + (c.limit ? " limit" : "") + " " + mt::dtype_name(c.dtype);
}

}  // namespace

class SsdStateUpdateShapesTest : public mt::BackendTest {
protected:
    void check(const Case & c, uint64_t seed) {
        for (bool lead_in : {false, true}) check(c, seed, lead_in);
    }
    void check(const Case & c, uint64_t seed, bool lead_in) {
        SCOPED_TRACE(describe(c) + (lead_in ? " after a lead-in op" : ""));
        const int64_t Bn = c.batch, H = c.heads, P = c.headdim, G = c.groups, N = c.dstate;
        std::mt19937_64 rng(seed);
        // The state lives in a flat buffer; the view starts at float 0 (or 1: misaligned) and steps 1 (or
        // 2: spread) along dstate.
        const int64_t shift = c.layout == StateLayout::Misaligned ? 1 : 0, step = c.layout == StateLayout::Spread ? 2 : 1;
        const int64_t elements = Bn * H * P * N;
        Tensor state_buf({elements * step + shift}, DType::F32);
        Tensor x({Bn, H, P}, c.dtype), dt({Bn, H}, c.dtype), A({H}, DType::F32), Bm({Bn, G, N}, c.dtype), Cm({Bn, G, N}, c.dtype);
        Tensor D(c.d == DKind::PerChannel ? std::vector<int64_t>{H, P} : std::vector<int64_t>{H}, DType::F32);
        Tensor z({Bn, H, P}, c.dtype), bias({H}, DType::F32), y({Bn, H, P}, DType::F32);
        state_buf.fill_uniform(rng, -1, 1);
        x.fill_uniform(rng, -1, 1);
        if (c.softplus) dt.fill_uniform(rng, -3, 0.5);
        else dt.fill_uniform(rng, 0.01, 0.6);
        A.fill_uniform(rng, -4, -0.5);
        Bm.fill_uniform(rng, -1, 1);
        Cm.fill_uniform(rng, -1, 1);
        D.fill_uniform(rng, -1, 1);
        z.fill_uniform(rng, -2, 2);
        bias.fill_uniform(rng, -0.5, 0.5);
        for (Tensor * t : {&state_buf, &x, &dt, &A, &Bm, &Cm, &D, &z, &bias}) t->upload(ctx());
        y.upload_poisoned(ctx());
        mt::View state(state_buf, {Bn, H, P, N}, {H * P * N * step, P * N * step, N * step, step}, uint64_t(shift) * sizeof(float));
        mamba_ssd_state_update_args a{};
        a.state = state.dl();
        a.x = x.dl();
        a.dt = dt.dl();
        a.A = A.dl();
        a.B = Bm.dl();
        a.C = Cm.dl();
        if (c.d != DKind::None) a.D = D.dl();
        if (c.z) a.z = z.dl();
        if (c.bias) a.dt_bias = bias.dl();
        a.y = y.dl();
        a.dt_softplus = c.softplus;
        a.dt_min = c.limit ? 0.1f : 0.0f;
        a.dt_max = c.limit ? 0.4f : INFINITY;
        mt::LeadIn lead(ctx());
        if (lead_in) lead.queue();
        MAMBA_ASSERT_OK(mamba_ssd_state_update(ctx(), &a));

        // The reference steps the states the view shows.
        std::vector<double> want_state = state_buf.values();
        std::vector<double> view(static_cast<size_t>(elements));
        for (int64_t i = 0; i < elements; ++i) view[size_t(i)] = want_state[size_t(shift + i * step)];
        mt::SsdStepInputs in;
        in.batch = Bn, in.heads = H, in.headdim = P, in.groups = G, in.dstate = N;
        in.x = &x, in.dt = &dt, in.A = &A, in.B = &Bm, in.C = &Cm;
        if (c.d != DKind::None) in.D = &D;
        if (c.z) in.z = &z;
        if (c.bias) in.dt_bias = &bias;
        in.dt_softplus = c.softplus;
        in.dt_min = a.dt_min, in.dt_max = a.dt_max;
        const std::vector<double> want_y = mt::reference_ssd_step(in, view);
        for (int64_t i = 0; i < elements; ++i) want_state[size_t(shift + i * step)] = view[size_t(i)];
        y.download(ctx());
        state_buf.download(ctx());
        EXPECT_CLOSE(y.values(), want_y, 1e-4, 1e-4);
        // The spread layout's gaps stay as uploaded (the reference does not touch them either).
        EXPECT_CLOSE(state_buf.values(), want_state, 1e-5, 1e-5);
    }
};

TEST_P(SsdStateUpdateShapesTest, ShapesAndOptionsMatchFloat64Reference) {
    const Case cases[] = {
        {2, 3, 64, 1, 128},                                                     // full blocks, one float4 per lane
        {2, 4, 77, 2, 128},                                                     // partial last block (13 rows), groups
        {1, 2, 19, 1, 124},                                                     // 31 lanes hold states
        {2, 2, 7, 2, 3},                                                        // fewer states than a float4: element path
        {1, 3, 9, 1, 130},                                                      // dstate > 128 and % 4 != 0
        {1, 2, 5, 1, 256},                                                      // two passes
        {2, 2, 33, 1, 128, StateLayout::Misaligned},                            // element path
        {2, 2, 13, 1, 64, StateLayout::Spread, DKind::PerChannel},              // strided dstate
        {3, 6, 8, 3, 16, StateLayout::Contiguous, DKind::None, false, false, false},  // only the recurrence
        {2, 4, 10, 2, 32, StateLayout::Contiguous, DKind::PerChannel, true, true, true, true, DType::F32},
        {2, 4, 11, 4, 20, StateLayout::Contiguous, DKind::PerHead, false, true, true, true, DType::F16},
        {16, 48, 64, 2, 128},                                                   // 768 blocks: several per SM
    };
    uint64_t seed = 91;
    for (const Case & c : cases) check(c, seed++);
}

// The tails of the kernel's blocks: a headdim spread over several 64-row blocks with a partial last block
// and a partial last warp, dstate over two 128-state passes, dstate not a multiple of 4 (element path),
// a misaligned state (element path).
TEST_P(SsdStateUpdateShapesTest, TailsOfRowsAndStatesMatchFloat64Reference) {
    const Case cases[] = {
        {2, 3, 64, 1, 128},                           // one full 64-row block per head, one 128-state pass
        {2, 2, 65, 2, 128},                           // a second row block holding one row
        {1, 4, 77, 2, 132},                           // partial last warp; a second pass with one float4 for 1 lane
        {2, 2, 19, 1, 252},                           // two passes, the second partial (31 lanes)
        {1, 2, 5, 1, 256},                            // the largest dstate: two full passes
        {1, 2, 9, 1, 130},                            // dstate not a multiple of 4: element path
        {2, 2, 7, 2, 3},                              // fewer states than one float4
        {2, 2, 33, 1, 128, StateLayout::Misaligned},  // misaligned state: element path
        {1, 2, 64, 1, 64},                            // half a pass
    };
    uint64_t seed = 7;
    for (const Case & c : cases) check(c, seed++);
}

// Blocks of 64, 32 or 16 rows of a head (MAMBA_CUDA_SSD_UPDATE_ROWS; "auto" takes fewer rows where blocks of 64
// would leave SMs idle): full and partial blocks and warps of each length, two passes, and a grid over every SM.
TEST_P(SsdStateUpdateShapesTest, RowsPerBlockSettingsMatchFloat64Reference) {
    const Case cases[] = {
        {1, 80, 64, 1, 128},   // mamba2-2.7b at batch 1: four 16-row blocks a head under "auto"
        {2, 2, 77, 2, 128},    // 32 + 32 + 13 rows (or 4 x 16 + 13): a partial block with a partial warp
        {1, 3, 45, 1, 252},    // 32 + 13 rows, a partial second pass
        {1, 2, 16, 1, 64},     // fewer rows than a 32-row block, one whole 16-row block
        {16, 48, 64, 2, 128},  // 768 blocks of 64 rows under "auto"
    };
    for (const char * rows : kernel_variants({"auto", "64", "32", "16"})) {
        SCOPED_TRACE(std::string("MAMBA_CUDA_SSD_UPDATE_ROWS=") + rows);
        const mt::ScopedEnv env("MAMBA_CUDA_SSD_UPDATE_ROWS", rows);
        uint64_t seed = 301;
        for (const Case & c : cases) check(c, seed++);
    }
}

TEST_P(SsdStateUpdateShapesTest, RejectsUnknownRowsPerBlockSetting) {
    if (!on_cuda()) GTEST_SKIP() << "MAMBA_CUDA_SSD_UPDATE_ROWS is read by the CUDA backend";
    const mt::ScopedEnv env("MAMBA_CUDA_SSD_UPDATE_ROWS", "48");
    Tensor state({1, 1, 8, 16}, DType::F32), x({1, 1, 8}, DType::F32), dt({1, 1}, DType::F32), A({1}, DType::F32), Bm({1, 1, 16}, DType::F32),
        Cm({1, 1, 16}, DType::F32), y({1, 1, 8}, DType::F32);
    std::mt19937_64 rng(48);
    for (Tensor * t : {&state, &x, &dt, &A, &Bm, &Cm, &y}) {
        t->fill_uniform(rng, -1, 1);
        t->upload(ctx());
    }
    const std::vector<double> state_before = state.values(), y_before = y.values();
    mamba_ssd_state_update_args a{};
    a.state = state.dl();
    a.x = x.dl();
    a.dt = dt.dl();
    a.A = A.dl();
    a.B = Bm.dl();
    a.C = Cm.dl();
    a.y = y.dl();
    a.dt_max = INFINITY;
    EXPECT_EQ(mamba_ssd_state_update(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_ssd_state_update: MAMBA_CUDA_SSD_UPDATE_ROWS must be one of auto, 64, 32, 16 (or unset), not '48'");
    // Refused before any launch: the state and y are as uploaded.
    MAMBA_ASSERT_OK(mamba_context_synchronize(ctx()));
    state.download(ctx());
    y.download(ctx());
    EXPECT_EQ(state.values(), state_before);
    EXPECT_EQ(y.values(), y_before);
}

MAMBA_INSTANTIATE_BACKENDS(SsdStateUpdateShapesTest);
