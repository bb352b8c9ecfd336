using System.Text;
using Mamba.Tokenization;

namespace Mamba.Tests.Tokenization;

/// <summary>Streaming decoding against one-shot decoding, on characters split across tokens and on random bytes.</summary>
[TestFixture]
public class TokenStreamDecoderTests
{
    [Test]
    public void HoldsBackACharacterUntilItsLastByteArrives()
    {
        var tokenizer = TokenizerTestData.Tokenizer;
        var euro = SingleByteIds(tokenizer, Encoding.UTF8.GetBytes("€"));
        var stream = tokenizer.CreateStreamDecoder();
        Assert.That(stream.Push(euro[0]), Is.Empty);
        Assert.That(stream.Push(euro[1]), Is.Empty);
        Assert.That(stream.Push(euro[2]), Is.EqualTo("€"));
        Assert.That(stream.Flush(), Is.Empty);

        var face = SingleByteIds(tokenizer, Encoding.UTF8.GetBytes("😀"));
        Assert.That(face.Take(3).Select(stream.Push), Is.All.Empty);
        Assert.That(stream.Push(face[3]), Is.EqualTo("😀"), "both surrogates come out together");
    }

    [Test]
    public void FlushTurnsAnIncompleteTailIntoOneReplacementAndResets()
    {
        var tokenizer = TokenizerTestData.Tokenizer;
        var euro = SingleByteIds(tokenizer, Encoding.UTF8.GetBytes("€"));
        var stream = tokenizer.CreateStreamDecoder();
        Assert.That(stream.Push(euro[0]) + stream.Push(euro[1]), Is.Empty);
        Assert.That(stream.Flush(), Is.EqualTo("\uFFFD"));
        Assert.That(stream.Flush(), Is.Empty);
        Assert.That(stream.Push(euro[2]), Is.EqualTo("\uFFFD"), "after a flush a lone continuation byte is invalid");
        Assert.That(string.Concat(tokenizer.Encode("héllo wörld").Select(stream.Push)) + stream.Flush(), Is.EqualTo("héllo wörld"));
    }

    [Test]
    public void RandomBytesStreamExactlyAsTheyDecode()
    {
        var tokenizer = TokenizerTestData.Tokenizer;
        var rng = new Random(1234);
        // Bytes biased towards UTF-8 structure (lead and continuation bytes) so that valid, truncated and broken
        // sequences all occur, mixed with ordinary multi-byte tokens and special tokens.
        byte[] pool = [0x41, 0x20, 0xC3, 0xA9, 0xE2, 0x82, 0xAC, 0xF0, 0x9F, 0x98, 0x80, 0xED, 0xA0, 0xC0, 0xFF, 0xBF, 0xF4, 0x90];
        var words = tokenizer.Encode("naïve café 😀 日本 <|endoftext|>");
        for (var trial = 0; trial < 300; trial++)
        {
            var ids = new List<int>();
            var length = rng.Next(0, 24);
            for (var k = 0; k < length; k++)
            {
                var roll = rng.Next(10);
                ids.Add(roll < 7
                    ? SingleByteIds(tokenizer, [pool[rng.Next(pool.Length)]])[0]
                    : words[rng.Next(words.Count)]);
            }
            foreach (var skip in new[] { false, true })
            {
                var stream = tokenizer.CreateStreamDecoder(skip);
                var parts = ids.Select(stream.Push).ToList();
                parts.Add(stream.Flush());
                Assert.That(string.Concat(parts), Is.EqualTo(tokenizer.Decode(ids, skip)), $"ids [{string.Join(",", ids)}], skip={skip}");
                Assert.That(parts.Where(p => p.Length > 0).All(p => !char.IsHighSurrogate(p[^1]) && !char.IsLowSurrogate(p[0])), "a surrogate pair was split");
            }
        }
    }

    [Test]
    public void RejectsANullTokenizer() => Assert.Throws<ArgumentNullException>(() => new TokenStreamDecoder(null!));

    /// <summary>The single-byte tokens spelling <paramref name="bytes"/>.</summary>
    internal static int[] SingleByteIds(MambaTokenizer tokenizer, byte[] bytes)
    {
        var ids = new int[bytes.Length];
        for (var i = 0; i < bytes.Length; i++)
        {
            var token = ByteLevelAlphabet.ByteToChar(bytes[i]).ToString();
            ids[i] = Enumerable.Range(0, tokenizer.VocabSize).First(id => tokenizer.TokenToString(id) == token && !tokenizer.IsSpecialToken(id));
        }
        return ids;
    }
}
