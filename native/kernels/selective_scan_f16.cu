// Selective scan kernels for f16_t tensors.
#include "selective_scan_dispatch.cuh"

namespace mamba::cuda::scan {

void run_f16(mamba_context & ctx, const ScanArgs & a, int64_t batch, bool variable) { dispatch_scan<f16_t>(ctx, a, batch, variable); }

}  // namespace mamba::cuda::scan
