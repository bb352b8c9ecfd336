using Mamba.Loading.Hub;

namespace Mamba.Loading;

/// <summary>Where a model's files are on disk.</summary>
/// <param name="Directory">The model directory (a local folder or a hub cache snapshot).</param>
/// <param name="ConfigPath">config.json.</param>
/// <param name="WeightsPath">A .safetensors file or a .safetensors.index.json index.</param>
/// <param name="TokenizerPath">tokenizer.json, when present (state-spaces repositories have none: they use the GPT-NeoX tokenizer).</param>
/// <param name="TokenizerConfigPath">tokenizer_config.json, when present.</param>
/// <param name="SpecialTokensMapPath">special_tokens_map.json, when present.</param>
/// <param name="RepoId">The hub repository, when downloaded.</param>
/// <param name="Commit">The hub commit, when downloaded.</param>
public sealed record ModelFiles(string Directory, string ConfigPath, string WeightsPath, string? TokenizerPath,
    string? TokenizerConfigPath, string? SpecialTokensMapPath, string? RepoId = null, string? Commit = null)
{
    /// <summary>Opens the weights (memory-mapped, not yet validated against a config).</summary>
    public ICheckpoint OpenCheckpoint() => Checkpoint.Open(WeightsPath);
}

/// <summary>
/// Turns what a user types (a local directory, a config.json or .safetensors path, or a hub id such as
/// <c>state-spaces/mamba-130m-hf</c>, optionally <c>@revision</c>) into the model's files on disk.
/// </summary>
public static class ModelLocator
{
    /// <summary>Finds a model's files, downloading from the hub (into the HF cache) when the string is a hub id.</summary>
    /// <exception cref="FileNotFoundException">A local path that does not exist or lacks config or weights.</exception>
    /// <exception cref="ArgumentException">Neither an existing path nor a well-formed hub id.</exception>
    /// <exception cref="HubException">The download failed.</exception>
    public static async Task<ModelFiles> LocateAsync(string model, HubClient? hub = null, IProgress<HubDownloadProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(model);
        var expanded = model.StartsWith("~/", StringComparison.Ordinal)
            ? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), model[2..])
            : model;
        if (Directory.Exists(expanded))
        {
            return FromDirectory(expanded);
        }
        if (File.Exists(expanded))
        {
            return FromFile(expanded);
        }
        if (LooksLikePath(model))
        {
            throw new FileNotFoundException($"model path not found: {Path.GetFullPath(expanded)}", expanded);
        }
        var (repoId, revision) = SplitRevision(model);
        if (!HubCache.IsValidRepoId(repoId))
        {
            throw new ArgumentException($"'{model}' is neither an existing file or directory nor a hub model id (owner/name[@revision])", nameof(model));
        }
        var ownClient = hub is null;
        hub ??= new HubClient();
        try
        {
            var snapshot = await hub.DownloadModelAsync(repoId, revision, progress, cancellationToken).ConfigureAwait(false);
            return new ModelFiles(snapshot.Directory, snapshot.ConfigPath, snapshot.WeightsPath, snapshot.TokenizerPath,
                snapshot.TokenizerConfigPath, snapshot.SpecialTokensMapPath, repoId, snapshot.Commit);
        }
        finally
        {
            if (ownClient)
            {
                hub.Dispose();
            }
        }
    }

    /// <summary>Synchronous <see cref="LocateAsync"/>.</summary>
    public static ModelFiles Locate(string model, HubClient? hub = null, IProgress<HubDownloadProgress>? progress = null) =>
        LocateAsync(model, hub, progress).GetAwaiter().GetResult();

    /// <summary>The files of a local model directory.</summary>
    /// <exception cref="FileNotFoundException">No config.json or no safetensors weights.</exception>
    /// <exception cref="UnsupportedModelException">Only PyTorch pickle weights.</exception>
    public static ModelFiles FromDirectory(string directory)
    {
        directory = Path.GetFullPath(directory);
        return WithWeights(directory, Checkpoint.FindWeights(directory));
    }

    private static ModelFiles FromFile(string file)
    {
        file = Path.GetFullPath(file);
        var directory = Path.GetDirectoryName(file)!;
        var name = Path.GetFileName(file);
        if (name.EndsWith(".json", StringComparison.OrdinalIgnoreCase) && !name.EndsWith(".index.json", StringComparison.OrdinalIgnoreCase))
        {
            return FromDirectory(directory); // a config.json: its directory is the model
        }
        return WithWeights(directory, file); // a weights file or index; Checkpoint.Open refuses pickles
    }

    private static ModelFiles WithWeights(string directory, string weights)
    {
        var config = Path.Combine(directory, "config.json");
        if (!File.Exists(config))
        {
            throw new FileNotFoundException($"{directory}: no config.json next to the weights", config);
        }
        string? Optional(string name) => File.Exists(Path.Combine(directory, name)) ? Path.Combine(directory, name) : null;
        return new ModelFiles(directory, config, weights, Optional("tokenizer.json"), Optional("tokenizer_config.json"), Optional("special_tokens_map.json"));
    }

    private static bool LooksLikePath(string model) =>
        model.StartsWith('.') || model.StartsWith('/') || model.StartsWith('~') || model.Contains('\\') || Path.IsPathRooted(model)
        || model.Count(c => c == '/') > 1 || model.EndsWith(".json", StringComparison.OrdinalIgnoreCase)
        || model.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase);

    private static (string RepoId, string Revision) SplitRevision(string model)
    {
        var at = model.LastIndexOf('@');
        return at > 0 && at < model.Length - 1 ? (model[..at], model[(at + 1)..]) : (model, "main");
    }
}

/// <summary>A model's config and validated weights, ready for the model graph. Disposing it closes the weights.</summary>
public sealed class LoadedModel : IDisposable
{
    private LoadedModel(ModelFiles files, LoadedConfig config, MambaCheckpoint weights)
    {
        Files = files;
        ConfigInfo = config;
        Weights = weights;
    }

    /// <summary>Where the files are.</summary>
    public ModelFiles Files { get; }

    /// <summary>The config with its layout and ignored fields.</summary>
    public LoadedConfig ConfigInfo { get; }

    /// <summary>The normalized config.</summary>
    public Models.MambaConfig Config => ConfigInfo.Config;

    /// <summary>The weights, validated against the config.</summary>
    public MambaCheckpoint Weights { get; }

    /// <summary>Locates (downloading if needed), reads the config, opens the weights and validates every tensor.</summary>
    public static async Task<LoadedModel> LoadAsync(string model, HubClient? hub = null, IProgress<HubDownloadProgress>? progress = null,
        CancellationToken cancellationToken = default) =>
        Open(await ModelLocator.LocateAsync(model, hub, progress, cancellationToken).ConfigureAwait(false));

    /// <summary>Synchronous <see cref="LoadAsync"/>.</summary>
    public static LoadedModel Load(string model, HubClient? hub = null, IProgress<HubDownloadProgress>? progress = null) =>
        LoadAsync(model, hub, progress).GetAwaiter().GetResult();

    /// <summary>Reads the config and opens and validates the weights of located files.</summary>
    public static LoadedModel Open(ModelFiles files)
    {
        var config = ConfigLoader.LoadDetailed(files.ConfigPath);
        var weights = MambaCheckpoint.Open(config.Config, files.OpenCheckpoint());
        return new LoadedModel(files, config, weights);
    }

    /// <summary>Closes the weights.</summary>
    public void Dispose() => Weights.Dispose();
}
