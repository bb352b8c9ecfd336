// Version, status names and the thread-local error message.
#include <thread>

#include "support.h"

TEST(Status, AbiVersionMatchesHeader) { EXPECT_EQ(mamba_abi_version(), MAMBA_ABI_VERSION); }

TEST(Status, VersionMatchesGeneratedHeader) { EXPECT_STREQ(mamba_version(), MAMBA_VERSION_STRING); }

TEST(Status, BuildInfoNamesVersionAndBlas) {
    const std::string info = mamba_build_info();
    EXPECT_NE(info.find(MAMBA_VERSION_STRING), std::string::npos) << info;
    EXPECT_NE(info.find("blas"), std::string::npos) << info;
}

TEST(Status, NamesEveryStatus) {
    EXPECT_STREQ(mamba_status_name(MAMBA_STATUS_OK), "MAMBA_STATUS_OK");
    EXPECT_STREQ(mamba_status_name(MAMBA_STATUS_INVALID_ARGUMENT), "MAMBA_STATUS_INVALID_ARGUMENT");
    EXPECT_STREQ(mamba_status_name(MAMBA_STATUS_INTERNAL), "MAMBA_STATUS_INTERNAL");
    EXPECT_STREQ(mamba_status_name(static_cast<mamba_status>(99)), "MAMBA_STATUS_UNKNOWN");
}

TEST(Status, FailingCallSetsMessageNamingFunctionAndArgument) {
    mamba_clear_last_error();
    EXPECT_STREQ(mamba_last_error(), "");
    EXPECT_EQ(mamba_context_create(nullptr, nullptr), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_context_create: argument 'params' is null");
}

TEST(Status, MessageIsPerThread) {
    mamba_clear_last_error();
    std::thread([] {
        int32_t* none = nullptr;
        EXPECT_EQ(mamba_device_count(MAMBA_DEVICE_CPU, none), MAMBA_STATUS_INVALID_ARGUMENT);
        EXPECT_STRNE(mamba_last_error(), "");
    }).join();
    EXPECT_STREQ(mamba_last_error(), "");
}
