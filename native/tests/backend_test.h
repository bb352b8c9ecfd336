// Fixture for tests that run once per backend: the CPU always, CUDA when a device is present
// (reported as skipped otherwise).
#pragma once

#include "support.h"

namespace mt {

class BackendTest : public ::testing::TestWithParam<mamba_device_type> {
protected:
    void SetUp() override {
        if (GetParam() == MAMBA_DEVICE_CUDA) {
            MAMBA_REQUIRE_CUDA();
        }
        ctx_ = make_context(GetParam());
        ASSERT_NE(ctx_, nullptr);
    }
    mamba_context * ctx() { return ctx_.get(); }
    bool on_cuda() const { return GetParam() == MAMBA_DEVICE_CUDA; }
    // The values of a CUDA kernel-selection variable (ScopedEnv) a test runs through: all on CUDA, the
    // first alone on the CPU, which ignores the variable (the others would repeat the same run).
    template <size_t N>
    std::vector<const char *> kernel_variants(const char * const (&all)[N]) const {
        return on_cuda() ? std::vector<const char *>(all, all + N) : std::vector<const char *>{all[0]};
    }

    ContextPtr ctx_;
};

inline std::string backend_name(const ::testing::TestParamInfo<mamba_device_type> & info) {
    return info.param == MAMBA_DEVICE_CUDA ? "Cuda" : "Cpu";
}

#define MAMBA_INSTANTIATE_BACKENDS(suite) \
    INSTANTIATE_TEST_SUITE_P(Backends, suite, ::testing::Values(MAMBA_DEVICE_CPU, MAMBA_DEVICE_CUDA), ::mt::backend_name)

}  // namespace mt
