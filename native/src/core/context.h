// The context behind the opaque mamba_context handle, and the hooks into the CUDA backend that the
// device-independent code calls. CUDA symbols exist only when the library is built with CUDA.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "mamba/mamba.h"

namespace mamba {
struct CudaState;  // stream, cuBLAS handle and workspace; defined by the CUDA backend
}

struct mamba_context {
    mamba_device_type device_type = MAMBA_DEVICE_CPU;
    int32_t device_id = 0;
    int32_t num_threads = 1;
    mamba::CudaState * cuda = nullptr;

    bool is_cuda() const { return device_type == MAMBA_DEVICE_CUDA; }
};

struct mamba_graph {
    mamba_context * context = nullptr;
    void * cuda_exec = nullptr;  // cudaGraphExec_t
};

struct mamba_event {
    mamba_context * context = nullptr;
    bool recorded = false;
    std::chrono::steady_clock::time_point cpu_time;
    void * cuda_event = nullptr;  // cudaEvent_t
};

namespace mamba {

// Drops this thread's record of a capture on `ctx` (called when the context is freed).
void forget_capture(const mamba_context * ctx) noexcept;

#if MAMBA_WITH_CUDA
#define MAMBA_CUDA_ONLY(expr) expr
#else
#define MAMBA_CUDA_ONLY(expr) ::mamba::fail(MAMBA_STATUS_BACKEND_UNAVAILABLE, "this build of libmamba has no CUDA backend")
#endif

namespace cuda {
int32_t device_count();
void device_info(int32_t device_id, mamba_device_info & info);
void context_init(mamba_context & ctx);
void context_destroy(mamba_context & ctx) noexcept;
void synchronize(mamba_context & ctx);
void set_stream(mamba_context & ctx, void * stream);
void * get_stream(const mamba_context & ctx);
void * alloc(mamba_context & ctx, size_t bytes);
void free(mamba_context & ctx, void * ptr);
void * alloc_host(mamba_context & ctx, size_t bytes);
void free_host(mamba_context & ctx, void * ptr);
void memcpy(mamba_context & ctx, void * dst, const void * src, size_t bytes, mamba_memcpy_kind kind);
void memset(mamba_context & ctx, void * ptr, int32_t value, size_t bytes);
void event_create(mamba_event & event);
void event_destroy(mamba_event & event) noexcept;
void event_record(mamba_event & event);
void event_synchronize(mamba_event & event);
float event_elapsed_ms(const mamba_event & start, const mamba_event & end);
// Device scratch memory owned by the context, valid until the next call that asks for more.
void * workspace(mamba_context & ctx, size_t bytes);
// Graph capture on the context's stream (core of the mamba_graph_* calls).
void graph_capture_begin(mamba_context & ctx);
void * graph_capture_end(mamba_context & ctx);       // returns the instantiated cudaGraphExec_t
void graph_capture_abandon(mamba_context & ctx) noexcept;  // ends a capture after a failure; no-op otherwise
void graph_launch(mamba_context & ctx, void * exec);
void graph_destroy(mamba_context & ctx, void * exec) noexcept;
// Reads [data, data + bytes) into L2 on a side stream forked from the context's stream (l2_prefetch.cu).
void prefetch_to_l2(mamba_context & ctx, const void * data, size_t bytes);
}  // namespace cuda

}  // namespace mamba
