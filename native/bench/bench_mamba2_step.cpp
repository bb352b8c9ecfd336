// A decode-like chain of Mamba-2 layers at batch 1 in the mamba2-2.7b shapes: per layer the add + RMSNorm and
// one mamba_mamba2_step call (in_proj 2560->10576 with the conv step, the SSD state update, the gated RMSNorm,
// out_proj 5120->2560), 8 layers with their own bf16 weights (647 MB, well beyond L2), graph replay with PDL
// on. The default rows fold the gated norm into the state update and out_proj (three kernels a mixer); the
// "separate" rows set MAMBA_CUDA_MAMBA2_STEP=separate while the graph is captured (four kernels). The "with its
// pre-norm" row passes the add + RMSNorm into the step (pre_norm_weight), alternating two hidden and two residual
// buffers as the model's decode step does; on CUDA the norm then runs inside in_proj.
// Bytes: every weight read once plus the states read and written; FLOPs: 2 per weight. Skipped on a CPU context.
#include <cmath>
#include <memory>
#include <vector>

#include "bench.h"

namespace {

constexpr int64_t kHidden = 2560, kInner = 5120, kHeads = 80, kHeadDim = 64, kState = 128, kGroups = 1, kWidth = 4, kLayers = 8;
constexpr int64_t kConvDim = kInner + 2 * kGroups * kState, kProj = kInner + kConvDim + kHeads;

struct Layer {
    DLTensor *w_in, *w_out, *conv_w, *conv_b, *A, *D, *dt_bias, *norm_w, *gate_norm_w, *conv_state, *ssm_state;
};

struct Chain {
    mamba_context * ctx = nullptr;
    mamba_context * harness = nullptr;
    mamba_graph * graph = nullptr;
    DLTensor *hidden = nullptr, *residual = nullptr, *normed = nullptr, *proj = nullptr, *xbc = nullptr, *y_inner = nullptr, *gate_normed = nullptr;
    DLTensor *hidden2 = nullptr, *residual2 = nullptr;  // pre_norm: layer i reads the (i % 2) buffers, writes the others
    bool pre_norm = false;
    std::vector<Layer> layers;

    ~Chain() {
        if (harness) mamba_context_set_stream(harness, nullptr);
        if (graph) mamba_graph_free(graph);
        if (ctx) mamba_context_free(ctx);
    }

