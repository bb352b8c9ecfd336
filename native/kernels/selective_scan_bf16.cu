// Selective scan kernels for bf16_t tensors.
#include "selective_scan_dispatch.cuh"

namespace mamba::cuda::scan {

void run_bf16(mamba_context & ctx, const ScanArgs & a, int64_t batch, bool variable) { dispatch_scan<bf16_t>(ctx, a, batch, variable); }

}  // namespace mamba::cuda::scan
