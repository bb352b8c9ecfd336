using Mamba.Models;
using Mamba.Tensors;

namespace Mamba.Loading;

/// <summary>How a checkpoint names its tensors; the two layouts differ only in the embedding's name.</summary>
public enum TensorNaming
{
    /// <summary>Hugging Face transformers: <c>backbone.embeddings.weight</c>.</summary>
    HuggingFace,

    /// <summary>Original state-spaces/mamba: <c>backbone.embedding.weight</c>.</summary>
    StateSpaces,
}

/// <summary>Layout-independent tensor names: model-level, and per layer (relative to <c>backbone.layers.{i}.</c>).</summary>
public static class TensorKeys
{
    /// <summary>Token embedding [vocab, hidden].</summary>
    public const string Embedding = "embedding.weight";

    /// <summary>Final RMSNorm weight [hidden].</summary>
    public const string FinalNorm = "norm_f.weight";

    /// <summary>LM head [vocab, hidden] (absent, or ignored, when tied).</summary>
    public const string LmHead = "lm_head.weight";

    /// <summary>Pre-mixer RMSNorm of a block [hidden].</summary>
    public const string Norm = "norm.weight";

    /// <summary>Input projection weight: Mamba-1 [2I, D]; Mamba-2 [2I + 2GN + H, D].</summary>
    public const string InProjWeight = "mixer.in_proj.weight";

    /// <summary>Input projection bias (use_bias).</summary>
    public const string InProjBias = "mixer.in_proj.bias";

    /// <summary>Depthwise convolution weight [channels, 1, K].</summary>
    public const string Conv1dWeight = "mixer.conv1d.weight";

    /// <summary>Depthwise convolution bias [channels] (use_conv_bias).</summary>
    public const string Conv1dBias = "mixer.conv1d.bias";

    /// <summary>Mamba-1: x projection [R + 2N, I].</summary>
    public const string XProjWeight = "mixer.x_proj.weight";

    /// <summary>Mamba-1: dt projection weight [I, R].</summary>
    public const string DtProjWeight = "mixer.dt_proj.weight";

    /// <summary>Mamba-1: dt projection bias [I].</summary>
    public const string DtProjBias = "mixer.dt_proj.bias";

    /// <summary>log(-A): Mamba-1 [I, N]; Mamba-2 [H].</summary>
    public const string ALog = "mixer.A_log";

    /// <summary>Skip term: Mamba-1 [I]; Mamba-2 [H].</summary>
    public const string D = "mixer.D";

    /// <summary>Mamba-2: dt bias [H].</summary>
    public const string DtBias = "mixer.dt_bias";

    /// <summary>Mamba-2: gated RMSNorm weight [I].</summary>
    public const string MixerNorm = "mixer.norm.weight";

    /// <summary>Output projection weight [D, I].</summary>
    public const string OutProjWeight = "mixer.out_proj.weight";

    /// <summary>Output projection bias (use_bias).</summary>
    public const string OutProjBias = "mixer.out_proj.bias";
}

/// <summary>One tensor a checkpoint must (or may) hold.</summary>
/// <param name="Key">Layout-independent key (<see cref="TensorKeys"/>).</param>
/// <param name="Layer">Block index, or null for model-level tensors.</param>
/// <param name="Name">Name as stored in the checkpoint.</param>
/// <param name="Shape">Exact shape.</param>
/// <param name="Optional">May be absent (the LM head of a tied model).</param>
public sealed record ExpectedTensor(string Key, int? Layer, string Name, long[] Shape, bool Optional = false);

/// <summary>
/// The exact set of tensors (names, shapes, allowed dtypes) a checkpoint of a given config holds in a given naming,
/// and the check of a checkpoint against it.
/// </summary>
public sealed class CheckpointLayout
{
    /// <summary>Element types accepted for every weight.</summary>
    public static readonly IReadOnlySet<DType> AllowedDTypes = new HashSet<DType> { DType.Float32, DType.Float16, DType.BFloat16 };

    private readonly Dictionary<string, ExpectedTensor> _byName;

