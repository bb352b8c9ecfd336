using System.Net;
using System.Net.Http.Headers;
using System.Text.RegularExpressions;

namespace Mamba.Loading.Hub;

/// <summary>The files of a model snapshot in the local cache.</summary>
/// <param name="RepoId">Repository.</param>
/// <param name="Commit">Commit the files come from.</param>
/// <param name="Directory">The snapshot folder.</param>
/// <param name="ConfigPath">config.json.</param>
/// <param name="WeightsPath">model.safetensors, or model.safetensors.index.json (its shards next to it).</param>
/// <param name="TokenizerPath">tokenizer.json, when the repository has one.</param>
/// <param name="TokenizerConfigPath">tokenizer_config.json, when present.</param>
/// <param name="SpecialTokensMapPath">special_tokens_map.json, when present.</param>
public sealed record HubSnapshot(string RepoId, string Commit, string Directory, string ConfigPath, string WeightsPath,
    string? TokenizerPath, string? TokenizerConfigPath, string? SpecialTokensMapPath);

/// <summary>
/// Downloads model files from the Hugging Face hub (or any server with its URL layout,
/// <c>{endpoint}/{repo}/resolve/{revision}/{file}</c>) into the standard HF cache, so files already fetched by
/// Python tools are reused and the other way round. Partial downloads are kept as <c>blobs/{etag}.incomplete</c>
/// and resumed with a Range request. In offline mode only the cache is used.
/// </summary>
public sealed partial class HubClient : IDisposable
{
    private const int MaxRedirects = 10;
    private readonly HttpClient _http;

    /// <summary>Creates a client with options from the environment (see <see cref="HubOptions.FromEnvironment"/>).</summary>
    public HubClient()
        : this(HubOptions.FromEnvironment())
    {
    }

    /// <summary>Creates a client.</summary>
    public HubClient(HubOptions options)
    {
        Options = options;
        Cache = new HubCache(options.CacheDirectory);
        // Redirects are followed by hand: HEAD must stop at the CDN redirect (its headers carry the metadata),
        // and the token must not follow a redirect to another host.
        _http = new HttpClient(new SocketsHttpHandler { AllowAutoRedirect = false, AutomaticDecompression = DecompressionMethods.None })
        {
            Timeout = Timeout.InfiniteTimeSpan,
        };
        _http.DefaultRequestHeaders.UserAgent.Add(new ProductInfoHeaderValue("Mamba.NET", typeof(HubClient).Assembly.GetName().Version?.ToString(3) ?? "0"));
    }

    /// <summary>The options.</summary>
    public HubOptions Options { get; }

    /// <summary>The cache.</summary>
    public HubCache Cache { get; }

    private sealed record FileMetadata(string Commit, string ETag, long? Size, Uri Location);

    [GeneratedRegex("^[A-Za-z0-9._-]{1,128}$")]
    private static partial Regex ETagPattern();

