/*
 * mamba.h - the C ABI of libmamba: Mamba (selective state space model) kernels for CPU and CUDA.
 *
 * Conventions
 *  - Every call returns a mamba_status; on failure a thread-local message is readable with
 *    mamba_last_error() until the next failing call on the same thread.
 *  - Handles are opaque and come in create/free pairs. Free functions accept NULL.
 *  - Tensors cross the boundary as DLPack DLTensor views: data, device, shape, strides (in elements;
 *    NULL means contiguous row-major) and byte_offset. Nothing is copied and the library keeps no
 *    reference after a call returns. Every tensor must live on the device of the context it is used with.
 *  - Floating point tensors may be float32, float16 or bfloat16 unless an argument says otherwise;
 *    all arithmetic and recurrent state are float32.
 *  - Optional tensor arguments are NULL when absent.
 *  - Work is ordered on the context's stream (CUDA) or done before the call returns (CPU).
 */
#ifndef MAMBA_H
#define MAMBA_H

#include <stddef.h>
#include <stdint.h>

#include <dlpack/dlpack.h>

#include "mamba/version.h"

#if defined(_WIN32)
#  if defined(MAMBA_BUILD)
#    define MAMBA_API __declspec(dllexport)
#  else
#    define MAMBA_API __declspec(dllimport)
#  endif
#else
#  define MAMBA_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever a declaration in this header changes in a way that breaks existing callers. */
#define MAMBA_ABI_VERSION 3

/* The largest SSM state size (dstate) any backend accepts. */
#define MAMBA_MAX_DSTATE 256

/* ------------------------------------------------------------------------------------------------ */
/* Status, errors, version                                                                          */
/* ------------------------------------------------------------------------------------------------ */

/* Result of every fallible call. */
typedef enum mamba_status {
    MAMBA_STATUS_OK = 0,
    /* A null pointer, a wrong shape, stride, dtype or device, or an out-of-range value. */
    MAMBA_STATUS_INVALID_ARGUMENT = 1,
    /* A well-formed request this build or backend does not support. */
    MAMBA_STATUS_UNSUPPORTED = 2,
    /* Host or device memory could not be allocated. */
    MAMBA_STATUS_OUT_OF_MEMORY = 3,
    /* The requested backend was not built, or no such device is present. */
    MAMBA_STATUS_BACKEND_UNAVAILABLE = 4,
    /* The device runtime reported an error. */
    MAMBA_STATUS_DEVICE_ERROR = 5,
    /* A bug in libmamba. */
    MAMBA_STATUS_INTERNAL = 6
} mamba_status;

/* MAMBA_ABI_VERSION of the loaded library; callers compare it with the value they were built with. */
MAMBA_API int32_t mamba_abi_version(void);

/* Library version, "MAJOR.MINOR.PATCH". Static storage. */
MAMBA_API const char * mamba_version(void);

/* How the library was built: compiler, BLAS, CUDA version and architectures. Static storage. */
MAMBA_API const char * mamba_build_info(void);

/* Message of the last failing call on this thread ("" if none). Valid until the next call that fails. */
MAMBA_API const char * mamba_last_error(void);

/* Clears this thread's last error message. */
MAMBA_API void mamba_clear_last_error(void);

/* A constant name for a status, e.g. "MAMBA_STATUS_INVALID_ARGUMENT". */
MAMBA_API const char * mamba_status_name(mamba_status status);

/* ------------------------------------------------------------------------------------------------ */
/* Devices                                                                                          */
/* ------------------------------------------------------------------------------------------------ */

/* Device kinds; the values equal DLPack's kDLCPU and kDLCUDA. */
typedef enum mamba_device_type {
    MAMBA_DEVICE_CPU = 1,
    MAMBA_DEVICE_CUDA = 2
} mamba_device_type;

/* What mamba_device_get_info reports about one device. */
typedef struct mamba_device_info {
    mamba_device_type device_type;
    int32_t device_id;
    /* NUL-terminated device name (CPU model name on CPU). */
    char name[256];
    /* CUDA compute capability; 0 on CPU. */
    int32_t compute_capability_major;
    int32_t compute_capability_minor;
    /* Streaming multiprocessors on CUDA, logical cores on CPU. */
    int32_t multiprocessor_count;
    /* Device memory (CUDA) or physical memory (CPU), in bytes. */
    int64_t total_memory_bytes;
    /* Memory free at the time of the call, in bytes. */
    int64_t free_memory_bytes;
} mamba_device_info;

/* 1 when the backend for this device type was compiled into the library, else 0. */
MAMBA_API int32_t mamba_backend_available(mamba_device_type device_type);

/* Number of devices of a type: 1 for CPU; CUDA devices visible to the process (0 without a driver). */
MAMBA_API mamba_status mamba_device_count(mamba_device_type device_type, int32_t * count);

/* Fills *info for device `device_id` of a type. */
MAMBA_API mamba_status mamba_device_get_info(mamba_device_type device_type, int32_t device_id, mamba_device_info * info);

/* ------------------------------------------------------------------------------------------------ */
/* Contexts                                                                                         */
/* ------------------------------------------------------------------------------------------------ */

/* A context owns one device, a stream on it, library handles (cuBLAS) and a scratch workspace.
 * A context may be used by one thread at a time. */
typedef struct mamba_context mamba_context;

