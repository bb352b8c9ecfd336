// Softmax (mamba_softmax) and token sampling (mamba_sample) on CUDA.
// softmax: one block per row, three passes (max, sum, write); bytes rows*n*(x + y).
// sample: follows the CPU backend step for step so that both draw the same token: repetition penalty,
// temperature, top-k, top-p, min-p, then the first token in id order whose running weight exceeds
// u * total, u from Philox at (seed; step, row). The top-k and top-p cuts are found by radix selection
// over order-preserving keys of the scaled logits (counts for top-k, mass for top-p) instead of a sort;
// ties at the cut are resolved by id, as the CPU's ordering does.
// Two kernels: one thread-block cluster a row (sampling_cluster.cu; compute capability 9.0 and
// vocabularies up to 65536), else one block a row (here; a few passes over batch*vocab floats in the
// workspace). MAMBA_CUDA_SAMPLE_KERNEL=block|cluster picks one (benchmarks, tests).
#include "common.cuh"
#include "core/env_choice.h"
#include "launch.cuh"
#include "ops/sampling.h"
#include "sampling_cluster.cuh"

namespace mamba::cuda {

namespace {

using sampling::SampleArgs;
using sampling::float_key;

struct SoftmaxArgs {
    AnyPtr x, y;
    int64_t x_s0, x_s1, y_s0, y_s1, n;
    bool log;
};

__global__ void softmax_kernel(SoftmaxArgs a) {
    __shared__ float scratch[32];
    const int64_t row = blockIdx.x;
    wait_for_producer();  // PDL-safe (launch.cuh): x may come from the previous kernel
    allow_dependents();
    float m = -INFINITY;
    for (int64_t i = threadIdx.x; i < a.n; i += blockDim.x) m = fmaxf(m, a.x.load(row * a.x_s0 + i * a.x_s1));
    m = block_max(m, scratch);
    float s = 0.0f;
    for (int64_t i = threadIdx.x; i < a.n; i += blockDim.x) s += expf(a.x.load(row * a.x_s0 + i * a.x_s1) - m);
    s = block_sum(s, scratch);
    const float inv = 1.0f / s, log_s = logf(s);
    for (int64_t i = threadIdx.x; i < a.n; i += blockDim.x) {
        const float v = a.x.load(row * a.x_s0 + i * a.x_s1) - m;
        a.y.store(row * a.y_s0 + i * a.y_s1, a.log ? v - log_s : expf(v) * inv);
    }
}

// ---- sampling ----------------------------------------------------------------------------------

constexpr int kSampleThreads = 1024;

struct SampleShared {
    double dscan[kSampleThreads / 32];
    double hist[256];
    double warp_vals[kSampleThreads / 32][32];  // one round's per-lane histogram inputs
    float fscratch[32];
    int iscratch[32];
    uint32_t prefix;
    double above;
    int64_t result;
};

// Exclusive prefix sum over the block's threads (in thread order); *total gets the sum of all.
__device__ double block_exclusive_scan(double v, SampleShared & sh, double * total) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    double inc = v;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const double n = __shfl_up_sync(0xffffffffu, inc, o);
        if (lane >= o) inc += n;
    }
    __syncthreads();
    if (lane == 31) sh.dscan[warp] = inc;
    __syncthreads();
    double base = 0.0, all = 0.0;
    for (int i = 0; i < kSampleThreads / 32; ++i) {
        if (i < warp) base += sh.dscan[i];
        all += sh.dscan[i];
    }
    *total = all;
    return base + inc - v;
}

__device__ double block_sum_d(double v, SampleShared & sh) {
    double total;
    block_exclusive_scan(v, sh, &total);
    return total;
}

// The first index of the largest value (NaN never wins; all NaN gives 0).
__device__ int64_t block_argmax(const float * v, int64_t n, SampleShared & sh, float * best_value) {
    float bv = -INFINITY;
    int64_t bi = INT64_MAX;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        const float x = v[i];
        if (x > bv || (x == bv && i < bi)) {
            bv = x;
            bi = i;
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        const int64_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (ov > bv || (ov == bv && oi < bi)) {
            bv = ov;
            bi = oi;
        }
    }
    __shared__ float s_v[32];
    __shared__ int64_t s_i[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) {
        s_v[warp] = bv;
        s_i[warp] = bi;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        float v0 = s_v[0];
        int64_t i0 = s_i[0];
        for (int wi = 1; wi < int(blockDim.x / 32); ++wi)
            if (s_v[wi] > v0 || (s_v[wi] == v0 && s_i[wi] < i0)) {
                v0 = s_v[wi];
                i0 = s_i[wi];
            }
        if (i0 == INT64_MAX) {
            i0 = 0;
            v0 = v[0];
        }
        sh.result = i0;
        sh.fscratch[0] = v0;
    }
    __syncthreads();
    *best_value = sh.fscratch[0];
    const int64_t r = sh.result;
    __syncthreads();
    return r;
}

