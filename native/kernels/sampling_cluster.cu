// Token sampling with one thread-block cluster a row (compute capability 9.0+).
//
// Why: the block kernel (sampling.cu) samples a row on one SM. Its ten or so passes over the vocabulary
// and four radix rounds a cut took ~0.3 ms a call on mamba's 50k-token vocabulary, about 13% of a sampled
// mamba-2.8b decode step. Here a cluster of 8 blocks of 512 threads, on 8 SMs, holds the row: a thread
// keeps the scaled logits and weights of kItems consecutive ids in registers for the whole call, so each
// pass is register work, and the blocks combine what a pass found through distributed shared memory with
// one cluster barrier an exchange (16 for a call with every filter). On an H200, 0.045-0.05 ms a top-k or
// top-p call over 50280 ids against 0.3 ms on one block (docs/gpu-results.md, run 48).
//
// The steps, their rounding and the tie rules are the block kernel's and the CPU's (sampling.cu's header):
// penalty, temperature, top-k and top-p cuts by radix selection over the keys of the scaled logits,
// min-p, then the first token in id order whose running weight exceeds u * total. Sums in double are
// taken in another order than theirs, which can only matter when a weight lands exactly on a boundary.
//
// Exchanges push: a block writes its value into its own row of every block's table, then all pass the
// barrier and read their local copy. After the last barrier no block touches another's shared memory, so
// blocks may exit at once. Two tables alternate: a block writes table b again only after passing the next
// barrier, which every block reaches only after reading table b.
//
// Bytes: the logits once (batch * vocab * element size) and the history per block. FLOPs: about 40 an
// id (an exp in double, the keys, eight histogram rounds); integer shared atomics for top-k's counts, none for
// top-p's weights (per-warp histograms).
#include <atomic>

#include "launch.cuh"
#include "cluster.cuh"
#include "sampling_cluster.cuh"

namespace mamba::cuda::sampling {

namespace {

constexpr int kClusterBlocks = 8;  // the largest portable cluster
constexpr int kClusterThreads = 512;
constexpr int kWarps = kClusterThreads / 32;

// In dynamic shared memory (more than the 48 KB of static), ahead of the staged logits.
struct alignas(16) ClusterShared {
    double table[2][kClusterBlocks][256];  // exchanges: row r is what block r published
    double warp_hist[kWarps][256];         // a radix round's weights by bin, per warp (summed in a fixed order)
    unsigned count_hist[256];              // a radix round's counts by bin
    double hist[256];                      // the round's histogram over the cluster
    double warp_vals[kWarps][32];          // weights of a warp's lanes, for their bin's leader
    double warp_part[kWarps];              // per-warp partials of block reductions
    long long warp_index[kWarps];
    double above;
    int bin;
};

template <int Items>
struct ClusterSampleTraits {
    static_assert(sizeof(ClusterShared) % sizeof(float4) == 0, "the staged logits follow the shared state");
    static_assert(Items % 4 == 0, "a thread's ids are read from the staging buffer as float4");
    static constexpr int kItems = Items;                       // consecutive ids a thread holds
    static constexpr int kSlice = kItems * kClusterThreads;    // ids a block holds
    static constexpr int64_t kMaxVocab = int64_t(kSlice) * kClusterBlocks;
    static constexpr size_t kStageBytes = size_t(kSlice) * sizeof(float);
    static constexpr size_t kSmemBytes = sizeof(ClusterShared) + kStageBytes;  // dynamic shared memory
};
// 16 ids a thread keep the kernel at 128 registers without spills (512 threads); 32 would spill.
using SmallVocab = ClusterSampleTraits<8>;   // up to 32768 ids (Codestral Mamba's 32768)
using LargeVocab = ClusterSampleTraits<16>;  // up to 65536 (mamba's 50280, falcon-mamba's 65024)

// The device code exists for 9.0+ only (the kernel traps below it, and the host never launches it there).
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900

constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ double bits_of(long long i) { return __longlong_as_double(i); }
__device__ __forceinline__ long long index_of(double d) { return __double_as_longlong(d); }

class Exchange {
public:
    __device__ explicit Exchange(ClusterShared & sh) : sh_(sh), rank_(cluster_rank()) {}

