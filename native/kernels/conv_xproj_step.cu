// x_proj folded into the conv step of a batched Mamba-1 decode step (2 to kXProjMaxRows rows; step_xproj.cuh,
// mamba1_step.cu; compute capability 9.0+). From 2 rows in_proj is cuBLAS's GEMM, which has no conv epilogue, so the
// batch-1 fold into in_proj's GEMV does not apply; x_proj as its own GEMM took 6.6 us a layer at 8 rows on an H200 for
// 2 MB of weight (7% of copy bandwidth, docs/gpu-results.md runs 186-189).
// Here the conv step's blocks own channel slices for every row, in clusters of kCluster blocks. A block copies its
// columns of x_proj's weight into shared memory (before the PDL wait where nothing before writes them), runs the conv
// step of its (row, channel) pairs, keeps the outputs as y holds them, and sums every row's q outputs over its channels
// (a thread an output and slice of the channels, in a fixed order). The cluster then adds its blocks' sums through
// distributed shared memory, each block a share of the (row, output) pairs, in rank order, and stores them as float64
// into its own slot of the context's partials: no atomics, nothing to zero, and the same result every time. The state
// update adds the clusters' slots in order (at most kXProjMaxReplicas clusters). One launch a layer fewer.
// Bytes: x_proj's weight once (q*inner*elem) plus the conv step's (rows*inner*(x + y + 2*(width-1) state) + weights),
// and rows*q*8 a cluster. FLOPs: 2*rows*q*inner plus the conv step's 2*width a channel and row.
// Measured on an H200 (docs/gpu-results.md runs 190-192; decode ms a step, bf16, against x_proj as its own GEMM with
// MAMBA_CUDA_MAMBA1_XPROJ=separate): mamba-2.8b 2.65-2.66 against 2.81 at 2 rows, 2.79-2.80 against 3.08 at 4, 3.28-3.29
// against 3.31 at 8; mamba-130m 0.47 either way at 2, 0.45-0.46 against 0.47 at 4, 0.55 against 0.62 at 8. A first build
// with one float64 atomic add per block, row and output (123 thousand a layer at mamba-2.8b, batch 8) into sums that
// the state update's last block zeroed made both shapes 4-12% slower at 8 rows.
#include <iterator>

#include "cluster.cuh"
#include "common.cuh"
#include "conv1d_common.cuh"
#include "gemv.cuh"
#include "launch.cuh"
#include "step_xproj.cuh"

