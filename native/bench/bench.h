// The native benchmark harness: each op registers cases that report the bytes and FLOPs they must move;
// the harness times them with mamba events (CUDA events on a GPU), after warm-up, as the median of many
// runs, and prints time, GB/s and TFLOP/s next to the copy bandwidth measured in the same run.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "mamba/mamba.h"
#include "core/scoped_env.h"

namespace mb {

// A device buffer owned by the harness, described as a contiguous DLTensor.
struct Buffer {
    void * data = nullptr;
    std::vector<int64_t> shape;
    DLTensor dl{};
};

class Bench {
public:
    explicit Bench(mamba_context * ctx);
    ~Bench();
    mamba_context * ctx() const { return ctx_; }
    bool on_cuda() const;
    // A tensor of random values in [-1, 1) (or `value` everywhere when given), freed at the end.
    DLTensor * tensor(std::vector<int64_t> shape, DLDataType dtype, double lo = -1.0, double hi = 1.0);
    // Times fn (which enqueues work) and returns the median in milliseconds.
    double time_ms(const std::function<void()> & fn, int min_iters = 20, double min_total_ms = 200.0);

private:
    mamba_context * ctx_;
    std::vector<Buffer *> buffers_;
};

struct Case {
    std::string name;
    // Sets up inputs on `bench`, returns the work to time (or an empty function to skip the case on this
    // device); fills bytes and flops for the rates.
    std::function<std::function<void()>(Bench & bench, double & bytes, double & flops)> setup;
};

std::vector<Case> & registry();

struct Register {
    Register(std::string name, decltype(Case::setup) setup) { registry().push_back({std::move(name), std::move(setup)}); }
};

constexpr DLDataType kF32{kDLFloat, 32, 1};
constexpr DLDataType kF16{kDLFloat, 16, 1};
constexpr DLDataType kBF16{kDLBfloat, 16, 1};

using ScopedEnv = mamba::ScopedEnv;  // core/scoped_env.h

// Aborts the benchmark with the library's message.
void check(mamba_status status, const char * what);

// A CUDA context created with MAMBA_CUDA_PDL set to `pdl` and MAMBA_CUDA_L2_PREFETCH(_BLOCKS) to `l2_mode` and
// `l2_blocks` (unset when null; all restored afterwards). It keeps its own stream, which the harness's
// context borrows so that the harness's events time the work queued on it (the caller gives the stream back
// with mamba_context_set_stream(bench.ctx(), nullptr) before freeing the context): on a borrowed stream the
// library reads no input before a kernel's launch wait (launch.cuh), which a model's decode does on its own
// stream.
mamba_context * context_on_harness_stream(Bench & bench, bool pdl, const char * l2_mode = nullptr, const char * l2_blocks = nullptr);

}  // namespace mb
