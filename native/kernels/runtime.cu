// CUDA runtime hooks of the device-independent code: devices, contexts (stream, cuBLAS handles,
// workspace), memory and events. Every CUDA error becomes a mamba::Error with a device status.
#include <cstring>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "common.cuh"
#include "core/env_choice.h"

namespace mamba::cuda {

void fail_cuda(cudaError_t err, const char * what, const char * file, int line) {
    (void)cudaGetLastError();  // clear a sticky-free error so the next call starts clean
    const mamba_status status = err == cudaErrorMemoryAllocation ? MAMBA_STATUS_OUT_OF_MEMORY
                                : (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver) ? MAMBA_STATUS_BACKEND_UNAVAILABLE
                                : err == cudaErrorInvalidValue ? MAMBA_STATUS_INVALID_ARGUMENT
                                                               : MAMBA_STATUS_DEVICE_ERROR;
    const char * base = std::strrchr(file, '/');
    fail(status, "CUDA error ", cudaGetErrorName(err), " (", cudaGetErrorString(err), ") in ", what, " at ", base ? base + 1 : file, ":", line);
}

void fail_cublas(cublasStatus_t st, const char * what, const char * file, int line) {
    const char * base = std::strrchr(file, '/');
    const mamba_status status = st == CUBLAS_STATUS_ALLOC_FAILED ? MAMBA_STATUS_OUT_OF_MEMORY
                                : st == CUBLAS_STATUS_NOT_SUPPORTED ? MAMBA_STATUS_UNSUPPORTED
                                                                    : MAMBA_STATUS_DEVICE_ERROR;
    fail(status, "cuBLAS error ", int(st), " in ", what, " at ", base ? base + 1 : file, ":", line);
}

namespace {

// Makes the context's device current for the calling thread (contexts may be used from any thread).
void use_device(const mamba_context & ctx) { MAMBA_CUDA_CHECK(cudaSetDevice(ctx.device_id)); }

constexpr size_t kCublasWorkspaceBytes = size_t(32) << 20;

}  // namespace

int32_t device_count() {
    int n = 0;
    const cudaError_t err = cudaGetDeviceCount(&n);
    if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver) {
        (void)cudaGetLastError();
        return 0;
    }
    MAMBA_CUDA_CHECK(err);
    return n;
}

static void check_device_id(int32_t device_id) {
    const int32_t n = device_count();
    if (n == 0) fail(MAMBA_STATUS_BACKEND_UNAVAILABLE, "no CUDA device is present");
    if (device_id < 0 || device_id >= n) fail_argument("CUDA device ", device_id, " does not exist (", n, " present)");
}

void device_info(int32_t device_id, mamba_device_info & info) {
    check_device_id(device_id);
    cudaDeviceProp prop{};
    MAMBA_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_id));
    std::strncpy(info.name, prop.name, sizeof(info.name) - 1);
    info.compute_capability_major = prop.major;
    info.compute_capability_minor = prop.minor;
    info.multiprocessor_count = prop.multiProcessorCount;
    int previous = 0;
    MAMBA_CUDA_CHECK(cudaGetDevice(&previous));
    MAMBA_CUDA_CHECK(cudaSetDevice(device_id));
    size_t free_b = 0, total_b = 0;
    const cudaError_t err = cudaMemGetInfo(&free_b, &total_b);
    cudaSetDevice(previous);
    MAMBA_CUDA_CHECK(err);
    info.total_memory_bytes = int64_t(total_b);
    info.free_memory_bytes = int64_t(free_b);
}

// Its attributes tell which code the device runs (every kernel file is built for the same architectures).
__global__ void pdl_probe_kernel() {}

// The context's switches, read once when it is created: MAMBA_CUDA_PDL ("0": no PDL; "1" or unset: PDL
// where the device and the code allow it), MAMBA_CUDA_EARLY_WEIGHTS ("0": no early weight reads; "1" or
// unset: where launch.cuh allows them) and MAMBA_CUDA_TRACE ("1": time every kernel; "0" or unset: not).
// Any other value is an INVALID_ARGUMENT error.
constexpr EnvChoice<bool> kSwitch[] = {{"0", false}, {"1", true}};

