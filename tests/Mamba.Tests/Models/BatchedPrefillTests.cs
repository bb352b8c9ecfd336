using Mamba.Loading;
using Mamba.Models;
using Mamba.Runtime;
using Mamba.Tensors;
using static Mamba.Tests.Models.ModelTestSupport;

namespace Mamba.Tests.Models;

/// <summary>Several sequences prefilled together (InferenceSession.Prefill over a list of sequences) against each
/// prefilled on its own: the same last-token logits, the same states (the decode that follows), whatever the piece
/// plan (prompts of different lengths, token budgets below the batch's pieces, sequences that are not consecutive rows).</summary>
[TestFixture]
public class BatchedPrefillTests
{
    /// <summary>Piece plans: the device's default budget; a budget of 24 tokens with pieces of 8, so that 7 sequences
    /// share 24 rows (3 tokens each) and fewer sequences get longer pieces as they end; a budget below the batch size
    /// (pieces of 8: 8 sequences at most at once, the rest joining as those end); and one piece for everything.</summary>
    private static IEnumerable<TestCaseData> Plans()
    {
        foreach (var device in new[] { Device.Cpu, Device.Cuda(0) })
        {
            foreach (var family in new[] { MambaFamily.Mamba1, MambaFamily.Mamba2 })
            {
                var name = family == MambaFamily.Mamba1 ? "mamba1" : "mamba2";
                foreach (var (chunk, budget, label) in new (int?, int?, string)[] { (null, null, "default"), (8, 24, "budget24"), (1, 1, "oneRow"), (64, 4096, "onePiece") })
                {
                    var data = new TestCaseData(family, device, chunk, budget).SetArgDisplayNames(name, device.Type == DeviceType.Cpu ? "cpu" : "cuda", label);
                    yield return device.Type == DeviceType.Cuda ? data.SetCategory(TestSupport.Gpu) : data;
                }
            }
        }
    }

    [TestCaseSource(nameof(Plans))]
    public void TogetherEqualsOneByOne(MambaFamily family, Device device, int? chunk, int? budget)
    {
        var tiny = TinyModel.Create(ConfigFor(family), seed: 41);
        using var model = BuildOn(device, tiny, new MambaModelOptions { PrefillChunkSize = chunk, PrefillBatchTokens = budget });
        var rng = new Random(9);
        // Sequences 5 and 6 end together on consecutive rows: their logits come from one projection.
        var prompts = new[] { 13, 5, 13, 1, 9, 20, 20 }.Select(n => TinyModel.RandomTokens(rng, n, tiny.Config.VocabSize)).ToArray();
        var next = prompts.Select(_ => TinyModel.RandomTokens(rng, 3, tiny.Config.VocabSize)).ToArray();
        using var together = model.CreateSession(prompts.Length);
        together.Prefill([.. Enumerable.Range(0, prompts.Length)], [.. prompts]);
        Assert.That(together.Lengths, Is.EqualTo(prompts.Select(p => p.Length)));
        var prefillLogits = Enumerable.Range(0, prompts.Length).Select(s => LogitsOf(together, s)).ToArray();
        AssertDecodeEqualsOneByOne(model, together, prompts, next, 3, prefillLogits);
    }

    [TestCaseSource(typeof(ModelTestSupport), nameof(FamiliesOnDevices))]
    public void SequencesThatAreNotConsecutiveRowsLeaveTheOthersAlone(MambaFamily family, Device device)
    {
        var tiny = TinyModel.Create(ConfigFor(family), seed: 42);
        using var model = BuildOn(device, tiny, new MambaModelOptions { PrefillChunkSize = 4, PrefillBatchTokens = 12 });
        var rng = new Random(10);
        var prompts = Enumerable.Range(0, 5).Select(i => TinyModel.RandomTokens(rng, 3 + 2 * i, tiny.Config.VocabSize)).ToArray();
        using var session = model.CreateSession(5);
        // Sequences 1 and 2 first, on their own; then 3, 0 and 4 together, in that order, continuing sequence 0.
        session.Prefill(1, prompts[1]);
        session.Prefill(2, prompts[2]);
        session.Prefill(0, prompts[0].AsSpan(0, 2));
        var before = new[] { LogitsOf(session, 1), LogitsOf(session, 2) };
        session.Prefill([3, 0, 4], [prompts[3], prompts[0][2..], prompts[4]]);
        Assert.That(session.Lengths, Is.EqualTo(prompts.Select(p => p.Length)));
        Assert.That(LogitsOf(session, 1), Is.EqualTo(before[0]), "sequence 1's logits are untouched");
        Assert.That(LogitsOf(session, 2), Is.EqualTo(before[1]), "sequence 2's logits are untouched");
        var next = Enumerable.Range(0, 5).Select(s => (s * 5 + 1) % tiny.Config.VocabSize).ToArray();
        session.Decode(next);
        for (var s = 0; s < 5; s++)
        {
            using var single = model.CreateSession();
            var expected = PrefillLogits(single, 0, [.. prompts[s], next[s]]);
            Assert.That(RelativeError(LogitsOf(session, s), expected[^1]), Is.LessThan(1e-4), $"sequence {s} after a decode step");
        }
    }

