// Sets an environment variable (nullptr: unsets it) for the object's lifetime, then restores what was there.
// For the tests and the benchmark: the CUDA backend reads its kernel-selection variables
// (MAMBA_CUDA_GEMV_VARIANT, MAMBA_CUDA_SSD_PATH, MAMBA_CUDA_SSD_STATE, MAMBA_CUDA_SCAN_VARIANT) at each
// call and MAMBA_CUDA_PDL, MAMBA_CUDA_TRACE and MAMBA_CUDA_L2_PREFETCH(_BLOCKS) when a context is created;
// the CPU backend ignores them.
#pragma once

#include <cstdlib>
#include <optional>
#include <string>

namespace mamba {

class ScopedEnv {
public:
    ScopedEnv(const char * name, const char * value) : name_(name) {
        if (const char * old = std::getenv(name)) previous_ = old;
        if (value) setenv(name, value, 1);
        else unsetenv(name);
    }
    ~ScopedEnv() {
        if (previous_) setenv(name_.c_str(), previous_->c_str(), 1);
        else unsetenv(name_.c_str());
    }
    ScopedEnv(const ScopedEnv &) = delete;
    ScopedEnv & operator=(const ScopedEnv &) = delete;

private:
    std::string name_;
    std::optional<std::string> previous_;
};

}  // namespace mamba
