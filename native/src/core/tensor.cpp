#include "core/tensor.h"

#include <algorithm>

#include "core/context.h"

namespace mamba {

const char * dtype_name(DType dtype) {
    switch (dtype) {
        case DType::F32: return "float32";
        case DType::F16: return "float16";
        case DType::BF16: return "bfloat16";
        case DType::I32: return "int32";
        case DType::I64: return "int64";
    }
    return "?";
}

size_t dtype_size(DType dtype) {
    switch (dtype) {
        case DType::F32: return 4;
        case DType::F16: return 2;
        case DType::BF16: return 2;
        case DType::I32: return 4;
        case DType::I64: return 8;
    }
    return 0;
}

int64_t Tensor::numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
}

bool Tensor::is_contiguous() const {
    int64_t expected = 1;
    for (int i = ndim - 1; i >= 0; --i) {
        if (shape[i] != 1 && stride[i] != expected) return false;
        expected *= shape[i];
    }
    return true;
}

std::string Tensor::shape_string() const {
    std::string s = "(";
    for (int i = 0; i < ndim; ++i) {
        if (i) s += ", ";
        s += std::to_string(shape[i]);
    }
    return s + (ndim == 1 ? ",)" : ")");
}

int64_t Tensor::offset(std::initializer_list<int64_t> index) const {
    int64_t off = 0;
    int axis = 0;
    for (int64_t i : index) off += i * stride[axis++];
    return off;
}

static const char * device_type_name(int32_t type) {
    switch (type) {
        case kDLCPU: return "cpu";
        case kDLCUDA: return "cuda";
        case kDLCUDAHost: return "cuda_host";
        case kDLCUDAManaged: return "cuda_managed";
        default: return "other";
    }
}

static DType convert_dtype(const char * name, DLDataType t) {
    if (t.lanes != 1) fail(MAMBA_STATUS_UNSUPPORTED, "argument '", name, "' has ", int(t.lanes), " lanes; only scalar types are supported");
    if (t.code == kDLFloat && t.bits == 32) return DType::F32;
    if (t.code == kDLFloat && t.bits == 16) return DType::F16;
    if (t.code == kDLBfloat && t.bits == 16) return DType::BF16;
    if (t.code == kDLInt && t.bits == 32) return DType::I32;
    if (t.code == kDLInt && t.bits == 64) return DType::I64;
    fail(MAMBA_STATUS_UNSUPPORTED, "argument '", name, "' has unsupported dtype (code ", int(t.code), ", bits ", int(t.bits),
         "); supported: float32, float16, bfloat16, int32, int64");
}

Tensor required(const mamba_context & ctx, const char * name, const DLTensor * t) {
    if (t == nullptr) fail_argument("argument '", name, "' is null");
    if (t->ndim < 0 || t->ndim > kMaxDims) fail_argument("argument '", name, "' has ndim ", t->ndim, "; at most ", kMaxDims, " axes are supported");
    if (t->ndim > 0 && t->shape == nullptr) fail_argument("argument '", name, "' has a null shape array");
    const bool device_ok = ctx.is_cuda() ? (t->device.device_type == kDLCUDA && t->device.device_id == ctx.device_id)
                                         : (t->device.device_type == kDLCPU || t->device.device_type == kDLCUDAHost);
    if (!device_ok)
        fail_argument("argument '", name, "' lives on ", device_type_name(t->device.device_type), ":", t->device.device_id,
                      " but the context runs on ", ctx.is_cuda() ? "cuda" : "cpu", ":", ctx.device_id);
    Tensor v;
    v.dtype = convert_dtype(name, t->dtype);
    v.ndim = t->ndim;
    int64_t numel = 1;
    for (int i = 0; i < v.ndim; ++i) {
        if (t->shape[i] < 0) fail_argument("argument '", name, "' has negative size ", t->shape[i], " at axis ", i);
        v.shape[i] = t->shape[i];
        numel *= t->shape[i];
    }
    if (t->strides) {
        for (int i = 0; i < v.ndim; ++i) v.stride[i] = t->strides[i];
    } else {
        int64_t s = 1;
        for (int i = v.ndim - 1; i >= 0; --i) {
            v.stride[i] = s;
            s *= v.shape[i];
        }
    }
    if (numel > 0 && t->data == nullptr) fail_argument("argument '", name, "' has a null data pointer");
    v.data = static_cast<char *>(t->data) + t->byte_offset;
    return v;
}

