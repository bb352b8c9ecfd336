// Devices, contexts, memory and events through the C ABI.
#include "backend_test.h"

using mt::BackendTest;

TEST(Device, CpuIsAlwaysPresent) {
    EXPECT_EQ(mamba_backend_available(MAMBA_DEVICE_CPU), 1);
    int32_t count = -1;
    MAMBA_ASSERT_OK(mamba_device_count(MAMBA_DEVICE_CPU, &count));
    EXPECT_EQ(count, 1);
    mamba_device_info info;
    MAMBA_ASSERT_OK(mamba_device_get_info(MAMBA_DEVICE_CPU, 0, &info));
    EXPECT_EQ(info.device_type, MAMBA_DEVICE_CPU);
    EXPECT_GT(std::strlen(info.name), 0u);
    EXPECT_GE(info.multiprocessor_count, 1);
    EXPECT_GT(info.total_memory_bytes, 0);
    EXPECT_LE(info.free_memory_bytes, info.total_memory_bytes);
}

TEST(Device, UnknownCpuDeviceIsAnError) {
    mamba_device_info info;
    EXPECT_EQ(mamba_device_get_info(MAMBA_DEVICE_CPU, 3, &info), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(std::string(mamba_last_error()).find("CPU device 3"), std::string::npos) << mamba_last_error();
}

TEST(Device, CudaCountIsConsistentWithBuild) {
    int32_t count = -1;
    MAMBA_ASSERT_OK(mamba_device_count(MAMBA_DEVICE_CUDA, &count));
    if (!mamba_backend_available(MAMBA_DEVICE_CUDA)) EXPECT_EQ(count, 0);
    else EXPECT_GE(count, 0);
}

TEST(Device, CudaInfoReportsComputeCapability) {
    MAMBA_REQUIRE_CUDA();
    mamba_device_info info;
    MAMBA_ASSERT_OK(mamba_device_get_info(MAMBA_DEVICE_CUDA, 0, &info));
    EXPECT_GE(info.compute_capability_major, 7);
    EXPECT_GT(info.multiprocessor_count, 0);
    EXPECT_GT(info.total_memory_bytes, int64_t(1) << 30);
    EXPECT_GT(std::strlen(info.name), 0u);
}

TEST(Context, UnknownDeviceTypeIsRejected) {
    mamba_context_params p = mamba_context_default_params();
    p.device_type = static_cast<mamba_device_type>(7);
    mamba_context * ctx = reinterpret_cast<mamba_context *>(0x1);
    EXPECT_EQ(mamba_context_create(&p, &ctx), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(ctx, nullptr);
    EXPECT_NE(std::string(mamba_last_error()).find("unknown device type 7"), std::string::npos);
}

TEST(Context, CudaWithoutBackendOrDeviceFailsCleanly) {
    if (mt::cuda_present()) GTEST_SKIP() << "a CUDA device is present";
    mamba_context_params p = mamba_context_default_params();
    p.device_type = MAMBA_DEVICE_CUDA;
    mamba_context * ctx = nullptr;
    const mamba_status s = mamba_context_create(&p, &ctx);
    EXPECT_TRUE(s == MAMBA_STATUS_BACKEND_UNAVAILABLE) << mamba_status_name(s);
    EXPECT_EQ(ctx, nullptr);
    EXPECT_STRNE(mamba_last_error(), "");
}

// MAMBA_CUDA_PDL, MAMBA_CUDA_EARLY_WEIGHTS and MAMBA_CUDA_TRACE are read when a CUDA context is created and
// take "0" or "1"; any other value fails the creation with a message naming the variable, and leaves no
// context behind.
static void expect_cuda_context_rejects(const char * variable, const char * value) {
    SCOPED_TRACE(std::string(variable) + "=" + value);
    mamba_context_params p = mamba_context_default_params();
    p.device_type = MAMBA_DEVICE_CUDA;
    {
        const mt::ScopedEnv scoped(variable, value);
        mamba_context * ctx = reinterpret_cast<mamba_context *>(0x1);
        EXPECT_EQ(mamba_context_create(&p, &ctx), MAMBA_STATUS_INVALID_ARGUMENT);
        EXPECT_EQ(ctx, nullptr);
        EXPECT_EQ(std::string(mamba_last_error()),
                  std::string("mamba_context_create: ") + variable + " must be one of 0, 1 (or unset), not '" + value + "'");
    }
    // With the variable restored, creation works again (nothing was left half made).
    mamba_context * ctx = nullptr;
    MAMBA_ASSERT_OK(mamba_context_create(&p, &ctx));
    mamba_context_free(ctx);
}

TEST(Context, CudaRejectsInvalidPdlSwitch) {
    MAMBA_REQUIRE_CUDA();
    expect_cuda_context_rejects("MAMBA_CUDA_PDL", "2");
    expect_cuda_context_rejects("MAMBA_CUDA_PDL", "off");
}

TEST(Context, CudaRejectsInvalidEarlyWeightsSwitch) {
    MAMBA_REQUIRE_CUDA();
    expect_cuda_context_rejects("MAMBA_CUDA_EARLY_WEIGHTS", "yes");
}

TEST(Context, CudaRejectsInvalidTraceSwitch) {
    MAMBA_REQUIRE_CUDA();
    expect_cuda_context_rejects("MAMBA_CUDA_TRACE", "yes");
}

TEST(Context, CudaAcceptsEachSwitchValue) {
    MAMBA_REQUIRE_CUDA();
    for (const char * variable : {"MAMBA_CUDA_PDL", "MAMBA_CUDA_EARLY_WEIGHTS", "MAMBA_CUDA_TRACE"})
        for (const char * value : {"0", "1", ""}) {
            SCOPED_TRACE(std::string(variable) + "=" + value);
            const mt::ScopedEnv scoped(variable, value);
            EXPECT_NE(mt::make_context(MAMBA_DEVICE_CUDA), nullptr);
        }
}

TEST(Context, FreeAcceptsNull) {
    mamba_context_free(nullptr);
    mamba_event_free(nullptr);
}

TEST(Context, CpuRejectsExternalStream) {
    auto ctx = mt::make_context(MAMBA_DEVICE_CPU);
    int dummy;
    EXPECT_EQ(mamba_context_set_stream(ctx.get(), &dummy), MAMBA_STATUS_INVALID_ARGUMENT);
    MAMBA_ASSERT_OK(mamba_context_set_stream(ctx.get(), nullptr));
    void * stream = &dummy;
    MAMBA_ASSERT_OK(mamba_context_get_stream(ctx.get(), &stream));
    EXPECT_EQ(stream, nullptr);
}

class Memory : public BackendTest {};

TEST_P(Memory, RoundTripThroughDevice) {
    std::vector<uint8_t> host(1000), back(1000, 0);
    for (size_t i = 0; i < host.size(); ++i) host[i] = uint8_t(i * 7 + 3);
    void *a = nullptr, *b = nullptr;
    MAMBA_ASSERT_OK(mamba_alloc(ctx(), host.size(), &a));
    MAMBA_ASSERT_OK(mamba_alloc(ctx(), host.size(), &b));
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % 256, 0u);
    MAMBA_ASSERT_OK(mamba_memcpy(ctx(), a, host.data(), host.size(), MAMBA_MEMCPY_HOST_TO_DEVICE));
    MAMBA_ASSERT_OK(mamba_memcpy(ctx(), b, a, host.size(), MAMBA_MEMCPY_DEVICE_TO_DEVICE));
    MAMBA_ASSERT_OK(mamba_memset(ctx(), a, 0x5a, 10));
    MAMBA_ASSERT_OK(mamba_memcpy(ctx(), back.data(), b, host.size(), MAMBA_MEMCPY_DEVICE_TO_HOST));
    MAMBA_ASSERT_OK(mamba_context_synchronize(ctx()));
    EXPECT_EQ(back, host);
    MAMBA_ASSERT_OK(mamba_memcpy(ctx(), back.data(), a, 10, MAMBA_MEMCPY_DEVICE_TO_HOST));
    MAMBA_ASSERT_OK(mamba_context_synchronize(ctx()));
    for (int i = 0; i < 10; ++i) EXPECT_EQ(back[size_t(i)], 0x5a);
    MAMBA_ASSERT_OK(mamba_free(ctx(), a));
    MAMBA_ASSERT_OK(mamba_free(ctx(), b));
}

TEST_P(Memory, PinnedHostMemory) {
    void * p = nullptr;
    MAMBA_ASSERT_OK(mamba_alloc_host(ctx(), 4096, &p));
    std::memset(p, 1, 4096);
    MAMBA_ASSERT_OK(mamba_free_host(ctx(), p));
}

TEST_P(Memory, ZeroBytesIsAnError) {
    void * p = nullptr;
    EXPECT_EQ(mamba_alloc(ctx(), 0, &p), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(std::string(mamba_last_error()).find("bytes is 0"), std::string::npos);
}

TEST_P(Memory, ImpossibleAllocationReportsOutOfMemory) {
    void * p = nullptr;
    EXPECT_EQ(mamba_alloc(ctx(), size_t(1) << 62, &p), MAMBA_STATUS_OUT_OF_MEMORY) << mamba_last_error();
    EXPECT_EQ(p, nullptr);
}

TEST_P(Memory, SizesNearTheAddressLimitReportOutOfMemory) {
    if (on_cuda()) GTEST_SKIP() << "the host allocator's rounding (a CPU context's memory)";
    // Rounding such a size up to the alignment must not wrap around to a small allocation.
    for (const size_t bytes : {SIZE_MAX, SIZE_MAX - 5, SIZE_MAX - (size_t(1) << 20)}) {
        void * p = nullptr;
        EXPECT_EQ(mamba_alloc(ctx(), bytes, &p), MAMBA_STATUS_OUT_OF_MEMORY) << bytes << ": " << mamba_last_error();
        EXPECT_EQ(p, nullptr);
    }
}

TEST_P(Memory, EventsMeasureNonNegativeTime) {
    mamba_event *a = nullptr, *b = nullptr;
    MAMBA_ASSERT_OK(mamba_event_create(ctx(), &a));
    MAMBA_ASSERT_OK(mamba_event_create(ctx(), &b));
    float ms = -1;
    EXPECT_EQ(mamba_event_elapsed_ms(a, b, &ms), MAMBA_STATUS_INVALID_ARGUMENT);
    MAMBA_ASSERT_OK(mamba_event_record(a));
    MAMBA_ASSERT_OK(mamba_event_record(b));
    MAMBA_ASSERT_OK(mamba_event_synchronize(b));
    MAMBA_ASSERT_OK(mamba_event_elapsed_ms(a, b, &ms));
    EXPECT_GE(ms, 0.0f);
    mamba_event_free(a);
    mamba_event_free(b);
}

MAMBA_INSTANTIATE_BACKENDS(Memory);
