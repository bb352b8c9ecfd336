// mamba_ssd and mamba_ssd_state_update against a float64 reference of the plain step-by-step recurrence,
// per backend, dtype, layout and option, plus invariants between calls (halves with the state carried,
// decode steps, packed sequences) and the argument errors.
#include <functional>
#include <iterator>
#include <limits>
#include <optional>

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include "backend_test.h"

namespace {

using mt::DType;
using mt::Tensor;

constexpr float kInf = std::numeric_limits<float>::infinity();

enum class DMode { None, PerHead, PerChannel };

struct Shape {
    int64_t batch, len, heads, headdim, groups, dstate;
};

struct Options {
    DType dtype = DType::F32;
    std::optional<DType> bc_dtype;  // B and C in another dtype than the other activations
    int64_t chunk_size = 0;
    DMode d = DMode::PerHead;
    bool z = true, dt_bias = true, softplus = true, initial = true, final_states = true, strided = false;
    float dt_min = 0.0f, dt_max = kInf;
    std::vector<int64_t> cu_seqlens;  // empty: one sequence per batch entry
    DType offsets_dtype = DType::I32;
};

// Strides of a row-major layout whose last axis is `step` elements apart.
std::vector<int64_t> spread_last_axis(const std::vector<int64_t> & shape, int64_t step) {
    std::vector<int64_t> s(shape.size());
    int64_t n = step;
    for (size_t i = shape.size(); i-- > 0;) {
        s[i] = n;
        n *= shape[i];
    }
    return s;
}

// x-like (batch, len, heads, headdim) stored heads-major, i.e. as (batch, heads, len, headdim).
std::vector<int64_t> heads_major(const Shape & s) {
    return {s.heads * s.len * s.headdim, s.headdim, s.len * s.headdim, 1};
}

// The inputs of one mamba_ssd call, filled with fresh random values (already rounded to their dtypes).
struct Problem {
    Shape s;
    Options o;
    int64_t nseq;
    Tensor x, dt, A, B, C, D, z, dt_bias, initial, cu_seqlens;

    Problem(const Shape & shape, const Options & opt, uint64_t seed)
        : s(shape), o(opt), nseq(opt.cu_seqlens.empty() ? shape.batch : int64_t(opt.cu_seqlens.size()) - 1),
          x({s.batch, s.len, s.heads, s.headdim}, o.dtype, o.strided ? heads_major(s) : std::vector<int64_t>{}),
          dt({s.batch, s.len, s.heads}, o.dtype, o.strided ? std::vector<int64_t>{s.heads * s.len, 1, s.len} : std::vector<int64_t>{}),
          A({s.heads}, DType::F32),
          B({s.batch, s.len, s.groups, s.dstate}, o.bc_dtype.value_or(o.dtype), o.strided ? spread_last_axis({s.batch, s.len, s.groups, s.dstate}, 2) : std::vector<int64_t>{}),
          C({s.batch, s.len, s.groups, s.dstate}, o.bc_dtype.value_or(o.dtype), o.strided ? mt::padded_strides({s.batch, s.len, s.groups, s.dstate}, 2, 3) : std::vector<int64_t>{}),
          D(o.d == DMode::PerChannel ? std::vector<int64_t>{s.heads, s.headdim} : std::vector<int64_t>{s.heads}, DType::F32),
          z({s.batch, s.len, s.heads, s.headdim}, o.dtype, o.strided ? mt::padded_strides({s.batch, s.len, s.heads, s.headdim}, 3, 5) : std::vector<int64_t>{}),
          dt_bias({s.heads}, DType::F32),
          initial({nseq, s.heads, s.headdim, s.dstate}, DType::F32, o.strided ? mt::padded_strides({nseq, s.heads, s.headdim, s.dstate}, 3, 4) : std::vector<int64_t>{}),
          cu_seqlens({int64_t(opt.cu_seqlens.size())}, opt.offsets_dtype) {
        std::mt19937_64 rng(seed);
        x.fill_uniform(rng, -1, 1);
        // With softplus the raw dt is a pre-activation (softplus(-3..0) = 0.05..0.69); without, a step size.
        if (o.softplus) dt.fill_uniform(rng, -3, 0);
        else dt.fill_uniform(rng, 0.01, 0.3);
        A.fill_uniform(rng, -4, -0.5);
        B.fill_uniform(rng, -1, 1);
        C.fill_uniform(rng, -1, 1);
        D.fill_uniform(rng, -1, 1);
        z.fill_uniform(rng, -6, 6);
        dt_bias.fill_uniform(rng, -0.5, 0.5);
        initial.fill_uniform(rng, -1, 1);
        for (size_t i = 0; i < o.cu_seqlens.size(); ++i) cu_seqlens.at(int64_t(i)) = double(o.cu_seqlens[i]);
    }

    void upload(mamba_context * ctx) {
        for (Tensor * t : {&x, &dt, &A, &B, &C, &D, &z, &dt_bias, &initial}) t->upload(ctx);
        if (!o.cu_seqlens.empty()) cu_seqlens.upload(ctx);
    }

    mamba_ssd_args args(Tensor & y, Tensor & final_states) {
        mamba_ssd_args a{};
        a.x = x.dl();
        a.dt = dt.dl();
        a.A = A.dl();
        a.B = B.dl();
        a.C = C.dl();
        if (o.d != DMode::None) a.D = D.dl();
        if (o.z) a.z = z.dl();
        if (o.dt_bias) a.dt_bias = dt_bias.dl();
        if (o.initial) a.initial_states = initial.dl();
        if (!o.cu_seqlens.empty()) a.cu_seqlens = cu_seqlens.dl();
        a.y = y.dl();
        if (o.final_states) a.final_states = final_states.dl();
        a.chunk_size = o.chunk_size;
        a.dt_min = o.dt_min;
        a.dt_max = o.dt_max;
        a.dt_softplus = o.softplus;
        return a;
    }

    // Copies steps [start, start + len) of batch entry b into this problem's batch entry 0, step 0.
    void copy_steps_from(const Problem & src, int64_t b, int64_t start) {
        const Shape & t = src.s;
        for (int64_t i = 0; i < s.len; ++i) {
            for (int64_t h = 0; h < s.heads; ++h) {
                dt.at(i * s.heads + h) = src.dt.at((b * t.len + start + i) * t.heads + h);
                for (int64_t p = 0; p < s.headdim; ++p) {
                    x.at((i * s.heads + h) * s.headdim + p) = src.x.at(((b * t.len + start + i) * t.heads + h) * t.headdim + p);
                    z.at((i * s.heads + h) * s.headdim + p) = src.z.at(((b * t.len + start + i) * t.heads + h) * t.headdim + p);
                }
            }
            for (int64_t k = 0; k < s.groups * s.dstate; ++k) {
                B.at(i * s.groups * s.dstate + k) = src.B.at((b * t.len + start + i) * t.groups * t.dstate + k);
                C.at(i * s.groups * s.dstate + k) = src.C.at((b * t.len + start + i) * t.groups * t.dstate + k);
            }
        }
        A.values() = src.A.values();
        D.values() = src.D.values();
        dt_bias.values() = src.dt_bias.values();
    }
};

// ---- float64 reference --------------------------------------------------------------------------------

using mt::reference_dt;

std::vector<double> zeros(int64_t n) { return std::vector<double>(size_t(n), 0.0); }

double reference_silu(double v) { return v / (1 + std::exp(-v)); }

// One step for one head: S (headdim x dstate) advanced in place, y[p] written.
void reference_step(double dt, double A, const std::vector<double> & x, const std::vector<double> & B, const std::vector<double> & C,
                    const std::vector<double> & D, const std::vector<double> * z, std::vector<double> & S, std::vector<double> & y) {
    const size_t P = x.size(), N = B.size();
    const double dA = std::exp(dt * A);
    for (size_t p = 0; p < P; ++p) {
        double acc = 0;
        for (size_t n = 0; n < N; ++n) {
            double & h = S[p * N + n];
            h = dA * h + dt * x[p] * B[n];
            acc += h * C[n];
        }
        y[p] = acc + D[p] * x[p];
        if (z) y[p] *= reference_silu((*z)[p]);
    }
}

struct Result {
    std::vector<double> y, final_states;
};

// D of head h as one value per channel (zeros when absent).
std::vector<double> reference_D(const Tensor & D, DMode mode, int64_t h, int64_t P) {
    std::vector<double> d(size_t(P), 0.0);
    for (int64_t p = 0; p < P; ++p) {
        if (mode == DMode::PerHead) d[size_t(p)] = D.at(h);
        if (mode == DMode::PerChannel) d[size_t(p)] = D.at(h * P + p);
    }
    return d;
}

Result reference_ssd(const Problem & pr) {
    const Shape & s = pr.s;
    const int64_t H = s.heads, P = s.headdim, N = s.dstate, G = s.groups, L = s.len;
    Result out;
    out.y.assign(size_t(s.batch * L * H * P), 0.0);
    out.final_states.assign(size_t(pr.nseq * H * P * N), 0.0);
    for (int64_t seq = 0; seq < pr.nseq; ++seq) {
        const bool packed = !pr.o.cu_seqlens.empty();
        const int64_t b = packed ? 0 : seq;
        const int64_t begin = packed ? pr.o.cu_seqlens[size_t(seq)] : 0, end = packed ? pr.o.cu_seqlens[size_t(seq + 1)] : L;
        for (int64_t h = 0; h < H; ++h) {
            const int64_t g = h / (H / G);
            std::vector<double> S = zeros(P * N), x = zeros(P), z = zeros(P), Bv = zeros(N), Cv = zeros(N), y = zeros(P);
            if (pr.o.initial)
                for (int64_t i = 0; i < P * N; ++i) S[size_t(i)] = pr.initial.at((seq * H + h) * P * N + i);
            const auto D = reference_D(pr.D, pr.o.d, h, P);
            for (int64_t t = begin; t < end; ++t) {
                for (int64_t p = 0; p < P; ++p) {
                    x[size_t(p)] = pr.x.at(((b * L + t) * H + h) * P + p);
                    z[size_t(p)] = pr.z.at(((b * L + t) * H + h) * P + p);
                }
                for (int64_t n = 0; n < N; ++n) {
                    Bv[size_t(n)] = pr.B.at(((b * L + t) * G + g) * N + n);
                    Cv[size_t(n)] = pr.C.at(((b * L + t) * G + g) * N + n);
                }
                const double dt = reference_dt(pr.dt.at((b * L + t) * H + h), pr.o.dt_bias ? pr.dt_bias.at(h) : 0.0, pr.o.softplus, pr.o.dt_min, pr.o.dt_max);
                reference_step(dt, pr.A.at(h), x, Bv, Cv, D, pr.o.z ? &z : nullptr, S, y);
                for (int64_t p = 0; p < P; ++p) out.y[size_t(((b * L + t) * H + h) * P + p)] = y[size_t(p)];
            }
            for (int64_t i = 0; i < P * N; ++i) out.final_states[size_t((seq * H + h) * P * N + i)] = S[size_t(i)];
        }
    }
    return out;
}

// Float32 arithmetic over a few hundred steps, then the output dtype's rounding.
// (3e-4: without softplus a negative dt makes the states grow, and the GPU's exp2-based exponentials, a few
// ulp from libm's, then reach about 2e-4 relative at 50 steps.)
double tolerance(DType dtype) { return 4 * mt::dtype_epsilon(dtype) + 3e-4; }

// The chunk-parallel state kernels the CUDA instances run: each forced through MAMBA_CUDA_SSD_STATE (pair;
// twopass: every chunk's local state in parallel, then the carry over chunks), then the variable unset (the
// plan's automatic choice from the grid and the SM count, which reserves twopass's workspace when it picks
// it). The one output kernel runs its full build where every chunk is full and its general build elsewhere,
// gated or not by the shape. The CPU ignores the variable and runs once.
const char * const kCudaSsdStates[] = {"pair", "twopass", nullptr};

// Options of the chunk-parallel tests: chunks of 128 steps (a few chunks at small lengths), the given dtype
// and D mode, every other option as Options has it.
Options chunk128(DType dtype = DType::BF16, DMode d = DMode::PerHead) {
    Options o;
    o.dtype = dtype;
    o.chunk_size = 128;
    o.d = d;
    return o;
}

std::string describe_state(const char * state) { return std::string("SSD state kernel: ") + (state != nullptr ? state : "automatic"); }


}  // namespace

