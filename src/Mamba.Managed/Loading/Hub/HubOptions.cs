namespace Mamba.Loading.Hub;

/// <summary>Where and how to reach the Hugging Face hub, and where to cache what is downloaded.</summary>
public sealed record HubOptions
{
    /// <summary>Default endpoint.</summary>
    public const string DefaultEndpoint = "https://huggingface.co";

    /// <summary>Hub base URL (HF_ENDPOINT).</summary>
    public string Endpoint { get; init; } = DefaultEndpoint;

    /// <summary>Access token sent as <c>Authorization: Bearer</c> (HF_TOKEN, else the file <c>$HF_HOME/token</c>).</summary>
    public string? Token { get; init; }

    /// <summary>Cache root holding <c>models--owner--name</c> folders (HF_HUB_CACHE, else <c>$HF_HOME/hub</c>).</summary>
    public string CacheDirectory { get; init; } = Path.Combine(DefaultHome(Environment.GetEnvironmentVariable), "hub");

    /// <summary>Use only the cache, never the network (HF_HUB_OFFLINE=1).</summary>
    public bool Offline { get; init; }

    /// <summary>Timeout for metadata requests (the file transfers themselves are not limited).</summary>
    public TimeSpan MetadataTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Options from the environment, as huggingface_hub reads it: HF_ENDPOINT, HF_TOKEN (or HUGGING_FACE_HUB_TOKEN,
    /// or the token file HF_TOKEN_PATH / $HF_HOME/token), HF_HUB_CACHE (or HUGGINGFACE_HUB_CACHE, or $HF_HOME/hub;
    /// HF_HOME defaults to $XDG_CACHE_HOME/huggingface or ~/.cache/huggingface), HF_HUB_OFFLINE (1/true/yes/on).
    /// </summary>
    public static HubOptions FromEnvironment(Func<string, string?>? getenv = null)
    {
        getenv ??= Environment.GetEnvironmentVariable;
        string? Get(string name) => getenv(name) is { Length: > 0 } v ? v : null;

        var home = DefaultHome(getenv);
        var token = Get("HF_TOKEN") ?? Get("HUGGING_FACE_HUB_TOKEN");
        if (token is null)
        {
            var tokenFile = Get("HF_TOKEN_PATH") ?? Path.Combine(home, "token");
            if (File.Exists(tokenFile))
            {
                token = File.ReadAllText(tokenFile).Trim() is { Length: > 0 } t ? t : null;
            }
        }
        return new HubOptions
        {
            Endpoint = (Get("HF_ENDPOINT") ?? DefaultEndpoint).TrimEnd('/'),
            Token = token,
            CacheDirectory = Get("HF_HUB_CACHE") ?? Get("HUGGINGFACE_HUB_CACHE") ?? Path.Combine(home, "hub"),
            Offline = IsTrue(Get("HF_HUB_OFFLINE")) || IsTrue(Get("TRANSFORMERS_OFFLINE")),
        };
    }

    private static bool IsTrue(string? value) =>
        value is not null && (value == "1" || value.Equals("true", StringComparison.OrdinalIgnoreCase)
                              || value.Equals("yes", StringComparison.OrdinalIgnoreCase) || value.Equals("on", StringComparison.OrdinalIgnoreCase));

    private static string DefaultHome(Func<string, string?> getenv)
    {
        if (getenv("HF_HOME") is { Length: > 0 } home)
        {
            return home;
        }
        var xdg = getenv("XDG_CACHE_HOME") is { Length: > 0 } x ? x : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return Path.Combine(xdg, "huggingface");
    }
}

/// <summary>Progress of one file's download.</summary>
/// <param name="RepoId">Repository.</param>
/// <param name="File">File within the repository.</param>
/// <param name="BytesDone">Bytes on disk so far (including a resumed part).</param>
/// <param name="TotalBytes">Size, when the hub says.</param>
/// <param name="Completed">The file is complete (downloaded now or found in the cache).</param>
public readonly record struct HubDownloadProgress(string RepoId, string File, long BytesDone, long? TotalBytes, bool Completed);
