using Mamba.Models;

namespace Mamba.Loading;

/// <summary>
/// A checkpoint validated against its config, with layout-independent access to its tensors, so model code
/// never sees which naming the file used. Disposing it closes the checkpoint.
/// </summary>
/// <example><code>
/// using var weights = MambaCheckpoint.Open(config, Checkpoint.Open(dir));
/// var inProj = weights.Get(layer, "in_proj.weight");   // same as TensorKeys.InProjWeight
/// </code></example>
public sealed class MambaCheckpoint : IDisposable
{
    private readonly bool _ownsCheckpoint;

    private MambaCheckpoint(MambaConfig config, ICheckpoint checkpoint, CheckpointLayout layout, bool ownsCheckpoint)
    {
        Config = config;
        Checkpoint = checkpoint;
        Layout = layout;
        _ownsCheckpoint = ownsCheckpoint;
    }

    /// <summary>The config the checkpoint was validated against.</summary>
    public MambaConfig Config { get; }

    /// <summary>The underlying checkpoint.</summary>
    public ICheckpoint Checkpoint { get; }

    /// <summary>The layout (and naming) it matched.</summary>
    public CheckpointLayout Layout { get; }

    /// <summary>Token embedding [vocab, hidden].</summary>
    public ICheckpointTensor Embedding => Get(TensorKeys.Embedding);

    /// <summary>Final norm weight [hidden].</summary>
    public ICheckpointTensor FinalNorm => Get(TensorKeys.FinalNorm);

    /// <summary>LM head [vocab, hidden]: the embedding when tied.</summary>
    public ICheckpointTensor LmHead => Config.TieWordEmbeddings ? Embedding : Get(TensorKeys.LmHead);

    /// <summary>
    /// Validates <paramref name="checkpoint"/> against <paramref name="config"/> (naming detected from the embedding)
    /// before anything is computed. On failure the checkpoint is disposed when owned.
    /// </summary>
    /// <exception cref="CheckpointFormatException">A missing, misshapen, wrongly typed or unexpected tensor.</exception>
    public static MambaCheckpoint Open(MambaConfig config, ICheckpoint checkpoint, bool ownsCheckpoint = true)
    {
        try
        {
            var layout = CheckpointLayout.For(config, CheckpointLayout.DetectNaming(checkpoint));
            layout.Validate(checkpoint);
            return new MambaCheckpoint(config, checkpoint, layout, ownsCheckpoint);
        }
        catch
        {
            if (ownsCheckpoint)
            {
                checkpoint.Dispose();
            }
            throw;
        }
    }

    /// <summary>A model-level tensor (<see cref="TensorKeys.Embedding"/>, <see cref="TensorKeys.FinalNorm"/>, <see cref="TensorKeys.LmHead"/>).</summary>
    public ICheckpointTensor Get(string key) =>
        Checkpoint.Tensors.TryGetValue(Layout.NameOf(key), out var t) ? t
        : throw new KeyNotFoundException($"{CheckpointLayout.Describe(Checkpoint)}: no tensor '{Layout.NameOf(key)}'");

    /// <summary>
    /// A tensor of block <paramref name="layer"/>. <paramref name="key"/> is relative to the block: "norm.weight" is
    /// the block's norm; mixer tensors may be given with or without "mixer." ("in_proj.weight"), except the
    /// Mamba-2 gated norm, which is "mixer.norm.weight".
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">No such layer.</exception>
    /// <exception cref="KeyNotFoundException">This config has no such tensor (e.g. x_proj in Mamba-2, a disabled bias).</exception>
    public ICheckpointTensor Get(int layer, string key) =>
        TryGet(layer, key) ?? throw new KeyNotFoundException(
            $"{CheckpointLayout.Describe(Checkpoint)}: a {Config.Family} checkpoint with this config has no tensor '{Layout.NameOf(Normalize(key), layer)}'");

    /// <summary>Like <see cref="Get(int, string)"/>, but null for tensors this config does not have (optional biases).</summary>
    public ICheckpointTensor? TryGet(int layer, string key)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(layer);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(layer, Config.NumLayers);
        return Checkpoint.Tensors.GetValueOrDefault(Layout.NameOf(Normalize(key), layer));
    }

    private static string Normalize(string key) => key == TensorKeys.Norm || key.StartsWith("mixer.", StringComparison.Ordinal) ? key : "mixer." + key;

    /// <summary>Closes the checkpoint when owned.</summary>
    public void Dispose()
    {
        if (_ownsCheckpoint)
        {
            Checkpoint.Dispose();
        }
    }
}
