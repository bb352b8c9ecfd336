using Mamba.Native;
using Mamba.Native.Interop;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Ops;

/// <summary>How the next token is drawn from logits (see mamba_sampling_params). Filters apply in the order
/// repetition penalty, temperature, top-k, top-p, min-p; a temperature &lt;= 0 is greedy.</summary>
public sealed record SamplingParams(
    float Temperature = 0f,
    int TopK = 0,
    float TopP = 1f,
    float MinP = 0f,
    float RepetitionPenalty = 1f,
    ulong Seed = 0)
{
    /// <summary>Greedy decoding without filters.</summary>
    public static SamplingParams Greedy { get; } = new();

    internal mamba_sampling_params ToNative() => new()
    {
        temperature = Temperature,
        top_k = TopK,
        top_p = TopP,
        min_p = MinP,
        repetition_penalty = RepetitionPenalty,
        seed = Seed,
    };
}

public static unsafe partial class Kernels
{
    /// <summary>Draws one token per row of logits (batch, vocab) into tokens (batch); history (batch, len) feeds the
    /// repetition penalty; <paramref name="step"/> is mixed with the seed (see mamba_sample).</summary>
    public static void Sample(MambaContext context, Tensor logits, Tensor tokens, SamplingParams parameters, ulong step = 0,
        Tensor? history = null)
    {
        ArgumentNullException.ThrowIfNull(context);
        var args = new mamba_sample_args
        {
            logits = logits.DL,
            history = Optional(history),
            tokens = tokens.DL,
            step = step,
            @params = parameters.ToNative(),
        };
        MambaException.Check(NativeMethods.mamba_sample(context.Handle.Pointer, &args));
        GC.KeepAlive(logits);
        GC.KeepAlive(history);
        GC.KeepAlive(tokens);
    }
}