    /// <summary>
    /// Downloads what inference needs: config.json, the weights (model.safetensors, or the index and every shard),
    /// and tokenizer.json, tokenizer_config.json and special_tokens_map.json when the repository has them.
    /// The revision is resolved to one commit first, so all files come from the same commit.
    /// </summary>
    /// <exception cref="HubNotFoundException">No such repository, revision, config or safetensors weights.</exception>
    /// <exception cref="HubUnauthorizedException">Private or gated repository without (valid) token.</exception>
    /// <exception cref="HubOfflineException">Offline and not cached.</exception>
    /// <exception cref="UnsupportedModelException">The repository has only PyTorch pickle weights.</exception>
    public async Task<HubSnapshot> DownloadModelAsync(string repoId, string revision = "main",
        IProgress<HubDownloadProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        CheckRepo(repoId, revision);
        var config = await DownloadFileAsync(repoId, "config.json", revision, progress, cancellationToken).ConfigureAwait(false);
        var commit = Path.GetFileName(Path.GetDirectoryName(config)!);
        async Task<string?> Optional(string file) =>
            await TryDownloadFileAsync(repoId, file, commit, progress, cancellationToken).ConfigureAwait(false);

        var weights = await Optional(Checkpoint.SingleFileName).ConfigureAwait(false);
        if (weights is null)
        {
            weights = await Optional(Checkpoint.IndexFileName).ConfigureAwait(false);
            if (weights is null)
            {
                if (Options.Offline)
                {
                    throw new HubOfflineException(
                        $"{repoId}@{revision}: no {Checkpoint.SingleFileName} or {Checkpoint.IndexFileName} in the cache ({Cache.SnapshotFolder(repoId, commit)}) and offline mode is on (HF_HUB_OFFLINE)");
                }
                foreach (var pickle in new[] { "pytorch_model.bin", "pytorch_model.bin.index.json" })
                {
                    // Only asked about, never downloaded: it would be refused anyway.
                    if (await HeadAsync(repoId, pickle, commit, cancellationToken).ConfigureAwait(false) is not null)
                    {
                        throw Checkpoint.PickleRefusal($"{repoId}@{commit}/{pickle}");
                    }
                }
                throw new HubNotFoundException($"{repoId}@{revision}: no {Checkpoint.SingleFileName} or {Checkpoint.IndexFileName} in the repository");
            }
            foreach (var shard in ShardedCheckpoint.ReadShardNames(weights))
            {
                await DownloadFileAsync(repoId, shard, commit, progress, cancellationToken).ConfigureAwait(false);
            }
        }
        var tokenizer = await Optional("tokenizer.json").ConfigureAwait(false);
        var tokenizerConfig = await Optional("tokenizer_config.json").ConfigureAwait(false);
        var specialTokens = await Optional("special_tokens_map.json").ConfigureAwait(false);
        return new HubSnapshot(repoId, commit, Path.GetDirectoryName(config)!, config, weights, tokenizer, tokenizerConfig, specialTokens);
    }

    /// <summary>Downloads one file (or finds it in the cache) and returns its path in the snapshot folder.</summary>
    /// <exception cref="HubNotFoundException">The file does not exist.</exception>
    public async Task<string> DownloadFileAsync(string repoId, string file, string revision = "main",
        IProgress<HubDownloadProgress>? progress = null, CancellationToken cancellationToken = default) =>
        await TryDownloadFileAsync(repoId, file, revision, progress, cancellationToken).ConfigureAwait(false)
        ?? throw new HubNotFoundException($"{repoId}@{revision}: file '{file}' not found in the repository");

    /// <summary>Like <see cref="DownloadFileAsync"/>, but null when the repository has no such file.</summary>
    public async Task<string?> TryDownloadFileAsync(string repoId, string file, string revision = "main",
        IProgress<HubDownloadProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        CheckRepo(repoId, revision);
        if (!ShardedCheckpoint.IsSafeRelativePath(file))
        {
            throw new ArgumentException($"'{file}' is not a plain relative file name", nameof(file));
        }
        if (Options.Offline)
        {
            return FromCacheOrNull(repoId, file, revision, progress)
                ?? (Cache.IsKnownAbsent(repoId, revision, file) || Cache.ResolveCommit(repoId, revision) is { } c && IsOptionalInSnapshot(repoId, c, file)
                    ? null
                    : throw new HubOfflineException(
                        $"{repoId}@{revision}: '{file}' is not in the cache ({Cache.RepoFolder(repoId)}) and offline mode is on (HF_HUB_OFFLINE); "
                        + "download it once with network access, or unset HF_HUB_OFFLINE"));
        }

        FileMetadata? metadata;
        try
        {
            metadata = await HeadAsync(repoId, file, revision, cancellationToken).ConfigureAwait(false);
        }
        catch (HttpRequestException e)
        {
            // Like huggingface_hub: when the hub cannot be reached, a cached copy still serves.
            return FromCacheOrNull(repoId, file, revision, progress)
                   ?? throw new HubException($"{repoId}@{revision}: cannot reach {Options.Endpoint} to download '{file}' ({e.Message}), and it is not cached", null, e);
        }
        if (metadata is null)
        {
            return null;
        }

        Cache.WriteRef(repoId, revision, metadata.Commit);
        var pointer = Cache.SnapshotPath(repoId, metadata.Commit, file);
        var blob = Cache.BlobPath(repoId, metadata.ETag);
        if (File.Exists(pointer) && File.Exists(blob))
        {
            progress?.Report(new HubDownloadProgress(repoId, file, new FileInfo(blob).Length, metadata.Size, true));
            return pointer;
        }
        if (!File.Exists(blob))
        {
            await DownloadBlobAsync(repoId, file, metadata, blob, progress, cancellationToken).ConfigureAwait(false);
        }
        Cache.LinkSnapshot(repoId, metadata.Commit, file, blob);
        progress?.Report(new HubDownloadProgress(repoId, file, new FileInfo(blob).Length, metadata.Size, true));
        return pointer;
    }

