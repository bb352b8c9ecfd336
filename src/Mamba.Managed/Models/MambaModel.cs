using Mamba.Loading;
using Mamba.Modules;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Models;

/// <summary>A Mamba or Mamba-2 language model on one device: embedding, residual blocks (RMSNorm + mixer), final
/// norm and LM head. Everything runs through <see cref="Tensor"/>s and <see cref="Ops.Kernels"/> on
/// <see cref="Context"/>, so the same code serves every device. One inference at a time per model.</summary>
public sealed partial class MambaModel : IDisposable
{
    private readonly bool _ownsContext;
    private readonly Dictionary<int, InferenceSession> _sessions = [];

    private MambaModel(MambaConfig config, MambaModelOptions options, MambaContext context, bool ownsContext)
    {
        Config = config;
        Options = options;
        Context = context;
        _ownsContext = ownsContext;
    }

    /// <summary>The hyper-parameters.</summary>
    public MambaConfig Config { get; }

    /// <summary>How the model was placed.</summary>
    public MambaModelOptions Options { get; }

    /// <summary>The context every op of this model runs on.</summary>
    public MambaContext Context { get; }

    /// <summary>Token embedding.</summary>
    public Embedding Embedding { get; private set; } = null!;

    /// <summary>Residual blocks in order.</summary>
    public IReadOnlyList<MambaBlock> Layers { get; private set; } = [];

    /// <summary>Final RMSNorm.</summary>
    public RmsNorm FinalNorm { get; private set; } = null!;

    /// <summary>LM head weight (vocab, hidden): the embedding table when tied.</summary>
    public Tensor LmHead { get; private set; } = null!;

    /// <summary>The prefill piece size in use: <see cref="MambaModelOptions.PrefillChunkSize"/>, or the device's default
    /// when that is null.</summary>
    public int PrefillChunkSize => Options.PrefillChunkSize ?? (Context.Device.Type == DeviceType.Cpu ? 512 : 2048);

    /// <summary>Most tokens of one batched prefill piece over all of its sequences (<see cref="MambaModelOptions.PrefillBatchTokens"/>
    /// or the device's default), never fewer than <see cref="PrefillChunkSize"/>.</summary>
    public int PrefillBatchTokens => Math.Max(PrefillChunkSize, Options.PrefillBatchTokens ?? (Context.Device.Type == DeviceType.Cpu ? PrefillChunkSize : 16384));

    /// <summary>The activation type in use: <see cref="MambaModelOptions.ActivationDType"/>, or, when that is null, the
    /// type of the layers' matrix weights (the first in_proj's) on CUDA if it is 16-bit, and float32 otherwise.</summary>
    public DType ActivationDType => Options.ActivationDType ?? AutoActivationDType();

    private DType AutoActivationDType()
    {
        var weights = Layers.Count > 0 ? Layers[0].Mixer.DecodeFirstWeight?.DType ?? LmHead.DType : LmHead.DType;
        return Context.Device.Type != DeviceType.Cpu && weights is DType.Float16 or DType.BFloat16 ? weights : DType.Float32;
    }

    /// <summary>Type of the residual stream (float32 when the config keeps it in full precision).</summary>
    public DType ResidualDType => Config.ResidualInFp32 ? DType.Float32 : ActivationDType;

