// Test support: contexts for every available backend, host/device tensors described by DLPack, random
// inputs, and comparison helpers. Everything goes through the public C ABI, as a user's code would.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "mamba/mamba.h"
#include "core/scoped_env.h"

namespace mt {

// Fails the current test with the library's message when a call does not return OK.
#define MAMBA_ASSERT_OK(expr)                                                                   \
    do {                                                                                         \
        const mamba_status status_ = (expr);                                                     \
        ASSERT_EQ(status_, MAMBA_STATUS_OK) << #expr << " -> " << mamba_status_name(status_) << ": " \
                                            << mamba_last_error();                               \
    } while (0)

struct ContextDeleter {
    void operator()(mamba_context * c) const { mamba_context_free(c); }
};
using ContextPtr = std::unique_ptr<mamba_context, ContextDeleter>;

ContextPtr make_context(mamba_device_type type, int32_t device_id = 0, int32_t threads = 0);
// True when the CUDA backend is built and a device is present.
bool cuda_present();
// Skips the running test (visibly) when no CUDA device can be used.
#define MAMBA_REQUIRE_CUDA() \
    if (!::mt::cuda_present()) GTEST_SKIP() << "no CUDA device (or libmamba built without CUDA)"

using ScopedEnv = mamba::ScopedEnv;  // core/scoped_env.h

enum class DType { F32, F16, BF16, I32, I64 };
DLDataType dl_dtype(DType d);
size_t dtype_size(DType d);
const char * dtype_name(DType d);
double to_double(DType d, const void * p);
void from_double(DType d, void * p, double v);
// Largest relative rounding error of one stored value.
double dtype_epsilon(DType d);

// A tensor whose values live in host memory as doubles (the test's view) and, when pushed, as a buffer
// of the chosen dtype and layout on a context's device. Strides are in elements of that buffer.
class Tensor {
public:
    Tensor() = default;
    Tensor(std::vector<int64_t> shape, DType dtype, std::vector<int64_t> strides = {});

    const std::vector<int64_t> & shape() const { return shape_; }
    DType dtype() const { return dtype_; }
    int64_t numel() const;
    // Value at a flat row-major logical index (independent of strides).
    double & at(int64_t i) { return values_[size_t(i)]; }
    double at(int64_t i) const { return values_[size_t(i)]; }
    std::vector<double> & values() { return values_; }
    const std::vector<double> & values() const { return values_; }

    void fill_uniform(std::mt19937_64 & rng, double lo, double hi);
    // Rounds the test's values to what the storage dtype can hold, so references see the same inputs.
    void round_to_dtype();

    // Allocates on the context's device (if needed), fills padding with NaN and uploads the values.
    void upload(mamba_context * ctx);
    // Allocates on the device and fills it with NaN (or 0x7f bytes for ints) so unwritten elements show.
    void upload_poisoned(mamba_context * ctx);
    // Reads the device buffer back into values().
    void download(mamba_context * ctx);

    DLTensor * dl() { return &dl_; }
    const DLTensor * dl() const { return &dl_; }
    ~Tensor();
    Tensor(Tensor && other) noexcept;
    Tensor & operator=(Tensor && other) noexcept;
    Tensor(const Tensor &) = delete;
    Tensor & operator=(const Tensor &) = delete;

private:
    void release();
    int64_t storage_elements() const;
    std::vector<char> to_storage(bool poison) const;

    std::vector<int64_t> shape_, strides_;
    DType dtype_ = DType::F32;
    std::vector<double> values_;
    mamba_context * ctx_ = nullptr;
    void * data_ = nullptr;
    DLTensor dl_{};
};

// A strided view of a Tensor's device buffer: its own shape and strides (in elements; none: compact
// row-major, DLPack's null strides), starting `offset_bytes` past where the tensor starts, as a caller
// passes a slice of a larger buffer (the columns of a projection's output, a transposed weight). It owns
// the arrays its DLTensor points at; keep it alive while a call uses it. It copies the base's device
// pointer when made, so the base must be uploaded first (the constructor throws otherwise).
class View {
public:
    View(const Tensor & base, std::vector<int64_t> shape, std::vector<int64_t> strides, uint64_t offset_bytes = 0);
    View(const View &) = delete;
    View & operator=(const View &) = delete;
    DLTensor * dl() { return &dl_; }
    const DLTensor * dl() const { return &dl_; }

private:
    std::vector<int64_t> shape_, strides_;
    DLTensor dl_{};
};

// A small one-row linear into its own output, queued just before a call under test: libmamba records what
// that op writes, so on CUDA (PDL, the context's own stream) the call's kernels may load their weights
// before their launch wait (launch.cuh, early weight reads), the path a model's decode step takes. Its
// tensors live as long as it does; keep it until the stream has run it (a download does).
class LeadIn {
public:
    explicit LeadIn(mamba_context * ctx);
    void queue();  // fails the test on an error status

private:
    mamba_context * ctx_;
    Tensor x_, w_, y_;
};

// Strides (in elements) for a row-major layout padded so that axis `axis` is `pad` elements longer
// than its size: a simple way to make non-contiguous views.
std::vector<int64_t> padded_strides(const std::vector<int64_t> & shape, int axis, int64_t pad);

// max |a - b| / (atol + rtol * |b|) over all elements: <= 1 passes.
double max_scaled_error(const std::vector<double> & actual, const std::vector<double> & expected, double atol, double rtol);

#define EXPECT_CLOSE(actual, expected, atol, rtol) \
    EXPECT_LE(::mt::max_scaled_error((actual), (expected), (atol), (rtol)), 1.0) << "atol " << (atol) << " rtol " << (rtol)

// ---- float64 references used by several test files ----

// The inputs of one Mamba-2 decode step (mamba_ssd_state_update) as the tests' values: x, z (batch,
// heads, headdim); dt (batch, heads); A, dt_bias (heads); B, C (batch, groups, dstate); D (heads), or
// (heads, headdim) for one value per channel. Optional inputs absent: nullptr.
struct SsdStepInputs {
    int64_t batch = 0, heads = 0, headdim = 0, groups = 0, dstate = 0;
    const Tensor *x = nullptr, *dt = nullptr, *A = nullptr, *B = nullptr, *C = nullptr;
    const Tensor *D = nullptr, *z = nullptr, *dt_bias = nullptr;
    bool dt_softplus = false;
    double dt_min = 0.0, dt_max = INFINITY;
};

// dt as the ops define it: raw + bias, softplus when asked, then limited to [dt_min, dt_max] unless that
// is the "no limit" pair (0, +inf).
double reference_dt(double raw, double bias, bool softplus, double dt_min, double dt_max);

// One step of the recurrence in float64: state (batch, heads, headdim, dstate, row-major values) is
// updated in place, y (batch, heads, headdim) returned:
//   s[n] = exp(dt*A) s[n] + dt x[p] B[n];  y[p] = (sum_n C[n] s[n] + D x[p]) * silu(z[p]).
std::vector<double> reference_ssd_step(const SsdStepInputs & in, std::vector<double> & state);

// mamba_sample over uploaded logits (and history): one token per row, or nothing after a failed call
// (which fails the test).
std::vector<int64_t> sample_tokens(mamba_context * ctx, Tensor & logits, const mamba_sampling_params & s, uint64_t step = 0, Tensor * history = nullptr,
                                   DType token_dtype = DType::I64);
// Sampling parameters for mamba_sample, from the defaults with these fields set.
mamba_sampling_params sampling(float temperature, int32_t top_k = 0, float top_p = 1.0f, float min_p = 0.0f, float penalty = 1.0f, uint64_t seed = 42);

}  // namespace mt
