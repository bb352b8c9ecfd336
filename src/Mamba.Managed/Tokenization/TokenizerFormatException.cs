namespace Mamba.Tokenization;

/// <summary>
/// A tokenizer file is malformed (bad JSON, missing or mistyped field, merge naming an unknown token) or uses a
/// feature this tokenizer does not implement (e.g. a Unigram model or an unknown pre-tokenizer). The message
/// names the file and the problem.
/// </summary>
public class TokenizerFormatException : FormatException
{
    /// <summary>Creates the exception for <paramref name="path"/>.</summary>
    public TokenizerFormatException(string path, string problem, Exception? inner = null)
        : base($"{path}: {problem}", inner)
    {
        FilePath = path;
        Problem = problem;
    }

    /// <summary>The file that could not be used.</summary>
    public string FilePath { get; }

    /// <summary>What is wrong with it, without the path.</summary>
    public string Problem { get; }
}

/// <summary>
/// The tokenizer file is well formed but asks for something not implemented here: a model other than BPE, a
/// pre-tokenizer other than byte-level, or a normalizer, decoder or post-processor this tokenizer cannot reproduce.
/// </summary>
public sealed class UnsupportedTokenizerException : TokenizerFormatException
{
    /// <summary>Creates the exception for <paramref name="path"/>.</summary>
    public UnsupportedTokenizerException(string path, string problem)
        : base(path, problem)
    {
    }
}
