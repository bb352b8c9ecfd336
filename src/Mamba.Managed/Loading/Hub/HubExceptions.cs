using System.Net;

namespace Mamba.Loading.Hub;

/// <summary>A Hugging Face hub download failed; the message says which repository, file and why.</summary>
public class HubException : IOException
{
    /// <summary>Creates the exception.</summary>
    public HubException(string message, HttpStatusCode? statusCode = null, Exception? inner = null)
        : base(message, inner) => StatusCode = statusCode;

    /// <summary>The HTTP status, when the server answered.</summary>
    public HttpStatusCode? StatusCode { get; }
}

/// <summary>The repository, revision or file does not exist (HTTP 404).</summary>
public sealed class HubNotFoundException(string message, HttpStatusCode? statusCode = HttpStatusCode.NotFound)
    : HubException(message, statusCode);

/// <summary>The hub refused access (HTTP 401/403): a private or gated repository, or a missing or rejected token.</summary>
public sealed class HubUnauthorizedException(string message, HttpStatusCode statusCode) : HubException(message, statusCode);

/// <summary>Offline mode (HF_HUB_OFFLINE=1) and the file is not in the cache.</summary>
public sealed class HubOfflineException(string message) : HubException(message);