// The own streams of the live CUDA contexts and their tracks (common.cuh, StreamTrack), so that a context
// borrowing another's own stream (mamba_context_set_stream) shares what that context knows of it.
namespace {
std::mutex g_tracks_mutex;
std::unordered_map<cudaStream_t, std::weak_ptr<StreamTrack>> g_tracks;

std::shared_ptr<StreamTrack> track_of(cudaStream_t stream) {
    const std::lock_guard<std::mutex> lock(g_tracks_mutex);
    const auto it = g_tracks.find(stream);
    return it == g_tracks.end() ? nullptr : it->second.lock();
}
}  // namespace

void context_init(mamba_context & ctx) {
    check_device_id(ctx.device_id);
    // Before anything is allocated, so that a bad value leaves nothing to free.
    const bool pdl_allowed = env_choice("MAMBA_CUDA_PDL", kSwitch, true);
    const bool early_weights = env_choice("MAMBA_CUDA_EARLY_WEIGHTS", kSwitch, true);
    const bool trace = env_choice("MAMBA_CUDA_TRACE", kSwitch, false);
    use_device(ctx);
    auto state = std::make_unique<CudaState>();
    read_l2_prefetch_settings(*state);
    cudaDeviceProp prop{};
    MAMBA_CUDA_CHECK(cudaGetDeviceProperties(&prop, ctx.device_id));
    if (prop.major < 8)
        fail(MAMBA_STATUS_UNSUPPORTED, "CUDA device ", ctx.device_id, " (", prop.name, ") has compute capability ", prop.major, ".", prop.minor,
             "; libmamba needs 8.0 or newer");
    state->multiprocessors = prop.multiProcessorCount;
    state->max_smem_per_block = int(prop.sharedMemPerBlockOptin);
    state->cc_major = prop.major;
    state->cc_minor = prop.minor;
    // PDL needs the device (9.0+) and kernels compiled for it: code JIT-compiled from older PTX has no
    // griddepcontrol.wait, so its launches must not overlap their predecessors.
    cudaFuncAttributes probe{};
    const bool pdl_code = cudaFuncGetAttributes(&probe, pdl_probe_kernel) == cudaSuccess && probe.ptxVersion >= 90;
    (void)cudaGetLastError();
    state->pdl = prop.major >= 9 && pdl_code && pdl_allowed;
    state->early_weights = early_weights;
    state->trace = trace;
    ctx.cuda = state.get();
    try {
        MAMBA_CUDA_CHECK(cudaStreamCreateWithFlags(&state->own_stream, cudaStreamNonBlocking));
        state->stream = state->own_stream;
        state->own_track = std::make_shared<StreamTrack>();
        state->track = state->own_track;
        {
            const std::lock_guard<std::mutex> lock(g_tracks_mutex);
            g_tracks[state->own_stream] = state->own_track;
        }
        MAMBA_CUBLAS_CHECK(cublasCreate(&state->cublas));
        MAMBA_CUBLAS_CHECK(cublasLtCreate(&state->cublaslt));
        MAMBA_CUDA_CHECK(cudaMalloc(&state->cublas_workspace, kCublasWorkspaceBytes));
        state->cublas_workspace_bytes = kCublasWorkspaceBytes;
        MAMBA_CUBLAS_CHECK(cublasSetStream(state->cublas, state->stream));
        MAMBA_CUBLAS_CHECK(cublasSetWorkspace(state->cublas, state->cublas_workspace, state->cublas_workspace_bytes));
        MAMBA_CUDA_CHECK(cudaMalloc(&state->error_index, sizeof(unsigned long long)));
        MAMBA_CUDA_CHECK(cudaMemsetAsync(state->error_index, 0xff, sizeof(unsigned long long), state->stream));
        MAMBA_CUDA_CHECK(cudaMalloc(&state->deferred_error, sizeof(unsigned long long)));
        MAMBA_CUDA_CHECK(cudaMemsetAsync(state->deferred_error, 0xff, sizeof(unsigned long long), state->stream));
        MAMBA_CUDA_CHECK(cudaMallocHost(&state->deferred_error_host, sizeof(unsigned long long)));
        // The barrier count, then the exchange slots: 1024 values from each SM and 1024 sums (8 bytes
        // each, ~1 MB on 132 SMs).
        state->grid_exchange_slots = state->cc_major >= 9 ? size_t(1024) * size_t(state->multiprocessors + 1) : 0;
        const size_t exchange_bytes = (1 + state->grid_exchange_slots) * sizeof(unsigned long long);
        MAMBA_CUDA_CHECK(cudaMalloc(&state->grid_barrier, exchange_bytes));
        MAMBA_CUDA_CHECK(cudaMemsetAsync(state->grid_barrier, 0, exchange_bytes, state->stream));
        if (state->grid_exchange_slots > 0) state->grid_exchange = state->grid_barrier + 1;
        MAMBA_CUDA_CHECK(cudaMalloc(&state->xproj_sums, CudaState::kXProjSumsBytes));
        MAMBA_CUDA_CHECK(cudaMemsetAsync(state->xproj_sums, 0, CudaState::kXProjSumsBytes, state->stream));
        MAMBA_CUDA_CHECK(cudaMalloc(&state->xproj_partials, CudaState::kXProjPartialsCapacity * sizeof(double)));
        create_l2_prefetch_stream(*state);
    } catch (...) {
        context_destroy(ctx);
        state.release();
        throw;
    }
    state.release();
}

