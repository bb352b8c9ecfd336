// mamba_bench [--device cpu|cuda] [--filter SUBSTRING[|SUBSTRING...]] [--json FILE] [--threads N]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench.h"

namespace {

struct Row {
    std::string name;
    double ms, gbps, tflops;
};

}  // namespace

// Whether a case name contains one of the '|'-separated substrings of filter (an empty filter takes all).
static bool matches(const std::string & name, const std::string & filter) {
    if (filter.empty()) return true;
    size_t start = 0;
    while (true) {
        const size_t end = filter.find('|', start);
        const std::string part = filter.substr(start, end == std::string::npos ? std::string::npos : end - start);
        if (!part.empty() && name.find(part) != std::string::npos) return true;
        if (end == std::string::npos) return false;
        start = end + 1;
    }
}

int main(int argc, char ** argv) {
    mamba_device_type device = MAMBA_DEVICE_CPU;
    std::string filter, json;
    int32_t threads = 0;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--device" && i + 1 < argc) device = std::strcmp(argv[++i], "cuda") == 0 ? MAMBA_DEVICE_CUDA : MAMBA_DEVICE_CPU;
        else if (a == "--filter" && i + 1 < argc) filter = argv[++i];
        else if (a == "--json" && i + 1 < argc) json = argv[++i];
        else if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
        else {
            std::fprintf(stderr, "usage: mamba_bench [--device cpu|cuda] [--filter SUBSTRING[|SUBSTRING...]] [--json FILE] [--threads N]\n");
            return 2;
        }
    }
    mamba_context_params p = mamba_context_default_params();
    p.device_type = device;
    p.num_threads = threads;
    mamba_context * ctx = nullptr;
    mb::check(mamba_context_create(&p, &ctx), "mamba_context_create");
    mamba_device_info info;
    mb::check(mamba_device_get_info(device, 0, &info), "mamba_device_get_info");
    std::printf("# %s\n# device: %s\n", mamba_build_info(), info.name);

    std::vector<Row> rows;
    double copy_gbps = 0;
    {
        // Ceiling: a device-to-device copy of 1 GiB (256 MiB on CPU), bytes read + written.
        mb::Bench b(ctx);
        const size_t bytes = b.on_cuda() ? (size_t(1) << 30) : (size_t(256) << 20);
        DLTensor * src = b.tensor({int64_t(bytes / 4)}, mb::kF32);
        DLTensor * dst = b.tensor({int64_t(bytes / 4)}, mb::kF32);
        const double ms = b.time_ms([&] { mb::check(mamba_memcpy(ctx, dst->data, src->data, bytes, MAMBA_MEMCPY_DEVICE_TO_DEVICE), "copy"); }, 10, 100);
        copy_gbps = 2.0 * double(bytes) / (ms * 1e6);
        rows.push_back({"copy", ms, copy_gbps, 0});
    }
    for (const auto & c : mb::registry()) {
        if (!matches(c.name, filter)) continue;
        mb::Bench b(ctx);
        double bytes = 0, flops = 0;
        auto fn = c.setup(b, bytes, flops);
        if (!fn) continue;  // a case that does not apply to this device
        const double ms = b.time_ms(fn);
        rows.push_back({c.name, ms, bytes / (ms * 1e6), flops / (ms * 1e9)});
    }
    std::printf("| %-56s | %10s | %9s | %7s | %9s |\n", "case", "ms", "GB/s", "% copy", "TFLOP/s");
    std::printf("|%s|%s|%s|%s|%s|\n", std::string(58, '-').c_str(), std::string(12, '-').c_str(), std::string(11, '-').c_str(),
                std::string(9, '-').c_str(), std::string(11, '-').c_str());
    for (const auto & r : rows)
        std::printf("| %-56s | %10.4f | %9.1f | %6.0f%% | %9.3f |\n", r.name.c_str(), r.ms, r.gbps, 100.0 * r.gbps / copy_gbps, r.tflops);
    if (!json.empty()) {
        FILE * f = std::fopen(json.c_str(), "w");
        if (f) {
            std::fprintf(f, "{\"device\": \"%s\", \"build\": \"%s\", \"results\": [\n", info.name, mamba_build_info());
            for (size_t i = 0; i < rows.size(); ++i)
                std::fprintf(f, "  {\"name\": \"%s\", \"ms\": %.6f, \"gbps\": %.3f, \"tflops\": %.4f}%s\n", rows[i].name.c_str(), rows[i].ms,
                             rows[i].gbps, rows[i].tflops, i + 1 < rows.size() ? "," : "");
            std::fprintf(f, "]}\n");
            std::fclose(f);
        }
    }
    mamba_context_free(ctx);
    return 0;
}