typedef struct mamba_context_params {
    mamba_device_type device_type;
    int32_t device_id;
    /* CPU worker threads; 0 uses every available core. Ignored on CUDA. */
    int32_t num_threads;
} mamba_context_params;

/* Parameters for a CPU context using every core. */
MAMBA_API mamba_context_params mamba_context_default_params(void);

MAMBA_API mamba_status mamba_context_create(const mamba_context_params * params, mamba_context ** out_context);

/* Waits for the context's pending work, then releases it. NULL is ignored. */
MAMBA_API void mamba_context_free(mamba_context * context);

/* The context's device as a DLPack device. */
MAMBA_API mamba_status mamba_context_get_device(const mamba_context * context, DLDevice * out_device);

/* Blocks until all work queued on the context has finished. Also reports (INVALID_ARGUMENT) bad data
 * that captured calls or graph replays met on the device since the last report, e.g. an embedding id
 * outside the table (whose row was written as zeros); copies to the host report it the same way. */
MAMBA_API mamba_status mamba_context_synchronize(mamba_context * context);

/* Makes work of this context run on an external cudaStream_t (e.g. one owned by PyTorch);
 * NULL restores the context's own stream. CPU contexts accept only NULL. On its own stream the library lets
 * a kernel start reading the inputs that the op just before does not write (weights, recurrent states)
 * while that op still runs (docs/architecture.md, early reads). It does so on a borrowed stream only when
 * that stream is another live context's own: the two contexts then count each other's work. On any other
 * stream every kernel waits for the previous one before its first load. Contexts that share a stream must
 * not queue work from two threads at the same time: the library's record of what the last op on the stream
 * writes is not locked, and the order of the two threads' work on the stream would be arbitrary anyway. */
MAMBA_API mamba_status mamba_context_set_stream(mamba_context * context, void * stream);

/* The cudaStream_t work is queued on (NULL on CPU). Work the caller queues on it directly (kernels, copies)
 * is not seen by the library: such work between two calls must not write anything the next call reads,
 * since that call's kernel may read its inputs before the work before it has finished (early reads), or the
 * context must be created with MAMBA_CUDA_EARLY_WEIGHTS=0. Events, and work that writes only memory the
 * following calls do not read, are fine; so is handing the stream to another context (set_stream). */
MAMBA_API mamba_status mamba_context_get_stream(const mamba_context * context, void ** out_stream);

/* ------------------------------------------------------------------------------------------------ */
/* Memory                                                                                           */
/* ------------------------------------------------------------------------------------------------ */

typedef enum mamba_memcpy_kind {
    MAMBA_MEMCPY_HOST_TO_HOST = 0,
    MAMBA_MEMCPY_HOST_TO_DEVICE = 1,
    MAMBA_MEMCPY_DEVICE_TO_HOST = 2,
    MAMBA_MEMCPY_DEVICE_TO_DEVICE = 3
} mamba_memcpy_kind;

/* Allocates `bytes` (> 0) on the context's device, aligned to 256 bytes. */
MAMBA_API mamba_status mamba_alloc(mamba_context * context, size_t bytes, void ** out_ptr);

/* Frees memory from mamba_alloc on the same context. NULL is ignored. */
MAMBA_API mamba_status mamba_free(mamba_context * context, void * ptr);

/* Allocates host memory suited to fast transfers with the context's device (page-locked on CUDA). */
MAMBA_API mamba_status mamba_alloc_host(mamba_context * context, size_t bytes, void ** out_ptr);

/* Frees memory from mamba_alloc_host on the same context. NULL is ignored. */
MAMBA_API mamba_status mamba_free_host(mamba_context * context, void * ptr);

/* Copies bytes in stream order. Copies to pageable host memory complete before the call returns;
 * otherwise synchronize before reading the destination. "Device" means the context's device. */
MAMBA_API mamba_status mamba_memcpy(mamba_context * context, void * dst, const void * src, size_t bytes, mamba_memcpy_kind kind);

/* Sets `bytes` bytes of device memory to `value` (low 8 bits), in stream order. */
MAMBA_API mamba_status mamba_memset(mamba_context * context, void * ptr, int32_t value, size_t bytes);

/* Copies src into dst (same shape, any strides) on the context's device, converting between float32,
 * float16 and bfloat16, or between int32 and int64. */
MAMBA_API mamba_status mamba_copy(mamba_context * context, const DLTensor * src, DLTensor * dst);

/* ------------------------------------------------------------------------------------------------ */
/* Cache hints                                                                                      */
/* ------------------------------------------------------------------------------------------------ */

