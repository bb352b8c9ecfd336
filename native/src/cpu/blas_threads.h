// Keeps OpenBLAS from starting a thread pool of its own next to OpenMP's.
#pragma once

namespace mamba::cpu {

// libmamba calls BLAS only from inside its own OpenMP workers, each on its own slice of the output, so
// the cores are already busy. A pthreads OpenBLAS would otherwise start nproc more threads per call and
// the two pools would fight over the same cores. Call before each BLAS call: it is a cheap check that
// pins OpenBLAS to run in the calling thread (again, should the host application have changed it).
void ensure_blas_single_threaded();

}  // namespace mamba::cpu
