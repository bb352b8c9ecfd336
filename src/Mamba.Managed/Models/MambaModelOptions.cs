using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Models;

/// <summary>How a model is placed and stored in memory.</summary>
public sealed record MambaModelOptions
{
    /// <summary>Device to run on; <see cref="Runtime.Device.Default"/> when null.</summary>
    public Device? Device { get; init; }

    /// <summary>CPU worker threads (0: every core).</summary>
    public int CpuThreads { get; init; }

    /// <summary>Convert matrix and norm weights to this type on load; null keeps the checkpoint's type.
    /// A, D and dt biases are always float32.</summary>
    public DType? WeightDType { get; init; }

    /// <summary>Type of the activations between ops. Null picks by device and weights: on CUDA, the weights' type when
    /// it is float16 or bfloat16 (as the reference implementation computes; bf16 x, B and C are what the tensor-core SSD
    /// kernels take, and a 16-bit projection then runs as one GEMM instead of two), float32 otherwise; float32 on the
    /// CPU, the most accurate there. Set float32 for the most accurate results on CUDA. With bfloat16 weights on a CPU
    /// with AMX, or whose AVX512-BF16 dot products outrun its float32 FMAs, bfloat16 activations let the prefill's
    /// projections multiply bfloat16 values as they are (a 512-token mamba2-130m prefill on a 2-core AMD EPYC: 1978
    /// tokens/s against 1321).</summary>
    public DType? ActivationDType { get; init; }

    /// <summary>Longest piece of a prompt processed at once: longer prompts are prefilled in pieces of this many
    /// tokens, so prefill memory stays bounded whatever the prompt length. Null picks by device: 2048 on CUDA, where
    /// longer pieces give the scan, the SSD and the projections more parallel work (on an H200 a 2048-token mamba-2.8b
    /// prefill in bf16 ran at 63.5k tokens/s in pieces of 2048 against 44.5k in pieces of 512), and 512 on the CPU,
    /// where a session's prefill buffers and the piece's logits (piece x vocabulary floats, about 100 MB at 512 for a
    /// 50k vocabulary) would grow fourfold for no measured gain.</summary>
    public int? PrefillChunkSize { get; init; }

    /// <summary>Most tokens of one piece of a prefill of several sequences at once
    /// (<see cref="InferenceSession.Prefill(IReadOnlyList{int}, IReadOnlyList{ReadOnlyMemory{int}}, CancellationToken)"/>),
    /// counted over all of its sequences: each sequence advances by at most <see cref="PrefillChunkSize"/> tokens a
    /// piece, and by fewer when more sequences than this many tokens allow take part. A session allocates buffers for
    /// the smaller of this and its batch size times the piece size, the first time it prefills several sequences at
    /// once; values below the piece size count as the piece size. Null picks by device: 16384 on CUDA (eight 2048-token pieces: the projections then run as one GEMM of
    /// 16384 rows and the Mamba-1 scan needs no sequence split), and the piece size on the CPU, where the batched
    /// pieces then share the single-sequence buffers.</summary>
    public int? PrefillBatchTokens { get; init; }

    /// <summary>On CUDA, record each session's decode step as a CUDA graph after one direct step and replay it: one
    /// launch instead of one per kernel. Off runs every kernel directly (same results). Ignored on CPU.</summary>
    public bool UseCudaGraphs { get; init; } = true;
}