std::optional<Tensor> optional(const mamba_context & ctx, const char * name, const DLTensor * t) {
    if (t == nullptr) return std::nullopt;
    return required(ctx, name, t);
}

static std::string expected_string(std::initializer_list<int64_t> expected) {
    std::string s = "(";
    int i = 0;
    for (int64_t e : expected) {
        if (i++) s += ", ";
        s += e < 0 ? std::string("*") : std::to_string(e);
    }
    return s + (expected.size() == 1 ? ",)" : ")");
}

void check_shape(const char * name, const Tensor & t, std::initializer_list<int64_t> expected) {
    bool ok = int(expected.size()) == t.ndim;
    int axis = 0;
    for (int64_t e : expected) {
        if (!ok) break;
        if (e >= 0 && t.shape[axis] != e) ok = false;
        ++axis;
    }
    if (!ok) fail_argument("argument '", name, "' has shape ", t.shape_string(), ", expected ", expected_string(expected));
}

void check_ndim(const char * name, const Tensor & t, int ndim) {
    if (t.ndim != ndim) fail_argument("argument '", name, "' has ", t.ndim, " axes ", t.shape_string(), ", expected ", ndim);
}

void check_floating(const char * name, const Tensor & t) {
    if (!is_floating(t.dtype))
        fail(MAMBA_STATUS_UNSUPPORTED, "argument '", name, "' has dtype ", dtype_name(t.dtype), "; expected float32, float16 or bfloat16");
}

void check_dtype(const char * name, const Tensor & t, DType dtype) {
    if (t.dtype != dtype)
        fail(MAMBA_STATUS_UNSUPPORTED, "argument '", name, "' has dtype ", dtype_name(t.dtype), "; expected ", dtype_name(dtype));
}

void check_integer(const char * name, const Tensor & t) {
    if (!is_integer(t.dtype))
        fail(MAMBA_STATUS_UNSUPPORTED, "argument '", name, "' has dtype ", dtype_name(t.dtype), "; expected int32 or int64");
}

void check_last_axis_contiguous(const char * name, const Tensor & t) {
    if (t.ndim > 0 && t.shape[t.ndim - 1] > 1 && t.stride[t.ndim - 1] != 1)
        fail_argument("argument '", name, "' must have stride 1 along its last axis (has ", t.stride[t.ndim - 1], ")");
}

void byte_range(const Tensor & t, const char *& lo, const char *& hi) {
    int64_t min_off = 0, max_off = 0;
    for (int i = 0; i < t.ndim; ++i) {
        if (t.shape[i] == 0) {
            lo = hi = t.data;
            return;
        }
        const int64_t span = (t.shape[i] - 1) * t.stride[i];
        if (span < 0) min_off += span; else max_off += span;
    }
    const int64_t es = int64_t(dtype_size(t.dtype));
    lo = t.data + min_off * es;
    hi = t.data + (max_off + 1) * es;
}

bool same_memory(const Tensor & a, const Tensor & b) {
    const char *alo, *ahi, *blo, *bhi;
    byte_range(a, alo, ahi);
    byte_range(b, blo, bhi);
    return alo < bhi && blo < ahi;
}

void check_no_overlap(const char * name_a, const Tensor & a, const char * name_b, const Tensor & b) {
    if (same_memory(a, b)) fail_argument("arguments '", name_a, "' and '", name_b, "' overlap in memory");
}

}  // namespace mamba