void context_destroy(mamba_context & ctx) noexcept {
    CudaState * s = ctx.cuda;
    if (s == nullptr) return;
    cudaSetDevice(ctx.device_id);
    graph_capture_abandon(ctx);
    if (s->stream) cudaStreamSynchronize(s->stream);
    destroy_l2_prefetch_stream(*s);
    if (s->cublas) cublasDestroy(s->cublas);
    if (s->cublaslt) cublasLtDestroy(s->cublaslt);
    if (s->workspace) cudaFree(s->workspace);
    if (s->cublas_workspace) cudaFree(s->cublas_workspace);
    if (s->error_index) cudaFree(s->error_index);
    if (s->deferred_error) cudaFree(s->deferred_error);
    if (s->deferred_error_host) cudaFreeHost(s->deferred_error_host);
    if (s->grid_barrier) cudaFree(s->grid_barrier);
    if (s->xproj_sums) cudaFree(s->xproj_sums);
    if (s->xproj_partials) cudaFree(s->xproj_partials);
    for (void * p : s->retired_workspaces) cudaFree(p);
    if (s->own_stream) {
        const std::lock_guard<std::mutex> lock(g_tracks_mutex);
        g_tracks.erase(s->own_stream);
    }
    if (s->own_stream) cudaStreamDestroy(s->own_stream);
    (void)cudaGetLastError();
    delete s;
    ctx.cuda = nullptr;
}

// Host-synchronizing calls cannot be recorded; say so instead of letting CUDA invalidate the capture.
static void refuse_while_capturing(const mamba_context & ctx, const char * what) {
    if (stream_capturing(ctx))
        fail(MAMBA_STATUS_INVALID_ARGUMENT, what, " waits for the device or allocates, which is not allowed while the context's stream is captured into a graph");
}

void synchronize(mamba_context & ctx) {
    use_device(ctx);
    refuse_while_capturing(ctx, "synchronizing");
    join_l2_prefetch(ctx);
    queue_deferred_error_read(ctx);
    MAMBA_CUDA_CHECK(cudaStreamSynchronize(ctx.cuda->stream));
    report_deferred_error(ctx);
}

void set_stream(mamba_context & ctx, void * stream) {
    use_device(ctx);
    CudaState & s = *ctx.cuda;
    if (s.capturing) fail_argument("the stream cannot change while a graph is being captured");
    join_l2_prefetch(ctx);  // into the stream it was forked from (the current one, before it changes)
    s.stream = stream ? static_cast<cudaStream_t>(stream) : s.own_stream;
    // Early reads follow the stream: its own track, a lending context's, or none (launch.cuh).
    s.track = s.stream == s.own_stream ? s.own_track : track_of(s.stream);
    MAMBA_CUBLAS_CHECK(cublasSetStream(s.cublas, s.stream));
    // cublasSetStream returns cuBLAS to its own workspace pool, which it may grow with cudaMalloc (not
    // allowed during graph capture); keep it on the context's fixed buffer.
    MAMBA_CUBLAS_CHECK(cublasSetWorkspace(s.cublas, s.cublas_workspace, s.cublas_workspace_bytes));
}

void * get_stream(const mamba_context & ctx) { return ctx.cuda->stream; }

