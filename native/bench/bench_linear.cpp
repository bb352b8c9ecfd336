// Linear cases. Decode is bound by reading the weights, so every decode case cycles through enough copies
// of its weights to overflow the last-level cache and reports the weight bytes it streams; compare with the
// "stream read" row, the read bandwidth of the same machine in the same run. Prefill cases report TFLOP/s.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <thread>
#include <vector>

#include "bench.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace {

// Bytes of distinct weights a decode case cycles through: well past any last-level cache.
constexpr double kColdBytes = 512.0 * (1 << 20);

size_t dtype_bytes(DLDataType t) { return t.bits / 8; }

// Sums n words with 16-byte loads and eight independent chains, so loads, not adds, set the pace.
uint64_t read_words(const uint64_t * data, size_t n) {
#if defined(__SSE2__)
    __m128i acc[8];
    for (auto & a : acc) a = _mm_setzero_si128();
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 8; ++j) acc[j] = _mm_add_epi64(acc[j], _mm_loadu_si128(reinterpret_cast<const __m128i *>(data + i + 2 * j)));
    for (int j = 1; j < 8; ++j) acc[0] = _mm_xor_si128(acc[0], acc[j]);
    uint64_t lanes[2];
    _mm_storeu_si128(reinterpret_cast<__m128i *>(lanes), acc[0]);
    uint64_t sum = lanes[0] ^ lanes[1];
#else
    uint64_t sum = 0;
    size_t i = 0;
#endif
    for (; i < n; ++i) sum += data[i];
    return sum;
}

// Read bandwidth: `threads` threads sum their shares of a 256 MiB buffer (no writes, unlike memcpy).
std::function<void()> stream_read_case(mb::Bench & b, double & bytes, double & flops, unsigned threads) {
    const size_t words = (size_t(256) << 20) / 8;
    DLTensor * t = b.tensor({int64_t(words * 2)}, mb::kF32);
    bytes = double(words * 8);
    flops = 0;
    if (b.on_cuda()) {
        // No host-side read on a GPU context: a device copy, counting the bytes read and written.
        DLTensor * dst = b.tensor({int64_t(words * 2)}, mb::kF32);
        bytes = double(words * 8) * 2;
        return [&b, t, dst, words] { mb::check(mamba_memcpy(b.ctx(), dst->data, t->data, words * 8, MAMBA_MEMCPY_DEVICE_TO_DEVICE), "mamba_memcpy"); };
    }
    const auto * data = static_cast<const uint64_t *>(t->data);
    auto sink = std::make_shared<std::vector<uint64_t>>(threads * 8);
    return [data, words, threads, sink] {
        std::vector<std::thread> pool;
        for (unsigned k = 0; k < threads; ++k) {
            pool.emplace_back([=] { (*sink)[k * 8] = read_words(data + words * k / threads, words * (k + 1) / threads - words * k / threads); });
        }
        for (auto & th : pool) th.join();
    };
}

mb::Register stream_read_all("stream read 256 MiB, all cores", [](mb::Bench & b, double & bytes, double & flops) {
    return stream_read_case(b, bytes, flops, std::max(1u, std::thread::hardware_concurrency()));
});
mb::Register stream_read_two("stream read 256 MiB, 2 threads", [](mb::Bench & b, double & bytes, double & flops) {
    return stream_read_case(b, bytes, flops, 2);
});
mb::Register stream_read_one("stream read 256 MiB, 1 thread", [](mb::Bench & b, double & bytes, double & flops) {
    return stream_read_case(b, bytes, flops, 1);
});

