// Device discovery: the CPU is always device 0 of its type; CUDA devices come from the runtime.
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include "core/context.h"

namespace {

std::string cpu_model_name() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("model name", 0) == 0) {
            const auto colon = line.find(':');
            if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
        }
    }
    return "cpu";
}

void cpu_info(mamba_device_info & info) {
    const std::string name = cpu_model_name();
    std::strncpy(info.name, name.c_str(), sizeof(info.name) - 1);
    info.multiprocessor_count = int32_t(std::thread::hardware_concurrency());
    const long page = sysconf(_SC_PAGESIZE);
    info.total_memory_bytes = int64_t(sysconf(_SC_PHYS_PAGES)) * page;
    info.free_memory_bytes = int64_t(sysconf(_SC_AVPHYS_PAGES)) * page;
}

void check_device_type(mamba_device_type type) {
    if (type != MAMBA_DEVICE_CPU && type != MAMBA_DEVICE_CUDA)
        mamba::fail_argument("unknown device type ", int(type), " (expected MAMBA_DEVICE_CPU=1 or MAMBA_DEVICE_CUDA=2)");
}

}  // namespace

extern "C" {

int32_t mamba_backend_available(mamba_device_type device_type) {
    if (device_type == MAMBA_DEVICE_CPU) return 1;
    return device_type == MAMBA_DEVICE_CUDA && MAMBA_WITH_CUDA ? 1 : 0;
}

mamba_status mamba_device_count(mamba_device_type device_type, int32_t * count) {
    return MAMBA_GUARDED({
        mamba::check_not_null("count", count);
        check_device_type(device_type);
        *count = 0;
        if (device_type == MAMBA_DEVICE_CPU) *count = 1;
#if MAMBA_WITH_CUDA
        else *count = mamba::cuda::device_count();
#endif
    });
}

mamba_status mamba_device_get_info(mamba_device_type device_type, int32_t device_id, mamba_device_info * info) {
    return MAMBA_GUARDED({
        mamba::check_not_null("info", info);
        check_device_type(device_type);
        std::memset(info, 0, sizeof(*info));
        info->device_type = device_type;
        info->device_id = device_id;
        if (device_type == MAMBA_DEVICE_CPU) {
            if (device_id != 0) mamba::fail_argument("CPU device ", device_id, " does not exist (there is one CPU device, 0)");
            cpu_info(*info);
        } else {
            MAMBA_CUDA_ONLY(mamba::cuda::device_info(device_id, *info));
        }
    });
}

}  // extern "C"
