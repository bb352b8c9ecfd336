using System.Text.Json;
using Mamba.Tokenization;

namespace Mamba.Tests.Tokenization;

/// <summary>
/// The reference data in TestData/tokenizer, written by tools/fixtures/make_tokenizer_cases.py with the Hugging Face
/// tokenizers library: a small byte-level BPE with GPT-NeoX settings and the ids the library gives for hard strings.
/// </summary>
public static class TokenizerTestData
{
    public sealed record EncodeCase(string Text, int[] Ids, int[] IdsWithSpecial, string Decoded, string[] Pieces)
    {
        public override string ToString() => JsonSerializer.Serialize(Text);
    }

    public sealed record DecodeCase(int[] Ids, string Decoded, string DecodedSkipSpecial)
    {
        public override string ToString() => "[" + string.Join(",", Ids) + "]";
    }

    public static string Directory => Path.Combine(TestSupport.RepoRoot, "tests", "Mamba.Tests", "TestData", "tokenizer");

    public static string TokenizerJson => Path.Combine(Directory, "tokenizer.json");

    private static readonly Lazy<MambaTokenizer> Shared = new(() => MambaTokenizer.FromFile(TokenizerJson));

    internal static MambaTokenizer Tokenizer => Shared.Value;

    public static IEnumerable<EncodeCase> EncodeCases() =>
        Lines("cases.jsonl").Select(root => new EncodeCase(
            root.GetProperty("text").GetString()!,
            Ints(root.GetProperty("ids")),
            Ints(root.GetProperty("ids_with_special")),
            root.TryGetProperty("decoded", out var d) ? d.GetString()! : root.GetProperty("text").GetString()!,
            root.GetProperty("pieces").EnumerateArray().Select(p => p.GetString()!).ToArray()));

    public static IEnumerable<DecodeCase> DecodeCases() =>
        Lines("decode_cases.jsonl").Select(root => new DecodeCase(
            Ints(root.GetProperty("ids")),
            root.GetProperty("decoded").GetString()!,
            root.GetProperty("decoded_skip_special").GetString()!));

    private static IEnumerable<JsonElement> Lines(string file)
    {
        // Split on '\n' only: texts hold U+0085 and U+2028, which some line readers treat as line ends.
        var text = File.ReadAllText(Path.Combine(Directory, file));
        foreach (var line in text.Split('\n'))
        {
            if (line.Length > 0)
            {
                using var doc = JsonDocument.Parse(line);
                yield return doc.RootElement.Clone();
            }
        }
    }

    private static int[] Ints(JsonElement array) => array.EnumerateArray().Select(e => e.GetInt32()).ToArray();
}
