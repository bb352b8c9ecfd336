// Strided copy with dtype conversion (mamba_copy).
#pragma once

#include "core/tensor.h"

namespace mamba {

struct CopyParams {
    Tensor src;
    Tensor dst;
};

namespace cpu {
void copy(mamba_context & ctx, const CopyParams & p);
}
namespace cuda {
void copy(mamba_context & ctx, const CopyParams & p);
}

}  // namespace mamba
