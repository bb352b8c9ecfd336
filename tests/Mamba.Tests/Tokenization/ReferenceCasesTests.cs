using Mamba.Tokenization;

namespace Mamba.Tests.Tokenization;

/// <summary>Every case of the reference data: ids, ids with the post-processor, decoding, pre-tokenization, streaming.</summary>
[TestFixture]
public class ReferenceCasesTests
{
    private static IEnumerable<TokenizerTestData.EncodeCase> Cases() => TokenizerTestData.EncodeCases();

    private static IEnumerable<TokenizerTestData.EncodeCase> CasesWithSpecialIds() => Cases().Where(c => c.IdsWithSpecial is not null);

    private static IEnumerable<TokenizerTestData.EncodeCase> CasesWithPieces() => Cases().Where(c => c.Pieces is not null);

    private static IEnumerable<TokenizerTestData.DecodeCase> InvalidUtf8Cases() => TokenizerTestData.DecodeCases();

    [TestCaseSource(typeof(TokenizerTestData), nameof(TokenizerTestData.DataSets))]
    public void DataIsPresentAndCoversTheHardParts(string dataSet)
    {
        var cases = TokenizerTestData.EncodeCases(dataSet).ToList();
        Assert.That(cases, Has.Count.GreaterThanOrEqualTo(20));
        Assert.That(cases.Any(c => c.Text.Length == 0), "empty string");
        Assert.That(cases.Any(c => c.Text.Contains('\n') && c.Text.Contains("  ")), "code-like whitespace");
        Assert.That(cases.Any(c => c.Text.Any(ch => ch > 0x3000)), "CJK or emoji");
        if (dataSet == TokenizerTestData.NeoX)
        {
            Assert.That(cases.Any(c => c.Ids.Contains(0) && c.Text.Length > "<|endoftext|>".Length), "special token inside text");
            Assert.That(cases.Any(c => c.Text.Any(char.IsSurrogate)), "characters outside the BMP");
            Assert.That(cases.Any(c => c.Decoded != c.Text), "a case NFC changes");
            Assert.That(cases.All(c => c.IdsWithSpecial is not null && c.Pieces is not null), "ids with special tokens and pieces");
            Assert.That(InvalidUtf8Cases().Count(), Is.GreaterThanOrEqualTo(10));
        }
    }

    [TestCaseSource(nameof(Cases))]
    public void EncodesToTheReferenceIds(TokenizerTestData.EncodeCase c)
    {
        Assert.That(TokenizerTestData.TokenizerOf(c.DataSet).Encode(c.Text), Is.EqualTo(c.Ids));
    }

    [TestCaseSource(nameof(CasesWithSpecialIds))]
    public void EncodesWithSpecialTokensToTheReferenceIds(TokenizerTestData.EncodeCase c)
    {
        Assert.That(TokenizerTestData.TokenizerOf(c.DataSet).Encode(c.Text, addSpecialTokens: true), Is.EqualTo(c.IdsWithSpecial));
    }

    [TestCaseSource(nameof(Cases))]
    public void DecodesBackToTheText(TokenizerTestData.EncodeCase c)
    {
        Assert.That(TokenizerTestData.TokenizerOf(c.DataSet).Decode(c.Ids), Is.EqualTo(c.Decoded));
    }

    [TestCaseSource(nameof(CasesWithPieces))]
    public void PreTokenizesLikeTheReference(TokenizerTestData.EncodeCase c)
    {
        var pieces = new List<(int Start, int Length)>();
        Gpt2PreTokenizer.Split(c.Text, pieces);
        var mapped = pieces.Select(p => MambaTokenizer.ToByteLevel(c.Text.AsSpan(p.Start, p.Length))).ToArray();
        Assert.That(mapped, Is.EqualTo(c.Pieces));
    }

    [TestCaseSource(nameof(Cases))]
    public void StreamingDecodeEqualsDecodeAndNeverSplitsACharacter(TokenizerTestData.EncodeCase c)
    {
        var tokenizer = TokenizerTestData.TokenizerOf(c.DataSet);
        var stream = tokenizer.CreateStreamDecoder();
        var parts = c.Ids.Select(stream.Push).ToList();
        parts.Add(stream.Flush());
        Assert.That(string.Concat(parts), Is.EqualTo(c.Decoded));
        foreach (var part in parts)
        {
            if (!c.Decoded.Contains('\uFFFD'))
            {
                Assert.That(part, Does.Not.Contain('\uFFFD'), "valid text must not produce replacement characters");
            }
            Assert.That(part.Length == 0 || !char.IsHighSurrogate(part[^1]), "a piece ends inside a surrogate pair");
        }
    }

    [TestCaseSource(nameof(InvalidUtf8Cases))]
    public void ReplacesInvalidUtf8LikeTheReference(TokenizerTestData.DecodeCase c)
    {
        var tokenizer = TokenizerTestData.Tokenizer;
        Assert.That(tokenizer.Decode(c.Ids), Is.EqualTo(c.Decoded));
        Assert.That(tokenizer.Decode(c.Ids, skipSpecialTokens: true), Is.EqualTo(c.DecodedSkipSpecial));
        foreach (var skip in new[] { false, true })
        {
            var stream = tokenizer.CreateStreamDecoder(skip);
            var streamed = string.Concat(c.Ids.Select(stream.Push)) + stream.Flush();
            Assert.That(streamed, Is.EqualTo(skip ? c.DecodedSkipSpecial : c.Decoded), $"streamed, skipSpecialTokens={skip}");
        }
    }
}
