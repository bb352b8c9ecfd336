// Token sampling with one thread-block cluster a row (sampling_cluster.cu), for sampling.cu's dispatch.
#pragma once

#include "sampling_common.cuh"

namespace mamba::cuda::sampling {

// The largest vocabulary one cluster holds in registers.
int64_t cluster_max_vocab();
// Whether the cluster kernel can sample `batch` rows of `vocab` ids on this context's device (compute
// capability 9.0 or newer); when not, *why says what is missing.
bool cluster_kernel_fits(const mamba_context & ctx, int64_t batch, int64_t vocab, const char ** why);
// Queues the cluster kernel for `batch` rows (a.v and a.w are not used).
void launch_cluster_sample(mamba_context & ctx, const SampleArgs & a, int64_t batch);

}  // namespace mamba::cuda::sampling
