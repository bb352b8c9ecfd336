using System.Text.Json;

namespace Mamba.Loading;

/// <summary>
/// A checkpoint split over several safetensors files, described by an index
/// (<c>model.safetensors.index.json</c>: <c>{"metadata": {...}, "weight_map": {"tensor": "shard file"}}</c>).
/// Opening maps every shard and checks that the index and the shards agree exactly.
/// </summary>
public sealed class ShardedCheckpoint : ICheckpoint
{
    private readonly List<SafetensorsFile> _shards;
    private readonly Dictionary<string, ICheckpointTensor> _tensors;

    private ShardedCheckpoint(string indexPath, List<SafetensorsFile> shards, Dictionary<string, ICheckpointTensor> tensors)
    {
        IndexPath = indexPath;
        _shards = shards;
        _tensors = tensors;
    }

    /// <summary>The index file.</summary>
    public string IndexPath { get; }

    /// <summary>The open shards.</summary>
    public IReadOnlyList<SafetensorsFile> Shards => _shards;

    /// <inheritdoc />
    public IReadOnlyDictionary<string, ICheckpointTensor> Tensors => _tensors;

    /// <summary>The shard file names an index refers to (validated relative paths), in first-use order.</summary>
    /// <exception cref="CheckpointFormatException">The index is malformed or names a file outside its directory.</exception>
    public static IReadOnlyList<string> ReadShardNames(string indexPath) =>
        ReadWeightMap(Path.GetFullPath(indexPath)).Values.Distinct(StringComparer.Ordinal).ToList();

    /// <summary>Opens the index and all its shards.</summary>
    /// <exception cref="FileNotFoundException">The index or a shard does not exist.</exception>
    /// <exception cref="CheckpointFormatException">The index is malformed, a shard is malformed, or they disagree.</exception>
    public static ShardedCheckpoint Open(string indexPath)
    {
        indexPath = Path.GetFullPath(indexPath);
        var weightMap = ReadWeightMap(indexPath);
        var directory = Path.GetDirectoryName(indexPath)!;
        var shards = new List<SafetensorsFile>();
        try
        {
            var byName = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
            foreach (var shardName in weightMap.Values.Distinct(StringComparer.Ordinal))
            {
                var shardPath = Path.Combine(directory, shardName);
                if (!File.Exists(shardPath))
                {
                    throw new FileNotFoundException($"{indexPath}: shard '{shardName}' not found at {shardPath}", shardPath);
                }
                var shard = SafetensorsFile.Open(shardPath);
                shards.Add(shard);
                byName.Add(shardName, shard);
            }

            var tensors = new Dictionary<string, ICheckpointTensor>(StringComparer.Ordinal);
            foreach (var (tensorName, shardName) in weightMap)
            {
                var shard = byName[shardName];
                if (!shard.Tensors.TryGetValue(tensorName, out var tensor))
                {
                    throw new CheckpointFormatException(indexPath, $"weight_map puts tensor '{tensorName}' in '{shardName}', which does not contain it");
                }
                tensors.Add(tensorName, tensor);
            }
            foreach (var (shardName, shard) in byName)
            {
                foreach (var tensorName in shard.Tensors.Keys)
                {
                    if (!weightMap.TryGetValue(tensorName, out var listed) || listed != shardName)
                    {
                        throw new CheckpointFormatException(indexPath, listed is null
                            ? $"shard '{shardName}' holds tensor '{tensorName}', which weight_map does not list"
                            : $"shard '{shardName}' also holds tensor '{tensorName}', which weight_map puts in '{listed}'");
                    }
                }
            }
            return new ShardedCheckpoint(indexPath, shards, tensors);
        }
        catch
        {
            shards.ForEach(s => s.Dispose());
            throw;
        }
    }

    private static Dictionary<string, string> ReadWeightMap(string indexPath)
    {
        if (!File.Exists(indexPath))
        {
            throw new FileNotFoundException($"checkpoint index not found: {indexPath}", indexPath);
        }
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllBytes(indexPath));
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException(indexPath, $"not valid JSON: {e.Message}", e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object
                || !doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
            {
                throw new CheckpointFormatException(indexPath, "missing object field 'weight_map'");
            }
            var result = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var entry in map.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.String)
                {
                    throw new CheckpointFormatException(indexPath, $"weight_map entry '{entry.Name}' is a JSON {entry.Value.ValueKind}, expected a file name");
                }
                var file = entry.Value.GetString()!;
                if (!IsSafeRelativePath(file))
                {
                    throw new CheckpointFormatException(indexPath, $"weight_map entry '{entry.Name}' names '{file}', which is not a plain relative path inside the checkpoint directory");
                }
                if (!result.TryAdd(entry.Name, file))
                {
                    throw new CheckpointFormatException(indexPath, $"weight_map lists tensor '{entry.Name}' twice");
                }
            }
            if (result.Count == 0)
            {
                throw new CheckpointFormatException(indexPath, "weight_map is empty");
            }
            return result;
        }
    }

    /// <summary>A relative path with no '..', no root and no empty segments (shard names come from downloaded files).</summary>
    internal static bool IsSafeRelativePath(string path)
    {
        if (string.IsNullOrWhiteSpace(path) || Path.IsPathRooted(path) || path.Contains('\\') || path.Contains(':') || path.Contains('\0'))
        {
            return false;
        }
        return path.Split('/').All(segment => segment.Length > 0 && segment != "." && segment != "..");
    }

    /// <summary>Unmaps every shard.</summary>
    public void Dispose() => _shards.ForEach(s => s.Dispose());
}
