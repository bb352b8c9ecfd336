// Programmatic Dependent Launch: a decode-like chain of dependent kernels, mamba-2.8b layer shapes at
// batch 1 (add + RMSNorm, in_proj 2560->10240, conv step, x_proj 5120->192, dt_proj 160->5120, selective
// state update, out_proj 5120->2560: 7 kernels per layer), 8 layers with their own bf16 weights (656 MB,
// well beyond L2), timed with PDL on and off in the same run, as direct calls and as a graph replay.
// The "6 kernels" rows project dt inside the selective state update (dt_proj_weight) instead, as the
// Mamba-1 decode step does: the same bytes and FLOPs, one kernel fewer per layer. The "5 kernels" rows
// also run the conv step inside the in_proj GEMV (mamba_linear_conv1d_update), as the decode step does.
// The "mamba_mamba1_step" rows make each layer an RMSNorm and one mamba_mamba1_step call: by default the
// same 5 kernels as the "5 kernels" rows, with MAMBA_CUDA_MAMBA1_STEP=fused the norm and one kernel. The
// "with its pre-norm" rows pass the norm into the step instead (pre_norm_weight), alternating two hidden and two
// residual buffers as the model's decode step does; on CUDA the norm then runs inside in_proj.
// Each row runs on its own context created with MAMBA_CUDA_PDL=1 or 0 (the variable is read when a
// context is created) and borrowing the harness context's stream, so the harness's events time it.
// Bytes: every weight read once plus the states read and written; FLOPs: 2 per weight.
// The "L2 prefetch" rows (graph replay, PDL on, dt_proj fused: the decode step of the model) call
// mamba_prefetch_l2 after each in_proj, as the model's decode step does: the layer's out_proj weight (26 MB)
// and the first MAMBA_CUDA_L2_PREFETCH_NEXT_MB (16 unless a row says otherwise) of the next layer's in_proj
// (layer 0's after the last: the next replay), on a context created with MAMBA_CUDA_L2_PREFETCH=<mode>
// (and _BLOCKS). "=off" makes the same calls as no-ops: the baseline of the comparison.
// Skipped on a CPU context.
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "bench.h"
#include "core/dl_view.h"

namespace {

constexpr int64_t kHidden = 2560, kInner = 5120, kState = 16, kRank = 160, kWidth = 4, kLayers = 8;
constexpr int64_t kXdbl = kRank + 2 * kState;

using View = mamba::DLView;  // core/dl_view.h

struct Layer {
    DLTensor *w_in, *w_x, *w_dt, *w_out, *conv_w, *conv_b, *A, *D, *dt_bias, *norm_w, *conv_state, *ssm_state;
};

// One context with PDL on or off, borrowing the harness's stream, the chain's buffers and (optionally) a
// graph of one chain captured on it. Frees the graph before the context.
struct Session {
    mamba_context * ctx = nullptr;
    mamba_context * harness = nullptr;  // the harness's context, on ctx's stream while the case runs
    mamba_graph * graph = nullptr;
    DLTensor *hidden = nullptr, *residual = nullptr, *normed = nullptr, *xz = nullptr, *xc = nullptr, *xdbl = nullptr, *dt = nullptr, *y = nullptr;
    std::vector<Layer> layers;
    std::unique_ptr<View> x_half, z_half, dt_in, B, C;
    bool fused_dt = false;  // dt_proj inside the selective state update
    bool fused_conv = false;  // the conv step inside the in_proj GEMV
    bool prefetch = false;  // mamba_prefetch_l2 after each in_proj
    bool whole_step = false;  // the mixer as one mamba_mamba1_step call
    bool pre_norm = false;    // with whole_step: the norm inside the step (pre_norm_weight)
    DLTensor *hidden2 = nullptr, *residual2 = nullptr;  // pre_norm: layer i reads the (i % 2) buffers, writes the others
    size_t next_bytes = 0;  // of the next layer's in_proj