    // Writes `value` into slot i of this block's row in every block's current table.
    __device__ void put(int i, double value) const {
        double * mine = &sh_.table[buf_][rank_][i];
#pragma unroll
        for (int r = 0; r < kClusterBlocks; ++r) store_in_block(mine, unsigned(r), value);
    }
    // Waits for every block's puts and returns the table they filled.
    __device__ const double (*sync())[256] {
        cluster_arrive();
        cluster_wait();
        const double(*t)[256] = sh_.table[buf_];
        buf_ ^= 1;
        return t;
    }
    __device__ unsigned rank() const { return rank_; }

private:
    ClusterShared & sh_;
    unsigned rank_;
    int buf_ = 0;
};

// ---- block and cluster reductions; every thread of the cluster gets the same result ----------------

__device__ double block_sum(double v, ClusterShared & sh) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_sum(v);
    __syncthreads();  // warp_part may still be read by a previous reduction
    if (lane == 0) sh.warp_part[warp] = v;
    __syncthreads();
    double s = 0.0;
    for (int i = 0; i < kWarps; ++i) s += sh.warp_part[i];
    return s;
}

__device__ double cluster_sum(double v, ClusterShared & sh, Exchange & ex) {
    const double mine = block_sum(v, sh);
    if (threadIdx.x == 0) ex.put(0, mine);
    const auto t = ex.sync();
    double s = 0.0;
    for (int r = 0; r < kClusterBlocks; ++r) s += t[r][0];
    return s;
}

__device__ float cluster_max(float v, ClusterShared & sh, Exchange & ex) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) sh.warp_part[warp] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        float m = -INFINITY;
        for (int i = 0; i < kWarps; ++i) m = fmaxf(m, float(sh.warp_part[i]));
        ex.put(0, m);
    }
    const auto t = ex.sync();
    float m = -INFINITY;
    for (int r = 0; r < kClusterBlocks; ++r) m = fmaxf(m, float(t[r][0]));
    return m;
}

// Exclusive prefix of v over the cluster's threads in id order (block rank, then thread); *total gets
// the sum of all.
__device__ double cluster_exclusive_scan(double v, ClusterShared & sh, Exchange & ex, double * total) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    double inc = v;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const double n = __shfl_up_sync(kFullMask, inc, o);
        if (lane >= o) inc += n;
    }
    __syncthreads();
    if (lane == 31) sh.warp_part[warp] = inc;
    __syncthreads();
    double base = 0.0, block_total = 0.0;
    for (int i = 0; i < kWarps; ++i) {
        if (i < warp) base += sh.warp_part[i];
        block_total += sh.warp_part[i];
    }
    if (threadIdx.x == 0) ex.put(0, block_total);
    const auto t = ex.sync();
    double before = 0.0, all = 0.0;
    for (int r = 0; r < kClusterBlocks; ++r) {
        if (r < int(ex.rank())) before += t[r][0];
        all += t[r][0];
    }
    *total = all;
    return before + base + inc - v;
}

// The first id of the largest value (NaN never wins); *best_value gets it. None (all NaN): id 0, NaN.
template <int kItems>
__device__ int64_t cluster_argmax(const float (&v)[kItems], int64_t first, ClusterShared & sh, Exchange & ex, float * best_value) {
    float bv = -INFINITY;
    long long bi = -1;
#pragma unroll
    for (int j = 0; j < kItems; ++j)
        if (v[j] > bv || (bi < 0 && v[j] == bv)) {
            bv = v[j];
            bi = first + j;
        }
    // Merging a candidate that is better, or as good with a lower id (none, -1, loses every tie).
    auto better = [](float ov, long long oi, float bv, long long bi) { return oi >= 0 && (bi < 0 || ov > bv || (ov == bv && oi < bi)); };
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(kFullMask, bv, o);
        const long long oi = __shfl_xor_sync(kFullMask, bi, o);
        if (better(ov, oi, bv, bi)) {
            bv = ov;
            bi = oi;
        }
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) {
        sh.warp_part[warp] = bv;
        sh.warp_index[warp] = bi;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int i = 0; i < kWarps; ++i)
            if (better(float(sh.warp_part[i]), sh.warp_index[i], bv, bi)) {
                bv = float(sh.warp_part[i]);
                bi = sh.warp_index[i];
            }
        ex.put(0, bv);
        ex.put(1, bits_of(bi));
    }
    const auto t = ex.sync();
    bv = -INFINITY;
    bi = -1;
    for (int r = 0; r < kClusterBlocks; ++r)
        if (better(float(t[r][0]), index_of(t[r][1]), bv, bi)) {
            bv = float(t[r][0]);
            bi = index_of(t[r][1]);
        }
    *best_value = bi < 0 ? __int_as_float(0x7fffffff) : bv;
    return bi < 0 ? 0 : bi;
}

