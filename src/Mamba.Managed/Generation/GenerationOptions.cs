using Mamba.Ops;

namespace Mamba.Generation;

/// <summary>What to generate and how to draw each token.</summary>
public sealed record GenerationOptions
{
    /// <summary>Most tokens generated per sequence.</summary>
    public int MaxNewTokens { get; init; } = 128;

    /// <summary>Sampling temperature; 0 (the default) or less is greedy decoding, as in the C ABI. Must be finite.</summary>
    public float Temperature { get; init; }

    /// <summary>Keep only the k most likely tokens; 0 keeps all.</summary>
    public int TopK { get; init; }

    /// <summary>Nucleus sampling threshold; 1 keeps all.</summary>
    public float TopP { get; init; } = 1f;

    /// <summary>Drop tokens less likely than min-p times the most likely one; 0 keeps all.</summary>
    public float MinP { get; init; }

    /// <summary>Penalty for tokens already in the prompt or output; 1 is off.</summary>
    public float RepetitionPenalty { get; init; } = 1f;

    /// <summary>Seed of the sampler; equal seeds give equal outputs. Null picks one at random.</summary>
    public ulong? Seed { get; init; }

    /// <summary>Token ids that end a sequence (not included in the output).</summary>
    public IReadOnlyList<int> StopTokens { get; init; } = [];

    /// <summary>Texts that end a sequence (not included in the output); used by the text API.</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];

    /// <summary>Stop at the model's end-of-sequence token when its config names one.</summary>
    public bool StopAtEndOfSequence { get; init; } = true;

    /// <summary>Called once when generation ends (also on cancellation) with its timings.</summary>
    public Action<GenerationStats>? OnStats { get; init; }

    internal SamplingParams ToSampling(ulong seed) => new(Temperature, TopK, TopP, MinP, RepetitionPenalty, seed);

    internal void Validate()
    {
        if (MaxNewTokens < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxNewTokens), $"MaxNewTokens must be >= 0; got {MaxNewTokens}");
        }
        if (TopK < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(TopK), $"TopK must be >= 0; got {TopK}");
        }
        if (!(TopP > 0f && TopP <= 1f))
        {
            throw new ArgumentOutOfRangeException(nameof(TopP), $"TopP must be in (0, 1]; got {TopP}");
        }
        if (!(MinP >= 0f && MinP <= 1f))
        {
            throw new ArgumentOutOfRangeException(nameof(MinP), $"MinP must be in [0, 1]; got {MinP}");
        }
        if (!(RepetitionPenalty > 0f))
        {
            throw new ArgumentOutOfRangeException(nameof(RepetitionPenalty), $"RepetitionPenalty must be > 0; got {RepetitionPenalty}");
        }
        if (!float.IsFinite(Temperature))
        {
            throw new ArgumentOutOfRangeException(nameof(Temperature), $"Temperature must be a finite number (0 or less: greedy); got {Temperature}");
        }
    }
}

/// <summary>Why a sequence ended.</summary>
public enum FinishReason
{
    /// <summary>Still generating.</summary>
    None,

    /// <summary>Reached <see cref="GenerationOptions.MaxNewTokens"/>.</summary>
    Length,

    /// <summary>Produced a stop token or the end-of-sequence token.</summary>
    StopToken,

    /// <summary>Produced a stop string.</summary>
    StopString,
}

/// <summary>The tokens generated for one prompt.</summary>
public sealed record GeneratedSequence(IReadOnlyList<int> Tokens, FinishReason FinishReason);

/// <summary>Timings of one generation, prefill and decode apart.</summary>
public sealed record GenerationStats(int PromptTokens, int GeneratedTokens, TimeSpan PrefillTime, TimeSpan DecodeTime)
{
    /// <summary>Prompt tokens processed per second.</summary>
    public double PrefillTokensPerSecond => PrefillTime > TimeSpan.Zero ? PromptTokens / PrefillTime.TotalSeconds : 0;

    /// <summary>Tokens generated per second (all sequences together).</summary>
    public double DecodeTokensPerSecond => DecodeTime > TimeSpan.Zero ? GeneratedTokens / DecodeTime.TotalSeconds : 0;

    /// <inheritdoc />
    public override string ToString() =>
        $"prefill: {PromptTokens} tokens, {PrefillTokensPerSecond:F1} tokens/s; decode: {GeneratedTokens} tokens, {DecodeTokensPerSecond:F1} tokens/s";
}