class SsdTest : public mt::BackendTest {
protected:
    // Runs mamba_ssd with poisoned outputs and returns what it wrote.
    Result run(Problem & pr) {
        pr.upload(ctx());
        const Shape & s = pr.s;
        Tensor y({s.batch, s.len, s.heads, s.headdim}, pr.o.dtype, pr.o.strided ? spread_last_axis({s.batch, s.len, s.heads, s.headdim}, 3) : std::vector<int64_t>{});
        Tensor fin({pr.nseq, s.heads, s.headdim, s.dstate}, DType::F32, pr.o.strided ? spread_last_axis({pr.nseq, s.heads, s.headdim, s.dstate}, 2) : std::vector<int64_t>{});
        y.upload_poisoned(ctx());
        fin.upload_poisoned(ctx());
        const auto a = pr.args(y, fin);
        Result r;
        const mamba_status status = mamba_ssd(ctx(), &a);
        EXPECT_EQ(status, MAMBA_STATUS_OK) << mamba_last_error();
        if (status != MAMBA_STATUS_OK) return r;
        y.download(ctx());
        r.y = y.values();
        if (pr.o.final_states) {
            fin.download(ctx());
            r.final_states = fin.values();
        }
        return r;
    }

    // kCudaSsdStates on CUDA, its first entry on the CPU.
    std::vector<const char *> ssd_state_variants() const {
        return on_cuda() ? std::vector<const char *>(std::begin(kCudaSsdStates), std::end(kCudaSsdStates))
                         : std::vector<const char *>{kCudaSsdStates[0]};
    }

    // On CUDA, once per state kernel choice of the chunk-parallel path (kCudaSsdStates; the other paths ignore
    // the variable), each run with fresh poisoned outputs.
    void check(const Shape & s, const Options & o, uint64_t seed = 7) {
        Problem pr(s, o, seed);
        const Result want = reference_ssd(pr);
        const double tol = tolerance(o.dtype);
        for (const char * state : ssd_state_variants()) {
            SCOPED_TRACE(describe_state(state));
            const mt::ScopedEnv forced("MAMBA_CUDA_SSD_STATE", state);
            const Result got = run(pr);
            EXPECT_CLOSE(got.y, want.y, tol, tol);
            if (o.final_states) {
                EXPECT_CLOSE(got.final_states, want.final_states, 2e-4, 2e-4);
            }
        }
    }
};

std::string describe(const Shape & s, const Options & o) {
    return mt::dtype_name(o.dtype) + std::string(" B") + std::to_string(s.batch) + " L" + std::to_string(s.len) + " H" + std::to_string(s.heads) +
           " P" + std::to_string(s.headdim) + " G" + std::to_string(s.groups) + " N" + std::to_string(s.dstate) + " chunk " +
           std::to_string(o.chunk_size);
}

TEST_P(SsdTest, MatchesRecurrenceForLengthsAroundTheChunk) {
    // len 1, shorter than a chunk, a multiple of it, and a partial last chunk, for several chunk sizes.
    for (int64_t chunk : {16, 32, 64, 128, 512}) {
        for (int64_t len : {int64_t(1), chunk - 3, chunk, 2 * chunk, 3 * chunk + 5}) {
            Options o;
            o.chunk_size = chunk;
            const Shape s{1, len, 2, 8, 1, 16};
            SCOPED_TRACE(describe(s, o));
            check(s, o);
        }
    }
}

TEST_P(SsdTest, MatchesRecurrenceWithDefaultChunkAndLargeState) {
    Options o;  // chunk_size 0 selects 256
    const Shape s{1, 300, 3, 16, 1, 128};
    SCOPED_TRACE(describe(s, o));
    check(s, o);
}

TEST_P(SsdTest, MatchesRecurrenceWithFewWideHeads) {
    // Fewer heads than threads: the CPU backend splits each head's channels over tasks.
    Options o;
    o.chunk_size = 32;
    o.d = DMode::PerChannel;
    for (const Shape & s : {Shape{1, 100, 1, 64, 1, 16}, Shape{1, 70, 2, 80, 1, 32}}) {
        SCOPED_TRACE(describe(s, o));
        check(s, o);
    }
}

TEST_P(SsdTest, MatchesRecurrenceOverManyChunks) {
    // Enough chunks that the scan works through them in several windows, with sequences ending early.
    Options o;
    o.chunk_size = 16;
    const Shape s{2, 300, 4, 8, 2, 16};
    SCOPED_TRACE(describe(s, o));
    check(s, o);
    o.cu_seqlens = {0, 10, 290, 300};
    const Shape packed{1, 300, 4, 8, 2, 16};
    SCOPED_TRACE("packed");
    check(packed, o);
}