// Key tau of the cut among ids with w > 0: the largest key whose ids at or above it reach `target`
// (their count, or their weight). *above_out gets the count or weight strictly above tau.
template <int kItems>
__device__ uint32_t cluster_radix_select(const float (&v)[kItems], const float (&w)[kItems], bool by_mass, double target, ClusterShared & sh,
                                         Exchange & ex, double * above_out) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    uint32_t prefix = 0, mask = 0;
    double above = 0.0;
    double * own = sh.warp_hist[warp];
    for (int shift = 24; shift >= 0; shift -= 8) {
        if (by_mass) {
            for (int b = lane; b < 256; b += 32) own[b] = 0.0;
            __syncwarp();
        } else {
            if (threadIdx.x < 256) sh.count_hist[threadIdx.x] = 0u;
            __syncthreads();
        }
#pragma unroll
        for (int j = 0; j < kItems; ++j) {
            const uint32_t key = float_key(v[j]);
            const bool take = w[j] > 0.0f && (key & mask) == prefix;
            const int bin = take ? int((key >> shift) & 255u) : -1;
            if (!by_mass) {
                // Integer shared atomics: the hardware merges a warp's increments of one address.
                if (take) atomicAdd(&sh.count_hist[bin], 1u);
                continue;
            }
            // Weights (double: no native shared atomic) go to the warp's own histogram, summed in a fixed
            // order. Past the first rounds most warps have no candidate left; in the first, all of a warp's
            // candidates share one or two bins: one butterfly sum then beats the lowest lane adding its
            // peers one by one.
            if (__ballot_sync(kFullMask, take) == 0) continue;
            const unsigned peers = __match_any_sync(kFullMask, bin);
            const bool leader = take && lane == __ffs(peers) - 1;
            if (__popc(__ballot_sync(kFullMask, leader)) == 1) {
                const double sum = warp_sum(take ? double(w[j]) : 0.0);
                if (leader) own[bin] += sum;
            } else {
                sh.warp_vals[warp][lane] = take ? double(w[j]) : 0.0;
                __syncwarp();
                if (leader) {
                    double sum = 0.0;
                    for (unsigned m = peers; m != 0; m &= m - 1) sum += sh.warp_vals[warp][__ffs(m) - 1];
                    own[bin] += sum;
                }
            }
            __syncwarp();  // the next item's leader of a bin may be another lane
        }
        __syncthreads();
        if (threadIdx.x < 256) {
            double s = 0.0;
            if (by_mass) {
                for (int i = 0; i < kWarps; ++i) s += sh.warp_hist[i][threadIdx.x];
            } else {
                s = double(sh.count_hist[threadIdx.x]);
            }
            ex.put(threadIdx.x, s);
        }
        const auto t = ex.sync();
        if (threadIdx.x < 256) {
            double s = 0.0;
            for (int r = 0; r < kClusterBlocks; ++r) s += t[r][threadIdx.x];
            sh.hist[threadIdx.x] = s;
        }
        __syncthreads();
        if (threadIdx.x < 32) {
            double acc;
            const int bin = select_bin(sh.hist, above, target, &acc);
            if (threadIdx.x == 0) {
                sh.bin = bin;
                sh.above = acc;
            }
        }
        __syncthreads();
        prefix |= uint32_t(sh.bin) << shift;
        above = sh.above;
        mask |= 0xffu << shift;
    }
    *above_out = above;
    return prefix;
}

