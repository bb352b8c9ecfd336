// Mamba-1 selective scan and decode step at mamba-130m's sizes (dim 1536, dstate 16): prefill of L = 1024
// tokens as the model lays it out, (batch, len, dim) buffers viewed as (batch, dim, len), and one
// decode step per call.
#include <deque>

#include "bench.h"

namespace {

// Strided views of harness buffers; they must outlive the timed calls, so they live until exit.
struct View {
    std::vector<int64_t> shape, strides;
    DLTensor dl{};
};
std::deque<View> & views() {
    static std::deque<View> v;
    return v;
}

// `base` seen with `shape` and `strides`.
DLTensor * view_of(const DLTensor * base, std::vector<int64_t> shape, std::vector<int64_t> strides) {
    View & v = views().emplace_back();
    v.shape = std::move(shape);
    v.strides = std::move(strides);
    v.dl = *base;
    v.dl.ndim = int32_t(v.shape.size());
    v.dl.shape = v.shape.data();
    v.dl.strides = v.strides.data();
    return &v.dl;
}

// A contiguous buffer of shape `storage`, seen with `shape` and `strides`.
DLTensor * view(mb::Bench & b, std::vector<int64_t> storage, DLDataType dtype, std::vector<int64_t> shape, std::vector<int64_t> strides,
                double lo = -1.0, double hi = 1.0) {
    return view_of(b.tensor(std::move(storage), dtype, lo, hi), std::move(shape), std::move(strides));
}

constexpr int64_t kDim = 1536, kState = 16;

// Prefill with every option the model uses: D, z, delta_bias, softplus, and the final state for decoding.
// variant: MAMBA_CUDA_SCAN_VARIANT for this case's calls only (nullptr: the library default). dt_given: no
// delta_bias and no softplus, delta is dt itself (what mamba_linear_softplus makes; the model's prefill call).
decltype(mb::Case::setup) prefill(DLDataType dtype, int64_t batch, int64_t len, bool time_major, int64_t dim = kDim, const char * variant = nullptr,
                                  bool dt_given = false) {
    return [=](mb::Bench & b, double & bytes, double & flops) -> std::function<void()> {
        const int64_t D = dim, N = kState, es = dtype.bits / 8;
        const double dlo = dt_given ? 0.01 : -4.0, dhi = dt_given ? 0.5 : 0.0;
        mamba_selective_scan_args a{};
        if (time_major) {
            a.u = view(b, {batch, len, D}, dtype, {batch, D, len}, {len * D, 1, D});
            a.delta = view(b, {batch, len, D}, dtype, {batch, D, len}, {len * D, 1, D}, dlo, dhi);
            a.z = view(b, {batch, len, D}, dtype, {batch, D, len}, {len * D, 1, D});
            a.B = view(b, {batch, len, N}, dtype, {batch, 1, N, len}, {len * N, N, 1, N});
            a.C = view(b, {batch, len, N}, dtype, {batch, 1, N, len}, {len * N, N, 1, N});
            a.y = view(b, {batch, len, D}, dtype, {batch, D, len}, {len * D, 1, D});
        } else {
            a.u = b.tensor({batch, D, len}, dtype);
            a.delta = b.tensor({batch, D, len}, dtype, dlo, dhi);
            a.z = b.tensor({batch, D, len}, dtype);
            a.B = b.tensor({batch, 1, N, len}, dtype);
            a.C = b.tensor({batch, 1, N, len}, dtype);
            a.y = b.tensor({batch, D, len}, dtype);
        }
        a.A = b.tensor({D, N}, mb::kF32, -2.0, -0.1);
        a.D = b.tensor({D}, mb::kF32);
        a.delta_bias = dt_given ? nullptr : b.tensor({D}, mb::kF32);
        a.final_state = b.tensor({batch, D, N}, mb::kF32);
        a.delta_softplus = dt_given ? 0 : 1;
        bytes = double(batch * D * len * es * 4 + batch * N * len * es * 2 + D * N * 4 + D * 8 + batch * D * N * 4);
        // Per state element and step: decay multiply, exp, state FMA, input product, output FMA.
        flops = double(batch * D * len * N) * 7;
        if (variant == nullptr) return [&b, a] { mb::check(mamba_selective_scan(b.ctx(), &a), "mamba_selective_scan"); };
        return [&b, a, variant] {
            const mb::ScopedEnv forced("MAMBA_CUDA_SCAN_VARIANT", variant);
            mb::check(mamba_selective_scan(b.ctx(), &a), "mamba_selective_scan");
        };
    };
}

// rank > 0: dt projected inside the update from a (batch, rank) input and a (D, rank) weight of `dtype`, as the Mamba-1
// decode step calls it (dt_proj_weight).
decltype(mb::Case::setup) decode(DLDataType dtype, int64_t batch, int64_t D = kDim, int64_t rank = 0) {
    return [=](mb::Bench & b, double & bytes, double & flops) {
        const int64_t N = kState, es = dtype.bits / 8;
        mamba_selective_state_update_args a{};
        a.state = b.tensor({batch, D, N}, mb::kF32);
        a.x = b.tensor({batch, D}, dtype);
        a.dt = rank > 0 ? b.tensor({batch, rank}, dtype, -0.5, 0.5) : b.tensor({batch, D}, dtype, -4.0, 0.0);
        if (rank > 0) a.dt_proj_weight = b.tensor({D, rank}, dtype, -0.1, 0.1);
        a.z = b.tensor({batch, D}, dtype);
        a.A = b.tensor({D, N}, mb::kF32, -2.0, -0.1);
        a.B = b.tensor({batch, 1, N}, dtype);
        a.C = b.tensor({batch, 1, N}, dtype);
        a.D = b.tensor({D}, mb::kF32);
        a.dt_bias = b.tensor({D}, mb::kF32);
        a.y = b.tensor({batch, D}, dtype);
        a.dt_softplus = 1;
        bytes = double(batch * D * N * 4 * 2 + D * N * 4 + batch * D * es * 4 + batch * N * es * 2 + D * 8 + D * rank * es);
        flops = double(batch * D * N) * 7 + double(2 * batch * D * rank);
        return [&b, a] { mb::check(mamba_selective_state_update(b.ctx(), &a), "mamba_selective_state_update"); };
    };
}

// Mamba-1's dt projection at a prefill of `len` tokens (batch 1, bfloat16) and, with `scan`, the scan that
// reads its output, as the model lays them out: x is the dt_rank first columns of x_proj's (len, rank + 2N)
// output, dt a (len, dim) buffer seen as (1, dim, len). fused: mamba_linear_softplus (bias and softplus in
// the projection's epilogue) and the scan with dt given; else mamba_linear (cuBLAS) and the scan with
// delta_bias and softplus (the order before mamba_linear_softplus).
decltype(mb::Case::setup) dt_projection(int64_t len, int64_t dim, int64_t rank, bool fused, bool scan) {
    return [=](mb::Bench & b, double & bytes, double & flops) -> std::function<void()> {
        const int64_t N = kState, W = rank + 2 * N, es = 2;
        const DLDataType t = mb::kBF16;
        mamba_linear_args lin{};
        lin.x = view(b, {len, W}, t, {len, rank}, {W, 1});
        lin.weight = b.tensor({dim, rank}, t, -0.3, 0.3);
        DLTensor * bias = b.tensor({dim}, mb::kF32, -4.0, -1.0);
        DLTensor * dt = b.tensor({len, dim}, t);
        lin.y = dt;
        if (fused) lin.bias = bias;
        mamba_selective_scan_args a{};
        a.u = view(b, {len, dim}, t, {1, dim, len}, {len * dim, 1, dim});
        a.delta = view_of(dt, {1, dim, len}, {len * dim, 1, dim});
        a.z = view(b, {len, dim}, t, {1, dim, len}, {len * dim, 1, dim});
        a.B = view(b, {len, W}, t, {1, 1, N, len}, {len * W, N, 1, W});
        a.C = view(b, {len, W}, t, {1, 1, N, len}, {len * W, N, 1, W});
        a.y = view(b, {len, dim}, t, {1, dim, len}, {len * dim, 1, dim});
        a.A = b.tensor({dim, N}, mb::kF32, -2.0, -0.1);
        a.D = b.tensor({dim}, mb::kF32);
        a.delta_bias = fused ? nullptr : bias;
        a.delta_softplus = fused ? 0 : 1;
        a.final_state = b.tensor({1, dim, N}, mb::kF32);
        bytes = double(len * rank * es + dim * rank * es + len * dim * es);
        flops = double(2 * len * dim * rank);
        if (scan) {
            bytes += double(len * dim * es * 4 + len * N * es * 2 + dim * N * 4 + dim * 8 + dim * N * 4);
            flops += double(len * dim * N) * 7;
        }
        return [&b, lin, a, fused, scan] {
            mb::check(fused ? mamba_linear_softplus(b.ctx(), &lin) : mamba_linear(b.ctx(), &lin), "dt projection");
            if (scan) mb::check(mamba_selective_scan(b.ctx(), &a), "mamba_selective_scan");
        };
    };
}

mb::Register scan_f32("selective_scan f32 b=1 d=1536 n=16 L=1024 (b,l,d) view", prefill(mb::kF32, 1, 1024, true));
mb::Register scan_bf16("selective_scan bf16 b=1 d=1536 n=16 L=1024 (b,l,d) view", prefill(mb::kBF16, 1, 1024, true));
mb::Register scan_f32_dl("selective_scan f32 b=1 d=1536 n=16 L=1024 (b,d,l)", prefill(mb::kF32, 1, 1024, false));
// One 512-token chunk of a mamba-2.8b prefill (d_inner 5120), in the model's (b, l, d) views.
mb::Register scan_chunk_28b("selective_scan bf16 b=1 d=5120 n=16 L=512 (b,l,d) view (2.8b prefill chunk)", prefill(mb::kBF16, 1, 512, true, 5120));
// The model's own call: a whole 2048-token mamba-2.8b prefill (64 of these per prefill).
mb::Register scan_prefill_28b("selective_scan bf16 b=1 d=5120 n=16 L=2048 (b,l,d) view (2.8b prefill 2048)", prefill(mb::kBF16, 1, 2048, true, 5120));
// The same with dt given (no delta_bias, no softplus): the model's prefill call since dt_proj applies them.
mb::Register scan_prefill_28b_dt("selective_scan bf16 b=1 d=5120 n=16 L=2048 (b,l,d) view (2.8b prefill 2048) dt given",
                                 prefill(mb::kBF16, 1, 2048, true, 5120, nullptr, true));
mb::Register scan_chunk_28b_dl("selective_scan bf16 b=1 d=5120 n=16 L=512 (b,d,l)", prefill(mb::kBF16, 1, 512, false, 5120));
mb::Register scan_b8_view("selective_scan bf16 b=8 d=5120 n=16 L=2048 (b,l,d) view", prefill(mb::kBF16, 8, 2048, true, 5120));
// Batches between B1 (segments) and B8 (none), where the segment plan decides.
mb::Register scan_b2_view("selective_scan bf16 b=2 d=5120 n=16 L=2048 (b,l,d) view", prefill(mb::kBF16, 2, 2048, true, 5120));
mb::Register scan_b4_view("selective_scan bf16 b=4 d=5120 n=16 L=2048 (b,l,d) view", prefill(mb::kBF16, 4, 2048, true, 5120));
// The rows-path kernels side by side on the model's (b, l, d) views; the cases above run the default.
mb::Register scan_chunk_28b_base("selective_scan bf16 b=1 d=5120 n=16 L=512 (b,l,d) view (2.8b prefill chunk) v=base",
                                 prefill(mb::kBF16, 1, 512, true, 5120, "base"));
mb::Register scan_chunk_28b_split("selective_scan bf16 b=1 d=5120 n=16 L=512 (b,l,d) view (2.8b prefill chunk) v=split",
                                  prefill(mb::kBF16, 1, 512, true, 5120, "split"));
mb::Register scan_prefill_28b_base("selective_scan bf16 b=1 d=5120 n=16 L=2048 (b,l,d) view (2.8b prefill 2048) v=base",
                                   prefill(mb::kBF16, 1, 2048, true, 5120, "base"));
mb::Register scan_prefill_28b_split("selective_scan bf16 b=1 d=5120 n=16 L=2048 (b,l,d) view (2.8b prefill 2048) v=split",
                                    prefill(mb::kBF16, 1, 2048, true, 5120, "split"));
mb::Register scan_b8_view_base("selective_scan bf16 b=8 d=5120 n=16 L=2048 (b,l,d) view v=base", prefill(mb::kBF16, 8, 2048, true, 5120, "base"));
mb::Register scan_b8_view_split("selective_scan bf16 b=8 d=5120 n=16 L=2048 (b,l,d) view v=split", prefill(mb::kBF16, 8, 2048, true, 5120, "split"));
// duo has no rows kernel (it runs split there). The 2.8b chunk on the contiguous channel path, where the
// default is duo, against split:
mb::Register scan_chunk_28b_dl_split("selective_scan bf16 b=1 d=5120 n=16 L=512 (b,d,l) v=split", prefill(mb::kBF16, 1, 512, false, 5120, "split"));
mb::Register scan_bf16_dl("selective_scan bf16 b=1 d=1536 n=16 L=1024 (b,d,l)", prefill(mb::kBF16, 1, 1024, false));
mb::Register scan_short("selective_scan f32 b=1 d=1536 n=16 L=16 (b,l,d) view", prefill(mb::kF32, 1, 16, true));
mb::Register update_1("selective_state_update f32 b=1 d=1536 n=16", decode(mb::kF32, 1));
mb::Register update_bf16("selective_state_update bf16 b=1 d=1536 n=16", decode(mb::kBF16, 1));
mb::Register update_8("selective_state_update f32 b=8 d=1536 n=16", decode(mb::kF32, 8));
// With dt_proj inside, as the Mamba-1 decode step calls it: mamba-130m (rank 48) and mamba-2.8b (d 5120, rank 160).
mb::Register update_dt_130m("selective_state_update bf16 b=1 d=1536 n=16 dt_proj rank 48 (mamba-130m decode)", decode(mb::kBF16, 1, 1536, 48));
mb::Register update_dt_28b("selective_state_update bf16 b=1 d=5120 n=16 dt_proj rank 160 (mamba-2.8b decode)", decode(mb::kBF16, 1, 5120, 160));

// mamba-2.8b's dt projection (2048 x 160 -> 5120) alone and with its scan: the pair the prefill runs.
mb::Register dt_proj_28b("dt_proj bf16 2048x160->5120 (2.8b prefill 2048) mamba_linear", dt_projection(2048, 5120, 160, false, false));
mb::Register dt_proj_28b_sp("dt_proj bf16 2048x160->5120 (2.8b prefill 2048) mamba_linear_softplus", dt_projection(2048, 5120, 160, true, false));
mb::Register dt_scan_28b("dt_proj + selective_scan bf16 (2.8b prefill 2048) softplus in the scan", dt_projection(2048, 5120, 160, false, true));
mb::Register dt_scan_28b_sp("dt_proj + selective_scan bf16 (2.8b prefill 2048) softplus in dt_proj", dt_projection(2048, 5120, 160, true, true));
mb::Register dt_scan_130m("dt_proj + selective_scan bf16 (130m prefill 2048) softplus in the scan", dt_projection(2048, 1536, 48, false, true));
mb::Register dt_scan_130m_sp("dt_proj + selective_scan bf16 (130m prefill 2048) softplus in dt_proj", dt_projection(2048, 1536, 48, true, true));

}  // namespace
