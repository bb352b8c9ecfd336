namespace Mamba.Loading;

/// <summary>
/// A checkpoint file is malformed or does not match its config: a bad safetensors header, a tensor range
/// outside the file, a missing, unexpected or wrongly shaped tensor. The message names the file and the problem.
/// </summary>
public class CheckpointFormatException : FormatException
{
    /// <summary>Creates the exception; the message is prefixed with the file.</summary>
    public CheckpointFormatException(string file, string problem, Exception? inner = null)
        : base($"{file}: {problem}", inner)
    {
        FilePath = file;
        Problem = problem;
    }

    /// <summary>The offending file.</summary>
    public string FilePath { get; }

    /// <summary>The problem, without the file name.</summary>
    public string Problem { get; }
}
