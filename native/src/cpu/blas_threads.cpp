#include "cpu/blas_threads.h"

#include <cblas.h>

#include <mutex>

namespace mamba::cpu {

void ensure_blas_single_threaded() {
#if defined(OPENBLAS_VERSION)
    static std::mutex mutex;
    if (openblas_get_num_threads() == 1) return;
    std::lock_guard<std::mutex> lock(mutex);
    if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
#endif
}

}  // namespace mamba::cpu
