using System.Text;
using Mamba.Tokenization;

namespace Mamba.Tests.Tokenization;

/// <summary>Inputs far from the reference strings: very long pieces, random text, concurrent use, null arguments.</summary>
[TestFixture]
public class RobustnessTests
{
    private static IEnumerable<TestCaseData> LongTexts()
    {
        yield return new TestCaseData(new string('a', 100_000)).SetArgDisplayNames("one 100k-letter word");
        yield return new TestCaseData(new string(' ', 50_000) + "x").SetArgDisplayNames("50k spaces");
        yield return new TestCaseData(string.Concat(Enumerable.Repeat("👨‍👩‍👧 ", 5_000))).SetArgDisplayNames("5k ZWJ emoji");
        yield return new TestCaseData(string.Concat(Enumerable.Repeat("\u00a0\u3000\t", 10_000))).SetArgDisplayNames("30k unicode spaces");
        yield return new TestCaseData(string.Concat(Enumerable.Repeat("<|endoftext|>", 2_000))).SetArgDisplayNames("2k special tokens");
    }

    [TestCaseSource(nameof(LongTexts))]
    public void LongInputsRoundTrip(string text)
    {
        foreach (var dataSet in TokenizerTestData.DataSets)
        {
            var tokenizer = TokenizerTestData.TokenizerOf(dataSet);
            var ids = tokenizer.Encode(text);
            Assert.That(ids, Is.Not.Empty);
            Assert.That(ids.All(id => tokenizer.TokenToString(id) is not null), "every id is a token");
            Assert.That(tokenizer.Decode(ids), Is.EqualTo(text), dataSet);
        }
    }

    [Test]
    public void RandomTextRoundTripsAndEncodingIsDeterministic()
    {
        var tokenizer = TokenizerTestData.Tokenizer;
        var rng = new Random(77);
        // Code points from many blocks (ASCII, Latin-1, Cyrillic, CJK, emoji, math letters), never surrogates,
        // already in NFC so that decoding must give them back.
        int[][] ranges = [[0x20, 0x7E], [0x09, 0x0D], [0xA0, 0xFF], [0x400, 0x4FF], [0x4E00, 0x4FFF], [0x1F600, 0x1F64F], [0x1D400, 0x1D4FF], [0x300, 0x36F]];
        for (var trial = 0; trial < 200; trial++)
        {
            var sb = new StringBuilder();
            var length = rng.Next(0, 60);
            for (var i = 0; i < length; i++)
            {
                var range = ranges[rng.Next(ranges.Length)];
                sb.Append(char.ConvertFromUtf32(rng.Next(range[0], range[1] + 1)));
            }
            var text = sb.ToString().Normalize(NormalizationForm.FormC);
            var ids = tokenizer.Encode(text);
            Assert.That(tokenizer.Decode(ids), Is.EqualTo(text), System.Text.Json.JsonSerializer.Serialize(text));
            Assert.That(tokenizer.Encode(text), Is.EqualTo(ids), "a second encoding (now from the cache) differs");
        }
    }

    [Test]
    public void ConcurrentEncodingGivesTheReferenceIds()
    {
        var cases = TokenizerTestData.EncodeCases(TokenizerTestData.NeoX).ToArray();
        var tokenizer = MambaTokenizer.FromFile(TokenizerTestData.TokenizerJson); // a fresh, empty cache
        var failures = 0;
        Parallel.For(0, cases.Length * 8, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i =>
        {
            var c = cases[i % cases.Length];
            if (!tokenizer.Encode(c.Text).SequenceEqual(c.Ids))
            {
                Interlocked.Increment(ref failures);
            }
        });
        Assert.That(failures, Is.Zero);
    }

    [Test]
    public void NullArgumentsAreRejected()
    {
        var tokenizer = TokenizerTestData.Tokenizer;
        Assert.Throws<ArgumentNullException>(() => tokenizer.Encode(null!));
        Assert.Throws<ArgumentNullException>(() => tokenizer.Decode(null!));
        Assert.Throws(Is.InstanceOf<ArgumentException>(), () => MambaTokenizer.FromFile(""));
    }
}
