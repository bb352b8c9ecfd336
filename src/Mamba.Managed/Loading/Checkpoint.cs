namespace Mamba.Loading;

/// <summary>Opens the weights of a model from a file or a model directory, whatever their layout on disk.</summary>
public static class Checkpoint
{
    /// <summary>Single-file weights name.</summary>
    public const string SingleFileName = "model.safetensors";

    /// <summary>Sharded weights index name.</summary>
    public const string IndexFileName = "model.safetensors.index.json";

    /// <summary>PyTorch single-file weights name.</summary>
    public const string TorchFileName = "pytorch_model.bin";

    /// <summary>PyTorch sharded weights index name.</summary>
    public const string TorchIndexFileName = "pytorch_model.bin.index.json";

    /// <summary>
    /// Opens <paramref name="path"/>: a <c>.safetensors</c> file, a PyTorch <c>torch.save</c> archive
    /// (<c>.bin</c>, <c>.pt</c>, <c>.pth</c>, <c>.ckpt</c>; read by <see cref="TorchCheckpoint"/>, which never runs
    /// pickled code), an index (<c>*.index.json</c>), or a directory (see <see cref="FindWeights"/>).
    /// </summary>
    /// <exception cref="FileNotFoundException">No weights found.</exception>
    /// <exception cref="CheckpointFormatException">The weights are malformed, or a pickle holds more than tensors.</exception>
    public static ICheckpoint Open(string path)
    {
        var full = Path.GetFullPath(path);
        if (File.Exists(full))
        {
            return full.EndsWith(".index.json", StringComparison.OrdinalIgnoreCase) ? ShardedCheckpoint.Open(full) : OpenFile(full);
        }
        if (Directory.Exists(full))
        {
            return Open(FindWeights(full));
        }
        throw new FileNotFoundException($"checkpoint not found: {full}", full);
    }

    /// <summary>Opens one weights file by its extension: PyTorch pickles through <see cref="TorchCheckpoint"/>, the rest as safetensors.</summary>
    public static ICheckpoint OpenFile(string path) => IsPickle(path) ? TorchCheckpoint.Open(path) : SafetensorsFile.Open(path);

    /// <summary>
    /// The weights of a model directory: <c>model.safetensors</c>, else <c>model.safetensors.index.json</c>, else
    /// its only <c>*.safetensors</c> file, else <c>pytorch_model.bin</c>, else <c>pytorch_model.bin.index.json</c>.
    /// </summary>
    /// <exception cref="FileNotFoundException">No weights in the directory.</exception>
    public static string FindWeights(string directory)
    {
        foreach (var name in new[] { SingleFileName, IndexFileName })
        {
            if (File.Exists(Path.Combine(directory, name)))
            {
                return Path.Combine(directory, name);
            }
        }
        var others = Directory.GetFiles(directory, "*.safetensors");
        if (others.Length == 1)
        {
            return others[0];
        }
        if (others.Length > 1)
        {
            throw new FileNotFoundException(
                $"{directory}: {others.Length} .safetensors files and no {IndexFileName} to say how they form one checkpoint");
        }
        foreach (var name in new[] { TorchFileName, TorchIndexFileName })
        {
            if (File.Exists(Path.Combine(directory, name)))
            {
                return Path.Combine(directory, name);
            }
        }
        throw new FileNotFoundException($"{directory}: no {SingleFileName}, {IndexFileName}, other .safetensors or {TorchFileName} weights", directory);
    }

    private static bool IsPickle(string path)
    {
        var name = Path.GetFileName(path);
        return name.EndsWith(".bin", StringComparison.OrdinalIgnoreCase) || name.EndsWith(".pt", StringComparison.OrdinalIgnoreCase)
            || name.EndsWith(".pth", StringComparison.OrdinalIgnoreCase) || name.EndsWith(".ckpt", StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>How to convert PyTorch weights to safetensors (for the formats <see cref="TorchCheckpoint"/> refuses).</summary>
    public const string ConversionHint =
        "convert the weights to safetensors once, in the model directory: python -c \"import torch; from safetensors.torch import save_file; "
        + "sd = torch.load('pytorch_model.bin', map_location='cpu', weights_only=True); "
        + "save_file({k: v.contiguous().clone() for k, v in sd.items()}, 'model.safetensors', metadata={'format': 'pt'})\"";
}