    /// <summary>Builds the model from a config and an open checkpoint; the weights are copied to the device, so the
    /// checkpoint may be closed afterwards.</summary>
    public static MambaModel Create(MambaConfig config, ICheckpoint checkpoint, MambaModelOptions? options = null, MambaContext? context = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(checkpoint);
        options ??= new MambaModelOptions();
        Validate(config, options);
        var ownsContext = context is null;
        context ??= new MambaContext(options.Device, options.CpuThreads);
        var model = new MambaModel(config, options, context, ownsContext);
        try
        {
            model.LoadWeights(checkpoint);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    private void LoadWeights(ICheckpoint checkpoint)
    {
        var c = Config;
        var w = new WeightReader(checkpoint, Context, Options.WeightDType);
        Embedding = new Embedding(w.Weight([c.VocabSize, c.HiddenSize], "embeddings.weight", "embedding.weight", "embed_tokens.weight"));
        var layers = new List<MambaBlock>();
        Layers = layers;
        for (var i = 0; i < c.NumLayers; i++)
        {
            var prefix = $"layers.{i}.";
            var norm = new RmsNorm(w.Weight([c.HiddenSize], prefix + "norm.weight"), (float)c.NormEpsilon);
            try
            {
                Mixer mixer = c.Family == MambaFamily.Mamba1 ? new Mamba1Mixer(c, w, prefix) : new Mamba2Mixer(c, w, prefix);
                layers.Add(new MambaBlock(norm, mixer));
            }
            catch
            {
                norm.Dispose();
                throw;
            }
        }
        FinalNorm = new RmsNorm(w.Weight([c.HiddenSize], "norm_f.weight", "final_layernorm.weight"), (float)c.NormEpsilon);
        var head = c.TieWordEmbeddings ? null : w.Find("lm_head.weight");
        LmHead = head is null ? Embedding.Table : w.Weight([c.VocabSize, c.HiddenSize], "lm_head.weight");
        if (!c.TieWordEmbeddings && head is null)
        {
            throw new InvalidDataException("the config says the LM head is not tied to the embedding, but the checkpoint has no 'lm_head.weight'");
        }
        // What each decode step prefetches into L2 after its own out_proj (Modules/DecodePrefetch).
        for (var i = 0; i < layers.Count; i++)
        {
            layers[i].Mixer.NextDecodeWeight = i + 1 < layers.Count ? layers[i + 1].Mixer.DecodeFirstWeight : LmHead;
        }
    }

    private static void Validate(MambaConfig c, MambaModelOptions o)
    {
        void Require(bool ok, string what)
        {
            if (!ok)
            {
                throw new ArgumentException($"invalid model config: {what}");
            }
        }
        Require(c.HiddenSize > 0 && c.NumLayers > 0 && c.VocabSize > 0 && c.StateSize > 0 && c.IntermediateSize > 0,
            "hidden size, layers, vocab size, state size and intermediate size must be positive");
        Require(c.ConvKernel is >= 2 and <= 8, $"conv kernel {c.ConvKernel} is outside 2..8");
        if (c.Family == MambaFamily.Mamba1)
        {
            Require(c.TimeStepRank > 0, "Mamba-1 needs a positive time step rank (dt_rank)");
        }
        else
        {
            Require(c.NumHeads > 0 && c.HeadDim > 0 && c.NumHeads * c.HeadDim == c.IntermediateSize,
                $"heads ({c.NumHeads}) x head dim ({c.HeadDim}) must equal the intermediate size ({c.IntermediateSize})");
            Require(c.NumGroups > 0 && c.NumHeads % c.NumGroups == 0, $"heads ({c.NumHeads}) must be a multiple of groups ({c.NumGroups})");
        }
        Require(o.PrefillChunkSize is null or > 0, "PrefillChunkSize must be positive");
        Require(o.PrefillBatchTokens is null or > 0, "PrefillBatchTokens must be positive");
        Require(o.ActivationDType is null || o.ActivationDType.Value.IsFloatingPoint(), "ActivationDType must be a floating-point type");
        Require(o.WeightDType is null || o.WeightDType.Value.IsFloatingPoint(), "WeightDType must be a floating-point type");
    }

    /// <summary>Creates a session for <paramref name="batchSize"/> sequences; every buffer is allocated here.</summary>
    public InferenceSession CreateSession(int batchSize = 1) => new(this, batchSize);

    /// <summary>The model's cached session for a batch size, reset to empty sequences.</summary>
    internal InferenceSession SessionFor(int batchSize)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!_sessions.TryGetValue(batchSize, out var session))
        {
            session = CreateSession(batchSize);
            _sessions[batchSize] = session;
        }
        session.Reset();
        return session;
    }

    private bool _disposed;

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        foreach (var s in _sessions.Values)
        {
            s.Dispose();
        }
        _sessions.Clear();
        foreach (var l in Layers)
        {
            l.Dispose();
        }
        if (LmHead is not null && !ReferenceEquals(LmHead, Embedding?.Table))
        {
            LmHead.Dispose();
        }
        Embedding?.Dispose();
        FinalNorm?.Dispose();
        if (_ownsContext)
        {
            Context.Dispose();
        }
    }
}

/// <summary>One residual block: pre-norm (with the residual add fused) and mixer.</summary>
public sealed class MambaBlock(RmsNorm norm, Mixer mixer) : IDisposable
{
    /// <summary>Pre-norm.</summary>
    public RmsNorm Norm { get; } = norm;

    /// <summary>Sequence mixer.</summary>
    public Mixer Mixer { get; } = mixer;

    /// <inheritdoc />
    public void Dispose()
    {
        Norm.Dispose();
        Mixer.Dispose();
    }
}
