// Every CUDA kernel variant of mamba_ssd_state_update (ssd_state_update.cu; MAMBA_CUDA_SSD_UPDATE_VARIANT
// forces one: "block" the default, "plain" and "evict_store" its cache policies, "half" 32-row blocks,
// "deep" 16 rows per warp) over the options and the tails of each variant's geometry: D absent / per head /
// per channel, z, dt_bias, softplus, dt limits, groups, headdim not a multiple of a block's or a warp's
// rows, dstate over two 128-state passes or not a multiple of 4, strided and misaligned states (the
// element path), float32 / float16 / bfloat16 inputs, and a grid of many blocks. Against the float64
// reference of one recurrence step (support.h); y poisoned, the state buffer's gaps checked untouched.
// The CPU backend ignores the variable: its instance runs the cases once.
#include "backend_test.h"

namespace {

using mt::DType;
using mt::Tensor;

const char * const kSsdUpdateVariants[] = {"block", "plain", "evict_store", "half", "deep"};

enum class Layout { Contiguous, Misaligned, Spread };  // Spread: consecutive states two floats apart
enum class DMode { None, PerHead, PerChannel };

struct StepCase {
    int64_t batch, heads, headdim, groups, dstate;
    Layout layout = Layout::Contiguous;
    DMode d = DMode::PerHead;
    bool z = true, bias = true, softplus = true, limit = false;
    DType dtype = DType::BF16;
};

std::string describe(const StepCase & c) {
    static const char * const layouts[] = {"", " misaligned", " spread"};
    static const char * const ds[] = {" noD", " D/head", " D/channel"};
    return "B" + std::to_string(c.batch) + " H" + std::to_string(c.heads) + " P" + std::to_string(c.headdim) + " G" + std::to_string(c.groups) + " N" +
           std::to_string(c.dstate) + layouts[int(c.layout)] + ds[int(c.d)] + (c.z ? " z" : "") + (c.bias ? " bias" : "") +
           (c.softplus ? " softplus" : "") + (c.limit ? " limit" : "") + " " + mt::dtype_name(c.dtype);
}

}  // namespace

class SsdStateUpdateVariantsTest : public mt::BackendTest {
protected:
    // Runs one step on the current variant and compares y and the whole state buffer with the reference.
    void check(const StepCase & c, uint64_t seed) {
        SCOPED_TRACE(describe(c));
        const int64_t Bn = c.batch, H = c.heads, P = c.headdim, G = c.groups, N = c.dstate;
        std::mt19937_64 rng(seed);
        const int64_t shift = c.layout == Layout::Misaligned ? 1 : 0, step = c.layout == Layout::Spread ? 2 : 1;
        const int64_t elements = Bn * H * P * N;
        Tensor buffer({elements * step + shift}, DType::F32);
        Tensor x({Bn, H, P}, c.dtype), dt({Bn, H}, c.dtype), A({H}, DType::F32), Bm({Bn, G, N}, c.dtype), Cm({Bn, G, N}, c.dtype);
        Tensor D(c.d == DMode::PerChannel ? std::vector<int64_t>{H, P} : std::vector<int64_t>{H}, DType::F32);
        Tensor z({Bn, H, P}, c.dtype), bias({H}, DType::F32), y({Bn, H, P}, DType::F32);
        buffer.fill_uniform(rng, -1, 1);
        x.fill_uniform(rng, -1, 1);
        if (c.softplus) dt.fill_uniform(rng, -3, 0.5);
        else dt.fill_uniform(rng, 0.01, 0.6);
        A.fill_uniform(rng, -4, -0.5);
        Bm.fill_uniform(rng, -1, 1);
        Cm.fill_uniform(rng, -1, 1);
        D.fill_uniform(rng, -1, 1);
        z.fill_uniform(rng, -2, 2);
        bias.fill_uniform(rng, -0.5, 0.5);
        for (Tensor * t : {&buffer, &x, &dt, &A, &Bm, &Cm, &D, &z, &bias}) t->upload(ctx());
        y.upload_poisoned(ctx());
        // The state view starts `shift` floats into the buffer and steps `step` floats along dstate.
        int64_t shape[4] = {Bn, H, P, N}, strides[4] = {H * P * N * step, P * N * step, N * step, step};
        DLTensor state = *buffer.dl();
        state.ndim = 4;
        state.shape = shape;
        state.strides = strides;
        state.byte_offset = uint64_t(shift) * sizeof(float);
        mamba_ssd_state_update_args a{};
        a.state = &state;
        a.x = x.dl();
        a.dt = dt.dl();
        a.A = A.dl();
        a.B = Bm.dl();
        a.C = Cm.dl();
        if (c.d != DMode::None) a.D = D.dl();
        if (c.z) a.z = z.dl();
        if (c.bias) a.dt_bias = bias.dl();
        a.y = y.dl();
        a.dt_softplus = c.softplus;
        a.dt_min = c.limit ? 0.1f : 0.0f;
        a.dt_max = c.limit ? 0.4f : INFINITY;
        MAMBA_ASSERT_OK(mamba_ssd_state_update(ctx(), &a));

        std::vector<double> want_buffer = buffer.values();
        std::vector<double> view(static_cast<size_t>(elements));
        for (int64_t i = 0; i < elements; ++i) view[size_t(i)] = want_buffer[size_t(shift + i * step)];
        mt::SsdStepInputs in;
        in.batch = Bn, in.heads = H, in.headdim = P, in.groups = G, in.dstate = N;
        in.x = &x, in.dt = &dt, in.A = &A, in.B = &Bm, in.C = &Cm;
        if (c.d != DMode::None) in.D = &D;
        if (c.z) in.z = &z;
        if (c.bias) in.dt_bias = &bias;
        in.dt_softplus = c.softplus;
        in.dt_min = a.dt_min, in.dt_max = a.dt_max;
        const std::vector<double> want_y = mt::reference_ssd_step(in, view);
        for (int64_t i = 0; i < elements; ++i) want_buffer[size_t(shift + i * step)] = view[size_t(i)];
        y.download(ctx());
        buffer.download(ctx());
        EXPECT_CLOSE(y.values(), want_y, 1e-4, 1e-4);
        // Floats outside the view (the misaligned lead, the spread gaps) keep their uploaded values.
        EXPECT_CLOSE(buffer.values(), want_buffer, 1e-5, 1e-5);
    }
};