void * alloc(mamba_context & ctx, size_t bytes) {
    use_device(ctx);
    refuse_while_capturing(ctx, "allocating device memory");
    void * p = nullptr;
    const cudaError_t err = cudaMalloc(&p, bytes);
    if (err == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        fail(MAMBA_STATUS_OUT_OF_MEMORY, "could not allocate ", bytes, " bytes on CUDA device ", ctx.device_id);
    }
    MAMBA_CUDA_CHECK(err);
    return p;
}

void free(mamba_context & ctx, void * ptr) {
    use_device(ctx);
    refuse_while_capturing(ctx, "freeing device memory");
    join_l2_prefetch(ctx);  // a prefetch may still read the memory
    // Memory still in use by queued work must not be released under it.
    MAMBA_CUDA_CHECK(cudaStreamSynchronize(ctx.cuda->stream));
    MAMBA_CUDA_CHECK(cudaFree(ptr));
}

void * alloc_host(mamba_context & ctx, size_t bytes) {
    use_device(ctx);
    refuse_while_capturing(ctx, "allocating host memory");
    void * p = nullptr;
    const cudaError_t err = cudaMallocHost(&p, bytes);
    if (err == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        fail(MAMBA_STATUS_OUT_OF_MEMORY, "could not allocate ", bytes, " bytes of page-locked host memory");
    }
    MAMBA_CUDA_CHECK(err);
    return p;
}

void free_host(mamba_context & ctx, void * ptr) {
    use_device(ctx);
    refuse_while_capturing(ctx, "freeing host memory");
    join_l2_prefetch(ctx);
    MAMBA_CUDA_CHECK(cudaStreamSynchronize(ctx.cuda->stream));
    MAMBA_CUDA_CHECK(cudaFreeHost(ptr));
}

void memcpy(mamba_context & ctx, void * dst, const void * src, size_t bytes, mamba_memcpy_kind kind) {
    use_device(ctx);
    cudaMemcpyKind k = cudaMemcpyDefault;
    switch (kind) {
        case MAMBA_MEMCPY_HOST_TO_HOST: k = cudaMemcpyHostToHost; break;
        case MAMBA_MEMCPY_HOST_TO_DEVICE: k = cudaMemcpyHostToDevice; break;
        case MAMBA_MEMCPY_DEVICE_TO_HOST: k = cudaMemcpyDeviceToHost; break;
        case MAMBA_MEMCPY_DEVICE_TO_DEVICE: k = cudaMemcpyDeviceToDevice; break;
    }
    cudaStream_t st = ctx.cuda->stream;
    const bool capturing = stream_capturing(ctx);
    if (capturing && kind == MAMBA_MEMCPY_HOST_TO_HOST) fail_argument("a host-to-host copy cannot be captured into a graph");
    if (capturing && kind == MAMBA_MEMCPY_DEVICE_TO_HOST)
        fail_argument("a copy to the host cannot be captured into a graph: copy after mamba_graph_launch instead");
    if (kind == MAMBA_MEMCPY_HOST_TO_DEVICE) {
        // The source may be pageable memory the caller reuses right away: then wait for the copy.
        cudaPointerAttributes attr{};
        const bool pinned = cudaPointerGetAttributes(&attr, src) == cudaSuccess && attr.type == cudaMemoryTypeHost;
        if (!pinned) (void)cudaGetLastError();
        if (!pinned && capturing) fail_argument("a copy from pageable host memory cannot be captured into a graph; use mamba_alloc_host memory");
        count_queued(ctx);
        MAMBA_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, k, st));
        if (!pinned) MAMBA_CUDA_CHECK(cudaStreamSynchronize(st));
        return;
    }
    if (kind == MAMBA_MEMCPY_DEVICE_TO_HOST || kind == MAMBA_MEMCPY_HOST_TO_HOST) join_l2_prefetch(ctx);  // before the host waits
    count_queued(ctx);
    MAMBA_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, k, st));
    if (kind == MAMBA_MEMCPY_DEVICE_TO_HOST || kind == MAMBA_MEMCPY_HOST_TO_HOST) {
        // The header promises that copies into pageable memory are complete on return; a host
        // destination may be pageable, so wait for every device-to-host copy. The copy is done even
        // when captured work has reported bad data, which is reported after it.
        queue_deferred_error_read(ctx);
        MAMBA_CUDA_CHECK(cudaStreamSynchronize(st));
        report_deferred_error(ctx);
    }
}

