using BenchmarkDotNet.Attributes;
using Mamba.Tokenization;

namespace Mamba.Benchmarks;

/// <summary>
/// The shipped model's tokenizer on the repository's own Python sources: loading, encoding (cold and warm piece
/// cache), decoding and streaming decoding.
/// </summary>
[MemoryDiagnoser]
public class TokenizerBenchmarks
{
    private string _tokenizerPath = null!;
    private string _text = null!;
    private MambaTokenizer _tokenizer = null!;
    private int[] _ids = null!;

    [GlobalSetup]
    public void Setup()
    {
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "global.json")))
        {
            root = root.Parent;
        }
        var repo = root?.FullName ?? throw new InvalidOperationException("repository root not found");
        _tokenizerPath = Path.Combine(repo, "models", "mamba2-pystdlib", "tokenizer.json");
        _text = string.Concat(Directory.GetFiles(Path.Combine(repo, "tools"), "*.py", SearchOption.AllDirectories)
            .OrderBy(p => p, StringComparer.Ordinal).Select(File.ReadAllText));
        _tokenizer = MambaTokenizer.FromFile(_tokenizerPath);
        _ids = _tokenizer.Encode(_text).ToArray();
    }

    /// <summary>Characters of text per operation (for MB/s: chars / time).</summary>
    public int TextChars => _text.Length;

    [Benchmark]
    public MambaTokenizer Load() => MambaTokenizer.FromFile(_tokenizerPath);

    [Benchmark]
    public int EncodeColdCache() => MambaTokenizer.FromFile(_tokenizerPath).Encode(_text).Count;

    [Benchmark]
    public int EncodeWarmCache() => _tokenizer.Encode(_text).Count;

    [Benchmark]
    public int Decode() => _tokenizer.Decode(_ids).Length;

    [Benchmark]
    public int StreamDecode()
    {
        var stream = _tokenizer.CreateStreamDecoder();
        var chars = 0;
        foreach (var id in _ids)
        {
            chars += stream.Push(id).Length;
        }
        return chars + stream.Flush().Length;
    }
}
