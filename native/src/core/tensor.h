// Validated views of DLPack tensors and the argument checks every op shares, so that the CPU and CUDA
// backends reject the same inputs with the same messages.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>

#include "core/error.h"
#include "mamba/mamba.h"

struct mamba_context;

namespace mamba {

enum class DType { F32, F16, BF16, I32, I64 };

const char * dtype_name(DType dtype);
size_t dtype_size(DType dtype);
inline bool is_floating(DType d) { return d == DType::F32 || d == DType::F16 || d == DType::BF16; }
inline bool is_integer(DType d) { return d == DType::I32 || d == DType::I64; }

constexpr int kMaxDims = 8;

// A tensor argument after validation: base pointer with byte_offset applied, strides in elements.
struct Tensor {
    char * data = nullptr;
    DType dtype = DType::F32;
    int ndim = 0;
    int64_t shape[kMaxDims] = {};
    int64_t stride[kMaxDims] = {};

    int64_t size(int axis) const { return shape[axis]; }
    int64_t numel() const;
    bool is_contiguous() const;
    std::string shape_string() const;
    template <class T>
    T * ptr() const { return reinterpret_cast<T *>(data); }
    // Element offset of an index (one per axis).
    int64_t offset(std::initializer_list<int64_t> index) const;
};

// Converts a required tensor argument: null, device, dtype and layout checks. `name` is the argument's
// name as in mamba.h; messages read "argument 'name' ...".
Tensor required(const mamba_context & ctx, const char * name, const DLTensor * t);
std::optional<Tensor> optional(const mamba_context & ctx, const char * name, const DLTensor * t);

// Shape check; -1 accepts any size at that axis.
void check_shape(const char * name, const Tensor & t, std::initializer_list<int64_t> expected);
void check_ndim(const char * name, const Tensor & t, int ndim);
void check_floating(const char * name, const Tensor & t);
void check_dtype(const char * name, const Tensor & t, DType dtype);
void check_integer(const char * name, const Tensor & t);
// The last axis must have stride 1 (for BLAS and vector loads).
void check_last_axis_contiguous(const char * name, const Tensor & t);
// Two tensors must not share memory (conservative byte-range test).
void check_no_overlap(const char * name_a, const Tensor & a, const char * name_b, const Tensor & b);
bool same_memory(const Tensor & a, const Tensor & b);
// The tensor an optional argument holds, or null.
inline const Tensor * ptr(const std::optional<Tensor> & t) { return t ? &*t : nullptr; }

// Byte range [lo, hi) a view touches (lo == hi for an empty view).
void byte_range(const Tensor & t, const char *& lo, const char *& hi);

}  // namespace mamba