// Key tau of the cut among tokens with w > 0: the largest key whose tokens at or above it reach
// `target` (count of tokens, or their weight). *above gets the count/weight strictly above tau.
__device__ uint32_t radix_select(const float * v, const float * w, int64_t n, bool by_mass, double target, SampleShared & sh, double * above_out) {
    uint32_t prefix = 0, mask = 0;
    double above = 0.0;
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int i = threadIdx.x; i < 256; i += blockDim.x) sh.hist[i] = 0.0;
        __syncthreads();
        // Every lane of a warp takes part in each round: lanes falling into the same bin are summed by
        // the lowest of them first, so one shared atomic per bin and warp instead of one per token (the
        // leading bytes of similar logits all land in one or two bins).
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
        for (int64_t base = 0; base < n; base += blockDim.x) {
            const int64_t i = base + threadIdx.x;
            const float wi = i < n ? w[i] : 0.0f;
            const uint32_t key = i < n ? float_key(v[i]) : 0u;
            const bool take = wi > 0.0f && (key & mask) == prefix;
            const int bin = take ? int((key >> shift) & 255u) : -1;
            const double val = take ? (by_mass ? double(wi) : 1.0) : 0.0;
            const unsigned peers = __match_any_sync(0xffffffffu, bin);
            sh.warp_vals[warp][lane] = val;
            __syncwarp();
            if (take && lane == __ffs(peers) - 1) {
                double sum = 0.0;
                for (unsigned m = peers; m != 0; m &= m - 1) sum += sh.warp_vals[warp][__ffs(m) - 1];
                atomicAdd(&sh.hist[bin], sum);
            }
            __syncwarp();
        }
        __syncthreads();
        if (threadIdx.x < 32) {
            double acc;
            const int bin = sampling::select_bin(sh.hist, above, target, &acc);
            if (threadIdx.x == 0) {
                sh.prefix = prefix | (uint32_t(bin) << shift);
                sh.above = acc;
            }
        }
        __syncthreads();
        prefix = sh.prefix;
        above = sh.above;
        mask |= 0xffu << shift;
        __syncthreads();
    }
    *above_out = above;
    return prefix;
}

// Keeps tokens above tau; of those at tau, keeps them in id order while the count/weight before each
// is below `budget`; zeroes the weight of every other token.
__device__ void apply_cut(const float * v, float * w, int64_t n, uint32_t tau, bool by_mass, double budget, SampleShared & sh) {
    const int64_t seg = (n + blockDim.x - 1) / blockDim.x;
    const int64_t lo = min(n, int64_t(threadIdx.x) * seg), hi = min(n, lo + seg);
    double local = 0.0;
    for (int64_t i = lo; i < hi; ++i)
        if (w[i] > 0.0f && float_key(v[i]) == tau) local += by_mass ? double(w[i]) : 1.0;
    double total;
    double run = block_exclusive_scan(local, sh, &total);
    for (int64_t i = lo; i < hi; ++i) {
        if (!(w[i] > 0.0f)) continue;
        const uint32_t key = float_key(v[i]);
        if (key > tau) continue;
        if (key < tau) {
            w[i] = 0.0f;
            continue;
        }
        const double wi = by_mass ? double(w[i]) : 1.0;
        if (!(run < budget)) w[i] = 0.0f;
        run += wi;
    }
    __syncthreads();
}

__device__ double total_weight(const float * w, int64_t n, SampleShared & sh) {
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += double(w[i]);
    return block_sum_d(s, sh);
}

