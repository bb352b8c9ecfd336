namespace Mamba.Loading;

/// <summary>Opens the weights of a model from a file or a model directory, whatever their layout on disk.</summary>
public static class Checkpoint
{
    /// <summary>Single-file weights name.</summary>
    public const string SingleFileName = "model.safetensors";

    /// <summary>Sharded weights index name.</summary>
    public const string IndexFileName = "model.safetensors.index.json";

    /// <summary>
    /// Opens <paramref name="path"/>: a <c>.safetensors</c> file, a <c>.safetensors.index.json</c> index, or a
    /// directory holding <c>model.safetensors</c>, <c>model.safetensors.index.json</c>, or exactly one other
    /// <c>*.safetensors</c> file.
    /// </summary>
    /// <exception cref="FileNotFoundException">No weights found.</exception>
    /// <exception cref="UnsupportedModelException">Only PyTorch pickle weights (<c>.bin</c>/<c>.pt</c>) are present.</exception>
    /// <exception cref="CheckpointFormatException">The weights are malformed.</exception>
    public static ICheckpoint Open(string path)
    {
        var full = Path.GetFullPath(path);
        if (File.Exists(full))
        {
            if (full.EndsWith(".index.json", StringComparison.OrdinalIgnoreCase))
            {
                return full.EndsWith(".safetensors.index.json", StringComparison.OrdinalIgnoreCase)
                    ? ShardedCheckpoint.Open(full)
                    : throw PickleRefusal(full);
            }
            if (IsPickle(full))
            {
                throw PickleRefusal(full);
            }
            return SafetensorsFile.Open(full);
        }
        if (Directory.Exists(full))
        {
            return Open(FindWeights(full));
        }
        throw new FileNotFoundException($"checkpoint not found: {full}", full);
    }

    /// <summary>The weights file (or index) of a model directory, as <see cref="Open"/> would choose it.</summary>
    /// <exception cref="FileNotFoundException">No safetensors weights in the directory.</exception>
    /// <exception cref="UnsupportedModelException">Only PyTorch pickle weights are present.</exception>
    public static string FindWeights(string directory)
    {
        var single = Path.Combine(directory, SingleFileName);
        if (File.Exists(single))
        {
            return single;
        }
        var index = Path.Combine(directory, IndexFileName);
        if (File.Exists(index))
        {
            return index;
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
        var pickle = Directory.GetFiles(directory).FirstOrDefault(IsPickle);
        if (pickle is not null)
        {
            throw PickleRefusal(pickle);
        }
        throw new FileNotFoundException($"{directory}: no {SingleFileName}, {IndexFileName} or other .safetensors weights", directory);
    }

    private static bool IsPickle(string path)
    {
        var name = Path.GetFileName(path);
        return name.EndsWith(".bin", StringComparison.OrdinalIgnoreCase) || name.EndsWith(".pt", StringComparison.OrdinalIgnoreCase)
            || name.EndsWith(".pth", StringComparison.OrdinalIgnoreCase) || name.EndsWith(".ckpt", StringComparison.OrdinalIgnoreCase)
            || name.Equals("pytorch_model.bin.index.json", StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>
    /// PyTorch checkpoints are Python pickles, which can run arbitrary code when loaded; they are refused
    /// rather than unpickled, with the one-line conversion to safetensors.
    /// </summary>
    internal static UnsupportedModelException PickleRefusal(string path) => new(path, null,
        "PyTorch pickle checkpoints are not loaded (unpickling can run arbitrary code). Convert the weights to safetensors once, "
        + "in the model directory: python -c \"import torch; from safetensors.torch import save_file; "
        + "sd = torch.load('pytorch_model.bin', map_location='cpu', weights_only=True); "
        + "save_file({k: v.contiguous().clone() for k, v in sd.items()}, 'model.safetensors', metadata={'format': 'pt'})\" "
        + "(for a sharded pytorch_model-*.bin checkpoint, load it with transformers and call "
        + "model.save_pretrained(dir, safe_serialization=True)).");
}