    private CheckpointLayout(MambaConfig config, TensorNaming naming, List<ExpectedTensor> tensors)
    {
        Config = config;
        Naming = naming;
        Tensors = tensors;
        _byName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    /// <summary>The config.</summary>
    public MambaConfig Config { get; }

    /// <summary>The naming.</summary>
    public TensorNaming Naming { get; }

    /// <summary>Every expected tensor, model-level first, then layer by layer.</summary>
    public IReadOnlyList<ExpectedTensor> Tensors { get; }

    /// <summary>The stored name of a layout-independent key (layer null for model-level keys).</summary>
    public string NameOf(string key, int? layer = null) => (key, layer) switch
    {
        (TensorKeys.Embedding, null) => Naming == TensorNaming.HuggingFace ? "backbone.embeddings.weight" : "backbone.embedding.weight",
        (TensorKeys.FinalNorm, null) => "backbone.norm_f.weight",
        (TensorKeys.LmHead, null) => "lm_head.weight",
        (_, { } i) => $"backbone.layers.{i}.{key}",
        _ => throw new ArgumentException($"'{key}' is not a model-level tensor key", nameof(key)),
    };

    /// <summary>The expected tensors for a config in a naming.</summary>
    public static CheckpointLayout For(MambaConfig config, TensorNaming naming)
    {
        var list = new List<ExpectedTensor>();
        var layout = new CheckpointLayout(config, naming, list);
        long d = config.HiddenSize, v = config.VocabSize, inner = config.IntermediateSize, n = config.StateSize, k = config.ConvKernel;

        void Add(string key, int? layer, long[] shape, bool optional = false) =>
            list.Add(new ExpectedTensor(key, layer, layout.NameOf(key, layer), shape, optional));

        Add(TensorKeys.Embedding, null, [v, d]);
        Add(TensorKeys.FinalNorm, null, [d]);
        // A tied head may still be stored (torch.save keeps both names); it is then ignored.
        Add(TensorKeys.LmHead, null, [v, d], optional: config.TieWordEmbeddings);
        for (var i = 0; i < config.NumLayers; i++)
        {
            Add(TensorKeys.Norm, i, [d]);
            long inProj, convChannels;
            if (config.Family == MambaFamily.Mamba1)
            {
                long r = config.TimeStepRank;
                inProj = 2 * inner;
                convChannels = inner;
                Add(TensorKeys.XProjWeight, i, [r + 2 * n, inner]);
                Add(TensorKeys.DtProjWeight, i, [inner, r]);
                Add(TensorKeys.DtProjBias, i, [inner]);
                Add(TensorKeys.ALog, i, [inner, n]);
                Add(TensorKeys.D, i, [inner]);
            }
            else
            {
                long h = config.NumHeads, g = config.NumGroups;
                convChannels = inner + 2 * g * n;
                inProj = inner + convChannels + h;
                Add(TensorKeys.DtBias, i, [h]);
                Add(TensorKeys.ALog, i, [h]);
                Add(TensorKeys.D, i, [h]);
                Add(TensorKeys.MixerNorm, i, [inner]);
            }
            Add(TensorKeys.InProjWeight, i, [inProj, d]);
            Add(TensorKeys.Conv1dWeight, i, [convChannels, 1, k]);
            if (config.UseConvBias)
            {
                Add(TensorKeys.Conv1dBias, i, [convChannels]);
            }
            Add(TensorKeys.OutProjWeight, i, [d, inner]);
            if (config.UseBias)
            {
                Add(TensorKeys.InProjBias, i, [inProj]);
                Add(TensorKeys.OutProjBias, i, [d]);
            }
        }
        return new CheckpointLayout(config, naming, list);
    }

    /// <summary>
    /// The naming a checkpoint uses, from its embedding's name.
    /// </summary>
    /// <exception cref="CheckpointFormatException">Neither embedding name, or both.</exception>
    public static TensorNaming DetectNaming(ICheckpoint checkpoint)
    {
        var hf = checkpoint.Tensors.ContainsKey("backbone.embeddings.weight");
        var ss = checkpoint.Tensors.ContainsKey("backbone.embedding.weight");
        return (hf, ss) switch
        {
            (true, false) => TensorNaming.HuggingFace,
            (false, true) => TensorNaming.StateSpaces,
            (true, true) => throw new CheckpointFormatException(Describe(checkpoint),
                "holds both 'backbone.embeddings.weight' (Hugging Face naming) and 'backbone.embedding.weight' (state-spaces naming)"),
            _ => throw new CheckpointFormatException(Describe(checkpoint),
                "no embedding tensor: expected 'backbone.embeddings.weight' (Hugging Face) or 'backbone.embedding.weight' (state-spaces); is this a Mamba checkpoint?"),
        };
    }

    /// <summary>
    /// Checks every tensor of <paramref name="checkpoint"/> against this layout: missing, wrong shape, wrong dtype
    /// and unexpected tensors are all reported (the first 20), each with its name and file.
    /// </summary>
    /// <exception cref="CheckpointFormatException">Any mismatch.</exception>
    public void Validate(ICheckpoint checkpoint)
    {
        var problems = new List<(string File, string Problem)>();
        var where = Describe(checkpoint);
        foreach (var expected in Tensors)
        {
            if (!checkpoint.Tensors.TryGetValue(expected.Name, out var actual))
            {
                if (!expected.Optional)
                {
                    problems.Add((where, $"tensor '{expected.Name}' is missing (expected shape [{string.Join(", ", expected.Shape)}])"));
                }
                continue;
            }
            if (!actual.Shape.SequenceEqual(expected.Shape))
            {
                problems.Add((actual.SourceFile,
                    $"tensor '{expected.Name}' has shape [{string.Join(", ", actual.Shape)}], expected [{string.Join(", ", expected.Shape)}] for this config"));
            }
            if (!AllowedDTypes.Contains(actual.DType))
            {
                problems.Add((actual.SourceFile, $"tensor '{expected.Name}' has dtype {actual.DType}, expected one of {string.Join(", ", AllowedDTypes)}"));
            }
        }
        foreach (var (name, tensor) in checkpoint.Tensors.OrderBy(t => t.Key, StringComparer.Ordinal))
        {
            if (!_byName.ContainsKey(name))
            {
                problems.Add((tensor.SourceFile, $"unexpected tensor '{name}' (not part of a {Config.Family} model with {Config.NumLayers} layers in {Naming} naming)"));
            }
        }
        if (problems.Count == 0)
        {
            return;
        }
        var shown = problems.Take(20).Select(p => p.File == problems[0].File ? p.Problem : $"{p.File}: {p.Problem}");
        var more = problems.Count > 20 ? $"; and {problems.Count - 20} more" : "";
        throw new CheckpointFormatException(problems[0].File,
            (problems.Count == 1 ? "" : $"{problems.Count} problems: ") + string.Join("; ", shown) + more);
    }

    /// <summary>A file that identifies a checkpoint in messages.</summary>
    public static string Describe(ICheckpoint checkpoint) => checkpoint switch
    {
        SafetensorsFile f => f.FilePath,
        ShardedCheckpoint s => s.IndexPath,
        _ => checkpoint.Tensors.Values.FirstOrDefault()?.SourceFile ?? "checkpoint",
    };
}
