// Helpers shared by the chunk-parallel SSD's kernel files (ssd_chunk_parallel.cu and
// ssd_chunk_state_twopass.cu): the chunk length, the slot numbering of the workspace, dt processing,
// the float16 scale rule of S_in (also the twopass local states'), the chunk's dt*A scan and a bf16
// hi + lo split (the mma.sync / ldmatrix wrappers are in mma_ops.cuh). One definition each, so the state
// kernels and the output kernel cannot drift apart on the workspace format.
// Internal linkage (an anonymous namespace): each including file gets its own inlined copy.
#pragma once

#include "mma_ops.cuh"
#include "ssd_chunked.cuh"

namespace mamba::cuda {

namespace {

constexpr int kSsdCpChunk = 128;  // steps per chunk (only changes rounding: chunk_size is free)

constexpr size_t align128(size_t v) { return (v + 127) / 128 * 128; }
inline int state_pad(int64_t dstate) { return dstate <= 64 ? 64 : 128; }

// Workspace slot of the chunk starting at row t0 of sequence seq (ssd_chunk_parallel.cu's header
// comment). Args: the kernels' argument struct (SsdCpArgs or SsdTwoPassArgs: a, chunks, nseq).
template <class Args>
__device__ __forceinline__ int64_t slot_of(const Args & c, int64_t seq, int64_t t0) {
    return c.a.packed ? t0 / kSsdCpChunk + seq : seq * c.chunks + t0 / kSsdCpChunk;
}

// The inverse: the sequence, batch row and rows [t0, t_end) of a slot; false for an unused slot.
template <class Args>
__device__ inline bool chunk_of_slot(const Args & c, int64_t slot, int64_t & seq, int64_t & b, int64_t & t0, int64_t & t_end) {
    const SsdArgs & a = c.a;
    if (!a.packed) {
        seq = slot / c.chunks;
        b = seq;
        t0 = (slot % c.chunks) * kSsdCpChunk;
        t_end = a.len;
        return seq < c.nseq && t0 < t_end;
    }
    // The last sequence i whose first slot cu[i]/Q + i is <= slot (that first slot grows with i).
    int64_t lo = 0, hi = c.nseq - 1;
    while (lo < hi) {
        const int64_t mid = (lo + hi + 1) / 2;
        if (cu_at(a, mid) / kSsdCpChunk + mid <= slot) lo = mid;
        else hi = mid - 1;
    }
    seq = lo;
    b = 0;
    const int64_t begin = cu_at(a, lo);
    t0 = begin + (slot - (begin / kSsdCpChunk + lo)) * kSsdCpChunk;
    t_end = cu_at(a, lo + 1);
    return t0 >= begin && t0 < t_end;
}

// The exponent k of a power-of-two scale with max_abs * 2^-k <= 2^14 (0 for 0 and non-finite maxima):
// values times 2^-k are float16-safe and keep float16's 11 bits down to max_abs * 2^-28. Both 2^k and
// 2^-k are exact floats (k in [-100, 114]).
__device__ __forceinline__ int f16_scale_exponent(float max_abs) {
    if (!(max_abs > 0.0f) || !isfinite(max_abs)) return 0;
    int e = 0;
    frexpf(max_abs, &e);  // max_abs < 2^e
    return e - 14 < -100 ? -100 : e - 14;
}

__device__ __forceinline__ float process_dt(const SsdArgs & a, float raw, float bias) {
    float dt = raw + bias;
    if (a.softplus) dt = softplus_mufu(dt);
    if (a.clamp) dt = fminf(fmaxf(dt, a.dt_min), a.dt_max);
    return dt;
}

// dt and the inclusive cumulative sum of dt*A over one chunk of kSsdCpChunk = 128 steps, by one warp:
// lane `lane` holds steps 4 lane + i, i < 4, with dt[i] = dt_of(i) (processed, 0 past the sequence end)
// and acum[i]; returns the chunk's total (step 127's acum), the same in every lane. Both state kernels
// use it, so their acum (which the output kernel reads) is the same float32 sum.
template <class DtOf>
__device__ __forceinline__ float warp_chunk_scan(DtOf dt_of, float A, int lane, float (&dt)[4], float (&acum)[4]) {
    static_assert(kSsdCpChunk == 4 * 32, "a lane scans 4 steps of the chunk");
    float run = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        dt[i] = dt_of(i);
        run += dt[i] * A;
    }
    float incl = run;
#pragma unroll
    for (int off = 1; off < 32; off *= 2) {
        const float o = __shfl_up_sync(0xffffffffu, incl, off);
        if (lane >= off) incl += o;
    }
    float acc_run = incl - run;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        acc_run += dt[i] * A;
        acum[i] = acc_run;
    }
    return __shfl_sync(0xffffffffu, acum[3], 31);
}

// Two floats -> bf16 hi + lo pairs (low half = the first value, the lower column).
__device__ __forceinline__ void split_pair(float v0, float v1, uint32_t & hi, uint32_t & lo) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(v0, v1);
    const __nv_bfloat162 l = __floats2bfloat162_rn(v0 - __low2float(h), v1 - __high2float(h));
    hi = *reinterpret_cast<const uint32_t *>(&h);
    lo = *reinterpret_cast<const uint32_t *>(&l);
}

}  // namespace

}  // namespace mamba::cuda