namespace mamba::cuda {

namespace {

struct ConvXProjTraits {
    static constexpr int kThreads = 512;
    static constexpr int kCluster = 8;     // blocks a cluster: the largest portable size
    static constexpr int kMaxSlices = 4;   // threads an output's channels split over (all their loads in flight in the reduction)
    // Channels a block owns, fewest first: the fewest that leave at most kXProjMaxReplicas clusters (mamba-2.8b's 5120
    // channels: 128, 40 blocks in 5 clusters) and fit the shared memory.
    static constexpr int kChannelChoices[] = {64, 128, 256};
    static constexpr int64_t kMaxSmemBytes = 200 * 1024;
};
using Tr = ConvXProjTraits;

struct ConvXProjArgs {
    ConvUpdateArgs conv;
    const char * w;      // x_proj's weight (q, dim): rows 16-byte aligned, unit column stride
    int64_t ldw;         // its row stride, in elements
    double * sums;       // row b, cluster c, output j at sums[b * row_stride + c * stride + j]
    int64_t stride, row_stride;
    int q, channels, slices;  // channels a block owns (whole 16-byte pieces of a weight row); slices of them per output
    bool early;          // x_proj's weight loads before the PDL wait
};

// How a call splits: channels a block, slices an output, clusters; shared memory a block (0 channels: no split fits).
struct ConvXProjPlan {
    int channels = 0, slices = 1, clusters = 0;
    int64_t smem = 0;
};

ConvXProjPlan plan_split(int64_t q, int64_t rows, int64_t dim, int64_t elem) {
    const int64_t vec = 16 / elem;
    for (int nc : Tr::kChannelChoices) {
        const int64_t blocks = ceil_div(dim, int64_t(nc)), clusters = ceil_div(blocks, int64_t(Tr::kCluster));
        if (clusters > kXProjMaxReplicas) continue;
        const int64_t pieces = nc / vec;
        int slices = 1;
        while (slices * 2 <= Tr::kMaxSlices && slices * 2 <= pieces && slices * 2 * q <= Tr::kThreads) slices *= 2;
        // x_proj's columns, the conv outputs, the slices' sums
        const int64_t smem = q * pieces * 16 + rows * nc * 4 + slices * rows * q * 4;
        if (smem > Tr::kMaxSmemBytes) continue;
        return {nc, slices, int(clusters), smem};
    }
    return {};
}

// kRows: the row bucket (8 or 16) the sums' registers are sized for.
template <class TW, int kWidth, int kRows>
__global__ void __launch_bounds__(Tr::kThreads) conv_xproj_step_kernel(ConvXProjArgs a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    extern __shared__ __align__(16) unsigned char smem[];
    constexpr int V = 16 / int(sizeof(TW));
    const int nc = a.channels, pieces = nc / V, rows = int(a.conv.batch), q = a.q;
    const int64_t c0 = int64_t(blockIdx.x) * nc;
    const int owned = a.conv.dim <= c0 ? 0 : a.conv.dim - c0 < nc ? int(a.conv.dim - c0) : nc;  // blocks past dim: none
    const int owned_pieces = owned / V;  // dim is whole pieces (plan)
    unsigned char * xw = smem;
    float * u = reinterpret_cast<float *>(smem + q * pieces * 16);
    float * part = u + rows * nc;  // [slice][row][output]
    // The block's columns, row after row; piece k of row j in slot (k + j) % pieces, so that the lanes of a warp, which
    // read one piece of consecutive rows, hit distinct banks.
    const auto copy_columns = [&] {
        const int total = q * owned_pieces;
        for (int i = threadIdx.x; i < total; i += Tr::kThreads) {
            const int j = i / owned_pieces, k = i - j * owned_pieces;
            cp_async_16(xw + 16 * (j * pieces + (k + j) % pieces), a.w + (int64_t(j) * a.ldw + c0 + k * V) * int64_t(sizeof(TW)), true);
        }
        cp_async_commit();
    };
    if (a.early) copy_columns();
    // PDL-safe (launch.cuh): before the wait only x_proj's weight, where the op before does not write it.
    wait_for_producer();
    allow_dependents();
    if (!a.early) copy_columns();
    // The conv step: consecutive threads take consecutive channels of a row (coalesced x and y).
    for (int i = threadIdx.x; i < rows * nc; i += Tr::kThreads) {
        const int b = i / nc, c = i - b * nc;
        if (c < owned) u[i] = conv_update_channel<kWidth>(a.conv, b, c0 + c);
    }
    cp_async_wait_all();
    __syncthreads();
    // The block's sums: thread (slice, j) adds output j's pieces of its slice at every row, in order; every lane of a
    // warp reads the same conv outputs (a broadcast).
    const int per_slice = pieces / a.slices;
    for (int t = threadIdx.x; t < a.slices * q; t += Tr::kThreads) {
        const int slice = t / q, j = t - slice * q;
        float s[kRows];
#pragma unroll
        for (int b = 0; b < kRows; ++b) s[b] = 0.0f;
        const int k_end = min((slice + 1) * per_slice, owned_pieces);
        for (int k = slice * per_slice; k < k_end; ++k) {
            const uint4 raw = *reinterpret_cast<const uint4 *>(xw + 16 * (j * pieces + (k + j) % pieces));
            const TW * w = reinterpret_cast<const TW *>(&raw);
            float e[V];
#pragma unroll
            for (int i = 0; i < V; ++i) e[i] = to_f32<TW>(w[i]);
#pragma unroll
            for (int b = 0; b < kRows; ++b) {
                if (b < rows) {
                    const float4 * ub = reinterpret_cast<const float4 *>(u + b * nc + k * V);
#pragma unroll
                    for (int i = 0; i < V / 4; ++i) {
                        const float4 x = ub[i];
                        s[b] = fmaf(e[4 * i], x.x, s[b]);
                        s[b] = fmaf(e[4 * i + 1], x.y, s[b]);
                        s[b] = fmaf(e[4 * i + 2], x.z, s[b]);
                        s[b] = fmaf(e[4 * i + 3], x.w, s[b]);
                    }
                }
            }
        }
#pragma unroll
        for (int b = 0; b < kRows; ++b)
            if (b < rows) part[(slice * rows + b) * q + j] = s[b];
    }
    cluster_arrive();  // every block's sums written
    cluster_wait();
    // The cluster's sums: block `rank` takes its share of the (row, output) pairs p = b * q + j, adding the blocks' and
    // slices' values in rank and slice order.
    const int pairs = rows * q;
    const int rank = int(cluster_rank()), cluster = int(blockIdx.x) / Tr::kCluster;
    const int lo = pairs * rank / Tr::kCluster, hi = pairs * (rank + 1) / Tr::kCluster;
    for (int p = lo + int(threadIdx.x); p < hi; p += Tr::kThreads) {
        float v[Tr::kCluster][Tr::kMaxSlices];
#pragma unroll
        for (int r = 0; r < Tr::kCluster; ++r)
#pragma unroll
            for (int sl = 0; sl < Tr::kMaxSlices; ++sl) v[r][sl] = sl < a.slices ? load_from_block(part + sl * pairs + p, unsigned(r)) : 0.0f;
        float total = 0.0f;
#pragma unroll
        for (int r = 0; r < Tr::kCluster; ++r)
#pragma unroll
            for (int sl = 0; sl < Tr::kMaxSlices; ++sl) total += v[r][sl];
        const int b = p / q, j = p - b * q;
        a.sums[b * a.row_stride + cluster * a.stride + j] = double(total);
    }
    cluster_arrive();  // no block leaves while another still reads its sums
    cluster_wait();
#else
    (void)a;
    __trap();  // never launched: the plan asks for compute capability 9.0
#endif
}

template <class TW>
void launch_of(mamba_context & ctx, const ConvXProjArgs & a, unsigned blocks, size_t smem) {
    const bool wide = a.conv.batch > 8;
    const auto kernel = a.conv.width == 4 ? (wide ? conv_xproj_step_kernel<TW, 4, 16> : conv_xproj_step_kernel<TW, 4, 8>)
                                          : (wide ? conv_xproj_step_kernel<TW, 0, 16> : conv_xproj_step_kernel<TW, 0, 8>);
    MAMBA_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    launch_kernel_in_clusters(ctx, a.early ? "conv_xproj_step_kernel early" : "conv_xproj_step_kernel", true, Tr::kCluster, kernel, dim3(blocks),
                              dim3(Tr::kThreads), smem, a);
    MAMBA_CUDA_CHECK_LAUNCH("conv_xproj_step_kernel");
}

}  // namespace

std::string conv1d_xproj_unsupported(mamba_context & ctx, const LinearConv1dUpdateParams & p, const LinearParams & x_proj, int64_t sums_capacity) {
    const int64_t rows = p.linear.rows;
    if (rows < 2 || rows > kXProjMaxRows) return cat("it takes 2 to ", kXProjMaxRows, " batch rows, not ", rows);
    if (ctx.cuda->cc_major < 9) return "its thread-block clusters need compute capability 9.0 or newer";
    if (gemv_runs_conv1d_update(ctx, p)) return "in_proj's GEMV runs the conv step";
    const DType w = x_proj.weight.dtype;
    if (w != DType::F32 && w != DType::F16 && w != DType::BF16) return cat("x_proj_weight is ", dtype_name(w));
    if (x_proj.bias) return "x_proj has a bias";
    if (x_proj.in_features != p.conv.dim) return cat("x_proj takes ", x_proj.in_features, " inputs, not the ", p.conv.dim, " conv channels");
    const int64_t elem = int64_t(dtype_size(w)), q = x_proj.out_features;
    if (x_proj.weight.stride[1] != 1 || !aligned16(x_proj.weight.data) || (q > 1 && (x_proj.weight.stride[0] * elem) % 16 != 0) ||
        (p.conv.dim * elem) % 16 != 0)
        return "x_proj_weight's rows are not whole 16-byte pieces from 16-byte boundaries";
    const ConvXProjPlan plan = plan_split(q, rows, p.conv.dim, elem);
    if (plan.channels == 0)
        return cat("x_proj's ", q, " outputs over ", p.conv.dim, " channels at ", rows, " rows split into no clusters the kernel has (at most ", kXProjMaxReplicas,
                   " clusters of ", Tr::kCluster, " blocks of ", Tr::kChannelChoices[std::size(Tr::kChannelChoices) - 1], " channels, ", Tr::kMaxSmemBytes,
                   " bytes of shared memory a block)");
    if (rows * plan.clusters * xproj_replica_stride(q) > sums_capacity)
        return cat("x_proj's ", q, " outputs at ", rows, " rows and ", plan.clusters, " clusters are more than the ", sums_capacity, " sums the context holds");
    return {};
}

int conv1d_xproj_clusters(const LinearConv1dUpdateParams & p, const LinearParams & x_proj) {
    return plan_split(x_proj.out_features, p.linear.rows, p.conv.dim, int64_t(dtype_size(x_proj.weight.dtype))).clusters;
}

void conv1d_xproj(mamba_context & ctx, const LinearConv1dUpdateParams & p, const LinearParams & x_proj, const XProjSums & sums) {
    const ConvXProjPlan plan = plan_split(x_proj.out_features, p.linear.rows, p.conv.dim, int64_t(dtype_size(x_proj.weight.dtype)));
    if (!conv1d_xproj_unsupported(ctx, p, x_proj, sums.capacity).empty() || sums.rows != p.linear.rows || sums.replicas != plan.clusters ||
        sums.stride < x_proj.out_features || sums.row_stride < int64_t(sums.replicas) * sums.stride || sums.extent() > sums.capacity)
        fail(MAMBA_STATUS_INTERNAL, "conv1d_xproj: the fold does not apply");
    ConvXProjArgs a{};
    a.conv = bind_conv_update(p.conv);
    a.w = x_proj.weight.data;
    a.ldw = x_proj.weight.stride[0];
    a.sums = sums.data;
    a.stride = sums.stride;
    a.row_stride = sums.row_stride;
    a.q = int(x_proj.out_features);
    a.channels = plan.channels;
    a.slices = plan.slices;
    a.early = readable_before_wait(ctx, {&x_proj.weight});
    const unsigned blocks = unsigned(plan.clusters * Tr::kCluster);
    switch (x_proj.weight.dtype) {
        case DType::F16: launch_of<f16_t>(ctx, a, blocks, size_t(plan.smem)); break;
        case DType::BF16: launch_of<bf16_t>(ctx, a, blocks, size_t(plan.smem)); break;
        default: launch_of<float>(ctx, a, blocks, size_t(plan.smem)); break;
    }
    note_writes(ctx, {&p.conv.y, &p.conv.conv_state});
}

}  // namespace mamba::cuda
