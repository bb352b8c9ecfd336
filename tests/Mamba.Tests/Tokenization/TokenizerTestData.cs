using System.Collections.Concurrent;
using System.Text.Json;
using Mamba.Tokenization;

namespace Mamba.Tests.Tokenization;

/// <summary>
/// Reference data written with the Hugging Face tokenizers library, never by the code under test. Two sets:
/// <c>TestData/tokenizer</c> (the byte-level BPE of the shipped model, by tools/embedded_model/train.py) and
/// <c>TestData/tokenizer-neox</c> (a small BPE with every GPT-NeoX setting: NFC, whitespace added tokens, a BOS
/// post-processor; by tools/fixtures/make_tokenizer_cases.py, which also records the pre-tokenizer pieces, ids
/// with special tokens, invalid-UTF-8 decodings and setting variants).
/// </summary>
public static class TokenizerTestData
{
    /// <summary>The shipped model's tokenizer.</summary>
    public const string Shipped = "tokenizer";

    /// <summary>The GPT-NeoX-style tokenizer with the extra reference data.</summary>
    public const string NeoX = "tokenizer-neox";

    public static readonly string[] DataSets = [Shipped, NeoX];

    /// <summary>One reference string; the optional fields are present in the NeoX set only.</summary>
    public sealed record EncodeCase(string DataSet, string Text, int[] Ids, string Decoded, int[]? IdsWithSpecial, string[]? Pieces)
    {
        public override string ToString() => DataSet + ":" + JsonSerializer.Serialize(Text);
    }

    public sealed record DecodeCase(int[] Ids, string Decoded, string DecodedSkipSpecial)
    {
        public override string ToString() => "[" + string.Join(",", Ids) + "]";
    }

    public static string DirectoryOf(string dataSet) => Path.Combine(TestSupport.RepoRoot, "tests", "Mamba.Tests", "TestData", dataSet);

    public static string TokenizerJsonOf(string dataSet) => Path.Combine(DirectoryOf(dataSet), "tokenizer.json");

    /// <summary>The NeoX set's tokenizer.json, the base of the file-handling tests.</summary>
    public static string TokenizerJson => TokenizerJsonOf(NeoX);

    private static readonly ConcurrentDictionary<string, MambaTokenizer> Loaded = new();

    internal static MambaTokenizer TokenizerOf(string dataSet) => Loaded.GetOrAdd(dataSet, d => MambaTokenizer.FromFile(TokenizerJsonOf(d)));

    internal static MambaTokenizer Tokenizer => TokenizerOf(NeoX);

    public static IEnumerable<EncodeCase> EncodeCases() => DataSets.SelectMany(EncodeCases);

    public static IEnumerable<EncodeCase> EncodeCases(string dataSet) =>
        Lines(dataSet, "cases.jsonl").Select(root => new EncodeCase(
            dataSet,
            root.GetProperty("text").GetString()!,
            Ints(root.GetProperty("ids")),
            root.TryGetProperty("decoded", out var d) ? d.GetString()! : root.GetProperty("text").GetString()!,
            root.TryGetProperty("ids_with_special", out var s) ? Ints(s) : null,
            root.TryGetProperty("pieces", out var p) ? p.EnumerateArray().Select(e => e.GetString()!).ToArray() : null));

    public static IEnumerable<DecodeCase> DecodeCases() =>
        Lines(NeoX, "decode_cases.jsonl").Select(root => new DecodeCase(
            Ints(root.GetProperty("ids")),
            root.GetProperty("decoded").GetString()!,
            root.GetProperty("decoded_skip_special").GetString()!));

    private static IEnumerable<JsonElement> Lines(string dataSet, string file)
    {
        // Split on '\n' only: texts hold U+0085 and U+2028, which some line readers treat as line ends.
        var text = File.ReadAllText(Path.Combine(DirectoryOf(dataSet), file));
        foreach (var line in text.Split('\n'))
        {
            if (line.Trim().Length > 0)
            {
                using var doc = JsonDocument.Parse(line);
                yield return doc.RootElement.Clone();
            }
        }
    }

    private static int[] Ints(JsonElement array) => array.EnumerateArray().Select(e => e.GetInt32()).ToArray();
}