/* Asks the device to bring [data, data + bytes) of the context's device memory into its L2 cache, without
 * blocking the context's stream: on CUDA a small kernel reads the range on a side stream forked from the
 * context's stream at this point, while the work queued after it runs. A hint only: no data changes, and
 * results never depend on it. Meant for decode, where the next weight can be read into L2 while small
 * kernels leave the memory idle (see docs/architecture.md).
 *  - Successive prefetches run one after another on the side stream. It is joined back into the context's
 *    stream before mamba_context_synchronize, copies to the host, mamba_event_record,
 *    mamba_context_set_stream, mamba_free / mamba_free_host, and at mamba_graph_capture_begin and
 *    mamba_graph_capture_end, so a captured graph contains the prefetch and ends joined. A prefetch queued
 *    before the caller began capturing a borrowed stream itself cannot be joined inside that capture: its
 *    join waits for the first of these points after the capture.
 *  - The environment variable MAMBA_CUDA_L2_PREFETCH, read when the context is created, picks how lines
 *    are fetched: "bulk" (the default), "prefetch", "prefetch_normal", "load", or "off" (the call does
 *    nothing); MAMBA_CUDA_L2_PREFETCH_BLOCKS the kernel's blocks (4, 8, 16, 32, 64 or 132; default 8 for
 *    bulk, 16 for the others). An unknown value makes mamba_context_create fail with INVALID_ARGUMENT.
 *  - Does nothing on a CPU context, for bytes == 0, and while the caller itself captures a borrowed stream
 *    (mamba_context_set_stream; the library could not join the side stream before that capture ends).
 *  - data must be NULL only with bytes == 0, and the range must stay allocated until the prefetch is joined.
 *    A caller that waits on the stream of mamba_context_get_stream itself (cudaStreamSynchronize) does not
 *    wait for the side stream: it calls mamba_context_synchronize or records a mamba event first. */
MAMBA_API mamba_status mamba_prefetch_l2(mamba_context * context, const void * data, size_t bytes);

/* ------------------------------------------------------------------------------------------------ */
/* Events                                                                                           */
/* ------------------------------------------------------------------------------------------------ */

/* A point in a context's stream, for timing and synchronization. */
typedef struct mamba_event mamba_event;

MAMBA_API mamba_status mamba_event_create(mamba_context * context, mamba_event ** out_event);

/* NULL is ignored. */
MAMBA_API void mamba_event_free(mamba_event * event);

/* Records the event at the current end of the context's stream. */
MAMBA_API mamba_status mamba_event_record(mamba_event * event);

/* Blocks until the recorded work has finished. */
MAMBA_API mamba_status mamba_event_synchronize(mamba_event * event);

/* Milliseconds between two recorded events of the same context. */
MAMBA_API mamba_status mamba_event_elapsed_ms(const mamba_event * start, const mamba_event * end, float * out_ms);

/* ------------------------------------------------------------------------------------------------ */
/* Graphs                                                                                           */
/* ------------------------------------------------------------------------------------------------ */

/* A recorded sequence of calls on a CUDA context that replays with one launch (a CUDA graph). It
 * replays the recorded kernels with the recorded arguments: the same tensors (device addresses) and the
 * same scalar values, reading whatever those tensors hold at replay time. A graph belongs to the context
 * it was captured on and must be freed before that context. */
typedef struct mamba_graph mamba_graph;

/* *out_supported = 1 when the context can capture graphs (CUDA), else 0 (CPU). */
MAMBA_API mamba_status mamba_graph_is_supported(const mamba_context * context, int32_t * out_supported);

/* Starts recording the calls made on this thread with this context instead of running them. While
 * recording: nothing synchronizes with the host (copies to the host, mamba_context_synchronize,
 * mamba_alloc/mamba_free and mamba_context_set_stream fail), the context's workspace cannot grow (run
 * the calls once before capturing), and data the device checks (embedding ids, sampling history) are
 * reported late: see mamba_context_synchronize. Any call failing on this thread while recording ends
 * the recording; mamba_graph_capture_end then reports why. UNSUPPORTED on a CPU context. */
MAMBA_API mamba_status mamba_graph_capture_begin(mamba_context * context);

/* Ends the recording started by mamba_graph_capture_begin and returns the graph in *out_graph. */
MAMBA_API mamba_status mamba_graph_capture_end(mamba_context * context, mamba_graph ** out_graph);

/* Queues one replay of the graph on the context's stream; returns without waiting. */
MAMBA_API mamba_status mamba_graph_launch(mamba_context * context, const mamba_graph * graph);

/* Waits for the graph's context, then releases the graph. NULL is ignored. */
MAMBA_API void mamba_graph_free(mamba_graph * graph);

/* ------------------------------------------------------------------------------------------------ */
/* Normalization                                                                                    */
/* ------------------------------------------------------------------------------------------------ */

/* RMSNorm with an optional fused residual add:
 *   r = x + residual (or r = x), y = r / sqrt(mean(r^2) + eps) * weight, residual_out = r. */
typedef struct mamba_rms_norm_args {
    /* (rows, hidden) */
    const DLTensor * x;
    /* Optional (rows, hidden), added to x before the norm. */
    const DLTensor * residual;
    /* (hidden) */
    const DLTensor * weight;
    /* (rows, hidden) */
    DLTensor * y;
    /* Optional (rows, hidden): the sum r; float32 keeps the residual stream in full precision.
     * May alias residual. */
    DLTensor * residual_out;
    float eps;
} mamba_rms_norm_args;

MAMBA_API mamba_status mamba_rms_norm(mamba_context * context, const mamba_rms_norm_args * args);

/* Gated RMSNorm of Mamba-2, normalized per group of `group_size` channels:
 *   norm_before_gate = 0: y = rmsnorm(x * silu(z)) * weight
 *   norm_before_gate = 1: y = rmsnorm(x) * weight * silu(z)
 * Without z it is a grouped RMSNorm. */
typedef struct mamba_gated_rms_norm_args {
    /* (rows, dim) */
    const DLTensor * x;
    /* Optional gate (rows, dim). */
    const DLTensor * z;
    /* (dim) */
    const DLTensor * weight;
    /* (rows, dim) */
    DLTensor * y;
    /* Channels per normalization group; 0 means dim. Must divide dim. */
    int64_t group_size;
    float eps;
    int32_t norm_before_gate;
} mamba_gated_rms_norm_args;