__global__ void __launch_bounds__(kSampleThreads) sample_kernel(SampleArgs a) {
    __shared__ SampleShared sh;
    const int64_t row = blockIdx.x;
    const int64_t V = a.vocab;
    float * v = a.v + row * V;
    float * w = a.w + row * V;
    // PDL-safe (launch.cuh): the logits come from the previous kernel, and v, w live in the shared
    // workspace that it may still use.
    wait_for_producer();
    allow_dependents();
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) v[i] = a.logits.load(row * a.l_s0 + i * a.l_s1);
    __syncthreads();
    if (a.history != nullptr) {
        // Each listed token gets the penalty once: the value is computed from the original logit, so a
        // token listed twice is written twice with the same value.
        for (int64_t j = threadIdx.x; j < a.history_len; j += blockDim.x) {
            const int64_t id = sampling::history_id(a, row, j);
            if (id >= V) atomicMin(a.error_index, a.error_tag | (unsigned long long)(row * a.history_len + j));
            if (id < 0 || id >= V || a.penalty == 1.0f) continue;
            v[id] = sampling::penalized(a.logits.load(row * a.l_s0 + id * a.l_s1), a.penalty);
        }
        __syncthreads();
    }
    auto write_token = [&](int64_t token) {
        if (threadIdx.x == 0) sampling::write_token(a, row, token);
    };
    float max_value;
    if (a.temperature <= 0.0f) {
        write_token(block_argmax(v, V, sh, &max_value));
        return;
    }
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) v[i] = __fdiv_rn(v[i], a.temperature);
    __syncthreads();
    const int64_t top = block_argmax(v, V, sh, &max_value);
    if (!(max_value > -INFINITY)) {
        write_token(top);
        return;
    }
    int count = 0;
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
        const float wi = sampling::relative_weight(v[i], max_value);
        w[i] = wi;
        count += wi > 0.0f;
    }
    const double positive = block_sum_d(double(count), sh);
    if (a.top_k > 0 && double(a.top_k) < positive) {
        double above;
        const uint32_t tau = radix_select(v, w, V, false, double(a.top_k), sh, &above);
        apply_cut(v, w, V, tau, false, double(a.top_k) - above, sh);
    }
    if (a.top_p < 1.0f) {
        const double needed = double(a.top_p) * total_weight(w, V, sh);
        double above;
        const uint32_t tau = radix_select(v, w, V, true, needed, sh, &above);
        apply_cut(v, w, V, tau, true, needed - above, sh);
    }
    if (a.min_p > 0.0f) {
        float most = 0.0f;
        for (int64_t i = threadIdx.x; i < V; i += blockDim.x) most = fmaxf(most, w[i]);
        most = block_max(most, sh.fscratch);
        const float floor_w = a.min_p * most;
        for (int64_t i = threadIdx.x; i < V; i += blockDim.x)
            if (w[i] < floor_w) w[i] = 0.0f;
        __syncthreads();
    }
    // The draw: first token in id order whose running weight exceeds target.
    const int64_t seg = (V + blockDim.x - 1) / blockDim.x;
    const int64_t lo = min(V, int64_t(threadIdx.x) * seg), hi = min(V, lo + seg);
    double local = 0.0;
    int64_t last_positive = -1;
    for (int64_t i = lo; i < hi; ++i) {
        local += double(w[i]);
        if (w[i] > 0.0f) last_positive = i;
    }
    double total;
    const double base = block_exclusive_scan(local, sh, &total);
    const double target = sampling::draw_target(a, row, total);
    if (threadIdx.x == 0) sh.result = -1;
    __syncthreads();
    if (base <= target && target < base + local) {
        double cum = base;
        for (int64_t i = lo; i < hi; ++i) {
            cum += double(w[i]);
            if (cum > target && w[i] > 0.0f) {
                atomicMin(reinterpret_cast<unsigned long long *>(&sh.result), (unsigned long long)i);
                break;
            }
        }
    }
    // Fallback when rounding leaves the target at the very end: the last surviving token.
    int64_t lp = last_positive;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) lp = max(lp, (int64_t)__shfl_xor_sync(0xffffffffu, lp, o));
    __shared__ int64_t s_lp[32];
    if ((threadIdx.x & 31) == 0) s_lp[threadIdx.x >> 5] = lp;
    __syncthreads();
    if (threadIdx.x == 0) {
        int64_t token = sh.result;
        if (token < 0 || token >= V) {
            int64_t best = -1;
            for (int i = 0; i < int(blockDim.x / 32); ++i) best = max(best, s_lp[i]);
            token = best >= 0 ? best : top;
        }
        sampling::write_token(a, row, token);
    }
}

}  // namespace