// Keeps ids above tau; of those at tau, keeps them in id order while the count or weight before each is
// below `budget`; zeroes the weight of every other id.
template <int kItems>
__device__ void cluster_apply_cut(const float (&v)[kItems], float (&w)[kItems], uint32_t tau, bool by_mass, double budget, ClusterShared & sh,
                                  Exchange & ex) {
    double local = 0.0;
#pragma unroll
    for (int j = 0; j < kItems; ++j)
        if (w[j] > 0.0f && float_key(v[j]) == tau) local += by_mass ? double(w[j]) : 1.0;
    double total;
    double run = cluster_exclusive_scan(local, sh, ex, &total);
#pragma unroll
    for (int j = 0; j < kItems; ++j) {
        if (!(w[j] > 0.0f)) continue;
        const uint32_t key = float_key(v[j]);
        if (key > tau) continue;
        if (key < tau) {
            w[j] = 0.0f;
            continue;
        }
        const double wj = by_mass ? double(w[j]) : 1.0;
        if (!(run < budget)) w[j] = 0.0f;
        run += wj;
    }
}

// The lowest `found` and the highest `last_positive` over the cluster, on every thread.
__device__ void cluster_draw_result(long long found, long long last_positive, ClusterShared & sh, Exchange & ex, long long * found_out,
                                    long long * last_out) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        found = min(found, __shfl_xor_sync(kFullMask, found, o));
        last_positive = max(last_positive, __shfl_xor_sync(kFullMask, last_positive, o));
    }
    __syncthreads();
    if (lane == 0) {
        sh.warp_index[warp] = found;
        sh.warp_part[warp] = bits_of(last_positive);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int i = 0; i < kWarps; ++i) {
            found = min(found, sh.warp_index[i]);
            last_positive = max(last_positive, index_of(sh.warp_part[i]));
        }
        ex.put(0, bits_of(found));
        ex.put(1, bits_of(last_positive));
    }
    const auto t = ex.sync();
    found = LLONG_MAX;
    last_positive = -1;
    for (int r = 0; r < kClusterBlocks; ++r) {
        found = min(found, index_of(t[r][0]));
        last_positive = max(last_positive, index_of(t[r][1]));
    }
    *found_out = found;
    *last_out = last_positive;
}

#endif  // 9.0+