MAMBA_API mamba_status mamba_gated_rms_norm(mamba_context * context, const mamba_gated_rms_norm_args * args);

/* ------------------------------------------------------------------------------------------------ */
/* Convolution                                                                                      */
/* ------------------------------------------------------------------------------------------------ */

/* Causal depthwise conv1d over time: y[b,d,t] = act(bias[d] + sum_k weight[d,k] * x[b,d,t-(width-1)+k]),
 * where x before t=0 comes from initial_state (zeros when absent) and act is SiLU or identity. */
typedef struct mamba_causal_conv1d_args {
    /* (batch, dim, len) */
    const DLTensor * x;
    /* (dim, width), 2 <= width <= 8 */
    const DLTensor * weight;
    /* Optional (dim) */
    const DLTensor * bias;
    /* Optional (batch, dim, width - 1): the inputs preceding x, oldest first. */
    const DLTensor * initial_state;
    /* (batch, dim, len); must not overlap x */
    DLTensor * y;
    /* Optional (batch, dim, width - 1): the last width - 1 inputs, ready for mamba_causal_conv1d_update. */
    DLTensor * final_state;
    int32_t silu;
} mamba_causal_conv1d_args;

MAMBA_API mamba_status mamba_causal_conv1d(mamba_context * context, const mamba_causal_conv1d_args * args);

/* One decode step of the causal conv1d on a rolling state. */
typedef struct mamba_causal_conv1d_update_args {
    /* (batch, dim): the new input */
    const DLTensor * x;
    /* (batch, dim, width - 1), oldest first; shifted by one and appended with x, in place. */
    DLTensor * conv_state;
    /* (dim, width) */
    const DLTensor * weight;
    /* Optional (dim) */
    const DLTensor * bias;
    /* (batch, dim) */
    DLTensor * y;
    int32_t silu;
} mamba_causal_conv1d_update_args;

MAMBA_API mamba_status mamba_causal_conv1d_update(mamba_context * context, const mamba_causal_conv1d_update_args * args);

/* ------------------------------------------------------------------------------------------------ */
/* Mamba-1: selective scan                                                                          */
/* ------------------------------------------------------------------------------------------------ */

/* Selective scan of Mamba-1, per batch b, channel d, state n, step t:
 *   dt = delta + delta_bias, then softplus(dt) when delta_softplus
 *   h_t = exp(dt * A[d,n]) * h_{t-1} + dt * B_t[n] * u_t
 *   y_t = sum_n C_t[n] * h_t[n] + D[d] * u_t, then y_t *= silu(z_t) when z is given
 * B and C are input-dependent (batch, groups, dstate, len) with channels split evenly over groups,
 * or time-invariant (dim, dstate). */
typedef struct mamba_selective_scan_args {
    /* (batch, dim, len) */
    const DLTensor * u;
    /* (batch, dim, len) */
    const DLTensor * delta;
    /* (dim, dstate), float32, dstate <= MAMBA_MAX_DSTATE */
    const DLTensor * A;
    /* (batch, groups, dstate, len) or (dim, dstate) */
    const DLTensor * B;
    /* (batch, groups, dstate, len) or (dim, dstate) */
    const DLTensor * C;
    /* Optional (dim), float32 */
    const DLTensor * D;
    /* Optional (batch, dim, len) */
    const DLTensor * z;
    /* Optional (dim), float32 */
    const DLTensor * delta_bias;
    /* Optional (batch, dim, dstate), float32 */
    const DLTensor * initial_state;
    /* (batch, dim, len) */
    DLTensor * y;
    /* Optional (batch, dim, dstate), float32; may alias initial_state. */
    DLTensor * final_state;
    int32_t delta_softplus;
} mamba_selective_scan_args;

MAMBA_API mamba_status mamba_selective_scan(mamba_context * context, const mamba_selective_scan_args * args);

/* One decode step of the Mamba-1 recurrence, state updated in place, per batch b, channel d, state n:
 *   dt = dt[b, d], or sum_r dt_proj_weight[d, r] * dt[b, r] (float32) when dt_proj_weight is given
 *   dt = dt + dt_bias[d], softplus(dt) when dt_softplus
 *   h[n] = exp(dt * A[d, n]) * h[n] + dt * x[b, d] * B[b, g, n]
 *   y[b, d] = sum_n C[b, g, n] * h[n] + D[d] * x[b, d], then y *= silu(z[b, d]) when z is given
 * With dt_proj_weight the low-rank dt projection of Mamba-1 (dt_proj, without its bias: pass that as
 * dt_bias) is done in the same pass: it adds dim * dt_rank weight reads (dim * dt_rank * 2 bytes in
 * bfloat16, 1.6 MB for mamba-2.8b) and 2 * batch * dim * dt_rank FLOPs, and saves a separate kernel. */
