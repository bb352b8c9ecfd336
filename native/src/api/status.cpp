// Version, build information and the thread-local error message.
#include <string>

#include "core/error.h"
#include "mamba/mamba.h"

namespace mamba {

static thread_local std::string g_last_error;

void set_last_error(const std::string & message) { g_last_error = message; }
void clear_last_error() { g_last_error.clear(); }

}  // namespace mamba

#define MAMBA_STR2(x) #x
#define MAMBA_STR(x) MAMBA_STR2(x)

extern "C" {

int32_t mamba_abi_version(void) { return MAMBA_ABI_VERSION; }

const char * mamba_version(void) { return MAMBA_VERSION_STRING; }

const char * mamba_build_info(void) {
    return "libmamba " MAMBA_VERSION_STRING
           "; compiler " MAMBA_COMPILER_ID
           "; blas " MAMBA_BLAS_NAME
#if MAMBA_WITH_CUDA
           "; cuda " MAMBA_CUDA_VERSION " (architectures " MAMBA_CUDA_ARCHITECTURES ")"
#else
           "; cuda off"
#endif
        ;
}

const char * mamba_last_error(void) { return mamba::g_last_error.c_str(); }

void mamba_clear_last_error(void) { mamba::clear_last_error(); }

const char * mamba_status_name(mamba_status status) {
    switch (status) {
        case MAMBA_STATUS_OK: return "MAMBA_STATUS_OK";
        case MAMBA_STATUS_INVALID_ARGUMENT: return "MAMBA_STATUS_INVALID_ARGUMENT";
        case MAMBA_STATUS_UNSUPPORTED: return "MAMBA_STATUS_UNSUPPORTED";
        case MAMBA_STATUS_OUT_OF_MEMORY: return "MAMBA_STATUS_OUT_OF_MEMORY";
        case MAMBA_STATUS_BACKEND_UNAVAILABLE: return "MAMBA_STATUS_BACKEND_UNAVAILABLE";
        case MAMBA_STATUS_DEVICE_ERROR: return "MAMBA_STATUS_DEVICE_ERROR";
        case MAMBA_STATUS_INTERNAL: return "MAMBA_STATUS_INTERNAL";
    }
    return "MAMBA_STATUS_UNKNOWN";
}

}  // extern "C"