// Grid (kClusterBlocks, batch) in clusters of kClusterBlocks along x: cluster y samples row y, block r of
// it holds ids [r * kSlice, (r + 1) * kSlice).
template <class Tr>
__global__ void __launch_bounds__(kClusterThreads) sample_cluster_kernel(SampleArgs a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
    __trap();  // clusters need 9.0; the host launches this kernel only there
#else
    constexpr int kItems = Tr::kItems;
    extern __shared__ float4 dynamic_smem[];
    ClusterShared & sh = *reinterpret_cast<ClusterShared *>(dynamic_smem);
    float4 * staged4 = dynamic_smem + sizeof(ClusterShared) / sizeof(float4);
    float * staged = reinterpret_cast<float *>(staged4);
    const int64_t row = blockIdx.y;
    const int64_t V = a.vocab;
    // Pairs with the wait before the first exchange: by then every block of the cluster has started, so
    // its shared memory may be written.
    cluster_arrive();
    Exchange ex(sh);
    const bool leader = ex.rank() == 0 && threadIdx.x == 0;  // writes the token
    const int64_t slice_lo = int64_t(ex.rank()) * Tr::kSlice;
    const int64_t first = slice_lo + int64_t(threadIdx.x) * kItems;  // this thread's first id
    // PDL-safe (launch.cuh): the logits come from the previous kernel.
    wait_for_producer();
    allow_dependents();
    // Staged through shared memory: coalesced loads, and the penalty can reach any id of the slice. All
    // of a thread's loads are issued before the first store, so they are in flight together.
    {
        float loaded[kItems];
#pragma unroll
        for (int q = 0; q < kItems; ++q) {
            const int64_t id = slice_lo + q * kClusterThreads + threadIdx.x;
            loaded[q] = id < V ? a.logits.load(row * a.l_s0 + id * a.l_s1) : __int_as_float(0x7fffffff);  // NaN: never a candidate
        }
#pragma unroll
        for (int q = 0; q < kItems; ++q) staged[q * kClusterThreads + threadIdx.x] = loaded[q];
    }
    if (a.history != nullptr) {
        __syncthreads();
        // Each listed id gets the penalty once: the value comes from the original logit, so an id listed
        // twice is written twice with the same value.
        const int64_t slice_hi = min(V, slice_lo + Tr::kSlice);
        for (int64_t j = threadIdx.x; j < a.history_len; j += kClusterThreads) {
            const int64_t id = history_id(a, row, j);
            if (id >= V && ex.rank() == 0) atomicMin(a.error_index, a.error_tag | (unsigned long long)(row * a.history_len + j));
            if (id < slice_lo || id >= slice_hi || a.penalty == 1.0f) continue;
            staged[id - slice_lo] = penalized(a.logits.load(row * a.l_s0 + id * a.l_s1), a.penalty);
        }
    }
    __syncthreads();
    float v[kItems];
#pragma unroll
    for (int q = 0; q < kItems / 4; ++q) {
        const float4 f = staged4[threadIdx.x * (kItems / 4) + q];
        v[4 * q] = f.x;
        v[4 * q + 1] = f.y;
        v[4 * q + 2] = f.z;
        v[4 * q + 3] = f.w;
    }
    cluster_wait();

    float max_value;
    if (a.temperature <= 0.0f) {
        const int64_t token = cluster_argmax(v, first, sh, ex, &max_value);
        if (leader) write_token(a, row, token);
        return;
    }
#pragma unroll
    for (int j = 0; j < kItems; ++j) v[j] = __fdiv_rn(v[j], a.temperature);
    const int64_t top = cluster_argmax(v, first, sh, ex, &max_value);
    if (!(max_value > -INFINITY)) {
        if (leader) write_token(a, row, top);
        return;
    }
    float w[kItems];
    int count = 0;
#pragma unroll
    for (int j = 0; j < kItems; ++j) {
        w[j] = relative_weight(v[j], max_value);
        count += w[j] > 0.0f;
    }
    if (a.top_k > 0) {
        const double positive = cluster_sum(double(count), sh, ex);
        if (double(a.top_k) < positive) {
            double above;
            const uint32_t tau = cluster_radix_select(v, w, false, double(a.top_k), sh, ex, &above);
            cluster_apply_cut(v, w, tau, false, double(a.top_k) - above, sh, ex);
        }
    }
    if (a.top_p < 1.0f) {
        double mine = 0.0;
#pragma unroll
        for (int j = 0; j < kItems; ++j) mine += double(w[j]);
        const double needed = double(a.top_p) * cluster_sum(mine, sh, ex);
        double above;
        const uint32_t tau = cluster_radix_select(v, w, true, needed, sh, ex, &above);
        cluster_apply_cut(v, w, tau, true, needed - above, sh, ex);
    }
    if (a.min_p > 0.0f) {
        float most = 0.0f;
#pragma unroll
        for (int j = 0; j < kItems; ++j) most = fmaxf(most, w[j]);
        const float floor_w = a.min_p * cluster_max(most, sh, ex);
#pragma unroll
        for (int j = 0; j < kItems; ++j)
            if (w[j] < floor_w) w[j] = 0.0f;
    }
    // The draw: the first id whose running weight exceeds the target.
    double local = 0.0;
    long long last_positive = -1;
#pragma unroll
    for (int j = 0; j < kItems; ++j) {
        local += double(w[j]);
        if (w[j] > 0.0f) last_positive = first + j;
    }
    double total;
    const double base = cluster_exclusive_scan(local, sh, ex, &total);
    const double target = draw_target(a, row, total);
    long long found = LLONG_MAX;
    if (base <= target && target < base + local) {
        double cum = base;
#pragma unroll
        for (int j = 0; j < kItems; ++j) {
            cum += double(w[j]);
            if (found == LLONG_MAX && cum > target && w[j] > 0.0f) found = first + j;
        }
    }
    long long token, last;
    cluster_draw_result(found, last_positive, sh, ex, &token, &last);
    // Rounding can leave the target at the very end: the last surviving id.
    if (token == LLONG_MAX) token = last >= 0 ? last : top;
    if (leader) write_token(a, row, token);
#endif
}

