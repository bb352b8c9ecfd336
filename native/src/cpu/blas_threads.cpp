#include "cpu/blas_threads.h"

#include <cblas.h>
#include <dlfcn.h>

#include <mutex>

namespace mamba::cpu {

namespace {

using GetThreads = int (*)();
using SetThreads = void (*)(int);

struct ThreadControl {
    GetThreads get = nullptr;
    SetThreads set = nullptr;
};

// OpenBLAS's thread controls, found where the cblas_sgemm this library calls comes from. The header alone cannot tell:
// a reference cblas.h (Debian's libblas-dev) over the OpenBLAS that the libblas.so.3 alternative loads at run time
// compiles no call to them, and OpenBLAS then ran its own pool of threads inside our OpenMP workers (the CPU SSD of a
// 512-token mamba2-130m prompt took 80 ms on a 2-core machine, against 3.8 with OPENBLAS_NUM_THREADS=1).
ThreadControl find_thread_control() {
    ThreadControl c;
#if defined(OPENBLAS_VERSION)
    c.get = &openblas_get_num_threads;
    c.set = &openblas_set_num_threads;
#else
    // dlsym on the providing library's handle also searches what it depends on (libopenblas.so.0 under libblas.so.3).
    Dl_info info{};
    if (dladdr(reinterpret_cast<void *>(&cblas_sgemm), &info) != 0 && info.dli_fname != nullptr) {
        if (void * lib = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD)) {  // already loaded: a reference, kept
            c.get = reinterpret_cast<GetThreads>(dlsym(lib, "openblas_get_num_threads"));
            c.set = reinterpret_cast<SetThreads>(dlsym(lib, "openblas_set_num_threads"));
            if (c.get == nullptr || c.set == nullptr) c = {};
        }
    }
#endif
    return c;
}

}  // namespace

void ensure_blas_single_threaded() {
    static const ThreadControl control = find_thread_control();
    if (control.get == nullptr || control.get() == 1) return;
    static std::mutex mutex;
    std::lock_guard<std::mutex> lock(mutex);
    if (control.get() != 1) control.set(1);
}

}  // namespace mamba::cpu