typedef struct mamba_selective_state_update_args {
    /* (batch, dim, dstate), float32, read and written */
    DLTensor * state;
    /* (batch, dim) */
    const DLTensor * x;
    /* (batch, dim); (batch, dt_rank) when dt_proj_weight is given, any strides */
    const DLTensor * dt;
    /* (dim, dstate), float32 */
    const DLTensor * A;
    /* (batch, groups, dstate) */
    const DLTensor * B;
    /* (batch, groups, dstate) */
    const DLTensor * C;
    /* Optional (dim), float32 */
    const DLTensor * D;
    /* Optional (batch, dim) */
    const DLTensor * z;
    /* Optional (dim), float32 */
    const DLTensor * dt_bias;
    /* (batch, dim) */
    DLTensor * y;
    int32_t dt_softplus;
    /* Optional (dim, dt_rank), dt_rank >= 1: dt is then the low-rank input, projected per channel. */
    const DLTensor * dt_proj_weight;
} mamba_selective_state_update_args;

MAMBA_API mamba_status mamba_selective_state_update(mamba_context * context, const mamba_selective_state_update_args * args);

/* One decode step of a whole Mamba-1 mixer, per batch row, as these calls in order would make it:
 *   mamba_linear_conv1d_update(x, in_proj_weight, in_proj_bias -> xz; conv over xz[:, :inner] -> xc, SiLU)
 *   mamba_linear(xc, x_proj_weight -> xdbl)                               dt_low, B, C = xdbl's columns
 *   mamba_selective_state_update(ssm_state, xc, dt_low, A, B, C, D, z = xz[:, inner:], dt_bias -> y_inner,
 *                                dt_softplus, dt_proj_weight)
 *   mamba_linear(y_inner, out_proj_weight, out_proj_bias -> y)
 * with inner = conv_weight's first dimension, rank = dt_proj_weight's second, dstate = A's second.
 * Intermediate values are rounded to the scratch tensors' dtypes as those calls round them; the four
 * scratch tensors' contents are unspecified afterwards. Both backends run the calls above. On CUDA,
 * MAMBA_CUDA_MAMBA1_STEP=fused (read at each call; "separate" or unset: the calls above; "auto": the one
 * kernel where it can run, the calls above elsewhere) runs the step as one kernel on every SM, where it
 * can: batch 1, compute capability 9.0, every 16-bit tensor bfloat16 or every one float16, weights
 * contiguous and 16-byte aligned, hidden and inner multiples of 8 up to 5120, at most 128 channels of
 * inner an SM, rank a multiple of 8, rank + 2 dstate at most 1024, conv width 2 to 4, dstate a multiple
 * of 4 up to 128; elsewhere "fused" fails with UNSUPPORTED, naming the reason. (That kernel is not yet
 * faster than the calls it replaces.) Outputs (conv_state, ssm_state, y, the scratch tensors) must not overlap any input
 * or each other. */
typedef struct mamba_mamba1_step_args {
    /* (batch, hidden): the normalized hidden state, or with pre_norm_weight the input of the block's norm */
    const DLTensor * x;
    /* (2 * inner, hidden), last axis contiguous */
    const DLTensor * in_proj_weight;
    /* Optional (2 * inner) */
    const DLTensor * in_proj_bias;
    /* (batch, inner, width - 1), oldest first, updated in place */
    DLTensor * conv_state;
    /* (inner, width) */
    const DLTensor * conv_weight;
    /* Optional (inner) */
    const DLTensor * conv_bias;
    /* (rank + 2 * dstate, inner), last axis contiguous */
    const DLTensor * x_proj_weight;
    /* (inner, rank) */
    const DLTensor * dt_proj_weight;
    /* Optional (inner), float32 */
    const DLTensor * dt_bias;
    /* (inner, dstate), float32 */
    const DLTensor * A;
    /* Optional (inner), float32 */
    const DLTensor * D;
    /* (batch, inner, dstate), float32, updated in place */
    DLTensor * ssm_state;
    /* (hidden, inner), last axis contiguous */
    const DLTensor * out_proj_weight;
    /* Optional (hidden) */
    const DLTensor * out_proj_bias;
    /* (batch, hidden) */
    DLTensor * y;
    /* Scratch: (batch, 2 * inner), (batch, inner), (batch, rank + 2 * dstate), (batch, inner) */
    DLTensor * xz;
    DLTensor * xc;
    DLTensor * xdbl;
    DLTensor * y_inner;
    /* Optional: the residual block's pre-norm, run before the mixer as
     *   mamba_rms_norm(x, residual, pre_norm_weight -> pre_normed, residual_out, pre_norm_eps)
     * with pre_normed then the mixer's input in place of x. x is then the previous block's output (or the
     * embedding), residual the residual stream (optional, (batch, hidden), any float dtype), and
     * residual_out (batch, hidden), required with pre_norm_weight, receives x + residual; pre_normed
     * (batch, hidden), also required with it, is scratch. residual_out overlaps no input, residual
     * included: a model alternates two buffers for the stream. On CUDA at batch 1 the norm runs inside
     * in_proj's GEMV where it can: in_proj reads x and residual itself, multiplies their sum by
     * pre_norm_weight as it stages it and scales its sums by the inverse root mean square it adds up on
     * the way, and one block stores residual_out; pre_normed is then not written, and the mixer's input is
     * not rounded to its dtype (results differ from the calls above by that rounding). That needs batch 1,
     * in_proj's conv step in its GEMV (16-byte weight rows, a filter at most 4 wide), x and
     * pre_norm_weight of in_proj_weight's dtype, residual (if any) and residual_out float32, all four
     * contiguous from 16-byte boundaries, and hidden a multiple of 4. MAMBA_CUDA_STEP_PRE_NORM (read at
     * each call): "auto" or unset folds it where it can, "fused" there and fails with UNSUPPORTED, naming
     * the reason, elsewhere, "separate" runs mamba_rms_norm first. */
    const DLTensor * pre_norm_weight;
    const DLTensor * residual;
    DLTensor * residual_out;
    DLTensor * pre_normed;
    float pre_norm_eps;
} mamba_mamba1_step_args;

