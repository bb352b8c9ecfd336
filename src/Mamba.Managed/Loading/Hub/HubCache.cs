using System.Text.RegularExpressions;

namespace Mamba.Loading.Hub;

/// <summary>
/// The Hugging Face cache layout, shared with huggingface_hub and transformers:
/// <c>{cache}/models--{owner}--{name}/blobs/{etag}</c> holds file contents,
/// <c>snapshots/{commit}/{file}</c> links to the blob, <c>refs/{revision}</c> holds the commit a branch or tag
/// last resolved to, and <c>.no_exist/{commit}/{file}</c> records files known to be absent.
/// </summary>
public sealed partial class HubCache(string root)
{
    /// <summary>The cache root.</summary>
    public string Root { get; } = Path.GetFullPath(root);

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")]
    private static partial Regex RepoIdPattern();

    [GeneratedRegex("^[0-9a-f]{40}$")]
    private static partial Regex CommitPattern();

    /// <summary>Whether a string is a well-formed hub repository id ("owner/name" or "name").</summary>
    public static bool IsValidRepoId(string repoId) =>
        repoId.Length <= 96 && RepoIdPattern().IsMatch(repoId) && !repoId.Contains("--", StringComparison.Ordinal)
        && !repoId.Contains("..", StringComparison.Ordinal) && !repoId.EndsWith('.');

    /// <summary>Whether a revision is a full commit hash.</summary>
    public static bool IsCommitHash(string revision) => CommitPattern().IsMatch(revision);

    /// <summary>The folder of a model repository.</summary>
    public string RepoFolder(string repoId)
    {
        if (!IsValidRepoId(repoId))
        {
            throw new ArgumentException($"'{repoId}' is not a valid hub repository id (expected owner/name)", nameof(repoId));
        }
        return Path.Combine(Root, "models--" + repoId.Replace("/", "--", StringComparison.Ordinal));
    }

    /// <summary>Path of a blob.</summary>
    public string BlobPath(string repoId, string etag) => Path.Combine(RepoFolder(repoId), "blobs", etag);

    /// <summary>Folder of a snapshot.</summary>
    public string SnapshotFolder(string repoId, string commit) => Path.Combine(RepoFolder(repoId), "snapshots", commit);

    /// <summary>Path of a file in a snapshot.</summary>
    public string SnapshotPath(string repoId, string commit, string file) => Path.Combine(SnapshotFolder(repoId, commit), file);

    /// <summary>Path of the marker saying a file does not exist at a commit.</summary>
    public string NoExistPath(string repoId, string commit, string file) => Path.Combine(RepoFolder(repoId), ".no_exist", commit, file);

    private string RefPath(string repoId, string revision) => Path.Combine(RepoFolder(repoId), "refs", revision);

    /// <summary>The commit a revision resolves to in the cache: a commit hash itself, or the content of refs/{revision}.</summary>
    public string? ResolveCommit(string repoId, string revision)
    {
        if (IsCommitHash(revision))
        {
            return revision;
        }
        var refPath = RefPath(repoId, revision);
        if (!File.Exists(refPath))
        {
            return null;
        }
        var commit = File.ReadAllText(refPath).Trim();
        return IsCommitHash(commit) ? commit : null;
    }

    /// <summary>Records that a revision resolves to a commit.</summary>
    public void WriteRef(string repoId, string revision, string commit)
    {
        if (revision == commit)
        {
            return;
        }
        var refPath = RefPath(repoId, revision);
        Directory.CreateDirectory(Path.GetDirectoryName(refPath)!);
        if (!File.Exists(refPath) || File.ReadAllText(refPath).Trim() != commit)
        {
            File.WriteAllText(refPath, commit);
        }
    }

    /// <summary>A cached file of a revision, or null.</summary>
    public string? TryGetFile(string repoId, string revision, string file) =>
        ResolveCommit(repoId, revision) is { } commit && File.Exists(SnapshotPath(repoId, commit, file)) ? SnapshotPath(repoId, commit, file) : null;

    /// <summary>Whether the cache records that a file is absent at a revision.</summary>
    public bool IsKnownAbsent(string repoId, string revision, string file) =>
        ResolveCommit(repoId, revision) is { } commit && File.Exists(NoExistPath(repoId, commit, file));

    /// <summary>Makes snapshots/{commit}/{file} point at a blob: a relative symbolic link, or a copy where links are not allowed.</summary>
    public string LinkSnapshot(string repoId, string commit, string file, string blobPath)
    {
        var pointer = SnapshotPath(repoId, commit, file);
        Directory.CreateDirectory(Path.GetDirectoryName(pointer)!);
        if (File.Exists(pointer) || new FileInfo(pointer).LinkTarget is not null)
        {
            File.Delete(pointer);
        }
        try
        {
            File.CreateSymbolicLink(pointer, Path.GetRelativePath(Path.GetDirectoryName(pointer)!, blobPath));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or PlatformNotSupportedException)
        {
            File.Copy(blobPath, pointer, overwrite: true);
        }
        return pointer;
    }

    /// <summary>Records a file as absent at a commit.</summary>
    public void MarkAbsent(string repoId, string commit, string file)
    {
        var marker = NoExistPath(repoId, commit, file);
        Directory.CreateDirectory(Path.GetDirectoryName(marker)!);
        File.WriteAllBytes(marker, []);
    }
}