// y = x W^T for `rows` rows, cycling through copies of W so that each call reads its weights from memory.
std::function<void()> linear_case(mb::Bench & b, double & bytes, double & flops, int64_t rows, int64_t out, int64_t in, DLDataType w_dtype,
                                  DLDataType xy_dtype, bool cold) {
    const double weight_bytes = double(out * in) * double(dtype_bytes(w_dtype));
    const int copies = cold ? std::max(1, int(kColdBytes / weight_bytes + 0.999)) : 1;
    auto args = std::make_shared<std::vector<mamba_linear_args>>();
    DLTensor * x = b.tensor({rows, in}, xy_dtype);
    DLTensor * y = b.tensor({rows, out}, xy_dtype);
    for (int c = 0; c < copies; ++c) {
        mamba_linear_args a{};
        a.x = x;
        a.weight = b.tensor({out, in}, w_dtype, -0.05, 0.05);
        a.y = y;
        args->push_back(a);
    }
    bytes = weight_bytes + double(rows * (in + out)) * double(dtype_bytes(xy_dtype));
    flops = 2.0 * double(rows) * double(out) * double(in);
    auto next = std::make_shared<size_t>(0);
    return [&b, args, next] {
        const mamba_linear_args & a = (*args)[*next];
        *next = (*next + 1) % args->size();
        mb::check(mamba_linear(b.ctx(), &a), "mamba_linear");
    };
}

struct Shape {
    int64_t out, in;
    const char * what;
};
const Shape kDecodeShapes[] = {{1536, 768, ""}, {768, 1536, " (out_proj)"}, {3072, 768, " (in_proj)"}, {50280, 768, " (lm head)"}};

void register_decode_cases() {
    for (const Shape & s : kDecodeShapes) {
        for (DLDataType dt : {mb::kF32, mb::kBF16}) {
            const std::string name = std::string("linear gemv ") + (dt.bits == 32 ? "f32" : "bf16") + " W " + std::to_string(s.out) + "x" +
                                     std::to_string(s.in) + s.what + " rows=1";
            mb::Register(name, [s, dt](mb::Bench & b, double & bytes, double & flops) {
                return linear_case(b, bytes, flops, 1, s.out, s.in, dt, mb::kF32, true);
            });
        }
    }
}

// The decode GEMVs of mamba-2.8b (d_model 2560, d_inner 5120, dt_rank 160, d_state 16), x float32, one
// and eight rows (batched decode). On CUDA up to 16 rows take the GEMV kernel; the floor is the weight
// bytes over the copy bandwidth.
const Shape kMamba28bShapes[] = {
    {10240, 2560, " (in_proj)"}, {2560, 5120, " (out_proj)"}, {192, 5120, " (x_proj)"}, {5120, 160, " (dt_proj)"}, {50280, 2560, " (lm head)"}};

void register_mamba28b_decode_cases() {
    for (const Shape & s : kMamba28bShapes)
        for (DLDataType dt : {mb::kBF16, mb::kF32})
            for (int64_t rows : {1, 8}) {
                const std::string name = std::string("linear gemv mamba-2.8b ") + (dt.bits == 32 ? "f32" : "bf16") + " W " + std::to_string(s.out) + "x" +
                                         std::to_string(s.in) + s.what + " rows=" + std::to_string(rows);
                mb::Register(name, [s, dt, rows](mb::Bench & b, double & bytes, double & flops) {
                    return linear_case(b, bytes, flops, rows, s.out, s.in, dt, mb::kF32, true);
                });
            }
}

// The crossover between the GEMV kernels and sgemm: one in_proj weight, cold, over growing row counts.
void register_crossover_cases() {
    for (int64_t rows : {2, 4, 8, 9, 16, 32, 64}) {
        for (DLDataType dt : {mb::kF32, mb::kBF16}) {
            const std::string name = std::string("linear ") + (dt.bits == 32 ? "f32" : "bf16") + " W 3072x768 rows=" + std::to_string(rows);
            mb::Register(name, [rows, dt](mb::Bench & b, double & bytes, double & flops) {
                return linear_case(b, bytes, flops, rows, 3072, 768, dt, mb::kF32, true);
            });
        }
    }
}