// The CPU backend's chunk products (MAMBA_CPU_GEMM): on AVX-512 registers ("auto", and "avx512", which a library
// built without AVX-512 refuses) and on OpenBLAS ("blas"), each against the reference: a head's channels split over
// tasks, heads sharing a group, two windows of chunks, packed sequences, headdim past one 64-column register block
// and not a multiple of 16, dstate not a multiple of 16. A misspelt value is an argument error.
TEST_P(SsdTest, CpuChunkProductsOnRegistersAndOnOpenBlasMatchTheRecurrence) {
    if (on_cuda()) GTEST_SKIP() << "MAMBA_CPU_GEMM is read by the CPU backend";
    Options o;
    o.chunk_size = 16;
    Problem probe({1, 20, 2, 8, 1, 16}, o, 90);
    probe.upload(ctx());
    Tensor y({1, 20, 2, 8}, o.dtype), fin({1, 2, 8, 16}, DType::F32);
    y.upload_poisoned(ctx());
    fin.upload_poisoned(ctx());
    const auto a = probe.args(y, fin);
    std::vector<const char *> gemms{"auto", "blas"};
    {
        const mt::ScopedEnv avx512("MAMBA_CPU_GEMM", "avx512");
        const mamba_status st = mamba_ssd(ctx(), &a);
        if (st == MAMBA_STATUS_OK) {
            gemms.push_back("avx512");
        } else {
            EXPECT_EQ(st, MAMBA_STATUS_UNSUPPORTED);
            EXPECT_STREQ(mamba_last_error(), "mamba_ssd: MAMBA_CPU_GEMM=avx512, but this library was built without AVX-512");
        }
    }
    for (const char * gemm : gemms) {
        SCOPED_TRACE(std::string("MAMBA_CPU_GEMM=") + gemm);
        const mt::ScopedEnv env("MAMBA_CPU_GEMM", gemm);
        Options wide = o;
        wide.d = DMode::PerChannel;
        for (const Shape & s : {Shape{1, 100, 1, 80, 1, 24}, Shape{2, 300, 4, 72, 2, 16}}) {
            SCOPED_TRACE(describe(s, wide));
            check(s, wide);
        }
        Options packed = o;
        packed.cu_seqlens = {0, 10, 290, 300};
        SCOPED_TRACE("packed");
        check({1, 300, 4, 8, 2, 16}, packed);
    }
    const mt::ScopedEnv misspelt("MAMBA_CPU_GEMM", "mkl");
    EXPECT_EQ(mamba_ssd(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(std::string(mamba_last_error()).find("MAMBA_CPU_GEMM"), std::string::npos) << mamba_last_error();
}

TEST_P(SsdTest, MatchesRecurrenceForBatchesAndGroups) {
    Options o;
    o.chunk_size = 16;
    for (const Shape & s : {Shape{3, 40, 4, 8, 1, 16}, Shape{2, 37, 6, 4, 3, 8}, Shape{2, 20, 4, 8, 4, 16}, Shape{2, 23, 3, 5, 3, 13}}) {
        SCOPED_TRACE(describe(s, o));
        check(s, o);
    }
}

TEST_P(SsdTest, MatchesRecurrenceForEveryDtype) {
    for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
        for (bool strided : {false, true}) {
            Options o;
            o.dtype = dt;
            o.strided = strided;
            o.chunk_size = 32;
            o.d = DMode::PerChannel;
            const Shape s{2, 45, 4, 8, 2, 16};
            SCOPED_TRACE(describe(s, o) + (strided ? " strided" : ""));
            check(s, o);
        }
    }
}

// Shapes around the GPU's sequential chunked kernel, the fallback on GPUs without the shared memory of
// the chunk-parallel one (bf16; 64-step chunks, 16, 32 or 64 channels per
// block, dstate padded to 64 or 128): len 1, lengths off the chunk, headdim off the channel tile,
// dstate not a multiple of 8, groups, and enough heads for 64-channel blocks. Every dtype, so the same
// shapes also cover the other kernels. The path is forced to that kernel (MAMBA_CUDA_SSD_PATH=chunked),
// which the chunk-parallel one would otherwise take over on GPUs with its shared memory.
TEST_P(SsdTest, MatchesRecurrenceAcrossChunkedKernelShapes) {
    const mt::ScopedEnv path("MAMBA_CUDA_SSD_PATH", "chunked");
    const Shape shapes[] = {
        {1, 1, 2, 64, 1, 128},   {2, 130, 3, 64, 1, 128}, {1, 200, 4, 48, 2, 64}, {1, 77, 2, 96, 1, 100},
        {2, 150, 4, 16, 4, 32},  {1, 64, 2, 40, 1, 8},    {1, 65, 264, 64, 1, 128}, {2, 70, 132, 64, 2, 64},
    };
    for (DType dt : {DType::BF16, DType::F16, DType::F32}) {
        for (const Shape & s : shapes) {
            Options o;
            o.dtype = dt;
            o.chunk_size = 256;
            o.d = DMode::PerChannel;
            SCOPED_TRACE(describe(s, o));
            check(s, o);
        }
    }
}

// The GPU's sequential chunked kernel (the fallback above) picks 16, 32 or 64 channels per block from the number of blocks against the
// SM count (132 on an H200): few (sequence, head) pairs take 16-channel tiles (B1 H3, B1 H24), 40
// heads of 64 channels 32-channel ones, many heads 64-channel ones (the shapes above). Each with
// lengths off the 64-step chunk, headdim off the tile, groups, initial and final states, and packed.
// Forced to that kernel (MAMBA_CUDA_SSD_PATH=chunked).
TEST_P(SsdTest, MatchesRecurrenceForEachGpuChannelTile) {
    const mt::ScopedEnv path("MAMBA_CUDA_SSD_PATH", "chunked");
    const Shape shapes[] = {
        {1, 90, 3, 24, 1, 128},   {1, 130, 24, 64, 1, 128}, {1, 70, 5, 40, 1, 64},    // 16-channel tiles
        {1, 150, 40, 64, 4, 128}, {2, 100, 12, 96, 3, 64},                             // 32-channel tiles
        {2, 65, 80, 64, 1, 128},                                                       // 64-channel tiles
    };
    for (const Shape & s : shapes) {
        Options o;
        o.dtype = DType::BF16;
        o.chunk_size = 256;
        o.d = DMode::PerChannel;
        SCOPED_TRACE(describe(s, o));
        check(s, o, uint64_t(400 + s.heads));
    }
    // Packed: 4 sequences of 10 heads are 160 16-channel blocks, 80 32-channel ones; of 3 heads, 48
    // 16-channel ones.
    for (int64_t heads : {3, 10}) {
        Options o;
        o.dtype = DType::BF16;
        o.chunk_size = 256;
        o.cu_seqlens = {0, 37, 100, 101, 230};
        const Shape s{1, 230, heads, 64, heads == 3 ? 1 : 2, 128};
        SCOPED_TRACE(describe(s, o) + " packed");
        check(s, o, uint64_t(450 + heads));
    }
}

// The sequential chunked kernel (forced: MAMBA_CUDA_SSD_PATH=chunked) with each option absent or present
// and strided views.
TEST_P(SsdTest, ChunkedKernelShapesWithOptionsAbsentOrStrided) {
    const mt::ScopedEnv path("MAMBA_CUDA_SSD_PATH", "chunked");
    const Shape s{2, 100, 4, 64, 2, 128};
    for (int mask = 0; mask < 8; ++mask) {
        Options o;
        o.dtype = DType::BF16;
        o.chunk_size = 64;
        o.d = mask & 1 ? DMode::PerHead : DMode::None;
        o.z = mask & 2;
        o.dt_bias = mask & 4;
        o.initial = mask & 1;
        o.strided = mask & 2;
        o.softplus = mask != 3;  // mask 3 has no dt_bias, so dt stays a positive step
        if (mask == 6) {
            o.dt_min = 0.1f;
            o.dt_max = 0.3f;
        }
        SCOPED_TRACE("options mask " + std::to_string(mask));
        check(s, o, uint64_t(300 + mask));
    }
}

// Shapes around the GPU's chunk-parallel kernels (bf16 x, B and C): 128-step chunks restarting at each
// sequence start, a state pass over 16 or 32 channels per block, output blocks of 64 channels and 1, 2,
// 4, 8 or 16 heads of one group (chosen from the block count against the SM count), dstate padded to 64 or
// 128. Length 1, one step short of and past a chunk, headdim over 64 and off 16 or 8, dstate off 8,
// groups with several heads each (odd counts: the state pair kernel's last pair is one head), and
// sequences of 16 and 89 chunks.
TEST_P(SsdTest, MatchesRecurrenceAcrossChunkParallelShapes) {
    const Shape shapes[] = {
        {1, 1, 2, 64, 1, 128},     {2, 127, 4, 64, 2, 64},  {1, 128, 3, 64, 1, 128},  {2, 129, 6, 80, 3, 100},
        {1, 300, 8, 40, 2, 64},    {1, 260, 4, 20, 1, 32},  {1, 2048, 48, 64, 2, 64},  // 2 heads per output block on 132 SMs
        {1, 11300, 20, 16, 1, 16},  // 89 chunks: 8 heads per output block, the last block 4
        // State pair kernel, 32-channel blocks (>= 264 on 132 SMs), 135 and 133 heads per group (the last
        // pair one head), 2 and 4 chunks (the 2 chunk buffers wrap).
        {2, 200, 135, 64, 1, 64},   {2, 400, 133, 64, 1, 128},
        // twopass's local-state build for headdim <= 32 with dstate > 64 (4 warps a row tile); the second
        // also off the 16-byte paths (headdim 24, dstate 100).
        {2, 200, 4, 32, 1, 128},    {1, 130, 3, 24, 1, 100},
    };
    uint64_t seed = 600;
    for (const Shape & s : shapes) {
        Options o = chunk128(DType::BF16, DMode::PerChannel);
        SCOPED_TRACE(describe(s, o));
        check(s, o, ++seed);
    }
    // Without z (the Mamba-2 mixer's call) where the output kernel stores y element by element (headdim 20).
    Options o = chunk128();
    o.z = false;
    const Shape narrow{1, 260, 4, 20, 1, 32};
    SCOPED_TRACE(describe(narrow, o) + " without z");
    check(narrow, o, 620);
}

// An unknown MAMBA_CUDA_SSD_STATE is an argument error that names the variable and the accepted values,
// and the context stays usable; unset (the automatic choice) the same call matches the reference. The CPU backend has no such kernels.
TEST_P(SsdTest, UnknownChunkParallelVariantIsRejected) {
    if (!on_cuda()) GTEST_SKIP() << "the CPU backend reads no SSD kernel-selection variable";
    Options o = chunk128();
    Problem pr({1, 200, 2, 64, 1, 64}, o, 640);
    pr.upload(ctx());
    Tensor y({1, 200, 2, 64}, o.dtype);
    Tensor fin({1, 2, 64, 64}, DType::F32);
    y.upload_poisoned(ctx());
    fin.upload_poisoned(ctx());
    const auto a = pr.args(y, fin);
    // The others: removed variants.
    for (const char * bogus : {"bogus", "mma", "pair3", "pair16", "mma_rows", "pair_rows", "quad", "quad32"}) {
        SCOPED_TRACE(bogus);
        const mt::ScopedEnv scoped("MAMBA_CUDA_SSD_STATE", bogus);
        EXPECT_EQ(mamba_ssd(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
        const std::string message = mamba_last_error();
        EXPECT_NE(message.find("MAMBA_CUDA_SSD_STATE must be one of pair, twopass (or unset)"), std::string::npos) << message;
        EXPECT_NE(message.find(std::string("not '") + bogus + "'"), std::string::npos) << message;
    }
    // With the variable unset (the automatic choice) the same call matches the reference.
    const mt::ScopedEnv state("MAMBA_CUDA_SSD_STATE", nullptr);
    const Result want = reference_ssd(pr);
    const Result got = run(pr);
    EXPECT_CLOSE(got.y, want.y, tolerance(o.dtype), tolerance(o.dtype));
}

// A graph captured after a call that sized the workspace for pair: the automatic choice (twopass on a
// grid this small) would need more workspace than the context has, which cannot grow during a capture, so
// it keeps to pair; the capture ends and its replay matches the reference. Without that rule the captured
// call fails (the workspace cannot grow while a graph is captured).
TEST_P(SsdTest, CaptureAfterASmallerWorkspaceKeepsToPair) {
    if (!on_cuda()) GTEST_SKIP() << "graphs need CUDA";
    Options o = chunk128();
    Problem pr({1, 2048, 16, 64, 1, 64}, o, 670);  // 16 chunk slots x 16 heads: ~2 MB of float16 local states
    pr.upload(ctx());
    Tensor y({1, 2048, 16, 64}, o.dtype), fin({1, 16, 64, 64}, DType::F32);
    y.upload_poisoned(ctx());
    fin.upload_poisoned(ctx());
    const auto a = pr.args(y, fin);
    {
        const mt::ScopedEnv pair("MAMBA_CUDA_SSD_STATE", "pair");
        ASSERT_EQ(mamba_ssd(ctx(), &a), MAMBA_STATUS_OK) << mamba_last_error();
    }
    const mt::ScopedEnv state("MAMBA_CUDA_SSD_STATE", nullptr);
    y.upload_poisoned(ctx());
    ASSERT_EQ(mamba_graph_capture_begin(ctx()), MAMBA_STATUS_OK) << mamba_last_error();
    const mamba_status captured = mamba_ssd(ctx(), &a);
    mamba_graph * graph = nullptr;
    const mamba_status ended = mamba_graph_capture_end(ctx(), &graph);
    ASSERT_EQ(captured, MAMBA_STATUS_OK) << mamba_last_error();
    ASSERT_EQ(ended, MAMBA_STATUS_OK) << mamba_last_error();
    const mamba_status launched = mamba_graph_launch(ctx(), graph);
    mamba_graph_free(graph);
    ASSERT_EQ(launched, MAMBA_STATUS_OK) << mamba_last_error();
    y.download(ctx());
    fin.download(ctx());
    const Result want = reference_ssd(pr);
    EXPECT_CLOSE(y.values(), want.y, tolerance(o.dtype), tolerance(o.dtype));
    EXPECT_CLOSE(fin.values(), want.final_states, 2e-4, 2e-4);
}

// MAMBA_CUDA_SSD_PATH: each path matches the reference on a shape all of them take (bf16, dstate 64), and
// a shape the forced tensor-core paths cannot take (float32) runs on the recurrence kernel; an unknown
// value is an argument error naming the variable and the accepted values, and y keeps its poison. The CPU backend reads no such variable.
// A misspelt value of either kernel-selection variable fails the call, before anything is written, also on a call
// (bf16) that the recurrence kernel of MAMBA_CUDA_SSD_SEGMENTS does not take.
TEST_P(SsdTest, EverySsdPathMatchesAndUnknownChoicesAreRejected) {
    if (!on_cuda()) GTEST_SKIP() << "the CPU backend reads no SSD kernel-selection variable";
    for (const char * path : {"auto", "chunked", "parallel"}) {
        const mt::ScopedEnv scoped("MAMBA_CUDA_SSD_PATH", path);
        for (DType dtype : {DType::BF16, DType::F32}) {
            Options o = chunk128(dtype, DMode::PerChannel);
            const Shape s{2, 150, 4, 64, 2, 64};
            SCOPED_TRACE(std::string("MAMBA_CUDA_SSD_PATH=") + path + ", " + describe(s, o));
            check(s, o, 660);
        }
    }
    Options o = chunk128();
    Problem pr({1, 200, 2, 64, 1, 64}, o, 661);
    pr.upload(ctx());
    Tensor y({1, 200, 2, 64}, o.dtype), fin({1, 2, 64, 64}, DType::F32);
    y.upload_poisoned(ctx());
    fin.upload_poisoned(ctx());
    const auto a = pr.args(y, fin);
    const struct {
        const char * variable;
        const char * accepted;
        std::vector<const char *> bogus;
    } variables[] = {{"MAMBA_CUDA_SSD_PATH", "auto, chunked, parallel", {"bogus", "Chunked", "rows"}},
                     {"MAMBA_CUDA_SSD_SEGMENTS", "auto, off, 2, 4, 8, 16, 32, 64", {"3", "on", "Auto"}}};
    for (const auto & v : variables) {
        for (const char * bogus : v.bogus) {
            SCOPED_TRACE(std::string(v.variable) + "=" + bogus);
            const mt::ScopedEnv scoped(v.variable, bogus);
            EXPECT_EQ(mamba_ssd(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
            EXPECT_EQ(std::string(mamba_last_error()),
                      std::string("mamba_ssd: ") + v.variable + " must be one of " + v.accepted + " (or unset), not '" + bogus + "'");
        }
    }
    y.download(ctx());
    for (double v : y.values()) ASSERT_TRUE(std::isnan(v));
}

// Packed sequences over several 128-step chunks, with boundaries inside chunks and a single-step
// sequence: the chunks restart at every sequence start.
TEST_P(SsdTest, PackedSequencesAcrossChunkParallelChunks) {
    for (int64_t dstate : {64, 128}) {
        Options o;
        o.dtype = DType::BF16;
        o.chunk_size = 256;
        o.cu_seqlens = {0, 100, 300, 301, 560};
        const Shape s{1, 560, 6, 64, 2, dstate};
        SCOPED_TRACE(describe(s, o) + " packed");
        check(s, o, uint64_t(700 + dstate));
    }
}

namespace {

// bf16 options with one optional input absent by mask: 0 D, 1 (D per head), 2 z, 3 dt_bias, 4 the
// initial states, 5 the final states (D per channel from mask 2 on).
Options one_option_absent(int mask, int64_t chunk_size) {
    Options o;
    o.dtype = DType::BF16;
    o.chunk_size = chunk_size;
    o.d = mask == 0 ? DMode::None : mask == 1 ? DMode::PerHead : DMode::PerChannel;
    o.z = mask != 2;
    o.dt_bias = mask != 3;
    o.initial = mask != 4;
    o.final_states = mask != 5;
    return o;
}

}  // namespace

// The chunk-parallel kernels over three chunks with each optional input absent, dt limited, and
// without states.
TEST_P(SsdTest, ChunkParallelShapesWithOptionsAbsent) {
    // dstate 128 and 64: both builds of the output kernel's general (partial-chunk) path, with and without z.
    for (const Shape & s : {Shape{2, 300, 4, 64, 2, 128}, Shape{2, 300, 4, 64, 2, 64}})
    for (int mask = 0; mask < 6; ++mask) {
        Options o = one_option_absent(mask, 64);
        if (mask == 3) {
            o.dt_min = 0.1f;
            o.dt_max = 0.3f;
        }
        SCOPED_TRACE(describe(s, o) + ", options mask " + std::to_string(mask));
        check(s, o, uint64_t(800 + mask));
    }
}

// Packed sequences that end exactly on 128-step chunk boundaries (a sequence of two whole chunks, one of
// one step right after it), with the states carried across the chunks of each.
TEST_P(SsdTest, PackedSequencesEndingOnGpuChunkBoundaries) {
    Options o = chunk128();
    o.cu_seqlens = {0, 128, 384, 385, 640};
    const Shape s{1, 640, 3, 32, 1, 64};
    SCOPED_TRACE(describe(s, o) + " packed");
    check(s, o, 900);
}

// Whole 128-step chunks, headdim a multiple of 64 and dstate 64 or 128: the shapes the lean output kernel
// takes in its full build (no bounds checks), each option absent once; two channel tiles and three heads
// of a group in the second shape.
TEST_P(SsdTest, ChunkParallelFullChunksWithOptionsAbsent) {
    const Shape shapes[] = {{2, 256, 4, 64, 2, 128}, {1, 384, 6, 128, 2, 64}};
    for (const Shape & s : shapes) {
        for (int mask = 0; mask < 6; ++mask) {
            const Options o = one_option_absent(mask, 128);
            SCOPED_TRACE(describe(s, o) + ", options mask " + std::to_string(mask));
            check(s, o, uint64_t(820 + mask));
        }
    }
}

// Heads of very different magnitudes in one call: x and the initial states of a head scaled by 2^13,
// 2^-13 or 2^-26 (exact in bf16 and float32, so the reference only scales), and one head with x = 0 and
// its initial states as drawn (its chunk contributions are all zero). y and the final states are linear
// in that scale, so each head is compared after dividing by it, at the usual tolerances: a state stored
// with too few bits for its magnitude (the twopass kernel's float16 local states and S_in, each after a
// power-of-two scale per 16 rows) or a zero tile scaled into inf/NaN fails. Four and three chunks of 128:
// twopass stores the first two in float16, the rest in float32; headdim 80 leaves 64-channel blocks with
// 16-row tiles past the padded headdim.
TEST_P(SsdTest, ChunkParallelHeadsOfExtremeMagnitudes) {
    const double x_scale[] = {1.0, 0.0, 0x1p13, 0x1p-13, 0x1p-26};
    const double init_scale[] = {1.0, 1.0, 0x1p13, 0x1p-13, 0x1p-26};  // = the head's output scale
    const Shape shapes[] = {{1, 389, 5, 64, 1, 128}, {2, 384, 5, 80, 1, 64}};
    uint64_t seed = 950;
    for (const Shape & s : shapes) {
        Options o = chunk128(DType::BF16, DMode::PerChannel);
        SCOPED_TRACE(describe(s, o));
        Problem pr(s, o, ++seed);
        const int64_t H = s.heads, P = s.headdim, N = s.dstate;
        for (int64_t r = 0; r < s.batch * s.len; ++r)
            for (int64_t h = 0; h < H; ++h)
                for (int64_t p = 0; p < P; ++p) pr.x.at((r * H + h) * P + p) *= x_scale[h];
        for (int64_t q = 0; q < pr.nseq; ++q)
            for (int64_t h = 0; h < H; ++h)
                for (int64_t i = 0; i < P * N; ++i) pr.initial.at((q * H + h) * P * N + i) *= init_scale[h];
        // Each element divided by its head's scale; `inner` elements per head, heads innermost but one.
        auto unscaled = [&](std::vector<double> v, int64_t inner) {
            for (size_t i = 0; i < v.size(); ++i) v[i] /= init_scale[(int64_t(i) / inner) % H];
            return v;
        };
        const Result want = reference_ssd(pr);
        const double tol = tolerance(o.dtype);
        for (const char * state : ssd_state_variants()) {
            SCOPED_TRACE(describe_state(state));
            const mt::ScopedEnv forced("MAMBA_CUDA_SSD_STATE", state);
            const Result got = run(pr);
            EXPECT_CLOSE(unscaled(got.y, P), unscaled(want.y, P), tol, tol);
            EXPECT_CLOSE(unscaled(got.final_states, P * N), unscaled(want.final_states, P * N), 2e-4, 2e-4);
        }
    }
}

TEST_P(SsdTest, PackedSequencesWithBoundariesInsideGpuChunks) {
    // Boundaries at 37, 100 and 101 fall inside 64-step chunks; one sequence is a single step.
    for (DType dt : {DType::BF16, DType::F32}) {
        Options o = chunk128(dt);
        o.cu_seqlens = {0, 37, 100, 101, 230};
        const Shape s{1, 230, 3, 64, 1, 128};
        SCOPED_TRACE(describe(s, o));
        check(s, o);
    }
}

TEST_P(SsdTest, LongSequenceKeepsTheStateAccurate) {
    // 2048 steps (32 GPU chunks) of state passing: the error must not accumulate.
    for (DType dt : {DType::BF16, DType::F32}) {
        Options o;
        o.dtype = dt;
        o.chunk_size = 256;
        const Shape s{1, 2048, 2, 64, 1, 128};
        SCOPED_TRACE(describe(s, o));
        check(s, o);
    }
}

// Decays that underflow within a chunk (A down to -16, so that running products of exp(dt A) over a chunk,
// 64 steps on the CPU whatever chunk_size asks, pass through float32's denormals to 0). The CPU backend scans with denormals flushed to zero
// (cpu/denormals.h): it must still match the float64 recurrence, and leave the calling thread's
// floating-point mode as it found it, with flushing off and with it on.
TEST_P(SsdTest, DecaysThatUnderflowMatchTheRecurrenceAndKeepTheCallersFloatingPointMode) {
    const Shape s{1, 600, 4, 32, 1, 64};
    Options o;
    o.chunk_size = 256;
    Problem pr(s, o, 41);
    for (int64_t h = 0; h < s.heads; ++h) pr.A.at(h) = float(-16.0 * double(h + 1) / double(s.heads));
    const Result want = reference_ssd(pr);
    for (const bool caller_flushes : {false, true}) {
        SCOPED_TRACE(caller_flushes ? "caller flushes denormals" : "caller keeps denormals");
#if defined(__SSE__)
        const unsigned int saved = _mm_getcsr();
        const unsigned int mode = caller_flushes ? (saved | 0x8040u) : (saved & ~0x8040u);
        _mm_setcsr(mode);
#endif
        const Result got = run(pr);
#if defined(__SSE__)
        EXPECT_EQ(_mm_getcsr(), mode);
        _mm_setcsr(saved);
#endif
        EXPECT_CLOSE(got.y, want.y, tolerance(o.dtype), tolerance(o.dtype));
        EXPECT_CLOSE(got.final_states, want.final_states, 2e-4, 2e-4);
    }
}

TEST_P(SsdTest, MatchesRecurrenceWithMixedDtypes) {
    Options o;
    o.dtype = DType::BF16;
    o.bc_dtype = DType::F32;
    o.chunk_size = 16;
    const Shape s{1, 40, 4, 8, 2, 16};
    check(s, o);
    o.dtype = DType::F32;
    o.bc_dtype = DType::F16;
    check(s, o);
}

TEST_P(SsdTest, MatchesRecurrenceWithEachOptionalPresentOrAbsent) {
    const Shape s{2, 50, 4, 8, 2, 16};
    for (int mask = 0; mask < 32; ++mask) {
        for (DMode d : {DMode::None, DMode::PerHead, DMode::PerChannel}) {
            Options o;
            o.chunk_size = 16;
            o.d = d;
            o.z = mask & 1;
            o.dt_bias = mask & 2;
            o.softplus = mask & 4;
            o.initial = mask & 8;
            o.final_states = mask & 16;
            SCOPED_TRACE("options mask " + std::to_string(mask) + " D mode " + std::to_string(int(d)));
            check(s, o, uint64_t(100 + mask));
        }
    }
}

TEST_P(SsdTest, ClampsDtToTheLimit) {
    // float32 runs the recurrence; bf16 the tensor-core kernels on CUDA (the factored decay of the output
    // kernel meets a cumulative dt*A that rises and falls within a chunk).
    for (DType dtype : {DType::F32, DType::BF16}) {
        const Shape s{1, 40, 4, 8, 1, 16};
        Options o;
        o.dtype = dtype;
        o.chunk_size = 16;
        o.dt_min = 0.1f;  // above and below the raw softplus range 0.05..0.69
        o.dt_max = 0.3f;
        SCOPED_TRACE(describe(s, o));
        check(s, o);
        // Without softplus and without a limit, a negative dt is used as it is.
        o.softplus = false;
        o.dt_min = 0.0f;
        o.dt_max = kInf;
        o.dt_bias = true;
        Problem pr(s, o, 11);
        for (double & v : pr.dt_bias.values()) v = -0.2;  // pushes some steps below zero
        const Result got = run(pr);
        EXPECT_CLOSE(got.y, reference_ssd(pr).y, tolerance(o.dtype), tolerance(o.dtype));
    }
}

TEST_P(SsdTest, PackedSequencesMatchTheRecurrence) {
    for (DType offsets : {DType::I32, DType::I64}) {
        Options o;
        o.chunk_size = 16;
        o.cu_seqlens = {0, 5, 40, 41, 77};
        o.offsets_dtype = offsets;
        const Shape s{1, 77, 4, 8, 2, 16};
        SCOPED_TRACE(describe(s, o));
        check(s, o);
    }
}

TEST_P(SsdTest, PackedSequencesEqualEachSequenceAlone) {
    Options o;
    o.chunk_size = 16;
    o.cu_seqlens = {0, 19, 20, 53, 70};
    const Shape s{1, 70, 4, 8, 2, 16};
    Problem packed(s, o, 21);
    const Result whole = run(packed);
    for (size_t i = 0; i + 1 < o.cu_seqlens.size(); ++i) {
        const int64_t begin = o.cu_seqlens[i], len = o.cu_seqlens[i + 1] - begin;
        Options alone_o = o;
        alone_o.cu_seqlens.clear();
        Problem alone({1, len, s.heads, s.headdim, s.groups, s.dstate}, alone_o, 99);
        alone.copy_steps_from(packed, 0, begin);
        const int64_t state = s.heads * s.headdim * s.dstate;
        for (int64_t k = 0; k < state; ++k) alone.initial.at(k) = packed.initial.at(int64_t(i) * state + k);
        const Result part = run(alone);
        const int64_t row = s.heads * s.headdim;
        std::vector<double> expected(whole.y.begin() + begin * row, whole.y.begin() + (begin + len) * row);
        std::vector<double> expected_state(whole.final_states.begin() + int64_t(i) * state, whole.final_states.begin() + int64_t(i + 1) * state);
        SCOPED_TRACE("sequence " + std::to_string(i));
        EXPECT_CLOSE(part.y, expected, 1e-5, 1e-5);
        EXPECT_CLOSE(part.final_states, expected_state, 1e-5, 1e-5);
    }
}

TEST_P(SsdTest, TwoHalvesWithTheStateCarriedEqualTheWhole) {
    Options o;
    o.chunk_size = 32;
    const Shape s{1, 100, 4, 8, 2, 16};
    Problem whole(s, o, 31);
    const Result full = run(whole);
    const int64_t split = 45;
    Problem first({1, split, s.heads, s.headdim, s.groups, s.dstate}, o, 32);
    first.copy_steps_from(whole, 0, 0);
    first.initial.values() = whole.initial.values();
    const Result a = run(first);
    Problem second({1, s.len - split, s.heads, s.headdim, s.groups, s.dstate}, o, 33);
    second.copy_steps_from(whole, 0, split);
    second.initial.values() = a.final_states;
    const Result b = run(second);
    std::vector<double> joined = a.y;
    joined.insert(joined.end(), b.y.begin(), b.y.end());
    ASSERT_EQ(joined.size(), full.y.size());
    EXPECT_CLOSE(joined, full.y, 1e-5, 1e-5);
    EXPECT_CLOSE(b.final_states, full.final_states, 1e-5, 1e-5);
}

TEST_P(SsdTest, FinalStatesMayAliasInitialStates) {
    Options o;
    o.chunk_size = 16;
    const Shape s{2, 30, 4, 8, 2, 16};
    Problem pr(s, o, 41);
    const Result want = reference_ssd(pr);
    pr.upload(ctx());
    Tensor y({s.batch, s.len, s.heads, s.headdim}, o.dtype);
    y.upload_poisoned(ctx());
    auto a = pr.args(y, pr.initial);
    MAMBA_ASSERT_OK(mamba_ssd(ctx(), &a));
    pr.initial.download(ctx());
    EXPECT_CLOSE(pr.initial.values(), want.final_states, 2e-4, 2e-4);
}

// The recurrence cut into segments (CUDA's split rows path, which float32 and float16 x take): segment counts forced
// from 2 to more than a sequence's steps fill (empty segments), the automatic plan and none, over packed sequences of
// uneven lengths (one a single step) and over batch rows, dstate in one and in two 128-state groups, headdim 40 (a
// partial second row tile); each against the float64 recurrence, and the final states written over the initial ones.
// (A misspelt value: EverySsdPathMatchesAndUnknownChoicesAreRejected.)
TEST_P(SsdTest, SegmentedRecurrenceMatchesTheRecurrence) {
    if (!on_cuda()) GTEST_SKIP() << "the CPU backend reads no SSD kernel-selection variable";
    for (const char * segments : {"off", "2", "8", "64", "auto"}) {
        const mt::ScopedEnv forced("MAMBA_CUDA_SSD_SEGMENTS", segments);
        for (DType dtype : {DType::F32, DType::F16}) {
            for (int64_t dstate : {16, 160}) {
                Options packed;
                packed.dtype = dtype;
                packed.chunk_size = 64;
                packed.cu_seqlens = {0, 1, 300, 333, 700};
                const Shape ps{1, 700, 3, 40, 1, dstate};
                SCOPED_TRACE(std::string("MAMBA_CUDA_SSD_SEGMENTS=") + segments + ", packed, " + describe(ps, packed));
                Problem pr(ps, packed, 880 + uint64_t(dstate));
                const Result want = reference_ssd(pr);
                const Result got = run(pr);
                EXPECT_CLOSE(got.y, want.y, tolerance(dtype), tolerance(dtype));
                EXPECT_CLOSE(got.final_states, want.final_states, 2e-4, 2e-4);

                Options rows = packed;
                rows.cu_seqlens.clear();
                const Shape bs{2, 333, 3, 40, 1, dstate};
                SCOPED_TRACE("batch rows, " + describe(bs, rows));
                Problem batch(bs, rows, 890 + uint64_t(dstate));
                const Result batch_want = reference_ssd(batch);
                batch.upload(ctx());
                Tensor y({bs.batch, bs.len, bs.heads, bs.headdim}, dtype);
                y.upload_poisoned(ctx());
                auto a = batch.args(y, batch.initial);  // the final states over the initial ones
                MAMBA_ASSERT_OK(mamba_ssd(ctx(), &a));
                y.download(ctx());
                batch.initial.download(ctx());
                EXPECT_CLOSE(y.values(), batch_want.y, tolerance(dtype), tolerance(dtype));
                EXPECT_CLOSE(batch.initial.values(), batch_want.final_states, 2e-4, 2e-4);
            }
        }
    }
}

// The Mamba-2 mixer's exact views (bf16): x, B and C columns of the causal-conv output, one row of
// conv_dim = d_inner + 2 * groups * dstate per token (B at column d_inner, C at d_inner + groups *
// dstate); z and dt columns of the in_proj output, one row of 2 * d_inner + 2 * groups * dstate + heads
// per token (z at column 0, dt at the end); the final state written over the initial state. On CUDA the
// chunk-parallel path with 16-byte row copies (conv_dim and the offsets are multiples of 8 elements),
// three 128-step chunks, the last partial, each state kernel.
TEST_P(SsdTest, ModelViewsOfConvAndProjectionOutputs) {
    const Shape s{1, 300, 8, 64, 1, 128};
    Options o;
    o.dtype = DType::BF16;
    const int64_t L = s.len, H = s.heads, P = s.headdim, GN = s.groups * s.dstate, inner = H * P;
    const int64_t conv_dim = inner + 2 * GN, proj_width = 2 * inner + 2 * GN + H;
    Problem pr(s, o, 660);
    const Result want = reference_ssd(pr);
    // The wide buffers, their other columns random.
    std::mt19937_64 rng(661);
    Tensor xbc({1, L, conv_dim}, DType::BF16), proj({1, L, proj_width}, DType::BF16);
    xbc.fill_uniform(rng, -1, 1);
    proj.fill_uniform(rng, -1, 1);
    for (int64_t t = 0; t < L; ++t) {
        for (int64_t i = 0; i < inner; ++i) {
            xbc.at(t * conv_dim + i) = pr.x.at(t * inner + i);
            proj.at(t * proj_width + i) = pr.z.at(t * inner + i);
        }
        for (int64_t n = 0; n < GN; ++n) {
            xbc.at(t * conv_dim + inner + n) = pr.B.at(t * GN + n);
            xbc.at(t * conv_dim + inner + GN + n) = pr.C.at(t * GN + n);
        }
        for (int64_t h = 0; h < H; ++h) proj.at(t * proj_width + inner + conv_dim + h) = pr.dt.at(t * H + h);
    }
    pr.upload(ctx());
    xbc.upload(ctx());
    proj.upload(ctx());
    const uint64_t es = 2;
    mt::View x(xbc, {1, L, H, P}, {L * conv_dim, conv_dim, P, 1});
    mt::View B(xbc, {1, L, s.groups, s.dstate}, {L * conv_dim, conv_dim, s.dstate, 1}, uint64_t(inner) * es);
    mt::View C(xbc, {1, L, s.groups, s.dstate}, {L * conv_dim, conv_dim, s.dstate, 1}, uint64_t(inner + GN) * es);
    mt::View z(proj, {1, L, H, P}, {L * proj_width, proj_width, P, 1});
    mt::View dt(proj, {1, L, H}, {L * proj_width, proj_width, 1}, uint64_t(inner + conv_dim) * es);
    const std::vector<double> initial_values = pr.initial.values();
    for (const char * state : ssd_state_variants()) {
        SCOPED_TRACE(describe_state(state));
        const mt::ScopedEnv forced("MAMBA_CUDA_SSD_STATE", state);
        pr.initial.values() = initial_values;  // the previous run overwrote it
        pr.initial.upload(ctx());
        Tensor y({1, L, H, P}, o.dtype);
        y.upload_poisoned(ctx());
        auto a = pr.args(y, pr.initial);
        a.x = x.dl();
        a.B = B.dl();
        a.C = C.dl();
        a.z = z.dl();
        a.dt = dt.dl();
        MAMBA_ASSERT_OK(mamba_ssd(ctx(), &a));
        y.download(ctx());
        pr.initial.download(ctx());
        EXPECT_CLOSE(y.values(), want.y, tolerance(o.dtype), tolerance(o.dtype));
        EXPECT_CLOSE(pr.initial.values(), want.final_states, 2e-4, 2e-4);
    }
}

TEST_P(SsdTest, EmptySequenceAxisCopiesTheInitialState) {
    Options o;
    const Shape s{2, 0, 2, 4, 1, 8};
    Problem pr(s, o, 51);
    const Result got = run(pr);
    EXPECT_CLOSE(got.final_states, pr.initial.values(), 1e-12, 1e-12);
}

// ---- decode step ---------------------------------------------------------------------------------------

class SsdStateUpdateTest : public mt::BackendTest {};

TEST_P(SsdStateUpdateTest, MatchesOneStepOfTheRecurrence) {
    for (DType dtype : {DType::F32, DType::F16, DType::BF16}) {
        for (DMode d : {DMode::None, DMode::PerHead, DMode::PerChannel}) {
            for (bool strided : {false, true}) {
                for (bool options : {false, true}) {
                    // dstate 19 leaves a remainder after the eight-wide blocks of the dot product.
                    const int64_t Bn = 3, H = 6, P = 8, G = 3, N = options ? 19 : 16;
                    SCOPED_TRACE(std::string(mt::dtype_name(dtype)) + " D mode " + std::to_string(int(d)) + (strided ? " strided" : "") +
                                 (options ? " z, bias, softplus, limit, dstate 19" : ""));
                    std::mt19937_64 rng(61 + uint64_t(d) * 7 + uint64_t(dtype) * 3 + strided);
                    Tensor state({Bn, H, P, N}, DType::F32, strided ? spread_last_axis({Bn, H, P, N}, 2) : std::vector<int64_t>{});
                    Tensor x({Bn, H, P}, dtype, strided ? spread_last_axis({Bn, H, P}, 3) : std::vector<int64_t>{});
                    Tensor dt({Bn, H}, dtype, strided ? std::vector<int64_t>{1, Bn} : std::vector<int64_t>{});
                    Tensor A({H}, DType::F32), Bm({Bn, G, N}, dtype, strided ? mt::padded_strides({Bn, G, N}, 1, 2) : std::vector<int64_t>{});
                    Tensor Cm({Bn, G, N}, dtype), D(d == DMode::PerChannel ? std::vector<int64_t>{H, P} : std::vector<int64_t>{H}, DType::F32);
                    Tensor z({Bn, H, P}, dtype), bias({H}, DType::F32), y({Bn, H, P}, dtype, strided ? mt::padded_strides({Bn, H, P}, 2, 1) : std::vector<int64_t>{});
                    state.fill_uniform(rng, -1, 1);
                    x.fill_uniform(rng, -1, 1);
                    if (options) dt.fill_uniform(rng, -3, 0);
                    else dt.fill_uniform(rng, 0.01, 0.3);
                    A.fill_uniform(rng, -4, -0.5);
                    Bm.fill_uniform(rng, -1, 1);
                    Cm.fill_uniform(rng, -1, 1);
                    D.fill_uniform(rng, -1, 1);
                    z.fill_uniform(rng, -2, 2);
                    bias.fill_uniform(rng, -0.5, 0.5);
                    for (Tensor * t : {&state, &x, &dt, &A, &Bm, &Cm, &D, &z, &bias}) t->upload(ctx());
                    y.upload_poisoned(ctx());
                    mamba_ssd_state_update_args a{};
                    a.state = state.dl();
                    a.x = x.dl();
                    a.dt = dt.dl();
                    a.A = A.dl();
                    a.B = Bm.dl();
                    a.C = Cm.dl();
                    if (d != DMode::None) a.D = D.dl();
                    if (options) {
                        a.z = z.dl();
                        a.dt_bias = bias.dl();
                    }
                    a.y = y.dl();
                    a.dt_softplus = options;
                    a.dt_min = options ? 0.1f : 0.0f;
                    a.dt_max = options ? 0.5f : kInf;
                    MAMBA_ASSERT_OK(mamba_ssd_state_update(ctx(), &a));

                    mt::SsdStepInputs in;
                    in.batch = Bn, in.heads = H, in.headdim = P, in.groups = G, in.dstate = N;
                    in.x = &x, in.dt = &dt, in.A = &A, in.B = &Bm, in.C = &Cm;
                    in.D = d != DMode::None ? &D : nullptr;
                    in.z = options ? &z : nullptr;
                    in.dt_bias = options ? &bias : nullptr;
                    in.dt_softplus = options;
                    in.dt_min = a.dt_min, in.dt_max = a.dt_max;
                    std::vector<double> want_state = state.values();
                    const std::vector<double> want_y = mt::reference_ssd_step(in, want_state);
                    y.download(ctx());
                    state.download(ctx());
                    EXPECT_CLOSE(y.values(), want_y, tolerance(dtype), tolerance(dtype));
                    EXPECT_CLOSE(state.values(), want_state, 1e-5, 1e-5);
                }
            }
        }
    }
}

TEST_P(SsdStateUpdateTest, TokenByTokenEqualsTheChunkedScan) {
    Options o;
    o.chunk_size = 16;
    o.d = DMode::PerChannel;
    const Shape s{2, 37, 4, 8, 2, 16};
    Problem pr(s, o, 71);
    // The chunked scan, through the same context.
    pr.upload(ctx());
    Tensor y({s.batch, s.len, s.heads, s.headdim}, o.dtype), fin({s.batch, s.heads, s.headdim, s.dstate}, DType::F32);
    y.upload_poisoned(ctx());
    fin.upload_poisoned(ctx());
    const auto scan = pr.args(y, fin);
    MAMBA_ASSERT_OK(mamba_ssd(ctx(), &scan));
    y.download(ctx());
    fin.download(ctx());

    Tensor state({s.batch, s.heads, s.headdim, s.dstate}, DType::F32);
    state.values() = pr.initial.values();
    state.upload(ctx());
    std::vector<double> stepped(y.values().size());
    for (int64_t t = 0; t < s.len; ++t) {
        Tensor x({s.batch, s.heads, s.headdim}, o.dtype), z({s.batch, s.heads, s.headdim}, o.dtype), dt({s.batch, s.heads}, o.dtype);
        Tensor Bm({s.batch, s.groups, s.dstate}, o.dtype), Cm({s.batch, s.groups, s.dstate}, o.dtype), yt({s.batch, s.heads, s.headdim}, o.dtype);
        const int64_t row = s.heads * s.headdim, bc = s.groups * s.dstate;
        for (int64_t b = 0; b < s.batch; ++b) {
            for (int64_t k = 0; k < row; ++k) {
                x.at(b * row + k) = pr.x.at((b * s.len + t) * row + k);
                z.at(b * row + k) = pr.z.at((b * s.len + t) * row + k);
            }
            for (int64_t h = 0; h < s.heads; ++h) dt.at(b * s.heads + h) = pr.dt.at((b * s.len + t) * s.heads + h);
            for (int64_t k = 0; k < bc; ++k) {
                Bm.at(b * bc + k) = pr.B.at((b * s.len + t) * bc + k);
                Cm.at(b * bc + k) = pr.C.at((b * s.len + t) * bc + k);
            }
        }
        for (Tensor * u : {&x, &z, &dt, &Bm, &Cm}) u->upload(ctx());
        yt.upload_poisoned(ctx());
        mamba_ssd_state_update_args a{};
        a.state = state.dl();
        a.x = x.dl();
        a.dt = dt.dl();
        a.A = pr.A.dl();
        a.B = Bm.dl();
        a.C = Cm.dl();
        a.D = pr.D.dl();
        a.z = z.dl();
        a.dt_bias = pr.dt_bias.dl();
        a.y = yt.dl();
        a.dt_softplus = o.softplus;
        a.dt_min = o.dt_min;
        a.dt_max = o.dt_max;
        MAMBA_ASSERT_OK(mamba_ssd_state_update(ctx(), &a));
        yt.download(ctx());
        for (int64_t b = 0; b < s.batch; ++b)
            for (int64_t k = 0; k < row; ++k) stepped[size_t((b * s.len + t) * row + k)] = yt.at(b * row + k);
    }
    state.download(ctx());
    EXPECT_CLOSE(stepped, y.values(), 1e-4, 1e-4);
    EXPECT_CLOSE(state.values(), fin.values(), 1e-4, 1e-4);
}

// ---- argument errors ------------------------------------------------------------------------------------

namespace {

bool mentions(const std::string & text, const std::string & part) { return text.find(part) != std::string::npos; }

}  // namespace

class SsdErrorTest : public mt::BackendTest {
protected:
    // Calls mamba_ssd on a valid small problem after `edit` changes its arguments.
    void expect_error(mamba_status status, const std::string & message_part, const std::function<void(mamba_ssd_args &, Problem &)> & edit,
                      Options o = {}) {
        const Shape s{1, 20, 4, 8, 2, 16};
        if (o.chunk_size == 0) o.chunk_size = 16;
        Problem pr(s, o, 81);
        pr.upload(ctx());
        Tensor y({s.batch, s.len, s.heads, s.headdim}, o.dtype), fin({pr.nseq, s.heads, s.headdim, s.dstate}, DType::F32);
        y.upload_poisoned(ctx());
        fin.upload_poisoned(ctx());
        auto a = pr.args(y, fin);
        edit(a, pr);
        EXPECT_EQ(mamba_ssd(ctx(), &a), status) << mamba_last_error();
        EXPECT_TRUE(mentions(mamba_last_error(), message_part)) << "message: " << mamba_last_error() << "\nexpected to contain: " << message_part;
    }
};

TEST_P(SsdErrorTest, ValidProblemSucceeds) {
    // The baseline every error case edits must itself be accepted.
    const Shape s{1, 20, 4, 8, 2, 16};
    Options o;
    o.chunk_size = 16;
    Problem pr(s, o, 81);
    pr.upload(ctx());
    Tensor y({1, 20, 4, 8}, o.dtype), fin({1, 4, 8, 16}, DType::F32);
    y.upload_poisoned(ctx());
    fin.upload_poisoned(ctx());
    const auto a = pr.args(y, fin);
    MAMBA_ASSERT_OK(mamba_ssd(ctx(), &a));
}

TEST_P(SsdErrorTest, NullArgumentsAreNamed) {
    EXPECT_EQ(mamba_ssd(ctx(), nullptr), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_ssd: argument 'args' is null");
    expect_error(MAMBA_STATUS_INVALID_ARGUMENT, "mamba_ssd: argument 'x' is null", [](auto & a, auto &) { a.x = nullptr; });
    expect_error(MAMBA_STATUS_INVALID_ARGUMENT, "argument 'dt' is null", [](auto & a, auto &) { a.dt = nullptr; });
    expect_error(MAMBA_STATUS_INVALID_ARGUMENT, "argument 'A' is null", [](auto & a, auto &) { a.A = nullptr; });
    expect_error(MAMBA_STATUS_INVALID_ARGUMENT, "argument 'C' is null", [](auto & a, auto &) { a.C = nullptr; });
    expect_error(MAMBA_STATUS_INVALID_ARGUMENT, "argument 'y' is null", [](auto & a, auto &) { a.y = nullptr; });
}

TEST_P(SsdErrorTest, ShapeMismatchesAreNamed) {
    Tensor wrong_b({1, 20, 2, 12}, DType::F32), wrong_c({1, 20, 2, 16, 1}, DType::F32), odd_groups({1, 20, 3, 16}, DType::F32);
    Tensor wrong_dt({1, 19, 4}, DType::F32), wrong_d({4, 7}, DType::F32), wrong_a({5}, DType::F32), wrong_init({2, 4, 8, 16}, DType::F32);
    for (Tensor * t : {&wrong_b, &wrong_c, &odd_groups, &wrong_dt, &wrong_d, &wrong_a, &wrong_init}) t->upload(ctx());
    expect_error(MAMBA_STATUS_INVALID_ARGUMENT, "argument 'C' has shape (1, 20, 2, 16), expected (1, 20, 2, 12)", [&](auto & a, auto &) { a.B = wrong_b.dl(); });
    expect_error(MAMBA_STATUS_INVALID_ARGUMENT, "argument 'C' has shape (1, 20, 2, 16, 1)", [&](auto & a, auto &) { a.C = wrong_c.dl(); });
    expect_error(MAMBA_STATUS_INVALID_ARGUMENT, "argument 'B' has 3 groups, which do not divide the 4 heads", [&](auto & a, auto &) { a.B = odd_groups.dl(); });
    expect_error(MAMBA_STATUS_INVALID_ARGUMENT, "argument 'dt' has shape (1, 19, 4), expected (1, 20, 4)", [&](auto & a, auto &) { a.dt = wrong_dt.dl(); });
    expect_error(MAMBA_STATUS_INVALID_ARGUMENT, "argument 'D' has shape (4, 7), expected (4, 8)", [&](auto & a, auto &) { a.D = wrong_d.dl(); });
    expect_error(MAMBA_STATUS_INVALID_ARGUMENT, "argument 'A' has shape (5,), expected (4,)", [&](auto & a, auto &) { a.A = wrong_a.dl(); });
    expect_error(MAMBA_STATUS_INVALID_ARGUMENT, "argument 'initial_states' has shape (2, 4, 8, 16), expected (1, 4, 8, 16)",
                 [&](auto & a, auto &) { a.initial_states = wrong_init.dl(); });
    expect_error(MAMBA_STATUS_INVALID_ARGUMENT, "argument 'y' has shape (1, 20, 2, 16, 1)", [&](auto & a, auto &) { a.y = wrong_c.dl(); });
}

TEST_P(SsdErrorTest, BadDtypesAndValuesAreNamed) {
    Tensor a_half({4}, DType::F16), x_int({1, 20, 4, 8}, DType::I32), init_half({1, 4, 8, 16}, DType::BF16);
    for (Tensor * t : {&a_half, &x_int, &init_half}) t->upload(ctx());
    expect_error(MAMBA_STATUS_UNSUPPORTED, "argument 'A' has dtype float16; expected float32", [&](auto & a, auto &) { a.A = a_half.dl(); });
    expect_error(MAMBA_STATUS_UNSUPPORTED, "argument 'x' has dtype int32", [&](auto & a, auto &) { a.x = x_int.dl(); });
    expect_error(MAMBA_STATUS_UNSUPPORTED, "argument 'initial_states' has dtype bfloat16; expected float32",
                 [&](auto & a, auto &) { a.initial_states = init_half.dl(); });
    expect_error(MAMBA_STATUS_INVALID_ARGUMENT, "chunk_size is 48", [](auto & a, auto &) { a.chunk_size = 48; });
    expect_error(MAMBA_STATUS_INVALID_ARGUMENT, "chunk_size is 1024", [](auto & a, auto &) { a.chunk_size = 1024; });
    expect_error(MAMBA_STATUS_INVALID_ARGUMENT, "dt_max is 0", [](auto & a, auto &) { a.dt_max = 0.0f; });
    expect_error(MAMBA_STATUS_INVALID_ARGUMENT, "dt_min (0.5) is greater than dt_max (0.25)", [](auto & a, auto &) {
        a.dt_min = 0.5f;
        a.dt_max = 0.25f;
    });
    expect_error(MAMBA_STATUS_INVALID_ARGUMENT, "arguments 'y' and 'x' overlap", [](auto & a, auto &) { a.y = const_cast<DLTensor *>(a.x); });
}

TEST_P(SsdErrorTest, OverlappingOutputsAreRejected) {
    // initial_states and final_states in one buffer twice their size, final_states shifted by 16 floats:
    // partly the same memory, and neither reaches outside the buffer (so no third tensor is involved,
    // wherever the device allocator put the others).
    DLTensor initial{}, shifted{};
    Tensor both({2, 4, 8, 16}, DType::F32);
    both.upload(ctx());
    expect_error(MAMBA_STATUS_INVALID_ARGUMENT, "arguments 'final_states' and 'initial_states' overlap in memory", [&](auto & a, auto &) {
        initial = *a.initial_states;
        initial.data = both.dl()->data;
        initial.byte_offset = 0;
        shifted = initial;
        shifted.byte_offset = 16 * sizeof(float);
        a.initial_states = &initial;
        a.final_states = &shifted;
    });
    expect_error(MAMBA_STATUS_INVALID_ARGUMENT, "arguments 'y' and 'z' overlap in memory", [](auto & a, auto &) { a.y = const_cast<DLTensor *>(a.z); });
    // final_states placed in y's buffer (large enough for it).
    DLTensor inside_y{};
    expect_error(MAMBA_STATUS_INVALID_ARGUMENT, "arguments 'final_states' and 'y' overlap in memory", [&](auto & a, auto &) {
        inside_y = *a.final_states;
        inside_y.data = a.y->data;
        a.final_states = &inside_y;
    });
}

TEST_P(SsdErrorTest, BadCuSeqlensAreNamed) {
    auto with = [](std::vector<int64_t> offsets) {
        Options o;
        o.cu_seqlens = std::move(offsets);
        return o;
    };
    auto keep = [](auto &, auto &) {};
    expect_error(MAMBA_STATUS_INVALID_ARGUMENT, "argument 'cu_seqlens' is not increasing: entry 2 is 5 after 8", keep, with({0, 8, 5, 20}));
    expect_error(MAMBA_STATUS_INVALID_ARGUMENT, "argument 'cu_seqlens' is not increasing: entry 2 is 8 after 8", keep, with({0, 8, 8, 20}));
    expect_error(MAMBA_STATUS_INVALID_ARGUMENT, "argument 'cu_seqlens' ends at 19; expected the length 20", keep, with({0, 8, 19}));
    expect_error(MAMBA_STATUS_INVALID_ARGUMENT, "argument 'cu_seqlens' starts at 2", keep, with({2, 8, 20}));
    Options f32 = with({0, 8, 20});
    f32.offsets_dtype = DType::F32;
    expect_error(MAMBA_STATUS_UNSUPPORTED, "argument 'cu_seqlens' has dtype float32; expected int32 or int64", keep, f32);

    // Packing needs batch 1.
    const Shape s{2, 10, 4, 8, 2, 16};
    Options o = with({0, 4, 10});
    o.initial = false;
    Problem pr(s, o, 91);
    pr.upload(ctx());
    Tensor y({2, 10, 4, 8}, DType::F32);
    y.upload_poisoned(ctx());
    auto a = pr.args(y, y);
    a.final_states = nullptr;
    EXPECT_EQ(mamba_ssd(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_ssd: argument 'cu_seqlens' needs batch 1, but 'x' has batch 2");
}

TEST_P(SsdErrorTest, StateUpdateErrorsAreNamed) {
    Tensor state({2, 4, 8, 16}, DType::F32), x({2, 4, 8}, DType::F32), dt({2, 4}, DType::F32), A({4}, DType::F32);
    Tensor Bm({2, 2, 16}, DType::F32), Cm({2, 2, 15}, DType::F32), y({2, 4, 8}, DType::F32), state_half({2, 4, 8, 16}, DType::F16);
    for (Tensor * t : {&state, &x, &dt, &A, &Bm, &Cm, &y, &state_half}) t->upload(ctx());
    mamba_ssd_state_update_args a{};
    a.state = state.dl();
    a.x = x.dl();
    a.dt = dt.dl();
    a.A = A.dl();
    a.B = Bm.dl();
    a.C = Cm.dl();
    a.y = y.dl();
    a.dt_max = kInf;
    EXPECT_EQ(mamba_ssd_state_update(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_ssd_state_update: argument 'C' has shape (2, 2, 15), expected (2, 2, 16)");
    a.C = Bm.dl();
    a.state = state_half.dl();
    EXPECT_EQ(mamba_ssd_state_update(ctx(), &a), MAMBA_STATUS_UNSUPPORTED);
    EXPECT_STREQ(mamba_last_error(), "mamba_ssd_state_update: argument 'state' has dtype float16; expected float32");
    a.state = state.dl();
    a.y = nullptr;
    EXPECT_EQ(mamba_ssd_state_update(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_ssd_state_update: argument 'y' is null");
    a.y = x.dl();
    EXPECT_EQ(mamba_ssd_state_update(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_STREQ(mamba_last_error(), "mamba_ssd_state_update: arguments 'y' and 'x' overlap in memory");
    a.y = y.dl();
    a.dt_max = 0.0f;
    EXPECT_EQ(mamba_ssd_state_update(ctx(), &a), MAMBA_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(std::string(mamba_last_error()).find("dt_max is 0"), std::string::npos) << mamba_last_error();
    a.dt_max = kInf;
    MAMBA_ASSERT_OK(mamba_ssd_state_update(ctx(), &a));
}

TEST_P(SsdErrorTest, StateUpdateGridLimitsOnCudaAreRefusedAndWriteNothing) {
    // The CUDA kernel puts heads and batch rows on grid axes of at most 65535 blocks: one more is refused
    // with the values in the message, and y keeps its poison and the state its values. (headdim 1, dstate
    // 4: small tensors even with 65536 rows. The check comes before any queued work; with float32
    // parameters nothing would be queued before it anyway, so that order is not observable here.)
    if (!on_cuda()) GTEST_SKIP() << "the limits are the CUDA kernel's grid; the CPU backend has none";
    for (const bool many_heads : {false, true}) {
        const int64_t Bn = many_heads ? 1 : 65536, H = many_heads ? 65536 : 1, P = 1, G = 1, N = 4;
        SCOPED_TRACE(many_heads ? "65536 heads" : "65536 batch rows");
        Tensor state({Bn, H, P, N}, DType::F32), x({Bn, H, P}, DType::F32), dt({Bn, H}, DType::F32), A({H}, DType::F32);
        Tensor Bm({Bn, G, N}, DType::F32), Cm({Bn, G, N}, DType::F32), D({H}, DType::F32), y({Bn, H, P}, DType::F32);
        std::mt19937_64 rng(23 + uint64_t(many_heads));
        for (Tensor * t : {&state, &x, &dt, &Bm, &Cm, &D}) t->fill_uniform(rng, -1, 1);
        A.fill_uniform(rng, -2, -0.5);
        for (Tensor * t : {&state, &x, &dt, &A, &Bm, &Cm, &D}) t->upload(ctx());
        y.upload_poisoned(ctx());
        const std::vector<double> state_before = state.values();
        mamba_ssd_state_update_args a{};
        a.state = state.dl();
        a.x = x.dl();
        a.dt = dt.dl();
        a.A = A.dl();
        a.B = Bm.dl();
        a.C = Cm.dl();
        a.D = D.dl();
        a.y = y.dl();
        a.dt_softplus = 1;
        a.dt_max = kInf;
        EXPECT_EQ(mamba_ssd_state_update(ctx(), &a), MAMBA_STATUS_UNSUPPORTED);
        EXPECT_STREQ(mamba_last_error(), many_heads ? "mamba_ssd_state_update: ssd_state_update on CUDA supports at most 65535 batch rows and 65535 "
                                                      "heads (has batch 1, heads 65536)"
                                                    : "mamba_ssd_state_update: ssd_state_update on CUDA supports at most 65535 batch rows and 65535 "
                                                      "heads (has batch 65536, heads 1)");
        y.download(ctx());
        for (double v : y.values()) ASSERT_TRUE(std::isnan(v));
        state.download(ctx());
        EXPECT_EQ(state.values(), state_before);
    }
}

MAMBA_INSTANTIATE_BACKENDS(SsdTest);
MAMBA_INSTANTIATE_BACKENDS(SsdStateUpdateTest);
MAMBA_INSTANTIATE_BACKENDS(SsdErrorTest);