MAMBA_API mamba_status mamba_mamba1_step(mamba_context * context, const mamba_mamba1_step_args * args);

/* ------------------------------------------------------------------------------------------------ */
/* Mamba-2: SSD (state space duality)                                                               */
/* ------------------------------------------------------------------------------------------------ */

/* SSD chunked scan of Mamba-2, per batch b, head h, channel p, state n, step t, group g = h / (heads / groups):
 *   dt = dt + dt_bias, softplus(dt) when dt_softplus, then clamped to [dt_min, dt_max]
 *   H_t = exp(dt * A[h]) * H_{t-1} + dt * x_t[p] * B_t[g, n]
 *   y_t[p] = sum_n C_t[g, n] * H_t[p, n] + D * x_t[p], then y *= silu(z) when z is given
 * computed in chunks of chunk_size steps. With cu_seqlens (batch must be 1) the sequence axis packs
 * several sequences; state restarts at each boundary and states are per sequence. */
typedef struct mamba_ssd_args {
    /* (batch, len, heads, headdim) */
    const DLTensor * x;
    /* (batch, len, heads) */
    const DLTensor * dt;
    /* (heads), float32 */
    const DLTensor * A;
    /* (batch, len, groups, dstate) */
    const DLTensor * B;
    /* (batch, len, groups, dstate) */
    const DLTensor * C;
    /* Optional (heads) or (heads, headdim), float32 */
    const DLTensor * D;
    /* Optional (batch, len, heads, headdim) */
    const DLTensor * z;
    /* Optional (heads), float32 */
    const DLTensor * dt_bias;
    /* Optional (nseq, heads, headdim, dstate), float32; nseq = batch, or sequences in cu_seqlens */
    const DLTensor * initial_states;
    /* Optional (nseq + 1), int32 or int64, on the context's device: 0 = c_0 < c_1 < ... < c_nseq = len */
    const DLTensor * cu_seqlens;
    /* (batch, len, heads, headdim) */
    DLTensor * y;
    /* Optional (nseq, heads, headdim, dstate), float32; may alias initial_states. */
    DLTensor * final_states;
    /* Steps per chunk (a power of two, 16..512); 0 selects 256. */
    int64_t chunk_size;
    /* Clamp of dt after bias and softplus; use 0 and INFINITY for none. */
    float dt_min;
    float dt_max;
    int32_t dt_softplus;
} mamba_ssd_args;

MAMBA_API mamba_status mamba_ssd(mamba_context * context, const mamba_ssd_args * args);

/* One decode step of the Mamba-2 recurrence, state updated in place. */
typedef struct mamba_ssd_state_update_args {
    /* (batch, heads, headdim, dstate), float32, read and written */
    DLTensor * state;
    /* (batch, heads, headdim) */
    const DLTensor * x;
    /* (batch, heads) */
    const DLTensor * dt;
    /* (heads), float32 */
    const DLTensor * A;
    /* (batch, groups, dstate) */
    const DLTensor * B;
    /* (batch, groups, dstate) */
    const DLTensor * C;
    /* Optional (heads) or (heads, headdim), float32 */
    const DLTensor * D;
    /* Optional (batch, heads, headdim) */
    const DLTensor * z;
    /* Optional (heads), float32 */
    const DLTensor * dt_bias;
    /* (batch, heads, headdim) */
    DLTensor * y;
    float dt_min;
    float dt_max;
    int32_t dt_softplus;
} mamba_ssd_state_update_args;

MAMBA_API mamba_status mamba_ssd_state_update(mamba_context * context, const mamba_ssd_state_update_args * args);

/* One decode step of a whole Mamba-2 mixer, per batch row, as these calls in order would make it:
 *   mamba_linear_conv1d_update(x, in_proj_weight, in_proj_bias -> proj; conv over xBC -> xbc, SiLU)
 *       proj's columns: z [0, inner), xBC [inner, inner + conv_dim), dt [inner + conv_dim, + heads);
 *       xbc's: x [0, inner), B [inner, + groups * dstate), C after B
 *   mamba_ssd_state_update(ssm_state, x, dt, A, B, C, D, dt_bias -> y_inner, dt_min, dt_max, dt_softplus = 1)
 *   mamba_gated_rms_norm(y_inner, z, norm_weight -> normed, norm_group_size, eps, norm_before_gate)
 *   mamba_linear(normed, out_proj_weight, out_proj_bias -> y)
 * with inner = norm_weight's length, heads = A's, headdim = inner / heads, dstate = ssm_state's last
 * dimension, conv_dim = conv_weight's first and groups = (conv_dim - inner) / (2 * dstate). Intermediate
 * values are rounded to the scratch tensors' dtypes as those calls round them; the four scratch tensors'
 * contents are unspecified afterwards. The CPU backend runs the calls above. On CUDA the norm runs inside
 * the other kernels where it can: the state update stores y_inner gated and times norm_weight, with each
 * block's sum of squares in normed's memory, and out_proj's GEMV scales each row by the root mean square
 * those sums give, so the step is three kernels, not four, and the norm's scale is applied to out_proj's
 * sums instead of to each of its inputs (the results differ from the calls above by rounding). That needs
 * one norm group (norm_group_size 0 or inner), 1 to 4 rows that out_proj's GEMV takes (at 2 rows or more,
 * 16-bit out_proj weights with fewer than 2048 outputs), an out_proj weight that allows 16-byte loads, an
 * ssm_state with 16-byte aligned rows and dstate a multiple of 4, batch * heads * ceil(headdim / 64) at
 * most 512 and a contiguous normed; MAMBA_CUDA_MAMBA2_STEP (read at each call) = "auto" or unset takes the
 * three kernels where they can run at batch 1 (beyond one row they measured slower), "fused" wherever they
 * can run and fails with UNSUPPORTED, naming the reason, elsewhere, and "separate" runs the calls above.
 * Outputs (conv_state, ssm_state, y, the scratch tensors) must not overlap any input or each other. */
