using Mamba.Generation;
using Mamba.Models;
using Mamba.Tests.Models;
using static Mamba.Tests.Models.ModelTestSupport;

namespace Mamba.Tests.Generation;

[TestFixture]
public class GenerationTests
{
    private static async Task<List<int>> Collect(MambaModel model, int[] prompt, GenerationOptions options, CancellationToken ct = default)
    {
        var tokens = new List<int>();
        await foreach (var t in model.GenerateTokensAsync(prompt, options, ct))
        {
            tokens.Add(t);
        }
        return tokens;
    }

    [TestCaseSource(typeof(ModelTestSupport), nameof(Families))]
    public async Task GreedyIsDeterministicAndFollowsTheArgmax(MambaFamily family)
    {
        var tiny = TinyModel.Create(ConfigFor(family), seed: 31);
        using var model = Build(tiny);
        int[] prompt = [3, 1, 4, 1, 5];
        var options = new GenerationOptions { MaxNewTokens = 12, StopAtEndOfSequence = false };
        var first = await Collect(model, prompt, options);
        var second = await Collect(model, prompt, options);
        Assert.That(first, Has.Count.EqualTo(12));
        Assert.That(second, Is.EqualTo(first));
        // Each greedy token is the argmax of the float64 reference's logits for the text so far.
        var expected = ReferenceForward.Logits(tiny, [.. prompt, .. first]);
        for (var i = 0; i < first.Count; i++)
        {
            var row = expected[prompt.Length - 1 + i];
            var best = row.Max();
            Assert.That(row[first[i]], Is.GreaterThan(best - 1e-4 * Math.Abs(best)), $"token {i}");
        }
    }

    [TestCaseSource(typeof(ModelTestSupport), nameof(Families))]
    public async Task SeedReproducesSampling(MambaFamily family)
    {
        var tiny = TinyModel.Create(ConfigFor(family), seed: 32);
        using var model = Build(tiny);
        int[] prompt = [2, 7, 1];
        GenerationOptions Options(ulong seed) => new()
        {
            MaxNewTokens = 24, Temperature = 1.5f, TopK = 30, TopP = 0.95f, MinP = 0.01f, RepetitionPenalty = 1.1f, Seed = seed,
            StopAtEndOfSequence = false,
        };
        var a = await Collect(model, prompt, Options(42));
        var b = await Collect(model, prompt, Options(42));
        var c = await Collect(model, prompt, Options(43));
        Assert.That(b, Is.EqualTo(a));
        Assert.That(c, Is.Not.EqualTo(a));
    }

    [TestCaseSource(typeof(ModelTestSupport), nameof(Families))]
    public async Task BatchedGenerationEqualsOneByOne(MambaFamily family)
    {
        var tiny = TinyModel.Create(ConfigFor(family), seed: 33);
        using var model = Build(tiny);
        var rng = new Random(9);
        var prompts = new[] { 4, 11, 1, 7 }.Select(n => TinyModel.RandomTokens(rng, n, tiny.Config.VocabSize)).ToArray();
        var free = new GenerationOptions { MaxNewTokens = 10, StopAtEndOfSequence = false };
        var singles = new List<List<int>>();
        foreach (var p in prompts)
        {
            singles.Add(await Collect(model, p, free));
        }
        // Stop at a token the first sequence draws midway, so sequences end at different times.
        var stop = singles[0][4];
        var options = free with { StopTokens = [stop] };
        var expected = singles.Select(s => s.TakeWhile(t => t != stop).ToList()).ToArray();
        var results = model.Generate(prompts, options);
        for (var s = 0; s < prompts.Length; s++)
        {
            Assert.That(results[s].Tokens, Is.EqualTo(expected[s]), $"sequence {s}");
            Assert.That(results[s].FinishReason, Is.EqualTo(expected[s].Count < 10 ? FinishReason.StopToken : FinishReason.Length));
        }
        Assert.That(results[0].Tokens, Has.Count.LessThanOrEqualTo(4));
    }