void memset(mamba_context & ctx, void * ptr, int32_t value, size_t bytes) {
    use_device(ctx);
    count_queued(ctx);
    MAMBA_CUDA_CHECK(cudaMemsetAsync(ptr, value & 0xff, bytes, ctx.cuda->stream));
}

void event_create(mamba_event & event) {
    use_device(*event.context);
    cudaEvent_t e = nullptr;
    MAMBA_CUDA_CHECK(cudaEventCreate(&e));
    event.cuda_event = e;
}

void event_destroy(mamba_event & event) noexcept {
    if (event.cuda_event) cudaEventDestroy(static_cast<cudaEvent_t>(event.cuda_event));
    event.cuda_event = nullptr;
}

void event_record(mamba_event & event) {
    use_device(*event.context);
    // the recorded point includes the prefetches queued before it (except, inside a caller's capture of a
    // borrowed stream, one queued before that capture: join_l2_prefetch)
    join_l2_prefetch(*event.context);
    MAMBA_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event.cuda_event), event.context->cuda->stream));
}

void event_synchronize(mamba_event & event) { MAMBA_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event.cuda_event))); }

float event_elapsed_ms(const mamba_event & start, const mamba_event & end) {
    float ms = 0.0f;
    MAMBA_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start.cuda_event), static_cast<cudaEvent_t>(end.cuda_event)));
    return ms;
}

unsigned long long take_error_index(mamba_context & ctx) {
    if (stream_capturing(ctx)) fail(MAMBA_STATUS_INTERNAL, "take_error_index called while capturing a graph");
    unsigned long long index = kNoErrorIndex;
    cudaStream_t st = ctx.cuda->stream;
    MAMBA_CUDA_CHECK(cudaMemcpyAsync(&index, ctx.cuda->error_index, sizeof(index), cudaMemcpyDeviceToHost, st));
    MAMBA_CUDA_CHECK(cudaStreamSynchronize(st));
    if (index != kNoErrorIndex) MAMBA_CUDA_CHECK(cudaMemsetAsync(ctx.cuda->error_index, 0xff, sizeof(index), st));
    return index;
}

int64_t read_device_int(mamba_context & ctx, const Tensor & t, int64_t element_offset) {
    if (stream_capturing(ctx)) fail(MAMBA_STATUS_INTERNAL, "read_device_int called while capturing a graph");
    const size_t es = dtype_size(t.dtype);
    int64_t v64 = 0;
    int32_t v32 = 0;
    void * dst = t.dtype == DType::I32 ? static_cast<void *>(&v32) : static_cast<void *>(&v64);
    MAMBA_CUDA_CHECK(cudaMemcpyAsync(dst, t.data + element_offset * int64_t(es), es, cudaMemcpyDeviceToHost, ctx.cuda->stream));
    MAMBA_CUDA_CHECK(cudaStreamSynchronize(ctx.cuda->stream));
    return t.dtype == DType::I32 ? int64_t(v32) : v64;
}

void * workspace(mamba_context & ctx, size_t bytes) {
    CudaState & s = *ctx.cuda;
    if (bytes <= s.workspace_bytes) return s.workspace;
    use_device(ctx);
    if (stream_capturing(ctx))
        fail(MAMBA_STATUS_UNSUPPORTED, "this call needs ", bytes, " bytes of workspace but the context has ", s.workspace_bytes,
             ", and the workspace cannot grow while a graph is captured: run the same calls once before capturing");
    // Queued kernels may still read the old buffer.
    MAMBA_CUDA_CHECK(cudaStreamSynchronize(s.stream));
    if (s.workspace && s.live_graphs > 0) s.retired_workspaces.push_back(s.workspace);  // graphs still point into it
    else if (s.workspace) MAMBA_CUDA_CHECK(cudaFree(s.workspace));
    s.workspace = nullptr;
    s.workspace_bytes = 0;
    const size_t rounded = (bytes + (size_t(1) << 20) - 1) / (size_t(1) << 20) * (size_t(1) << 20);
    s.workspace = alloc(ctx, rounded);
    s.workspace_bytes = rounded;
    return s.workspace;
}

}  // namespace mamba::cuda
