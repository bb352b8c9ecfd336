// Mamba-2 SSD cases at the mamba2-130m layer shape (24 heads of 64 channels, dstate 128, one group): a
// 2048-token prefill through the chunked scan and the decode step, bf16 activations, float32 state. One
// float32 prefill (and one of a batch of shorter prompts) times the path for activations the CUDA tensor-core kernels
// do not take (the recurrence kernel, cut into segments where its blocks are few).
#include <algorithm>
#include <cmath>

#include "bench.h"

namespace {

constexpr int64_t kHeads = 24, kHeadDim = 64, kDState = 128, kGroups = 1;

// FLOPs of the chunked algorithm: per chunk of T steps, C B^T once per group (2 T^2 N), the masked
// product (T^2 P, half of a full T x T by P product), the state's contribution and the state update
// (2 T P N each) per head. Counted at the case's chunk_size as a fixed measure of the work: both backends pick
// their own chunk length (chunk_size changes only rounding; the CPU takes at most 64 steps), and a shorter chunk
// does fewer FLOPs of the masked product, so there the rates overstate the arithmetic actually done.
double ssd_flops(int64_t batch, int64_t len, int64_t chunk) {
    double flops = 0;
    for (int64_t c0 = 0; c0 < len; c0 += chunk) {
        const double T = double(std::min(chunk, len - c0));
        flops += kGroups * 2 * T * T * kDState + kHeads * (T * T * kHeadDim + 4 * T * kHeadDim * kDState);
    }
    return double(batch) * flops;
}

void prefill(mb::Bench & b, double & bytes, double & flops, mamba_ssd_args & a, int64_t batch, int64_t len, int64_t chunk,
             DLDataType act = mb::kBF16) {
    a.x = b.tensor({batch, len, kHeads, kHeadDim}, act);
    a.dt = b.tensor({batch, len, kHeads}, act, -3.0, 0.0);
    a.A = b.tensor({kHeads}, mb::kF32, -8.0, -1.0);
    a.B = b.tensor({batch, len, kGroups, kDState}, act);
    a.C = b.tensor({batch, len, kGroups, kDState}, act);
    a.D = b.tensor({kHeads}, mb::kF32);
    a.z = b.tensor({batch, len, kHeads, kHeadDim}, act);
    a.dt_bias = b.tensor({kHeads}, mb::kF32, -0.5, 0.5);
    a.y = b.tensor({batch, len, kHeads, kHeadDim}, act);
    a.final_states = b.tensor({batch, kHeads, kHeadDim, kDState}, mb::kF32);
    a.chunk_size = chunk;
    a.dt_min = 0.0f;
    a.dt_max = INFINITY;
    a.dt_softplus = 1;
    const double tokens = double(batch * len);
    const double act_bytes = double(act.bits / 8);
    bytes = tokens * (3 * kHeads * kHeadDim + kHeads + 2 * kGroups * kDState) * act_bytes + double(batch * kHeads * kHeadDim * kDState) * 4;
    flops = ssd_flops(batch, len, chunk);
}

mb::Register ssd_prefill("ssd bf16 B1 L2048 H24 P64 N128 G1 chunk 256 (mamba2-130m)", [](mb::Bench & b, double & bytes, double & flops) {
    mamba_ssd_args a{};
    prefill(b, bytes, flops, a, 1, 2048, 256);
    return [&b, a] { mb::check(mamba_ssd(b.ctx(), &a), "mamba_ssd"); };
});

mb::Register ssd_prefill_512("ssd bf16 B1 L512 H24 P64 N128 G1 chunk 256 (mamba2-130m, a 512-token prompt)", [](mb::Bench & b, double & bytes, double & flops) {
    mamba_ssd_args a{};
    prefill(b, bytes, flops, a, 1, 512, 256);
    return [&b, a] { mb::check(mamba_ssd(b.ctx(), &a), "mamba_ssd"); };
});

mb::Register ssd_prefill_batch("ssd bf16 B4 L512 H24 P64 N128 G1 chunk 256", [](mb::Bench & b, double & bytes, double & flops) {
    mamba_ssd_args a{};
    prefill(b, bytes, flops, a, 4, 512, 256);
    return [&b, a] { mb::check(mamba_ssd(b.ctx(), &a), "mamba_ssd"); };
});

mb::Register ssd_prefill_f32("ssd f32 B1 L2048 H24 P64 N128 G1 chunk 256 (recurrence kernel on CUDA)", [](mb::Bench & b, double & bytes, double & flops) {
    mamba_ssd_args a{};
    prefill(b, bytes, flops, a, 1, 2048, 256, mb::kF32);
    return [&b, a] { mb::check(mamba_ssd(b.ctx(), &a), "mamba_ssd"); };
});

mb::Register ssd_prefill_f32_batch("ssd f32 B4 L512 H24 P64 N128 G1 chunk 256 (recurrence kernel on CUDA)", [](mb::Bench & b, double & bytes, double & flops) {
    mamba_ssd_args a{};
    prefill(b, bytes, flops, a, 4, 512, 256, mb::kF32);
    return [&b, a] { mb::check(mamba_ssd(b.ctx(), &a), "mamba_ssd"); };
});
void decode(mb::Bench & b, double & bytes, double & flops, mamba_ssd_state_update_args & a, int64_t batch) {
    a.state = b.tensor({batch, kHeads, kHeadDim, kDState}, mb::kF32);
    a.x = b.tensor({batch, kHeads, kHeadDim}, mb::kBF16);
    a.dt = b.tensor({batch, kHeads}, mb::kBF16, -3.0, 0.0);
    a.A = b.tensor({kHeads}, mb::kF32, -8.0, -1.0);
    a.B = b.tensor({batch, kGroups, kDState}, mb::kBF16);
    a.C = b.tensor({batch, kGroups, kDState}, mb::kBF16);
    a.D = b.tensor({kHeads}, mb::kF32);
    a.z = b.tensor({batch, kHeads, kHeadDim}, mb::kBF16);
    a.dt_bias = b.tensor({kHeads}, mb::kF32, -0.5, 0.5);
    a.y = b.tensor({batch, kHeads, kHeadDim}, mb::kBF16);
    a.dt_min = 0.0f;
    a.dt_max = INFINITY;
    a.dt_softplus = 1;
    const double state = double(batch * kHeads * kHeadDim * kDState);
    // The state is read and written; everything else is small.
    bytes = state * 4 * 2 + double(batch) * (3 * kHeads * kHeadDim + kHeads + 2 * kGroups * kDState) * 2;
    flops = state * 5;  // decay, input and output multiply-adds
}

mb::Register ssd_decode("ssd_state_update bf16 B1 H24 P64 N128 G1 (mamba2-130m)", [](mb::Bench & b, double & bytes, double & flops) {
    mamba_ssd_state_update_args a{};
    decode(b, bytes, flops, a, 1);
    return [&b, a] { mb::check(mamba_ssd_state_update(b.ctx(), &a), "mamba_ssd_state_update"); };
});

mb::Register ssd_decode_batch("ssd_state_update bf16 B16 H24 P64 N128 G1", [](mb::Bench & b, double & bytes, double & flops) {
    mamba_ssd_state_update_args a{};
    decode(b, bytes, flops, a, 16);
    return [&b, a] { mb::check(mamba_ssd_state_update(b.ctx(), &a), "mamba_ssd_state_update"); };
});

}  // namespace