void softmax(mamba_context & ctx, const SoftmaxParams & p) {
    if (p.rows == 0 || p.n == 0) return;
    if (p.rows > INT32_MAX) fail(MAMBA_STATUS_UNSUPPORTED, "softmax on CUDA supports at most 2^31-1 rows");
    SoftmaxArgs a{any(p.x), any(p.y), p.x.stride[0], p.x.stride[1], p.y.stride[0], p.y.stride[1], p.n, p.log};
    const int threads = p.n >= 8192 ? 1024 : p.n >= 1024 ? 256 : 128;
    launch_kernel(ctx, "softmax_kernel", true, softmax_kernel, dim3(unsigned(p.rows)), dim3(threads), 0, a);
    MAMBA_CUDA_CHECK_LAUNCH("softmax_kernel");
}

enum class SampleKernel { Automatic, Block, Cluster };

// MAMBA_CUDA_SAMPLE_KERNEL when set (benchmarks, tests), else the cluster kernel wherever it fits.
bool use_cluster_kernel(const mamba_context & ctx, const SampleParams & p) {
    static constexpr EnvChoice<SampleKernel> kKernels[] = {{"block", SampleKernel::Block}, {"cluster", SampleKernel::Cluster}};
    const SampleKernel forced = env_choice("MAMBA_CUDA_SAMPLE_KERNEL", kKernels, SampleKernel::Automatic);
    if (forced == SampleKernel::Block) return false;
    const char * why = "";
    const bool fits = sampling::cluster_kernel_fits(ctx, p.batch, p.vocab, &why);
    if (forced == SampleKernel::Cluster && !fits)
        fail(MAMBA_STATUS_UNSUPPORTED, "MAMBA_CUDA_SAMPLE_KERNEL=cluster cannot sample this call (batch ", p.batch, ", vocabulary ", p.vocab, "): ", why);
    return fits;
}

void sample(mamba_context & ctx, const SampleParams & p) {
    if (p.batch == 0) return;
    if (p.batch > INT32_MAX) fail(MAMBA_STATUS_UNSUPPORTED, "sample on CUDA supports at most 2^31-1 rows");
    const bool cluster = use_cluster_kernel(ctx, p);  // a bad variable fails before any work is queued
    SampleArgs a{};
    a.logits = any(p.logits);
    a.l_s0 = p.logits.stride[0];
    a.l_s1 = p.logits.stride[1];
    if (p.history && p.history_len > 0) {
        a.history = p.history->data;
        a.hist_dtype = int(p.history->dtype);
        a.h_s0 = p.history->stride[0];
        a.h_s1 = p.history->stride[1];
        a.history_len = p.history_len;
    }
    a.tokens = p.tokens.data;
    a.tok_dtype = int(p.tokens.dtype);
    a.tok_s = p.tokens.stride[0];
    a.vocab = p.vocab;
    a.temperature = p.params.temperature;
    a.top_k = p.params.top_k;
    a.top_p = p.params.top_p;
    a.min_p = p.params.min_p;
    a.penalty = p.params.repetition_penalty;
    a.seed = p.params.seed;
    a.step = p.step;
    a.error_index = error_slot(ctx, DeferredError::SampleHistory, a.error_tag);
    if (cluster) {
        sampling::launch_cluster_sample(ctx, a, p.batch);
    } else {
        WorkspaceCarver carver;
        const size_t ov = carver.add(size_t(p.batch * p.vocab) * 4);
        const size_t ow = carver.add(size_t(p.batch * p.vocab) * 4);
        char * ws = carver.take(ctx);
        a.v = reinterpret_cast<float *>(ws + ov);
        a.w = reinterpret_cast<float *>(ws + ow);
        launch_kernel(ctx, "sample_kernel", true, sample_kernel, dim3(unsigned(p.batch)), dim3(kSampleThreads), 0, a);
        MAMBA_CUDA_CHECK_LAUNCH("sample_kernel");
    }
    if (a.history != nullptr && a.error_tag == 0) {
        // History ids are on the device: an id past the vocabulary is only seen by the kernel. While
        // capturing, the kernel's report is deferred to the next synchronize instead.
        const unsigned long long bad = take_error_index(ctx);
        if (bad != kNoErrorIndex) {
            const int64_t row = int64_t(bad) / p.history_len, col = int64_t(bad) % p.history_len;
            const int64_t id = read_device_int(ctx, *p.history, row * p.history->stride[0] + col * p.history->stride[1]);
            fail_argument("history[", row, ", ", col, "] is ", id, ", outside the vocabulary [0, ", p.vocab, ")");
        }
    }
}

}  // namespace mamba::cuda