    // Offline, a file missing from a snapshot that already holds config.json is taken as absent only for the
    // optional tokenizer extras; weights and config must be there.
    private bool IsOptionalInSnapshot(string repoId, string commit, string file) =>
        file is "tokenizer.json" or "tokenizer_config.json" or "special_tokens_map.json" or "model.safetensors" or "model.safetensors.index.json"
        && File.Exists(Cache.SnapshotPath(repoId, commit, "config.json"));

    private string? FromCacheOrNull(string repoId, string file, string revision, IProgress<HubDownloadProgress>? progress)
    {
        var cached = Cache.TryGetFile(repoId, revision, file);
        if (cached is not null)
        {
            progress?.Report(new HubDownloadProgress(repoId, file, new FileInfo(cached).Length, new FileInfo(cached).Length, true));
        }
        return cached;
    }

    private static void CheckRepo(string repoId, string revision)
    {
        if (!HubCache.IsValidRepoId(repoId))
        {
            throw new ArgumentException($"'{repoId}' is not a valid hub repository id (expected owner/name)", nameof(repoId));
        }
        if (!ShardedCheckpoint.IsSafeRelativePath(revision))
        {
            throw new ArgumentException($"'{revision}' is not a valid revision", nameof(revision));
        }
    }

    private Uri ResolveUrl(string repoId, string file, string revision) =>
        new($"{Options.Endpoint.TrimEnd('/')}/{repoId}/resolve/{Uri.EscapeDataString(revision)}/{string.Join('/', file.Split('/').Select(Uri.EscapeDataString))}");

