namespace Mamba.Models;

/// <summary>
/// The configurations of the public Mamba (state-spaces/mamba-*) and Mamba-2 (state-spaces/mamba2-*) checkpoints,
/// for benchmarks with random weights of exactly those shapes (no download needed).
/// </summary>
public static class ModelShapes
{
    private const int PaddedVocab = 50280; // GPT-NeoX's 50277 tokens padded to a multiple of 8

    /// <summary>Every known shape name, smallest first within each family.</summary>
    public static IReadOnlyList<string> Names { get; } =
    [
        "mamba-130m", "mamba-370m", "mamba-790m", "mamba-1.4b", "mamba-2.8b",
        "mamba2-130m", "mamba2-370m", "mamba2-780m", "mamba2-1.3b", "mamba2-2.7b",
    ];

    /// <summary>The configuration of a named public checkpoint.</summary>
    /// <exception cref="ArgumentException">An unknown name (the message lists the known ones).</exception>
    public static MambaConfig Get(string name) => name switch
    {
        "mamba-130m" => Mamba1(768, 24),
        "mamba-370m" => Mamba1(1024, 48),
        "mamba-790m" => Mamba1(1536, 48),
        "mamba-1.4b" => Mamba1(2048, 48),
        "mamba-2.8b" => Mamba1(2560, 64),
        "mamba2-130m" => Mamba2(768, 24),
        "mamba2-370m" => Mamba2(1024, 48),
        "mamba2-780m" => Mamba2(1536, 48),
        "mamba2-1.3b" => Mamba2(2048, 48),
        "mamba2-2.7b" => Mamba2(2560, 64),
        _ => throw new ArgumentException($"unknown model shape '{name}'; known: {string.Join(", ", Names)}", nameof(name)),
    };

    private static MambaConfig Mamba1(int d, int layers) => new()
    {
        Family = MambaFamily.Mamba1,
        HiddenSize = d,
        NumLayers = layers,
        VocabSize = PaddedVocab,
        StateSize = 16,
        IntermediateSize = 2 * d,
        ConvKernel = 4,
        TimeStepRank = (d + 15) / 16,
        TieWordEmbeddings = true,
    };

    private static MambaConfig Mamba2(int d, int layers) => new()
    {
        Family = MambaFamily.Mamba2,
        HiddenSize = d,
        NumLayers = layers,
        VocabSize = PaddedVocab,
        StateSize = 128,
        IntermediateSize = 2 * d,
        ConvKernel = 4,
        NumHeads = 2 * d / 64,
        HeadDim = 64,
        NumGroups = 1,
        ChunkSize = 256,
        TieWordEmbeddings = true,
    };
}
