#include "bench.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>

namespace mb {

std::vector<Case> & registry() {
    static std::vector<Case> cases;
    return cases;
}

void check(mamba_status status, const char * what) {
    if (status != MAMBA_STATUS_OK) {
        std::fprintf(stderr, "%s failed: %s\n", what, mamba_last_error());
        std::exit(2);
    }
}

Bench::Bench(mamba_context * ctx) : ctx_(ctx) {}

Bench::~Bench() {
    for (Buffer * b : buffers_) {
        mamba_free(ctx_, b->data);
        delete b;
    }
}

bool Bench::on_cuda() const {
    DLDevice d;
    mamba_context_get_device(ctx_, &d);
    return d.device_type == kDLCUDA;
}

DLTensor * Bench::tensor(std::vector<int64_t> shape, DLDataType dtype, double lo, double hi) {
    auto * b = new Buffer();
    b->shape = std::move(shape);
    int64_t n = 1;
    for (int64_t s : b->shape) n *= s;
    const size_t bytes = size_t(std::max<int64_t>(n, 1)) * (dtype.bits / 8);
    check(mamba_alloc(ctx_, bytes, &b->data), "mamba_alloc");
    // Fill on the host in float32 and convert on the device with mamba_copy.
    std::vector<float> host(static_cast<size_t>(std::max<int64_t>(n, 1)));
    std::mt19937 rng(static_cast<uint32_t>(buffers_.size() + 1));
    std::uniform_real_distribution<float> dist(static_cast<float>(lo), static_cast<float>(hi));
    for (float & v : host) v = dist(rng);
    void * staging = nullptr;
    check(mamba_alloc(ctx_, host.size() * 4, &staging), "mamba_alloc");
    check(mamba_memcpy(ctx_, staging, host.data(), host.size() * 4, MAMBA_MEMCPY_HOST_TO_DEVICE), "mamba_memcpy");
    DLDevice dev;
    mamba_context_get_device(ctx_, &dev);
    DLTensor src{staging, dev, int32_t(b->shape.size()), kF32, b->shape.data(), nullptr, 0};
    b->dl = DLTensor{b->data, dev, int32_t(b->shape.size()), dtype, b->shape.data(), nullptr, 0};
    if (dtype.code == kDLFloat || dtype.code == kDLBfloat) check(mamba_copy(ctx_, &src, &b->dl), "mamba_copy");
    else check(mamba_memset(ctx_, b->data, 0, bytes), "mamba_memset");
    check(mamba_context_synchronize(ctx_), "synchronize");
    mamba_free(ctx_, staging);
    buffers_.push_back(b);
    return &b->dl;
}

double Bench::time_ms(const std::function<void()> & fn, int min_iters, double min_total_ms) {
    mamba_event *start = nullptr, *stop = nullptr;
    check(mamba_event_create(ctx_, &start), "mamba_event_create");
    check(mamba_event_create(ctx_, &stop), "mamba_event_create");
    for (int i = 0; i < 3; ++i) fn();  // warm-up: caches, lazy workspaces, clocks
    check(mamba_context_synchronize(ctx_), "synchronize");
    std::vector<double> samples;
    const auto t0 = std::chrono::steady_clock::now();
    while (int(samples.size()) < min_iters ||
           std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() < min_total_ms) {
        check(mamba_event_record(start), "mamba_event_record");
        fn();
        check(mamba_event_record(stop), "mamba_event_record");
        check(mamba_event_synchronize(stop), "mamba_event_synchronize");
        float ms = 0;
        check(mamba_event_elapsed_ms(start, stop, &ms), "mamba_event_elapsed_ms");
        samples.push_back(ms);
        if (samples.size() >= 2000) break;
    }
    mamba_event_free(start);
    mamba_event_free(stop);
    std::sort(samples.begin(), samples.end());
    return samples[samples.size() / 2];
}

mamba_context * context_on_harness_stream(Bench & b, bool pdl, const char * l2_mode, const char * l2_blocks) {
    mamba_context_params p = mamba_context_default_params();
    p.device_type = MAMBA_DEVICE_CUDA;
    DLDevice dev;
    check(mamba_context_get_device(b.ctx(), &dev), "mamba_context_get_device");
    p.device_id = dev.device_id;
    mamba_context * ctx = nullptr;
    {
        const ScopedEnv scoped("MAMBA_CUDA_PDL", pdl ? "1" : "0");
        const ScopedEnv scoped_l2("MAMBA_CUDA_L2_PREFETCH", l2_mode);
        const ScopedEnv scoped_l2_blocks("MAMBA_CUDA_L2_PREFETCH_BLOCKS", l2_blocks);
        check(mamba_context_create(&p, &ctx), "mamba_context_create");
    }
    void * stream = nullptr;
    check(mamba_context_get_stream(ctx, &stream), "mamba_context_get_stream");
    check(mamba_context_set_stream(b.ctx(), stream), "mamba_context_set_stream");
    return ctx;
}

}  // namespace mb