    private HttpRequestMessage Request(HttpMethod method, Uri url, Uri origin)
    {
        var request = new HttpRequestMessage(method, url);
        // The token goes only to the hub's own host, never to a CDN it redirects to.
        if (Options.Token is { } token && url.Host == origin.Host && url.Port == origin.Port)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }
        return request;
    }

    /// <summary>HEAD on the resolve URL: commit, etag, size and where to GET; null when the file does not exist.</summary>
    private async Task<FileMetadata?> HeadAsync(string repoId, string file, string revision, CancellationToken cancellationToken)
    {
        var origin = ResolveUrl(repoId, file, revision);
        var url = origin;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(Options.MetadataTimeout);
        for (var hop = 0; hop <= MaxRedirects; hop++)
        {
            using var request = Request(HttpMethod.Head, url, origin);
            HttpResponseMessage response;
            try
            {
                response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException e) when (!cancellationToken.IsCancellationRequested)
            {
                throw new HttpRequestException($"no answer within {Options.MetadataTimeout.TotalSeconds:0} s", e);
            }
            using (response)
            {
                var status = (int)response.StatusCode;
                // A redirect to the same host (renamed repository) is followed; one to another host (the CDN
                // serving large files) is where the file is downloaded from, and this response has the metadata.
                if (status is >= 300 and < 400 && response.Headers.Location is { } location)
                {
                    var target = location.IsAbsoluteUri ? location : new Uri(url, location);
                    if (!location.IsAbsoluteUri || target.Host == url.Host && target.Port == url.Port && !HasRepoCommit(response))
                    {
                        url = target;
                        continue;
                    }
                    return Metadata(repoId, file, revision, response, target);
                }
                if (response.IsSuccessStatusCode)
                {
                    return Metadata(repoId, file, revision, response, url);
                }
                if (ThrowForStatus(repoId, file, revision, response))
                {
                    if (response.Headers.TryGetValues("X-Repo-Commit", out var commits) && commits.FirstOrDefault() is { } c && HubCache.IsCommitHash(c))
                    {
                        Cache.WriteRef(repoId, revision, c);
                        Cache.MarkAbsent(repoId, c, file);
                    }
                    return null;
                }
            }
        }
        throw new HubException($"{repoId}@{revision}: more than {MaxRedirects} redirects for '{file}'");
    }

    private static bool HasRepoCommit(HttpResponseMessage response) => response.Headers.Contains("X-Repo-Commit");

    private static string? Header(HttpResponseMessage response, string name) =>
        response.Headers.TryGetValues(name, out var values) ? values.FirstOrDefault()
        : response.Content.Headers.TryGetValues(name, out var contentValues) ? contentValues.FirstOrDefault() : null;

    private FileMetadata Metadata(string repoId, string file, string revision, HttpResponseMessage response, Uri location)
    {
        var commit = Header(response, "X-Repo-Commit");
        if (commit is null || !HubCache.IsCommitHash(commit))
        {
            throw new HubException($"{repoId}@{revision}: the server at {Options.Endpoint} sent no valid X-Repo-Commit for '{file}'; "
                                   + "is HF_ENDPOINT a Hugging Face hub (or a proxy that drops its headers)?");
        }
        // X-Linked-Etag is the LFS file's sha256 (sent with the CDN redirect); ETag otherwise (git blob id).
        var etag = (Header(response, "X-Linked-Etag") ?? Header(response, "ETag"))?.Trim();
        if (etag is not null && etag.StartsWith("W/", StringComparison.Ordinal))
        {
            etag = etag[2..];
        }
        etag = etag?.Trim('"');
        if (etag is null || !ETagPattern().IsMatch(etag))
        {
            throw new HubException($"{repoId}@{revision}: the server sent no usable ETag for '{file}' (got '{etag}')");
        }
        var sizeText = Header(response, "X-Linked-Size");
        long? size = sizeText is not null && long.TryParse(sizeText, out var linked) ? linked : response.Content.Headers.ContentLength;
        return new FileMetadata(commit, etag, size, location);
    }

    /// <summary>Throws the typed exception for an error status; returns true for "file not found" (not an error for optional files).</summary>
    private bool ThrowForStatus(string repoId, string file, string revision, HttpResponseMessage response)
    {
        var code = Header(response, "X-Error-Code");
        var serverMessage = Header(response, "X-Error-Message");
        var detail = serverMessage is null ? "" : $" (server: {serverMessage})";
        switch (response.StatusCode)
        {
            case HttpStatusCode.NotFound when code == "RepoNotFound":
                throw new HubNotFoundException($"repository '{repoId}' not found on {Options.Endpoint}{detail}; if it is private, set HF_TOKEN");
            case HttpStatusCode.NotFound when code == "RevisionNotFound":
                throw new HubNotFoundException($"revision '{revision}' not found in repository '{repoId}'{detail}");
            case HttpStatusCode.NotFound:
                return true;
            case HttpStatusCode.Unauthorized:
                throw new HubUnauthorizedException(Options.Token is null
                    ? $"{repoId}: 401 Unauthorized for '{file}'{detail}: the repository is private or gated (or does not exist); set HF_TOKEN to an access token"
                    : $"{repoId}: 401 Unauthorized for '{file}'{detail}: the token was rejected, or it has no access to this repository", response.StatusCode);
            case HttpStatusCode.Forbidden:
                throw new HubUnauthorizedException(
                    $"{repoId}: 403 Forbidden for '{file}'{detail}: access denied (a gated repository needs its terms accepted on the model page, with the token's account)",
                    response.StatusCode);
            default:
                throw new HubException($"{repoId}@{revision}: HTTP {(int)response.StatusCode} {response.ReasonPhrase} for '{file}'{detail}", response.StatusCode);
        }
    }

    private async Task DownloadBlobAsync(string repoId, string file, FileMetadata metadata, string blob,
        IProgress<HubDownloadProgress>? progress, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(blob)!);
        var incomplete = blob + ".incomplete";
        long done = File.Exists(incomplete) ? new FileInfo(incomplete).Length : 0;
        if (metadata.Size is { } expected && done > expected)
        {
            done = 0; // stale partial file of something else
        }

        var origin = ResolveUrl(repoId, file, metadata.Commit);
        var url = metadata.Location;
        HttpResponseMessage? response = null;
        try
        {
            for (var hop = 0; ; hop++)
            {
                using var request = Request(HttpMethod.Get, url, origin);
                if (done > 0)
                {
                    request.Headers.Range = new RangeHeaderValue(done, null);
                }
                response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
                if ((int)response.StatusCode is >= 300 and < 400 && response.Headers.Location is { } location && hop < MaxRedirects)
                {
                    url = location.IsAbsoluteUri ? location : new Uri(url, location);
                    response.Dispose();
                    continue;
                }
                break;
            }

            if (response.StatusCode == HttpStatusCode.RequestedRangeNotSatisfiable && metadata.Size == done)
            {
                // Everything was already there.
            }
            else
            {
                if (!response.IsSuccessStatusCode)
                {
                    ThrowForStatus(repoId, file, metadata.Commit, response);
                    throw new HubNotFoundException($"{repoId}@{metadata.Commit}: '{file}' disappeared between the metadata request and the download");
                }
                var resumed = response.StatusCode == HttpStatusCode.PartialContent;
                if (resumed && response.Content.Headers.ContentRange?.From != done)
                {
                    throw new HubException($"{repoId}: the server answered the resume of '{file}' at byte {done} with range {response.Content.Headers.ContentRange}");
                }
                if (!resumed)
                {
                    done = 0; // the server ignored the Range header: start over
                }
                var total = metadata.Size ?? (response.Content.Headers.ContentLength is { } length ? done + length : null);
                await using var output = new FileStream(incomplete, resumed ? FileMode.Append : FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true);
                await using var input = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
                var buffer = new byte[1 << 20];
                progress?.Report(new HubDownloadProgress(repoId, file, done, total, false));
                try
                {
                    int read;
                    while ((read = await input.ReadAsync(buffer, cancellationToken).ConfigureAwait(false)) > 0)
                    {
                        await output.WriteAsync(buffer.AsMemory(0, read), cancellationToken).ConfigureAwait(false);
                        done += read;
                        progress?.Report(new HubDownloadProgress(repoId, file, done, total, false));
                    }
                }
                catch (Exception e) when (e is IOException or HttpRequestException)
                {
                    await output.FlushAsync(CancellationToken.None).ConfigureAwait(false);
                    throw new HubException(
                        $"{repoId}: download of '{file}' was interrupted after {done} of {total?.ToString() ?? "?"} bytes ({e.Message}); the partial file {incomplete} is kept and resumed by the next attempt",
                        null, e);
                }
            }
        }
        catch (HttpRequestException e)
        {
            throw new HubException($"{repoId}: cannot download '{file}' from {url.GetLeftPart(UriPartial.Authority)} ({e.Message}); any partial file is kept and resumed next time", null, e);
        }
        finally
        {
            response?.Dispose();
        }

        var actual = new FileInfo(incomplete).Length;
        if (metadata.Size is { } size && actual != size)
        {
            throw new HubException($"{repoId}: '{file}' is incomplete: {actual} of {size} bytes received; run again to resume");
        }
        File.Move(incomplete, blob, overwrite: true);
    }

    /// <summary>Releases the HTTP client.</summary>
    public void Dispose() => _http.Dispose();
}
