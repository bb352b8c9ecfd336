// Selective scan kernels for float tensors.
#include "selective_scan_dispatch.cuh"

namespace mamba::cuda::scan {

void run_f32(mamba_context & ctx, const ScanArgs & a, int64_t batch, bool variable) { dispatch_scan<float>(ctx, a, batch, variable); }

}  // namespace mamba::cuda::scan
