namespace Mamba.Models;

/// <summary>Which architecture a checkpoint holds.</summary>
public enum MambaFamily
{
    /// <summary>Mamba-1: selective scan mixer.</summary>
    Mamba1,

    /// <summary>Mamba-2: SSD mixer with multi-head state and gated RMSNorm.</summary>
    Mamba2,
}

/// <summary>
/// Every hyper-parameter that changes the math of a Mamba or Mamba-2 model, normalized from the Hugging Face
/// (<c>model_type</c> mamba / mamba2) and original state-spaces config layouts.
/// </summary>
public sealed record MambaConfig
{
    /// <summary>Architecture.</summary>
    public required MambaFamily Family { get; init; }

    /// <summary>Model width (d_model / hidden_size).</summary>
    public required int HiddenSize { get; init; }

    /// <summary>Number of residual blocks.</summary>
    public required int NumLayers { get; init; }

    /// <summary>Vocabulary size of the embedding and LM head (after any padding the checkpoint applied).</summary>
    public required int VocabSize { get; init; }

    /// <summary>
    /// Vocabulary size before padding to <c>pad_vocab_size_multiple</c> (state-spaces configs), i.e. the ids a
    /// tokenizer can produce; null when the config does not distinguish it from <see cref="VocabSize"/>.
    /// </summary>
    public int? UnpaddedVocabSize { get; init; }

    /// <summary>SSM state size N (d_state).</summary>
    public required int StateSize { get; init; }

    /// <summary>Inner width of the mixer (expand * hidden_size).</summary>
    public required int IntermediateSize { get; init; }

    /// <summary>Depthwise convolution width (d_conv / conv_kernel).</summary>
    public required int ConvKernel { get; init; }

    /// <summary>Mamba-1: rank of the dt projection.</summary>
    public int TimeStepRank { get; init; }

    /// <summary>Mamba-2: number of heads.</summary>
    public int NumHeads { get; init; }

    /// <summary>Mamba-2: head dimension P.</summary>
    public int HeadDim { get; init; }

    /// <summary>Mamba-2: groups sharing B and C.</summary>
    public int NumGroups { get; init; } = 1;

    /// <summary>Mamba-2: SSD chunk length.</summary>
    public int ChunkSize { get; init; } = 256;

    /// <summary>Epsilon of every RMSNorm.</summary>
    public double NormEpsilon { get; init; } = 1e-5;

    /// <summary>Keep the residual stream in float32.</summary>
    public bool ResidualInFp32 { get; init; } = true;

    /// <summary>LM head shares the embedding matrix.</summary>
    public bool TieWordEmbeddings { get; init; } = true;

    /// <summary>Bias on in_proj/out_proj.</summary>
    public bool UseBias { get; init; }

    /// <summary>Bias on the depthwise convolution.</summary>
    public bool UseConvBias { get; init; } = true;

    /// <summary>Mamba-2: clamp of dt after softplus (0 and +inf when unlimited).</summary>
    public (float Min, float Max) TimeStepLimit { get; init; } = (0f, float.PositiveInfinity);

    /// <summary>Mamba-2: gated RMSNorm normalizes before the gate (false in published checkpoints).</summary>
    public bool NormBeforeGate { get; init; }

    /// <summary>Token ids from the configs, when given.</summary>
    public int? BosTokenId { get; init; }

    /// <summary>End-of-sequence token id, when given.</summary>
    public int? EosTokenId { get; init; }

    /// <summary>Padding token id, when given.</summary>
    public int? PadTokenId { get; init; }
}
