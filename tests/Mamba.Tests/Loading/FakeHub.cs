using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;

namespace Mamba.Tests.Loading;

/// <summary>
/// A local stand-in for the Hugging Face hub on 127.0.0.1, with its URL layout and headers:
/// <c>/{repo}/resolve/{revision}/{file}</c> answers small files directly (ETag = git blob id) and large ("LFS")
/// files with a 302 to <c>/cdn/{sha256}</c> carrying X-Linked-Etag and X-Linked-Size; every resolve answer
/// carries X-Repo-Commit; errors carry X-Error-Code. The CDN honours Range requests.
/// </summary>
internal sealed class FakeHub : IDisposable
{
    private readonly HttpListener _listener = new();
    private readonly Task _loop;
    private readonly ConcurrentDictionary<string, byte[]> _cdn = new();

    public FakeHub()
    {
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        var port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        Endpoint = $"http://127.0.0.1:{port}";
        _listener.Prefixes.Add(Endpoint + "/");
        _listener.Start();
        _loop = Task.Run(Serve);
    }

    public string Endpoint { get; }

    public string Commit { get; } = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(20));

    /// <summary>Repositories: repo id -> file -> (content, served through the CDN).</summary>
    public Dictionary<string, Dictionary<string, (byte[] Content, bool Lfs)>> Repos { get; } = [];

    /// <summary>Old repository ids answered with a relative redirect to the new one, as the hub does after a rename.</summary>
    public Dictionary<string, string> Renamed { get; } = [];

    /// <summary>When true, resolve requests get 403 as for a gated repository whose terms were not accepted.</summary>
    public bool Gated { get; set; }

    /// <summary>When set, resolve requests need "Authorization: Bearer {token}".</summary>
    public string? RequiredToken { get; set; }

    /// <summary>When set, large files are redirected to this other server (another origin) instead of this one's /cdn/.</summary>
    public FakeHub? Cdn { get; set; }

    /// <summary>When set, the next CDN GET sends this many bytes and then drops the connection.</summary>
    public int? AbortNextCdnAfter { get; set; }

    /// <summary>"METHOD path [range] [auth]" of every request.</summary>
    public ConcurrentQueue<string> Log { get; } = new();

    public void Add(string repo, string file, byte[] content, bool lfs = false)
    {
        if (!Repos.TryGetValue(repo, out var files))
        {
            Repos[repo] = files = [];
        }
        files[file] = (content, lfs);
        if (lfs)
        {
            _cdn[Sha256(content)] = content;
            Cdn?._cdn.TryAdd(Sha256(content), content);
        }
    }

    public static string Sha256(byte[] content) => Convert.ToHexStringLower(SHA256.HashData(content));

    private static string GitBlobId(byte[] content) =>
        Convert.ToHexStringLower(SHA1.HashData([.. System.Text.Encoding.ASCII.GetBytes($"blob {content.Length}\0"), .. content]));

    private async Task Serve()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync();
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return;
            }
            try
            {
                await Handle(context);
            }
            catch (Exception e) when (e is HttpListenerException or IOException or ObjectDisposedException)
            {
                // the client went away
            }
        }
    }

    private async Task Handle(HttpListenerContext context)
    {
        var request = context.Request;
        var response = context.Response;
        var path = Uri.UnescapeDataString(request.Url!.AbsolutePath);
        Log.Enqueue($"{request.HttpMethod} {path} {request.Headers["Range"]} {request.Headers["Authorization"]}".TrimEnd());

        if (path.StartsWith("/cdn/", StringComparison.Ordinal))
        {
            await ServeCdn(request, response, path[5..]);
            return;
        }

        // /{owner}/{name}/resolve/{revision}/{file...}
        var parts = path.TrimStart('/').Split('/', 5);
        if (parts.Length < 5 || parts[2] != "resolve")
        {
            Finish(response, 404, null);
            return;
        }
        var repo = parts[0] + "/" + parts[1];
        var revision = parts[3];
        var file = parts[4];
        if (Renamed.TryGetValue(repo, out var newName))
        {
            response.Headers["Location"] = $"/{newName}/resolve/{parts[3]}/{parts[4]}";
            Finish(response, 307, null);
            return;
        }
        if (Gated)
        {
            response.Headers["X-Error-Code"] = "GatedRepo";
            response.Headers["X-Error-Message"] = "Access to model is restricted";
            Finish(response, 403, null);
            return;
        }
        if (RequiredToken is not null && request.Headers["Authorization"] != "Bearer " + RequiredToken)
        {
            response.Headers["X-Error-Message"] = "Invalid credentials in Authorization header";
            Finish(response, 401, null);
            return;
        }
        if (!Repos.TryGetValue(repo, out var files))
        {
            response.Headers["X-Error-Code"] = "RepoNotFound";
            response.Headers["X-Error-Message"] = "Repository not found";
            Finish(response, 404, null);
            return;
        }
        if (revision != "main" && revision != Commit)
        {
            response.Headers["X-Error-Code"] = "RevisionNotFound";
            Finish(response, 404, null);
            return;
        }
        response.Headers["X-Repo-Commit"] = Commit;
        if (!files.TryGetValue(file, out var entry))
        {
            response.Headers["X-Error-Code"] = "EntryNotFound";
            Finish(response, 404, null);
            return;
        }
        if (entry.Lfs)
        {
            var sha = Sha256(entry.Content);
            response.Headers["X-Linked-Etag"] = $"\"{sha}\"";
            response.Headers["X-Linked-Size"] = entry.Content.Length.ToString();
            response.Headers["ETag"] = $"\"{GitBlobId(entry.Content)}\"";
            response.Headers["Location"] = $"{(Cdn ?? this).Endpoint}/cdn/{sha}";
            Finish(response, 302, null);
            return;
        }
        response.Headers["ETag"] = $"\"{GitBlobId(entry.Content)}\"";
        Finish(response, 200, request.HttpMethod == "HEAD" ? null : entry.Content, entry.Content.Length);
    }

    private async Task ServeCdn(HttpListenerRequest request, HttpListenerResponse response, string sha)
    {
        if (!_cdn.TryGetValue(sha, out var content))
        {
            Finish(response, 404, null);
            return;
        }
        long start = 0;
        if (request.Headers["Range"] is { } range && range.StartsWith("bytes=", StringComparison.Ordinal) && range.EndsWith('-'))
        {
            start = long.Parse(range[6..^1]);
            if (start >= content.Length)
            {
                response.Headers["Content-Range"] = $"bytes */{content.Length}";
                Finish(response, 416, null);
                return;
            }
            response.StatusCode = 206;
            response.Headers["Content-Range"] = $"bytes {start}-{content.Length - 1}/{content.Length}";
        }
        response.Headers["ETag"] = $"\"{sha}\"";
        var body = content.AsMemory((int)start);
        response.ContentLength64 = body.Length;
        if (AbortNextCdnAfter is { } cut)
        {
            AbortNextCdnAfter = null;
            await response.OutputStream.WriteAsync(body[..Math.Min(cut, body.Length)]);
            await response.OutputStream.FlushAsync();
            response.Abort();
            return;
        }
        await response.OutputStream.WriteAsync(body);
        response.Close();
    }

    private static void Finish(HttpListenerResponse response, int status, byte[]? body, long? length = null)
    {
        response.StatusCode = status;
        if (body is not null)
        {
            response.ContentLength64 = body.Length;
            response.OutputStream.Write(body);
        }
        else if (length is { } n)
        {
            response.ContentLength64 = n;
        }
        response.Close();
    }

    public void Dispose()
    {
        _listener.Stop();
        _listener.Close();
        try
        {
            _loop.Wait(TimeSpan.FromSeconds(5));
        }
        catch (AggregateException)
        {
            // stopped
        }
    }
}