    /// <summary>The model shapes of the benchmark (mamba-130m, mamba2-130m with two layers, float32): the kernels' batched
    /// paths at real widths, with prompts long enough to split into pieces and segments.</summary>
    [TestCase("mamba-130m")]
    [TestCase("mamba2-130m")]
    [Category(TestSupport.Gpu)]
    public void RealShapesOnCudaEqualOneByOne(string shape)
    {
        TestSupport.RequireCuda();
        var config = ModelShapes.Get(shape) with { NumLayers = 2 };
        using var checkpoint = RandomCheckpoint.Create(config, DType.Float32, seed: 7);
        using var model = MambaModel.Create(config, checkpoint, new MambaModelOptions { Device = Device.Cuda(0), PrefillChunkSize = 512 });
        var rng = new Random(11);
        var prompts = new[] { 700, 300, 1100 }.Select(n => TinyModel.RandomTokens(rng, n, config.VocabSize)).ToArray();
        using var together = model.CreateSession(prompts.Length);
        together.Prefill([0, 1, 2], [.. prompts]);
        for (var s = 0; s < prompts.Length; s++)
        {
            using var single = model.CreateSession();
            single.Prefill(0, prompts[s]);
            Assert.That(RelativeError(LogitsOf(together, s), LogitsOf(single, 0)), Is.LessThan(1e-4), $"sequence {s}");
        }
    }

    [Test]
    public void BadArgumentsAreRejectedBeforeAnyWork()
    {
        var tiny = TinyModel.Create(ConfigFor(MambaFamily.Mamba1), seed: 43);
        using var model = Build(tiny);
        using var session = model.CreateSession(3);
        int[] ok = [1, 2];
        Assert.Multiple(() =>
        {
            Assert.That(() => session.Prefill([0, 1], [ok]),
                Throws.ArgumentException.With.Message.Contains("2 sequences but 1 prompts"));
            Assert.That(() => session.Prefill([], []),
                Throws.ArgumentException.With.Message.Contains("at least one sequence"));
            Assert.That(() => session.Prefill([1, 1], [ok, ok]),
                Throws.ArgumentException.With.Message.Contains("sequence 1 is given twice"));
            Assert.That(() => session.Prefill([0, 3], [ok, ok]),
                Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("sequence 3 does not exist"));
            Assert.That(() => session.Prefill([0, 2], [ok, ReadOnlyMemory<int>.Empty]),
                Throws.ArgumentException.With.Message.Contains("the prompt of sequence 2 is empty"));
            Assert.That(() => session.Prefill([0, 2], [ok, new[] { 1, 37 }]),
                Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("token id 37"));
        });
        Assert.That(session.Lengths, Is.EqualTo(new[] { 0, 0, 0 }), "nothing ran");
        Assert.That(() => Build(tiny, new MambaModelOptions { PrefillBatchTokens = 0 }),
            Throws.ArgumentException.With.Message.Contains("PrefillBatchTokens must be positive"));
    }

    [Test]
    public void ACancelledTokenStopsBeforeThePiecesRun()
    {
        var tiny = TinyModel.Create(ConfigFor(MambaFamily.Mamba2), seed: 44);
        using var model = Build(tiny, new MambaModelOptions { PrefillChunkSize = 4 });
        using var session = model.CreateSession(2);
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        int[] prompt = [1, 2, 3, 4, 5, 6];
        Assert.Throws<OperationCanceledException>(() => session.Prefill([0, 1], [prompt, prompt], cts.Token));
        Assert.That(session.Lengths, Is.EqualTo(new[] { 0, 0 }));
    }
}