// Every weight of a mamba-130m decode step (24 layers of in_proj, x_proj, dt_proj, out_proj, then the
// tied LM head), each read once per step as in a real step: ~130M weights.
std::function<void()> decode_step_case(mb::Bench & b, double & bytes, double & flops, DLDataType w_dtype) {
    const int64_t d_model = 768, d_inner = 1536, dt_rank = 48, d_state = 16, vocab = 50280, layers = 24;
    struct Layer {
        int64_t out, in;
    };
    const Layer per_layer[] = {{2 * d_inner, d_model}, {dt_rank + 2 * d_state, d_inner}, {d_inner, dt_rank}, {d_model, d_inner}};
    auto calls = std::make_shared<std::vector<mamba_linear_args>>();
    bytes = 0;
    flops = 0;
    auto add = [&](int64_t out, int64_t in) {
        mamba_linear_args a{};
        a.x = b.tensor({1, in}, mb::kF32);
        a.weight = b.tensor({out, in}, w_dtype, -0.05, 0.05);
        a.y = b.tensor({1, out}, mb::kF32);
        calls->push_back(a);
        bytes += double(out * in) * double(dtype_bytes(w_dtype));
        flops += 2.0 * double(out * in);
    };
    for (int64_t l = 0; l < layers; ++l)
        for (const Layer & s : per_layer) add(s.out, s.in);
    add(vocab, d_model);
    return [&b, calls] {
        for (const auto & a : *calls) mb::check(mamba_linear(b.ctx(), &a), "mamba_linear");
    };
}

mb::Register decode_step_f32("linear mamba-130m decode step, all GEMVs, f32 W", [](mb::Bench & b, double & bytes, double & flops) {
    return decode_step_case(b, bytes, flops, mb::kF32);
});
mb::Register decode_step_bf16("linear mamba-130m decode step, all GEMVs, bf16 W", [](mb::Bench & b, double & bytes, double & flops) {
    return decode_step_case(b, bytes, flops, mb::kBF16);
});

mb::Register prefill_f32("linear prefill f32 rows=2048 W 3072x768", [](mb::Bench & b, double & bytes, double & flops) {
    return linear_case(b, bytes, flops, 2048, 3072, 768, mb::kF32, mb::kF32, false);
});
mb::Register prefill_bf16("linear prefill bf16 rows=2048 W 3072x768", [](mb::Bench & b, double & bytes, double & flops) {
    return linear_case(b, bytes, flops, 2048, 3072, 768, mb::kBF16, mb::kBF16, false);
});
// bfloat16 W with float32 activations, as the managed model runs bf16 checkpoints: on CUDA x is split
// into two bfloat16 parts for the tensor cores (2x the FLOPs of the pure bf16 case above).
mb::Register prefill_bf16_f32x("linear prefill bf16 W f32 x rows=2048 W 3072x768", [](mb::Bench & b, double & bytes, double & flops) {
    return linear_case(b, bytes, flops, 2048, 3072, 768, mb::kBF16, mb::kF32, false);
});
mb::Register prefill_bf16_f32x_28b("linear prefill bf16 W f32 x rows=2048 W 10240x2560 (mamba-2.8b in_proj)", [](mb::Bench & b, double & bytes, double & flops) {
    return linear_case(b, bytes, flops, 2048, 10240, 2560, mb::kBF16, mb::kF32, false);
});
// The bfloat16-weight cases above with the CPU's GEMM forced to OpenBLAS (MAMBA_CPU_GEMM=blas), so that the AMX
// tiles the CPU backend takes by default where it can (gemm_amx.cpp) compare with it in one run. CUDA ignores it.
std::function<void()> on_openblas(std::function<void()> call) {
    return [call] {
        const mb::ScopedEnv blas("MAMBA_CPU_GEMM", "blas");
        call();
    };
}
mb::Register prefill_bf16_blas("linear prefill bf16 rows=2048 W 3072x768, MAMBA_CPU_GEMM=blas", [](mb::Bench & b, double & bytes, double & flops) {
    return on_openblas(linear_case(b, bytes, flops, 2048, 3072, 768, mb::kBF16, mb::kBF16, false));
});
mb::Register prefill_bf16_f32x_blas("linear prefill bf16 W f32 x rows=2048 W 3072x768, MAMBA_CPU_GEMM=blas", [](mb::Bench & b, double & bytes, double & flops) {
    return on_openblas(linear_case(b, bytes, flops, 2048, 3072, 768, mb::kBF16, mb::kF32, false));
});
mb::Register prefill_bf16_f32x_28b_blas("linear prefill bf16 W f32 x rows=2048 W 10240x2560 (mamba-2.8b in_proj), MAMBA_CPU_GEMM=blas",
                                        [](mb::Bench & b, double & bytes, double & flops) {
                                            return on_openblas(linear_case(b, bytes, flops, 2048, 10240, 2560, mb::kBF16, mb::kF32, false));
                                        });