typedef struct mamba_mamba2_step_args {
    /* (batch, hidden): the normalized hidden state, or with pre_norm_weight the input of the block's norm */
    const DLTensor * x;
    /* (2 * inner + 2 * groups * dstate + heads, hidden), last axis contiguous */
    const DLTensor * in_proj_weight;
    /* Optional (2 * inner + 2 * groups * dstate + heads) */
    const DLTensor * in_proj_bias;
    /* (batch, conv_dim, width - 1), oldest first, updated in place */
    DLTensor * conv_state;
    /* (conv_dim, width) */
    const DLTensor * conv_weight;
    /* Optional (conv_dim) */
    const DLTensor * conv_bias;
    /* Optional (heads), float32 */
    const DLTensor * dt_bias;
    /* (heads), float32 */
    const DLTensor * A;
    /* Optional (heads) or (heads, headdim), float32 */
    const DLTensor * D;
    /* (batch, heads, headdim, dstate), float32, updated in place */
    DLTensor * ssm_state;
    /* (inner) */
    const DLTensor * norm_weight;
    /* (hidden, inner), last axis contiguous */
    const DLTensor * out_proj_weight;
    /* Optional (hidden) */
    const DLTensor * out_proj_bias;
    /* (batch, hidden) */
    DLTensor * y;
    /* Scratch: (batch, 2 * inner + 2 * groups * dstate + heads), (batch, conv_dim), (batch, inner), (batch, inner) */
    DLTensor * proj;
    DLTensor * xbc;
    DLTensor * y_inner;
    DLTensor * normed;
    /* The gated norm's channels per group (0: inner), epsilon and order (as mamba_gated_rms_norm's). */
    int64_t norm_group_size;
    float eps;
    int32_t norm_before_gate;
    /* Clamp of dt after bias and softplus; use 0 and INFINITY for none. */
    float dt_min;
    float dt_max;
    /* Optional: the residual block's pre-norm, run before the mixer as
     *   mamba_rms_norm(x, residual, pre_norm_weight -> pre_normed, residual_out, pre_norm_eps)
     * with pre_normed then the mixer's input in place of x. x is then the previous block's output (or the
     * embedding), residual the residual stream (optional, (batch, hidden), any float dtype), and
     * residual_out (batch, hidden), required with pre_norm_weight, receives x + residual; pre_normed
     * (batch, hidden), also required with it, is scratch. residual_out overlaps no input, residual
     * included: a model alternates two buffers for the stream. On CUDA at batch 1 the norm runs inside
     * in_proj's GEMV where it can: in_proj reads x and residual itself, multiplies their sum by
     * pre_norm_weight as it stages it and scales its sums by the inverse root mean square it adds up on
     * the way, and one block stores residual_out; pre_normed is then not written, and the mixer's input is
     * not rounded to its dtype (results differ from the calls above by that rounding). That needs batch 1,
     * in_proj's conv step in its GEMV (16-byte weight rows, a filter at most 4 wide), x and
     * pre_norm_weight of in_proj_weight's dtype, residual (if any) and residual_out float32, all four
     * contiguous from 16-byte boundaries, and hidden a multiple of 4. MAMBA_CUDA_STEP_PRE_NORM (read at
     * each call): "auto" or unset folds it where it can, "fused" there and fails with UNSUPPORTED, naming
     * the reason, elsewhere, "separate" runs mamba_rms_norm first. */
    const DLTensor * pre_norm_weight;
    const DLTensor * residual;
    DLTensor * residual_out;
    DLTensor * pre_normed;
    float pre_norm_eps;
} mamba_mamba2_step_args;

MAMBA_API mamba_status mamba_mamba2_step(mamba_context * context, const mamba_mamba2_step_args * args);

/* ------------------------------------------------------------------------------------------------ */
/* Dense layers                                                                                     */
/* ------------------------------------------------------------------------------------------------ */

/* y = x W^T + bias with float32 accumulation. Rows of x and y may be strided; their last axis must be
 * contiguous. W may be float32, float16 or bfloat16 independently of x. */
typedef struct mamba_linear_args {
    /* (rows, in_features) */
    const DLTensor * x;
    /* (out_features, in_features), last axis contiguous */
    const DLTensor * weight;
    /* Optional (out_features) */
    const DLTensor * bias;
    /* (rows, out_features) */
    DLTensor * y;
} mamba_linear_args;