// The kernel's opt-in to its dynamic shared memory, once per device (it holds for the process): a call a
// token is on the host's path of every eager step.
template <class Tr>
void opt_in(const mamba_context & ctx) {
    static std::atomic<uint64_t> opted_in{0};
    const uint64_t device_bit = ctx.device_id < 64 ? uint64_t(1) << ctx.device_id : 0;
    if ((opted_in.load(std::memory_order_relaxed) & device_bit) == 0 || device_bit == 0) {
        MAMBA_CUDA_CHECK(cudaFuncSetAttribute(sample_cluster_kernel<Tr>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(Tr::kSmemBytes)));
        opted_in.fetch_or(device_bit, std::memory_order_relaxed);
    }
}

// Whether the device can hold at least one cluster of the larger build at once (cudaOccupancyMaxActiveClusters):
// a MIG slice or a GPU whose SMs are otherwise limited may not, and the sampler then takes the block kernel
// rather than fail at launch (also where the query itself fails). Asked once per device and remembered for the process.
bool device_holds_a_cluster(const mamba_context & ctx) {
    static std::atomic<uint8_t> known[64];  // 0: not asked, 1: holds one, 2: does not
    std::atomic<uint8_t> * const slot = ctx.device_id >= 0 && ctx.device_id < 64 ? &known[ctx.device_id] : nullptr;
    if (slot) {
        const uint8_t k = slot->load(std::memory_order_relaxed);
        if (k != 0) return k == 1;
    }
    using Tr = LargeVocab;
    opt_in<Tr>(ctx);
    cudaLaunchConfig_t config{};
    config.gridDim = dim3(kClusterBlocks, 1);
    config.blockDim = dim3(kClusterThreads);
    config.dynamicSmemBytes = Tr::kSmemBytes;
    cudaLaunchAttribute cluster{};
    cluster.id = cudaLaunchAttributeClusterDimension;
    cluster.val.clusterDim.x = kClusterBlocks;
    cluster.val.clusterDim.y = 1;
    cluster.val.clusterDim.z = 1;
    config.attrs = &cluster;
    config.numAttrs = 1;
    int clusters = 0;
    // A query that fails says no more than a zero: the block kernel samples as well. Its error is taken off
    // the runtime's last-error slot, so that no later launch check reports it.
    if (cudaOccupancyMaxActiveClusters(&clusters, sample_cluster_kernel<Tr>, &config) != cudaSuccess) {
        (void)cudaGetLastError();
        clusters = 0;
    }
    if (slot) slot->store(clusters > 0 ? 1 : 2, std::memory_order_relaxed);
    return clusters > 0;
}

template <class Tr>
void launch_traits(mamba_context & ctx, const SampleArgs & a, int64_t batch) {
    auto kernel = sample_cluster_kernel<Tr>;
    opt_in<Tr>(ctx);
    launch_kernel_in_clusters(ctx, "sample_cluster_kernel", true, kClusterBlocks, kernel, dim3(kClusterBlocks, unsigned(batch)), dim3(kClusterThreads),
                              Tr::kSmemBytes, a);
    MAMBA_CUDA_CHECK_LAUNCH("sample_cluster_kernel");
}

}  // namespace

int64_t cluster_max_vocab() { return LargeVocab::kMaxVocab; }

bool cluster_kernel_fits(const mamba_context & ctx, int64_t batch, int64_t vocab, const char ** why) {
    if (ctx.cuda->cc_major < 9) {
        *why = "thread-block clusters need compute capability 9.0 or newer";
        return false;
    }
    if (vocab > LargeVocab::kMaxVocab) {
        *why = "the vocabulary is larger than one cluster holds (65536 ids)";
        return false;
    }
    if (batch > 65535) {
        *why = "the batch is larger than 65535 rows";
        return false;
    }
    if (LargeVocab::kSmemBytes > size_t(ctx.cuda->max_smem_per_block)) {
        *why = "the device has too little shared memory per block";
        return false;
    }
    if (!device_holds_a_cluster(ctx)) {
        *why = "the device cannot hold one cluster of 8 blocks at once (cudaOccupancyMaxActiveClusters gave 0 or failed)";
        return false;
    }
    return true;
}

void launch_cluster_sample(mamba_context & ctx, const SampleArgs & a, int64_t batch) {
    if (a.vocab <= SmallVocab::kMaxVocab) launch_traits<SmallVocab>(ctx, a, batch);
    else launch_traits<LargeVocab>(ctx, a, batch);
}

}  // namespace mamba::cuda::sampling