    ~Session() {
        if (harness) mamba_context_set_stream(harness, nullptr);
        if (graph) mamba_graph_free(graph);
        if (ctx) mamba_context_free(ctx);
    }

    void run() const {
        for (const Layer & l : layers) {
            if (pre_norm) {
                run_block(l, size_t(&l - layers.data()) % 2 == 0);
                continue;
            }
            mamba_rms_norm_args n{};
            n.x = hidden;
            n.residual = residual;
            n.weight = l.norm_w;
            n.y = normed;
            n.residual_out = residual;
            n.eps = 1e-5f;
            mb::check(mamba_rms_norm(ctx, &n), "mamba_rms_norm");
            if (whole_step) {
                mamba_mamba1_step_args st{};
                st.x = normed;
                st.in_proj_weight = l.w_in;
                st.conv_state = l.conv_state;
                st.conv_weight = l.conv_w;
                st.conv_bias = l.conv_b;
                st.x_proj_weight = l.w_x;
                st.dt_proj_weight = l.w_dt;
                st.dt_bias = l.dt_bias;
                st.A = l.A;
                st.D = l.D;
                st.ssm_state = l.ssm_state;
                st.out_proj_weight = l.w_out;
                st.y = hidden;
                st.xz = xz;
                st.xc = xc;
                st.xdbl = xdbl;
                st.y_inner = y;
                mb::check(mamba_mamba1_step(ctx, &st), "mamba_mamba1_step");
                continue;
            }
            if (fused_conv) {
                mamba_linear_conv1d_update_args in{normed, l.w_in, nullptr, xz, 0, l.conv_state, l.conv_w, l.conv_b, xc, 1};
                mb::check(mamba_linear_conv1d_update(ctx, &in), "mamba_linear_conv1d_update (in_proj)");
            } else {
                mamba_linear_args in{normed, l.w_in, nullptr, xz};
                mb::check(mamba_linear(ctx, &in), "mamba_linear (in_proj)");
                mamba_causal_conv1d_update_args cv{&x_half->dl, l.conv_state, l.conv_w, l.conv_b, xc, 1};
                mb::check(mamba_causal_conv1d_update(ctx, &cv), "mamba_causal_conv1d_update");
            }
            if (prefetch) {
                const Layer & next = layers[(size_t(&l - layers.data()) + 1) % layers.size()];
                mb::check(mamba_prefetch_l2(ctx, l.w_out->data, size_t(kHidden * kInner * 2)), "mamba_prefetch_l2 (out_proj)");
                if (next_bytes > 0) mb::check(mamba_prefetch_l2(ctx, next.w_in->data, next_bytes), "mamba_prefetch_l2 (next in_proj)");
            }
            mamba_linear_args xp{xc, l.w_x, nullptr, xdbl};
            mb::check(mamba_linear(ctx, &xp), "mamba_linear (x_proj)");
            if (!fused_dt) {
                mamba_linear_args dp{&dt_in->dl, l.w_dt, nullptr, dt};
                mb::check(mamba_linear(ctx, &dp), "mamba_linear (dt_proj)");
            }
            mamba_selective_state_update_args su{};
            su.state = l.ssm_state;
            su.x = xc;
            su.dt = fused_dt ? &dt_in->dl : dt;
            su.dt_proj_weight = fused_dt ? l.w_dt : nullptr;
            su.A = l.A;
            su.B = &B->dl;
            su.C = &C->dl;
            su.D = l.D;
            su.z = &z_half->dl;
            su.dt_bias = l.dt_bias;
            su.y = y;
            su.dt_softplus = 1;
            mb::check(mamba_selective_state_update(ctx, &su), "mamba_selective_state_update");
            mamba_linear_args out{y, l.w_out, nullptr, hidden};
            mb::check(mamba_linear(ctx, &out), "mamba_linear (out_proj)");
        }
    }