TEST_P(SsdStateUpdateVariantsTest, EveryVariantMatchesFloat64Reference) {
    const StepCase cases[] = {
        {2, 3, 64, 1, 128},                                                 // whole blocks of every variant, one pass
        {2, 4, 77, 2, 128},                                                 // 64+13 rows: partial block and warp (8 and 16 rows)
        {1, 3, 40, 1, 256, Layout::Contiguous, DMode::PerChannel},          // 32+8 rows ("half"), two full passes
        {2, 2, 19, 1, 252, Layout::Contiguous, DMode::None},                // second pass partial (31 lanes)
        {1, 4, 100, 2, 132, Layout::Contiguous, DMode::PerHead, false},     // second pass with one float4 for one lane
        {1, 2, 64, 1, 64, Layout::Contiguous, DMode::PerHead, true, false}, // half a pass
        {1, 3, 9, 1, 130},                                                  // dstate % 4 != 0: element path
        {2, 2, 7, 2, 3, Layout::Contiguous, DMode::PerChannel},             // fewer states than one float4
        {2, 2, 33, 1, 128, Layout::Misaligned},                             // misaligned state: element path
        {2, 2, 70, 1, 64, Layout::Spread, DMode::PerChannel},               // strided dstate, two row blocks
        {3, 6, 8, 3, 16, Layout::Contiguous, DMode::None, false, false, false},  // only the recurrence
        {2, 4, 10, 2, 32, Layout::Contiguous, DMode::PerChannel, true, true, true, true, DType::F32},
        {2, 4, 11, 4, 20, Layout::Contiguous, DMode::PerHead, false, true, true, true, DType::F16},
        {2, 4, 48, 2, 128, Layout::Contiguous, DMode::PerHead, true, false, false, true, DType::F32},  // limits without softplus
        {16, 48, 64, 2, 128},                                               // 768-1536 blocks: several waves
    };
    for (const char * variant : kernel_variants(kSsdUpdateVariants)) {
        SCOPED_TRACE(std::string("variant ") + variant);
        const mt::ScopedEnv forced("MAMBA_CUDA_SSD_UPDATE_VARIANT", variant);
        uint64_t seed = 301;
        for (const StepCase & c : cases) check(c, seed++);
    }
}

TEST_P(SsdStateUpdateVariantsTest, UnknownVariantIsRejected) {
    // A misspelt MAMBA_CUDA_SSD_UPDATE_VARIANT fails the call instead of quietly running the default
    // kernel; nothing is launched, so y keeps its poison and the state its values.
    if (!on_cuda()) GTEST_SKIP() << "the CPU backend has no ssd_state_update kernel variants";
    const int64_t Bn = 1, H = 2, P = 8, N = 16;
    std::mt19937_64 rng(17);
    Tensor state({Bn, H, P, N}, DType::F32), x({Bn, H, P}, DType::F32), dt({Bn, H}, DType::F32), A({H}, DType::F32);
    Tensor Bm({Bn, 1, N}, DType::F32), Cm({Bn, 1, N}, DType::F32), y({Bn, H, P}, DType::F32);
    for (Tensor * t : {&state, &x, &dt, &A, &Bm, &Cm}) {
        t->fill_uniform(rng, -1, 1);
        t->upload(ctx());
    }
    y.upload_poisoned(ctx());
    mamba_ssd_state_update_args a{};
    a.state = state.dl();
    a.x = x.dl();
    a.dt = dt.dl();
    a.A = A.dl();
    a.B = Bm.dl();
    a.C = Cm.dl();
    a.y = y.dl();
    a.dt_max = INFINITY;
    {
        const mt::ScopedEnv forced("MAMBA_CUDA_SSD_UPDATE_VARIANT", "Block");
        EXPECT_EQ(mamba_ssd_state_update(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
        EXPECT_STREQ(mamba_last_error(),
                     "mamba_ssd_state_update: MAMBA_CUDA_SSD_UPDATE_VARIANT must be one of block, plain, evict_store, half, deep (or unset), not 'Block'");
    }
    const std::vector<double> uploaded = state.values();
    y.download(ctx());
    state.download(ctx());
    for (double v : y.values()) EXPECT_TRUE(std::isnan(v));
    EXPECT_EQ(state.values(), uploaded);
    // With the variable unset again the same call runs.
    MAMBA_ASSERT_OK(mamba_ssd_state_update(ctx(), &a));
}

MAMBA_INSTANTIATE_BACKENDS(SsdStateUpdateVariantsTest);
