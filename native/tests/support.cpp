#include "support.h"

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <stdexcept>

namespace mt {

ContextPtr make_context(mamba_device_type type, int32_t device_id, int32_t threads) {
    mamba_context_params p = mamba_context_default_params();
    p.device_type = type;
    p.device_id = device_id;
    p.num_threads = threads;
    mamba_context * ctx = nullptr;
    const mamba_status s = mamba_context_create(&p, &ctx);
    EXPECT_EQ(s, MAMBA_STATUS_OK) << mamba_last_error();
    return ContextPtr(ctx);
}

bool cuda_present() {
    int32_t count = 0;
    return mamba_backend_available(MAMBA_DEVICE_CUDA) && mamba_device_count(MAMBA_DEVICE_CUDA, &count) == MAMBA_STATUS_OK && count > 0;
}

DLDataType dl_dtype(DType d) {
    switch (d) {
        case DType::F32: return {kDLFloat, 32, 1};
        case DType::F16: return {kDLFloat, 16, 1};
        case DType::BF16: return {kDLBfloat, 16, 1};
        case DType::I32: return {kDLInt, 32, 1};
        case DType::I64: return {kDLInt, 64, 1};
    }
    return {kDLFloat, 32, 1};
}

size_t dtype_size(DType d) { return d == DType::F32 || d == DType::I32 ? 4 : d == DType::I64 ? 8 : 2; }

const char * dtype_name(DType d) {
    switch (d) {
        case DType::F32: return "f32";
        case DType::F16: return "f16";
        case DType::BF16: return "bf16";
        case DType::I32: return "i32";
        case DType::I64: return "i64";
    }
    return "?";
}

double dtype_epsilon(DType d) {
    switch (d) {
        case DType::F32: return 6e-8;
        case DType::F16: return 4.9e-4;
        case DType::BF16: return 3.9e-3;
        default: return 0.0;
    }
}

// Reference conversions written for the tests, independent of the library's own.
static float bf16_bits_to_float(uint16_t b) {
    uint32_t u = uint32_t(b) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
static uint16_t float_to_bf16_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if (std::isnan(f)) return 0x7fc0;
    const uint32_t lsb = (u >> 16) & 1u;
    return uint16_t((u + 0x7fffu + lsb) >> 16);
}
static double half_bits_to_double(uint16_t h) {
    const int sign = h >> 15, exp = (h >> 10) & 31, mant = h & 1023;
    double v;
    if (exp == 0) v = std::ldexp(double(mant), -24);
    else if (exp == 31) v = mant ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
    else v = std::ldexp(double(mant + 1024), exp - 25);
    return sign ? -v : v;
}
static uint16_t double_to_half_bits(double v) {
    if (std::isnan(v)) return 0x7e00;
    const uint16_t sign = std::signbit(v) ? 0x8000 : 0;
    double a = std::fabs(v);
    if (a >= 65520.0) return sign | 0x7c00;
    if (a < std::ldexp(1.0, -14)) return sign | uint16_t(std::nearbyint(a * std::ldexp(1.0, 24)));
    int e;
    std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
    const double scaled = std::nearbyint(std::ldexp(a, 11 - e));  // 11 significant bits
    int exp = e - 1 + 15;
    uint32_t mant = uint32_t(scaled);
    if (mant >= 2048) {
        mant >>= 1;
        exp += 1;
    }
    if (exp >= 31) return sign | 0x7c00;
    return sign | uint16_t(exp << 10) | uint16_t(mant & 1023);
}

double to_double(DType d, const void * p) {
    switch (d) {
        case DType::F32: return *static_cast<const float *>(p);
        case DType::F16: return half_bits_to_double(*static_cast<const uint16_t *>(p));
        case DType::BF16: return bf16_bits_to_float(*static_cast<const uint16_t *>(p));
        case DType::I32: return *static_cast<const int32_t *>(p);
        case DType::I64: return double(*static_cast<const int64_t *>(p));
    }
    return 0;
}

void from_double(DType d, void * p, double v) {
    switch (d) {
        case DType::F32: *static_cast<float *>(p) = float(v); break;
        case DType::F16: *static_cast<uint16_t *>(p) = double_to_half_bits(double(float(v))); break;
        case DType::BF16: *static_cast<uint16_t *>(p) = float_to_bf16_bits(float(v)); break;
        case DType::I32: *static_cast<int32_t *>(p) = int32_t(v); break;
        case DType::I64: *static_cast<int64_t *>(p) = int64_t(v); break;
    }
}

Tensor::Tensor(std::vector<int64_t> shape, DType dtype, std::vector<int64_t> strides)
    : shape_(std::move(shape)), strides_(std::move(strides)), dtype_(dtype) {
    if (strides_.empty()) {
        strides_.resize(shape_.size());
        int64_t s = 1;
        for (size_t i = shape_.size(); i-- > 0;) {
            strides_[i] = s;
            s *= shape_[i];
        }
    }
    values_.assign(size_t(numel()), 0.0);
    dl_.ndim = int32_t(shape_.size());
    dl_.dtype = dl_dtype(dtype_);
    dl_.shape = shape_.data();
    dl_.strides = strides_.data();
    dl_.device = {kDLCPU, 0};
}

int64_t Tensor::numel() const {
    int64_t n = 1;
    for (int64_t s : shape_) n *= s;
    return n;
}

int64_t Tensor::storage_elements() const {
    int64_t extent = 1;
    for (size_t i = 0; i < shape_.size(); ++i) {
        if (shape_[i] == 0) return 1;
        extent += (shape_[i] - 1) * strides_[i];
    }
    return extent;
}

void Tensor::fill_uniform(std::mt19937_64 & rng, double lo, double hi) {
    std::uniform_real_distribution<double> dist(lo, hi);
    for (double & v : values_) v = dist(rng);
    round_to_dtype();
}

void Tensor::round_to_dtype() {
    char buf[8];
    for (double & v : values_) {
        from_double(dtype_, buf, v);
        v = to_double(dtype_, buf);
    }
}

std::vector<char> Tensor::to_storage(bool poison) const {
    const size_t es = dtype_size(dtype_);
    std::vector<char> bytes(size_t(storage_elements()) * es);
    if (dtype_ == DType::I32 || dtype_ == DType::I64) {
        std::fill(bytes.begin(), bytes.end(), char(0x7f));
    } else {
        for (size_t i = 0; i < bytes.size() / es; ++i) from_double(dtype_, bytes.data() + i * es, std::numeric_limits<double>::quiet_NaN());
    }
    if (poison) return bytes;
    std::vector<int64_t> idx(shape_.size(), 0);
    for (int64_t flat = 0; flat < numel(); ++flat) {
        int64_t rem = flat, off = 0;
        for (size_t i = shape_.size(); i-- > 0;) {
            off += (rem % shape_[i]) * strides_[i];
            rem /= shape_[i];
        }
        from_double(dtype_, bytes.data() + size_t(off) * es, values_[size_t(flat)]);
    }
    return bytes;
}

static void ensure_buffer(mamba_context * ctx, mamba_context *& owner, void *& data, size_t bytes) {
    if (owner == ctx && data) return;
    if (owner && data) mamba_free(owner, data);
    owner = ctx;
    data = nullptr;
    ASSERT_EQ(mamba_alloc(ctx, std::max<size_t>(bytes, 1), &data), MAMBA_STATUS_OK) << mamba_last_error();
}

// Copies a tensor's storage bytes into its buffer on ctx (allocated or reallocated as needed) and points
// the DLTensor view at it.
static void copy_to_device(mamba_context * ctx, mamba_context *& owner, void *& data, DLTensor & dl, const std::vector<char> & bytes) {
    ensure_buffer(ctx, owner, data, bytes.size());
    DLDevice dev;
    mamba_context_get_device(ctx, &dev);
    dl.device = dev;
    dl.data = data;
    ASSERT_EQ(mamba_memcpy(ctx, data, bytes.data(), bytes.size(), MAMBA_MEMCPY_HOST_TO_DEVICE), MAMBA_STATUS_OK) << mamba_last_error();
    ASSERT_EQ(mamba_context_synchronize(ctx), MAMBA_STATUS_OK);
}

void Tensor::upload(mamba_context * ctx) { copy_to_device(ctx, ctx_, data_, dl_, to_storage(false)); }

void Tensor::upload_poisoned(mamba_context * ctx) { copy_to_device(ctx, ctx_, data_, dl_, to_storage(true)); }

void Tensor::download(mamba_context * ctx) {
    ASSERT_EQ(ctx, ctx_) << "tensor was not uploaded to this context";
    const size_t es = dtype_size(dtype_);
    std::vector<char> bytes(size_t(storage_elements()) * es);
    ASSERT_EQ(mamba_memcpy(ctx, bytes.data(), data_, bytes.size(), MAMBA_MEMCPY_DEVICE_TO_HOST), MAMBA_STATUS_OK) << mamba_last_error();
    ASSERT_EQ(mamba_context_synchronize(ctx), MAMBA_STATUS_OK);
    for (int64_t flat = 0; flat < numel(); ++flat) {
        int64_t rem = flat, off = 0;
        for (size_t i = shape_.size(); i-- > 0;) {
            off += (rem % shape_[i]) * strides_[i];
            rem /= shape_[i];
        }
        values_[size_t(flat)] = to_double(dtype_, bytes.data() + size_t(off) * es);
    }
}

void Tensor::release() {
    if (ctx_ && data_) mamba_free(ctx_, data_);
    ctx_ = nullptr;
    data_ = nullptr;
}

Tensor::~Tensor() { release(); }

Tensor::Tensor(Tensor && o) noexcept { *this = std::move(o); }

Tensor & Tensor::operator=(Tensor && o) noexcept {
    if (this == &o) return *this;
    release();
    shape_ = std::move(o.shape_);
    strides_ = std::move(o.strides_);
    dtype_ = o.dtype_;
    values_ = std::move(o.values_);
    ctx_ = o.ctx_;
    data_ = o.data_;
    dl_ = o.dl_;
    dl_.shape = shape_.data();
    dl_.strides = strides_.data();
    o.ctx_ = nullptr;
    o.data_ = nullptr;
    return *this;
}

View::View(const Tensor & base, std::vector<int64_t> shape, std::vector<int64_t> strides, uint64_t offset_bytes)
    : shape_(std::move(shape)), strides_(std::move(strides)), dl_(*base.dl()) {
    if (!strides_.empty() && shape_.size() != strides_.size()) throw std::invalid_argument("View: shape and strides differ in length");
    // The DLTensor, device pointer included, is copied now: a base not yet uploaded has none to copy.
    if (dl_.data == nullptr) throw std::logic_error("View: the base tensor has no device buffer yet; upload it before making the view");
    dl_.ndim = int32_t(shape_.size());
    dl_.shape = shape_.data();
    dl_.strides = strides_.empty() ? nullptr : strides_.data();
    dl_.byte_offset += offset_bytes;
}

LeadIn::LeadIn(mamba_context * ctx) : ctx_(ctx), x_({1, 64}, DType::F32), w_({8, 64}, DType::F32), y_({1, 8}, DType::F32) {
    std::mt19937_64 rng(17);
    x_.fill_uniform(rng, -1, 1);
    w_.fill_uniform(rng, -1, 1);
    x_.upload(ctx);
    w_.upload(ctx);
    y_.upload(ctx);
}

void LeadIn::queue() {
    mamba_linear_args a{};
    a.x = x_.dl();
    a.weight = w_.dl();
    a.y = y_.dl();
    const mamba_status status = mamba_linear(ctx_, &a);
    EXPECT_EQ(status, MAMBA_STATUS_OK) << "the lead-in linear: " << mamba_last_error();
}

std::vector<int64_t> padded_strides(const std::vector<int64_t> & shape, int axis, int64_t pad) {
    std::vector<int64_t> strides(shape.size());
    int64_t s = 1;
    for (size_t i = shape.size(); i-- > 0;) {
        strides[i] = s;
        s *= shape[i] + (int(i) == axis ? pad : 0);
    }
    return strides;
}

double max_scaled_error(const std::vector<double> & actual, const std::vector<double> & expected, double atol, double rtol) {
    if (actual.size() != expected.size()) return std::numeric_limits<double>::infinity();
    double worst = 0.0;
    for (size_t i = 0; i < actual.size(); ++i) {
        const double err = std::fabs(actual[i] - expected[i]) / (atol + rtol * std::fabs(expected[i]));
        if (std::isnan(err)) return std::numeric_limits<double>::infinity();
        worst = std::max(worst, err);
    }
    return worst;
}

double reference_dt(double raw, double bias, bool softplus, double dt_min, double dt_max) {
    double v = raw + bias;
    if (softplus) v = v > 20 ? v : std::log1p(std::exp(v));
    if (!(dt_min == 0.0 && std::isinf(dt_max) && dt_max > 0)) v = std::min(std::max(v, dt_min), dt_max);
    return v;
}

std::vector<double> reference_ssd_step(const SsdStepInputs & in, std::vector<double> & state) {
    const int64_t Bn = in.batch, H = in.heads, P = in.headdim, G = in.groups, N = in.dstate;
    const bool D_per_channel = in.D && in.D->shape().size() == 2;
    std::vector<double> y(size_t(Bn * H * P));
    for (int64_t b = 0; b < Bn; ++b)
        for (int64_t h = 0; h < H; ++h) {
            const int64_t g = h / (H / G);
            const double dt = reference_dt(in.dt->at(b * H + h), in.dt_bias ? in.dt_bias->at(h) : 0.0, in.dt_softplus, in.dt_min, in.dt_max);
            const double decay = std::exp(dt * in.A->at(h));
            for (int64_t p = 0; p < P; ++p) {
                const int64_t row = (b * H + h) * P + p;
                const double xv = in.x->at(row);
                double acc = 0;
                for (int64_t n = 0; n < N; ++n) {
                    double & s = state[size_t(row * N + n)];
                    s = decay * s + dt * xv * in.B->at((b * G + g) * N + n);
                    acc += in.C->at((b * G + g) * N + n) * s;
                }
                if (in.D) acc += (D_per_channel ? in.D->at(h * P + p) : in.D->at(h)) * xv;
                if (in.z) acc *= in.z->at(row) / (1 + std::exp(-in.z->at(row)));
                y[size_t(row)] = acc;
            }
        }
    return y;
}

std::vector<int64_t> sample_tokens(mamba_context * ctx, Tensor & logits, const mamba_sampling_params & s, uint64_t step, Tensor * history,
                                   DType token_dtype) {
    Tensor tokens({logits.shape()[0]}, token_dtype);
    tokens.upload_poisoned(ctx);
    mamba_sample_args a{};
    a.logits = logits.dl();
    a.history = history ? history->dl() : nullptr;
    a.tokens = tokens.dl();
    a.step = step;
    a.params = s;
    const mamba_status status = mamba_sample(ctx, &a);
    EXPECT_EQ(status, MAMBA_STATUS_OK) << mamba_last_error();
    if (status != MAMBA_STATUS_OK) return {};
    tokens.download(ctx);
    return std::vector<int64_t>(tokens.values().begin(), tokens.values().end());
}

mamba_sampling_params sampling(float temperature, int32_t top_k, float top_p, float min_p, float penalty, uint64_t seed) {
    mamba_sampling_params s = mamba_sampling_default_params();
    s.temperature = temperature;
    s.top_k = top_k;
    s.top_p = top_p;
    s.min_p = min_p;
    s.repetition_penalty = penalty;
    s.seed = seed;
    return s;
}

}  // namespace mt