    // One residual block as one mamba_mamba1_step call with its pre-norm; `even`: reads hidden and residual, writes
    // hidden2 and residual2 (the other way round otherwise).
    void run_block(const Layer & l, bool even) const {
        mamba_mamba1_step_args st{};
        st.x = even ? hidden : hidden2;
        st.residual = even ? residual : residual2;
        st.residual_out = even ? residual2 : residual;
        st.pre_norm_weight = l.norm_w;
        st.pre_normed = normed;
        st.pre_norm_eps = 1e-5f;
        st.in_proj_weight = l.w_in;
        st.conv_state = l.conv_state;
        st.conv_weight = l.conv_w;
        st.conv_bias = l.conv_b;
        st.x_proj_weight = l.w_x;
        st.dt_proj_weight = l.w_dt;
        st.dt_bias = l.dt_bias;
        st.A = l.A;
        st.D = l.D;
        st.ssm_state = l.ssm_state;
        st.out_proj_weight = l.w_out;
        st.y = even ? hidden2 : hidden;
        st.xz = xz;
        st.xc = xc;
        st.xdbl = xdbl;
        st.y_inner = y;
        mb::check(mamba_mamba1_step(ctx, &st), "mamba_mamba1_step (with its pre-norm)");
    }
};

// How a chain prefetches: mode null = no mamba_prefetch_l2 calls at all.
struct L2Prefetch {
    const char * mode = nullptr;
    const char * blocks = nullptr;
    int64_t next_mb = 16;
};

std::function<void()> chain_case(mb::Bench & b, double & bytes, double & flops, bool pdl, bool graph, bool fused_dt = false, L2Prefetch l2 = {},
                                 bool fused_conv = false, bool whole_step = false, bool pre_norm = false) {
    if (!b.on_cuda()) return {};
    auto s = std::make_shared<Session>();
    s->ctx = mb::context_on_harness_stream(b, pdl, l2.mode, l2.blocks);
    s->harness = b.ctx();
    s->fused_dt = fused_dt;
    s->fused_conv = fused_conv;
    s->whole_step = whole_step;
    s->pre_norm = pre_norm;
    s->prefetch = l2.mode != nullptr;
    s->next_bytes = size_t(l2.next_mb) << 20;
    s->hidden = b.tensor({1, kHidden}, mb::kBF16);
    s->residual = b.tensor({1, kHidden}, mb::kF32);
    s->hidden2 = b.tensor({1, kHidden}, mb::kBF16);
    s->residual2 = b.tensor({1, kHidden}, mb::kF32);
    s->normed = b.tensor({1, kHidden}, mb::kBF16);
    s->xz = b.tensor({1, 2 * kInner}, mb::kBF16);
    s->xc = b.tensor({1, kInner}, mb::kBF16);
    s->xdbl = b.tensor({1, kXdbl}, mb::kBF16);
    s->dt = b.tensor({1, kInner}, mb::kBF16);
    s->y = b.tensor({1, kInner}, mb::kBF16);
    s->x_half = std::make_unique<View>(s->xz, std::vector<int64_t>{1, kInner}, std::vector<int64_t>{2 * kInner, 1}, 0);
    s->z_half = std::make_unique<View>(s->xz, std::vector<int64_t>{1, kInner}, std::vector<int64_t>{2 * kInner, 1}, kInner);
    s->dt_in = std::make_unique<View>(s->xdbl, std::vector<int64_t>{1, kRank}, std::vector<int64_t>{kXdbl, 1}, 0);
    s->B = std::make_unique<View>(s->xdbl, std::vector<int64_t>{1, 1, kState}, std::vector<int64_t>{kXdbl, kState, 1}, kRank);
    s->C = std::make_unique<View>(s->xdbl, std::vector<int64_t>{1, 1, kState}, std::vector<int64_t>{kXdbl, kState, 1}, kRank + kState);
    double weights = 0;
    for (int64_t i = 0; i < kLayers; ++i) {
        Layer l{};
        l.w_in = b.tensor({2 * kInner, kHidden}, mb::kBF16, -0.02, 0.02);
        l.w_x = b.tensor({kXdbl, kInner}, mb::kBF16, -0.014, 0.014);
        l.w_dt = b.tensor({kInner, kRank}, mb::kBF16, -0.08, 0.08);
        l.w_out = b.tensor({kHidden, kInner}, mb::kBF16, -0.014, 0.014);
        l.conv_w = b.tensor({kInner, kWidth}, mb::kBF16);
        l.conv_b = b.tensor({kInner}, mb::kBF16);
        l.A = b.tensor({kInner, kState}, mb::kF32, -8.0, -0.5);
        l.D = b.tensor({kInner}, mb::kF32);
        l.dt_bias = b.tensor({kInner}, mb::kF32, -4.0, -2.0);
        l.norm_w = b.tensor({kHidden}, mb::kBF16, 0.5, 1.5);
        l.conv_state = b.tensor({1, kInner, kWidth - 1}, mb::kBF16);
        l.ssm_state = b.tensor({1, kInner, kState}, mb::kF32, -0.1, 0.1);
        s->layers.push_back(l);
        weights += double(2 * kInner * kHidden + kXdbl * kInner + kInner * kRank + kHidden * kInner);
    }
    bytes = weights * 2 + double(kLayers) * double(kInner * kState * 4 * 2 + kInner * (kWidth - 1) * 2 * 2);
    flops = 2.0 * weights;
    s->run();  // warm-up: kernels loaded, workspace sized
    if (graph) {
        mb::check(mamba_graph_capture_begin(s->ctx), "mamba_graph_capture_begin");
        s->run();
        mb::check(mamba_graph_capture_end(s->ctx, &s->graph), "mamba_graph_capture_end");
        return [s] { mb::check(mamba_graph_launch(s->ctx, s->graph), "mamba_graph_launch"); };
    }
    return [s] { s->run(); };
}

#define MAMBA_PDL_CASE(var, label, pdl, graph)                                                                                       \
    mb::Register var("cuda pdl chain mamba-2.8b 8 layers x 7 kernels bf16 B1, " label,                                                \
                     [](mb::Bench & b, double & bytes, double & flops) { return chain_case(b, bytes, flops, pdl, graph); })

MAMBA_PDL_CASE(direct_off, "direct calls, PDL off", false, false);
MAMBA_PDL_CASE(direct_on, "direct calls, PDL on", true, false);
MAMBA_PDL_CASE(graph_off, "graph replay, PDL off", false, true);
MAMBA_PDL_CASE(graph_on, "graph replay, PDL on", true, true);

#undef MAMBA_PDL_CASE

mb::Register graph_on_step("cuda pdl chain mamba-2.8b 8 layers x RMSNorm + mamba_mamba1_step bf16 B1, graph replay, PDL on",
                           [](mb::Bench & b, double & bytes, double & flops) { return chain_case(b, bytes, flops, true, true, true, {}, true, true); });
mb::Register direct_on_step("cuda pdl chain mamba-2.8b 8 layers x RMSNorm + mamba_mamba1_step bf16 B1, direct calls, PDL on",
                            [](mb::Bench & b, double & bytes, double & flops) { return chain_case(b, bytes, flops, true, false, true, {}, true, true); });
mb::Register graph_on_pre_norm("cuda pdl chain mamba-2.8b 8 layers x mamba_mamba1_step with its pre-norm bf16 B1, graph replay, PDL on",
                               [](mb::Bench & b, double & bytes, double & flops) { return chain_case(b, bytes, flops, true, true, true, {}, true, true, true); });
mb::Register graph_on_fused("cuda pdl chain mamba-2.8b 8 layers x 6 kernels (dt_proj fused) bf16 B1, graph replay, PDL on",
                            [](mb::Bench & b, double & bytes, double & flops) { return chain_case(b, bytes, flops, true, true, true); });
mb::Register direct_on_fused("cuda pdl chain mamba-2.8b 8 layers x 6 kernels (dt_proj fused) bf16 B1, direct calls, PDL on",
                             [](mb::Bench & b, double & bytes, double & flops) { return chain_case(b, bytes, flops, true, false, true); });
mb::Register graph_on_fused_conv("cuda pdl chain mamba-2.8b 8 layers x 5 kernels (dt_proj and conv fused) bf16 B1, graph replay, PDL on",
                                 [](mb::Bench & b, double & bytes, double & flops) { return chain_case(b, bytes, flops, true, true, true, {}, true); });
mb::Register direct_on_fused_conv("cuda pdl chain mamba-2.8b 8 layers x 5 kernels (dt_proj and conv fused) bf16 B1, direct calls, PDL on",
                                  [](mb::Bench & b, double & bytes, double & flops) { return chain_case(b, bytes, flops, true, false, true, {}, true); });

}  // namespace