    void run() const {
        for (const Layer & l : layers) {
            const bool even = (&l - layers.data()) % 2 == 0;
            mamba_mamba2_step_args st{};
            if (pre_norm) {
                st.x = even ? hidden : hidden2;
                st.residual = even ? residual : residual2;
                st.residual_out = even ? residual2 : residual;
                st.pre_norm_weight = l.norm_w;
                st.pre_normed = normed;
                st.pre_norm_eps = 1e-5f;
            } else {
                mamba_rms_norm_args n{};
                n.x = hidden;
                n.residual = residual;
                n.weight = l.norm_w;
                n.y = normed;
                n.residual_out = residual;
                n.eps = 1e-5f;
                mb::check(mamba_rms_norm(ctx, &n), "mamba_rms_norm");
                st.x = normed;
            }
            st.in_proj_weight = l.w_in;
            st.conv_state = l.conv_state;
            st.conv_weight = l.conv_w;
            st.conv_bias = l.conv_b;
            st.dt_bias = l.dt_bias;
            st.A = l.A;
            st.D = l.D;
            st.ssm_state = l.ssm_state;
            st.norm_weight = l.gate_norm_w;
            st.out_proj_weight = l.w_out;
            st.y = pre_norm && even ? hidden2 : hidden;
            st.proj = proj;
            st.xbc = xbc;
            st.y_inner = y_inner;
            st.normed = gate_normed;
            st.eps = 1e-5f;
            st.dt_max = INFINITY;
            mb::check(mamba_mamba2_step(ctx, &st), "mamba_mamba2_step");
        }
    }
};

// `kernels`: MAMBA_CUDA_MAMBA2_STEP while the chain is warmed up and captured (null: unset).
std::function<void()> chain_case(mb::Bench & b, double & bytes, double & flops, const char * kernels, bool pre_norm = false) {
    if (!b.on_cuda()) return {};
    auto s = std::make_shared<Chain>();
    s->ctx = mb::context_on_harness_stream(b, true);
    s->harness = b.ctx();
    s->hidden = b.tensor({1, kHidden}, mb::kBF16);
    s->residual = b.tensor({1, kHidden}, mb::kF32);
    s->hidden2 = b.tensor({1, kHidden}, mb::kBF16);
    s->residual2 = b.tensor({1, kHidden}, mb::kF32);
    s->pre_norm = pre_norm;
    s->normed = b.tensor({1, kHidden}, mb::kBF16);
    s->proj = b.tensor({1, kProj}, mb::kBF16);
    s->xbc = b.tensor({1, kConvDim}, mb::kBF16);
    s->y_inner = b.tensor({1, kInner}, mb::kBF16);
    s->gate_normed = b.tensor({1, kInner}, mb::kBF16);
    double weights = 0;
    for (int64_t i = 0; i < kLayers; ++i) {
        Layer l{};
        l.w_in = b.tensor({kProj, kHidden}, mb::kBF16, -0.02, 0.02);
        l.w_out = b.tensor({kHidden, kInner}, mb::kBF16, -0.014, 0.014);
        l.conv_w = b.tensor({kConvDim, kWidth}, mb::kBF16);
        l.conv_b = b.tensor({kConvDim}, mb::kBF16);
        l.A = b.tensor({kHeads}, mb::kF32, -8.0, -0.5);
        l.D = b.tensor({kHeads}, mb::kF32);
        l.dt_bias = b.tensor({kHeads}, mb::kF32, -4.0, -2.0);
        l.norm_w = b.tensor({kHidden}, mb::kBF16, 0.5, 1.5);
        l.gate_norm_w = b.tensor({kInner}, mb::kBF16, 0.5, 1.5);
        l.conv_state = b.tensor({1, kConvDim, kWidth - 1}, mb::kBF16);
        l.ssm_state = b.tensor({1, kHeads, kHeadDim, kState}, mb::kF32, -0.1, 0.1);
        s->layers.push_back(l);
        weights += double(kProj * kHidden + kHidden * kInner);
    }
    bytes = weights * 2 + double(kLayers) * double(kHeads * kHeadDim * kState * 4 * 2 + kConvDim * (kWidth - 1) * 2 * 2);
    flops = 2.0 * weights;
    const mb::ScopedEnv choice("MAMBA_CUDA_MAMBA2_STEP", kernels);
    s->run();  // warm-up: kernels loaded, workspace sized
    mb::check(mamba_graph_capture_begin(s->ctx), "mamba_graph_capture_begin");
    s->run();
    mb::check(mamba_graph_capture_end(s->ctx, &s->graph), "mamba_graph_capture_end");
    return [s] { mb::check(mamba_graph_launch(s->ctx, s->graph), "mamba_graph_launch"); };
}

mb::Register folded("cuda mamba2 chain mamba2-2.7b 8 layers x RMSNorm + mamba_mamba2_step bf16 B1, graph replay, PDL on",
                    [](mb::Bench & b, double & bytes, double & flops) { return chain_case(b, bytes, flops, nullptr); });
mb::Register pre_norm("cuda mamba2 chain mamba2-2.7b 8 layers x mamba_mamba2_step with its pre-norm bf16 B1, graph replay, PDL on",
                      [](mb::Bench & b, double & bytes, double & flops) { return chain_case(b, bytes, flops, nullptr, true); });
mb::Register separate("cuda mamba2 chain mamba2-2.7b 8 layers x RMSNorm + mamba_mamba2_step bf16 B1, graph replay, PDL on, separate",
                      [](mb::Bench & b, double & bytes, double & flops) { return chain_case(b, bytes, flops, "separate"); });

}  // namespace