// The CUDA GEMV kernels side by side (gemv.cu; MAMBA_CUDA_GEMV_VARIANT forces one, "default" is the
// library's own choice) at the decode shapes of mamba-2.8b and mamba2-2.7b, bfloat16 W, float32 x and y
// (the "x=bf16" rows: bfloat16 x and y, as the models' decode runs them).
// Each case replays a captured graph of back-to-back calls cycling through copies of W (cold: ~4x the
// H200's L2), as a captured decode step runs them: the time has no host enqueue in it, unlike the
// per-call "linear gemv" cases above, where a call's enqueue (several us) adds to every timing. The floor
// is the weight bytes over the copy bandwidth ("% copy").
constexpr double kGraphColdBytes = 192.0 * (1 << 20);

// hot: one copy of W read by every call, so that calls after the first find it in L2 where it fits (the
// H200's is 50 MB): how fast the kernel streams W from L2, the most that reading W into L2 ahead of the
// kernel (mamba_prefetch_l2) could give it.
std::function<void()> gemv_graph_case(mb::Bench & b, double & bytes, double & flops, int64_t rows, int64_t out, int64_t in, const std::string & variant,
                                      bool bf16_x = false, bool hot = false) {
    if (!b.on_cuda()) return {};
    const double weight_bytes = double(out * in) * 2;
    const int copies = hot ? 1 : std::max(1, int(kGraphColdBytes / weight_bytes + 0.999));
    const int calls = std::max(copies, 8);
    std::vector<mamba_linear_args> args;
    const DLDataType act = bf16_x ? mb::kBF16 : mb::kF32;
    const double act_bytes = bf16_x ? 2 : 4;
    DLTensor * x = b.tensor({rows, in}, act);
    DLTensor * y = b.tensor({rows, out}, act);
    for (int c = 0; c < copies; ++c) {
        mamba_linear_args a{};
        a.x = x;
        a.weight = b.tensor({out, in}, mb::kBF16, -0.05, 0.05);
        a.y = y;
        args.push_back(a);
    }
    mamba_graph * raw = nullptr;
    {
        const mb::ScopedEnv forced("MAMBA_CUDA_GEMV_VARIANT", variant == "default" ? nullptr : variant.c_str());
        for (const mamba_linear_args & a : args) mb::check(mamba_linear(b.ctx(), &a), "mamba_linear");  // kernels loaded
        mb::check(mamba_graph_capture_begin(b.ctx()), "mamba_graph_capture_begin");
        for (int c = 0; c < calls; ++c) mb::check(mamba_linear(b.ctx(), &args[size_t(c % copies)]), "mamba_linear");
        mb::check(mamba_graph_capture_end(b.ctx(), &raw), "mamba_graph_capture_end");
    }
    std::shared_ptr<mamba_graph> graph(raw, mamba_graph_free);
    bytes = double(calls) * (weight_bytes + double(rows * (in + out)) * act_bytes);
    flops = double(calls) * 2.0 * double(rows) * double(out) * double(in);
    return [&b, graph] { mb::check(mamba_graph_launch(b.ctx(), graph.get()), "mamba_graph_launch"); };
}