namespace {

// L2 prefetch of the next weights during the small kernels (l2_prefetch.cu), graph replay with PDL: compare
// each row with "MAMBA_CUDA_L2_PREFETCH=off" (the same calls as no-ops).
#define MAMBA_L2_CASE(var, label, mode, blocks, next_mb)                                                                       \
    mb::Register var("cuda l2 prefetch chain mamba-2.8b 8 layers x 6 kernels (dt_proj fused) bf16 B1, graph replay, PDL on, " label, \
                     [](mb::Bench & b, double & bytes, double & flops) {                                                       \
                         return chain_case(b, bytes, flops, true, true, true, L2Prefetch{mode, blocks, next_mb});               \
                     })

MAMBA_L2_CASE(l2_off, "MAMBA_CUDA_L2_PREFETCH=off", "off", nullptr, 16);
MAMBA_L2_CASE(l2_prefetch, "MAMBA_CUDA_L2_PREFETCH=prefetch (16 blocks, out_proj + 16 MB next)", "prefetch", nullptr, 16);
MAMBA_L2_CASE(l2_prefetch_out_only, "MAMBA_CUDA_L2_PREFETCH=prefetch (16 blocks, out_proj only)", "prefetch", nullptr, 0);
MAMBA_L2_CASE(l2_prefetch_24, "MAMBA_CUDA_L2_PREFETCH=prefetch (16 blocks, out_proj + 24 MB next)", "prefetch", nullptr, 24);
MAMBA_L2_CASE(l2_prefetch_8b, "MAMBA_CUDA_L2_PREFETCH=prefetch (8 blocks, out_proj + 16 MB next)", "prefetch", "8", 16);
MAMBA_L2_CASE(l2_prefetch_32b, "MAMBA_CUDA_L2_PREFETCH=prefetch (32 blocks, out_proj + 16 MB next)", "prefetch", "32", 16);
MAMBA_L2_CASE(l2_prefetch_normal, "MAMBA_CUDA_L2_PREFETCH=prefetch_normal (16 blocks, out_proj + 16 MB next)", "prefetch_normal", nullptr, 16);
MAMBA_L2_CASE(l2_load, "MAMBA_CUDA_L2_PREFETCH=load (16 blocks, out_proj + 16 MB next)", "load", nullptr, 16);
MAMBA_L2_CASE(l2_load_32b, "MAMBA_CUDA_L2_PREFETCH=load (32 blocks, out_proj + 16 MB next)", "load", "32", 16);
MAMBA_L2_CASE(l2_bulk, "MAMBA_CUDA_L2_PREFETCH=bulk (16 blocks, out_proj + 16 MB next)", "bulk", "16", 16);
MAMBA_L2_CASE(l2_bulk_8b, "MAMBA_CUDA_L2_PREFETCH=bulk (8 blocks, out_proj + 16 MB next; the default mode)", "bulk", nullptr, 16);

#undef MAMBA_L2_CASE

}  // namespace