    [Test]
    public async Task CancellationStopsPromptlyAndFreesTheModel()
    {
        var tiny = TinyModel.Create(TinyModel.Mamba2Config(), seed: 34);
        using var model = Build(tiny);
        using var cts = new CancellationTokenSource();
        var received = 0;
        Assert.ThrowsAsync(Is.InstanceOf<OperationCanceledException>(), async () =>
        {
            await foreach (var _ in model.GenerateTokensAsync([1, 2, 3], new GenerationOptions { MaxNewTokens = 1000, StopAtEndOfSequence = false }, cts.Token))
            {
                if (++received == 3)
                {
                    cts.Cancel();
                }
            }
        });
        Assert.That(received, Is.EqualTo(3));
        // The model is usable again right away.
        var after = await Collect(model, [1, 2, 3], new GenerationOptions { MaxNewTokens = 2, StopAtEndOfSequence = false });
        Assert.That(after, Has.Count.EqualTo(2));
    }

    [Test]
    public void CancellationDuringALongPrefillStopsIt()
    {
        var tiny = TinyModel.Create(TinyModel.Mamba1Config(), seed: 38);
        using var model = Build(tiny, new MambaModelOptions { PrefillChunkSize = 4 });
        using var session = model.CreateSession();
        using var cts = new CancellationTokenSource();
        var pieces = 0;
        var prompt = TinyModel.RandomTokens(new Random(10), 64, tiny.Config.VocabSize);
        Assert.Throws<OperationCanceledException>(() => session.Prefill(0, prompt, (_, _) =>
        {
            if (++pieces == 2)
            {
                cts.Cancel();
            }
        }, cts.Token));
        Assert.That(pieces, Is.EqualTo(2), "no piece runs after the cancellation");
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        Assert.Throws<OperationCanceledException>(() => model.Generate([prompt], new GenerationOptions(), cancelled.Token));
    }

    [Test]
    public void StatsReportPrefillAndDecodeApart()
    {
        var tiny = TinyModel.Create(TinyModel.Mamba1Config(), seed: 35);
        using var model = Build(tiny);
        GenerationStats? stats = null;
        model.Generate([[1, 2, 3, 4], [5]], new GenerationOptions { MaxNewTokens = 5, StopAtEndOfSequence = false, OnStats = s => stats = s });
        Assert.That(stats, Is.Not.Null);
        Assert.That(stats!.PromptTokens, Is.EqualTo(5));
        Assert.That(stats.GeneratedTokens, Is.EqualTo(10));
        Assert.That(stats.PrefillTime, Is.GreaterThan(TimeSpan.Zero));
        Assert.That(stats.DecodeTime, Is.GreaterThan(TimeSpan.Zero));
    }

    [Test]
    public void EndOfSequenceStopsWhenTheConfigNamesIt()
    {
        var tiny = TinyModel.Create(TinyModel.Mamba1Config(), seed: 36);
        using var model0 = Build(tiny);
        var free = model0.Generate([[1, 2]], new GenerationOptions { MaxNewTokens = 6, StopAtEndOfSequence = false })[0].Tokens;
        var eos = free[2];
        using var model = MambaModel.Create(tiny.Config with { EosTokenId = eos }, tiny.Checkpoint,
            new MambaModelOptions { Device = Mamba.Runtime.Device.Cpu });
        var result = model.Generate([[1, 2]], new GenerationOptions { MaxNewTokens = 6 })[0];
        Assert.That(result.Tokens, Is.EqualTo(free.TakeWhile(t => t != eos).ToArray()));
        Assert.That(result.FinishReason, Is.EqualTo(FinishReason.StopToken));
    }

    [Test]
    public void BadOptionsAreRejected()
    {
        var tiny = TinyModel.Create(TinyModel.Mamba1Config(), seed: 37);
        using var model = Build(tiny);
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Generate([[1]], new GenerationOptions { TopP = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Generate([[1]], new GenerationOptions { MaxNewTokens = -1 }));
        foreach (var temperature in new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity })
        {
            var error = Assert.Throws<ArgumentOutOfRangeException>(() => model.Generate([[1]], new GenerationOptions { Temperature = temperature }));
            Assert.That(error!.Message, Does.Contain("Temperature must be a finite number"));
        }
        Assert.Throws<ArgumentException>(() => model.Generate([[]], new GenerationOptions()));
    }
}