struct ModelShape {
    const char * model;
    int64_t out, in;
    const char * what;
};
const ModelShape kGemvGraphShapes[] = {{"mamba-2.8b", 10240, 2560, " (in_proj)"},
                                       {"mamba-2.8b", 2560, 5120, " (out_proj, also mamba2-2.7b)"},
                                       {"mamba-2.8b", 192, 5120, " (x_proj)"},
                                       {"mamba-2.8b", 5120, 160, " (dt_proj)"},
                                       {"mamba-2.8b", 50280, 2560, " (lm head)"},
                                       {"mamba2-2.7b", 10576, 2560, " (in_proj)"}};
const char * const kGemvVariantNames[] = {"default", "tiled", "warp", "gemm"};

void register_gemv_graph_cases() {
    auto add = [](const ModelShape & s, int64_t rows, const std::string & variant) {
        const std::string name = std::string("gemv graph ") + s.model + " bf16 W " + std::to_string(s.out) + "x" + std::to_string(s.in) + s.what +
                                 " rows=" + std::to_string(rows) + " v=" + variant;
        mb::Register(name, [s, rows, variant](mb::Bench & b, double & bytes, double & flops) {
            return gemv_graph_case(b, bytes, flops, rows, s.out, s.in, variant);
        });
    };
    for (const ModelShape & s : kGemvGraphShapes)
        for (const char * v : kGemvVariantNames) add(s, 1, v);
    auto add_bf16 = [](const ModelShape & s, int64_t rows, const std::string & variant, bool hot = false) {
        const std::string name = std::string("gemv graph ") + s.model + " bf16 W " + std::to_string(s.out) + "x" + std::to_string(s.in) + s.what +
                                 " rows=" + std::to_string(rows) + " x=bf16 v=" + variant + (hot ? " W hot in L2" : "");
        mb::Register(name, [s, rows, variant, hot](mb::Bench & b, double & bytes, double & flops) {
            return gemv_graph_case(b, bytes, flops, rows, s.out, s.in, variant, true, hot);
        });
    };
    // The models' decode: bfloat16 x and y, the kernel the default picks.
    add_bf16(kGemvGraphShapes[4], 1, "default");
    // The same with W hot in L2 (one copy, every call after the first reads it from L2 where it fits).
    for (const ModelShape & s : {kGemvGraphShapes[0], kGemvGraphShapes[1], kGemvGraphShapes[2]}) add_bf16(s, 1, "default", true);
    // Decode at 1-16 rows (batched decode) with bf16 x and y, as the models run it, over the W sizes of the
    // model family: the default and cuBLAS ("gemm") at one row, the tiled GEMV and cuBLAS beyond (where
    // the crossover, kGemmMinOut and kGemmAnyRows in gemv.cu, is placed), and the warp kernel at two rows where it
    // takes such outputs.
    const ModelShape batched[] = {kGemvGraphShapes[0],
                                  kGemvGraphShapes[1],
                                  kGemvGraphShapes[2],
                                  kGemvGraphShapes[3],
                                  {"mamba-1.4b", 2048, 4096, " (out_proj)"},
                                  {"mamba-370m", 4096, 1024, " (in_proj)"},
                                  {"mamba-370m", 1024, 2048, " (out_proj)"},
                                  {"mamba-130m", 3072, 768, " (in_proj)"},
                                  {"mamba-130m", 768, 1536, " (out_proj)"}};
    for (const ModelShape & s : batched)
        for (int64_t rows : {1, 2, 4, 8, 16})
            for (const std::string variant : {"default", "tiled", "warp", "gemm"}) {
                const bool wanted = variant == "gemm" || (variant == "default" && rows == 1) || (variant == "tiled" && rows > 1) ||
                                    (variant == "warp" && rows == 2 && s.out <= 1024);
                if (wanted) add_bf16(s, rows, variant);
            }
}

const bool registered = (register_decode_cases(), register_mamba28b_decode_cases(), register_crossover_cases(), register_gemv_graph_cases(), true);

}  // namespace