MAMBA_API mamba_status mamba_linear(mamba_context * context, const mamba_linear_args * args);

/* y = softplus(x W^T + bias): mamba_linear with the softplus applied to each float32 sum (bias included)
 * before y is rounded to its dtype. Mamba-1's dt projection: with it the selective scan takes dt as given
 * (no delta_bias, delta_softplus 0), and dt is rounded once, after the softplus. The softplus is
 * log(1 + e^v), computed without overflow for any v. Arguments as mamba_linear's. */
MAMBA_API mamba_status mamba_linear_softplus(mamba_context * context, const mamba_linear_args * args);

/* A decode step's input projection with its conv step: mamba_linear (x, weight, bias -> y), then one
 * mamba_causal_conv1d_update step whose input is y's columns [conv_offset, conv_offset + dim), dim being
 * conv_weight's first dimension (conv_state, conv_weight, conv_bias, silu -> conv_y). y is written in full,
 * as mamba_linear writes it, and the conv step reads those columns as y holds them (rounded to y's dtype),
 * so the results are those of the two calls. On CUDA, with 1 to 16 rows, at least one input feature, a
 * filter of width 4 or less and a weight whose start and row stride allow 16-byte loads, it is one kernel:
 * the projection's GEMV runs the conv step on its outputs in that range before it stores them; otherwise
 * (or where mamba_linear gives the rows to cuBLAS: 2 to 16 rows of a 16-bit weight with at least 2048
 * outputs, or 8 to 16 rows of any; or with
 * MAMBA_CUDA_GEMV_VARIANT=warp or gemm, or MAMBA_CUDA_LINEAR_CONV=separate) the two ops run one after the
 * other. conv_y and conv_state must not overlap x, weight, bias, y, conv_weight, conv_bias or each other,
 * nor y overlap conv_weight or conv_bias. */
typedef struct mamba_linear_conv1d_update_args {
    /* (rows, in_features) */
    const DLTensor * x;
    /* (out_features, in_features), last axis contiguous */
    const DLTensor * weight;
    /* Optional (out_features) */
    const DLTensor * bias;
    /* (rows, out_features) */
    DLTensor * y;
    /* First column of y that enters the conv; conv_offset + dim <= out_features */
    int64_t conv_offset;
    /* (rows, dim, width - 1), oldest first; shifted by one and appended with the new input, in place */
    DLTensor * conv_state;
    /* (dim, width) */
    const DLTensor * conv_weight;
    /* Optional (dim) */
    const DLTensor * conv_bias;
    /* (rows, dim) */
    DLTensor * conv_y;
    int32_t silu;
} mamba_linear_conv1d_update_args;

MAMBA_API mamba_status mamba_linear_conv1d_update(mamba_context * context, const mamba_linear_conv1d_update_args * args);

/* y[i, :] = table[ids[i], :]; an id outside [0, vocab) is an error. */
typedef struct mamba_embedding_args {
    /* (count), int32 or int64 */
    const DLTensor * ids;
    /* (vocab, hidden) */
    const DLTensor * table;
    /* (count, hidden) */
    DLTensor * y;
} mamba_embedding_args;

MAMBA_API mamba_status mamba_embedding(mamba_context * context, const mamba_embedding_args * args);

/* ------------------------------------------------------------------------------------------------ */
/* Probabilities and sampling                                                                       */
/* ------------------------------------------------------------------------------------------------ */

/* Softmax (or log-softmax when log_softmax != 0) over the last axis of a (rows, n) tensor. */
MAMBA_API mamba_status mamba_softmax(mamba_context * context, const DLTensor * x, DLTensor * y, int32_t log_softmax);

/* How the next token is drawn from logits. Filters apply in this order: repetition penalty,
 * temperature, top-k, top-p, min-p. */
typedef struct mamba_sampling_params {
    /* <= 0 picks the most likely token (greedy); the filters below then do not apply. */
    float temperature;
    /* Keep the k most likely tokens; 0 keeps all. */
    int32_t top_k;
    /* Keep the smallest set of most likely tokens whose probability reaches top_p; 1 keeps all. */
    float top_p;
    /* Drop tokens less likely than min_p times the most likely one; 0 keeps all. */
    float min_p;
    /* Divide positive (multiply negative) logits of tokens in `history` by this; 1 is off. */
    float repetition_penalty;
    /* With the step and row, the only source of randomness: equal inputs draw equal tokens. */
    uint64_t seed;
} mamba_sampling_params;

/* Neutral parameters: greedy, no filters, seed 0. */
MAMBA_API mamba_sampling_params mamba_sampling_default_params(void);

typedef struct mamba_sample_args {
    /* (batch, vocab); not modified */
    const DLTensor * logits;
    /* Optional (batch, history_len), int32 or int64: tokens seen so far for the repetition penalty;
     * negative entries are ignored. */
    const DLTensor * history;
    /* (batch), int32 or int64: the drawn tokens */
    DLTensor * tokens;
    /* Counter mixed with the seed, usually the position of the token being drawn. */
    uint64_t step;
    mamba_sampling_params params;
} mamba_sample_args;

MAMBA_API mamba_status mamba_sample(mamba_context * context, const mamba_sample_args * args);

#ifdef __cplusplus
}
#endif

#endif /* MAMBA_H */
