using Mamba.Models;
using Mamba.Modules;
using Mamba.Tensors;
using static Mamba.Tests.Models.ModelTestSupport;

namespace Mamba.Tests.Models;

/// <summary>Whole-model logits against the float64 reference of both families, and the states' consistency:
/// prefill then decode, chunked prefill and batching all give the logits of one whole prefill.</summary>
[TestFixture]
public class ModelForwardTests
{
    [TestCaseSource(typeof(ModelTestSupport), nameof(FamiliesOnDevices))]
    public void LogitsMatchFloat64Reference(MambaFamily family, Mamba.Runtime.Device device) =>
        AssertPrefillMatchesReference(family, device, seed: 11, tokenSeed: 3, length: 40);

    // 320 tokens: on CUDA, long enough for the float32 SSD of Mamba-2 to walk its recurrence in segments at once, whose
    // combined states must carry every position's logits as the step-by-step reference does.
    [TestCaseSource(typeof(ModelTestSupport), nameof(FamiliesOnDevices))]
    public void LogitsOfALongPromptMatchFloat64Reference(MambaFamily family, Mamba.Runtime.Device device) =>
        AssertPrefillMatchesReference(family, device, seed: 13, tokenSeed: 5, length: 320);

    // Every position's logits of one prefill of `length` random tokens, and the session's last-token logits, against the
    // float64 reference.
    private static void AssertPrefillMatchesReference(MambaFamily family, Mamba.Runtime.Device device, int seed, int tokenSeed, int length)
    {
        var tiny = TinyModel.Create(ConfigFor(family), seed: seed);
        using var model = BuildOn(device, tiny);
        using var session = model.CreateSession();
        var tokens = TinyModel.RandomTokens(new Random(tokenSeed), length, tiny.Config.VocabSize);
        var logits = PrefillLogits(session, 0, tokens);
        var expected = ReferenceForward.Logits(tiny, tokens);
        for (var t = 0; t < tokens.Length; t++)
        {
            Assert.That(RelativeError(logits[t], expected[t]), Is.LessThan(1e-4), $"position {t}");
        }
        Assert.That(RelativeError(LogitsOf(session, 0), expected[^1]), Is.LessThan(1e-4), "last-token logits");
    }

    [TestCaseSource(typeof(ModelTestSupport), nameof(Families))]
    public void UntiedHeadAndBfloat16CheckpointMatchReference(MambaFamily family)
    {
        // The reference reads the bf16-rounded weights, so only activation rounding separates the two.
        var tiny = TinyModel.Create(ConfigFor(family, tied: false), seed: 12, DType.BFloat16);
        using var model = Build(tiny);
        Assert.That(model.Layers[0].Mixer is Mamba.Modules.Mamba1Mixer m1 ? m1.InProj.Weight.DType : ((Mamba.Modules.Mamba2Mixer)model.Layers[0].Mixer).InProj.Weight.DType,
            Is.EqualTo(DType.BFloat16), "weights stay in the checkpoint's type");
        using var session = model.CreateSession();
        var tokens = TinyModel.RandomTokens(new Random(4), 21, tiny.Config.VocabSize);
        var logits = PrefillLogits(session, 0, tokens);
        var expected = ReferenceForward.Logits(tiny, tokens);
        for (var t = 0; t < tokens.Length; t++)
        {
            Assert.That(RelativeError(logits[t], expected[t]), Is.LessThan(1e-4), $"position {t}");
        }
    }

    [TestCaseSource(typeof(ModelTestSupport), nameof(Families))]
    public void OriginalStateSpacesNamesLoadToo(MambaFamily family)
    {
        // state-spaces checkpoints call the embedding "embedding" where Hugging Face says "embeddings".
        var tiny = TinyModel.Create(ConfigFor(family), seed: 16);
        tiny.Checkpoint.Rename("backbone.embeddings.weight", "backbone.embedding.weight");
        using var model = Build(tiny);
        using var session = model.CreateSession();
        var tokens = TinyModel.RandomTokens(new Random(17), 9, tiny.Config.VocabSize);
        session.Prefill(0, tokens);
        Assert.That(RelativeError(LogitsOf(session, 0), ReferenceForward.Logits(tiny, tokens)[^1]), Is.LessThan(1e-4));
    }

    [TestCaseSource(typeof(ModelTestSupport), nameof(Families))]
    public void WeightsConvertedOnLoadStayClose(MambaFamily family)
    {
        var tiny = TinyModel.Create(ConfigFor(family), seed: 13);
        using var model = Build(tiny, new MambaModelOptions { WeightDType = DType.BFloat16 });
        Assert.That(model.Embedding.Table.DType, Is.EqualTo(DType.BFloat16));
        using var session = model.CreateSession();
        var tokens = TinyModel.RandomTokens(new Random(5), 12, tiny.Config.VocabSize);
        var logits = PrefillLogits(session, 0, tokens);
        var expected = ReferenceForward.Logits(tiny, tokens);
        Assert.That(RelativeError(logits[^1], expected[^1]), Is.LessThan(3e-2));
    }

    [TestCase(MambaFamily.Mamba1, DType.BFloat16)]
    [TestCase(MambaFamily.Mamba2, DType.BFloat16)]
    [TestCase(MambaFamily.Mamba1, DType.Float16)]
    [TestCase(MambaFamily.Mamba2, DType.Float16)]
    public void HalfPrecisionActivationsStayClose(MambaFamily family, DType activations)
    {
        var tiny = TinyModel.Create(ConfigFor(family), seed: 14);
        using var model = Build(tiny, new MambaModelOptions { ActivationDType = activations });
        using var session = model.CreateSession();
        var tokens = TinyModel.RandomTokens(new Random(15), 20, tiny.Config.VocabSize);
        session.Prefill(0, tokens.AsSpan(0, 15));
        foreach (var t in tokens[15..])
        {
            session.Decode([t]);
        }
        var expected = ReferenceForward.Logits(tiny, tokens);
        Assert.That(RelativeError(LogitsOf(session, 0), expected[^1]), Is.LessThan(5e-2));
    }

    [TestCaseSource(typeof(ModelTestSupport), nameof(FamiliesOnDevices))]
    public void PrefillThenDecodeEqualsWholePrefill(MambaFamily family, Mamba.Runtime.Device device)
    {
        var tiny = TinyModel.Create(ConfigFor(family), seed: 21);
        using var model = BuildOn(device, tiny);
        var tokens = TinyModel.RandomTokens(new Random(6), 30, tiny.Config.VocabSize);
        using var whole = model.CreateSession();
        var expected = PrefillLogits(whole, 0, tokens);
        using var session = model.CreateSession();
        const int prompt = 9;
        session.Prefill(0, tokens.AsSpan(0, prompt));
        Assert.That(RelativeError(LogitsOf(session, 0), expected[prompt - 1]), Is.LessThan(1e-5));
        for (var t = prompt; t < tokens.Length; t++)
        {
            session.Decode([tokens[t]]);
            Assert.That(RelativeError(LogitsOf(session, 0), expected[t]), Is.LessThan(1e-4), $"decode of position {t}");
        }
        Assert.That(session.Lengths[0], Is.EqualTo(tokens.Length));
    }

    [TestCaseSource(typeof(ModelTestSupport), nameof(FamiliesOnDevices))]
    public void ChunkedPrefillEqualsWholePrefill(MambaFamily family, Mamba.Runtime.Device device)
    {
        var tiny = TinyModel.Create(ConfigFor(family), seed: 22);
        var tokens = TinyModel.RandomTokens(new Random(7), 45, tiny.Config.VocabSize);
        using var wholeModel = BuildOn(device, tiny);
        using var chunkedModel = BuildOn(device, tiny, new MambaModelOptions { PrefillChunkSize = 7 });
        using var a = wholeModel.CreateSession();
        using var b = chunkedModel.CreateSession();
        var expected = PrefillLogits(a, 0, tokens);
        var actual = PrefillLogits(b, 0, tokens);
        for (var t = 0; t < tokens.Length; t++)
        {
            Assert.That(RelativeError(actual[t], expected[t]), Is.LessThan(1e-4), $"position {t}");
        }
        // Continuing across several prefill calls is the same as one call.
        using var c = chunkedModel.CreateSession();
        c.Prefill(0, tokens.AsSpan(0, 20));
        c.Prefill(0, tokens.AsSpan(20));
        Assert.That(RelativeError(LogitsOf(c, 0), expected[^1]), Is.LessThan(1e-4));
    }

    [TestCaseSource(typeof(ModelTestSupport), nameof(FamiliesOnDevices))]
    public void BatchedDecodeEqualsOneByOne(MambaFamily family, Mamba.Runtime.Device device) =>
        CheckBatchedDecode(family, device, [5, 17, 1]);

    /// <summary>More sequences than <see cref="Mamba1Mixer.FusedDtProjMaxBatch"/>: Mamba-1 decode projects dt in its own
    /// kernel there.</summary>
    [TestCaseSource(typeof(ModelTestSupport), nameof(FamiliesOnDevices))]
    public void LargeBatchDecodeEqualsOneByOne(MambaFamily family, Mamba.Runtime.Device device) =>
        CheckBatchedDecode(family, device, [5, 17, 1, 2, 9, 3, 12, 4, 7, 6]);

    private static void CheckBatchedDecode(MambaFamily family, Mamba.Runtime.Device device, int[] promptLengths)
    {
        Assert.That(promptLengths.Length > 1, "a batch");
        var tiny = TinyModel.Create(ConfigFor(family), seed: 23);
        using var model = BuildOn(device, tiny);
        var rng = new Random(8);
        var prompts = promptLengths.Select(n => TinyModel.RandomTokens(rng, n, tiny.Config.VocabSize)).ToArray();
        var continuations = prompts.Select(_ => TinyModel.RandomTokens(rng, 6, tiny.Config.VocabSize)).ToArray();
        using var batch = model.CreateSession(prompts.Length);
        for (var s = 0; s < prompts.Length; s++)
        {
            batch.Prefill(s, prompts[s]);
        }
        AssertDecodeEqualsOneByOne(model, batch, prompts, continuations, 6);
    }

    [TestCaseSource(typeof(ModelTestSupport), nameof(FamiliesOnDevices))]
    public void DecodeStepAllocatesNothing(MambaFamily family, Mamba.Runtime.Device device)
    {
        var tiny = TinyModel.Create(ConfigFor(family), seed: 24);
        using var model = BuildOn(device, tiny);
        using var session = model.CreateSession(2);
        session.Prefill(0, [1, 2, 3]);
        session.Prefill(1, [4]);
        int[] next = [5, 6];
        session.Decode(next); // warm up (JIT)
        session.Decode(next); // on CUDA: the step that captures the decode graph
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 10; i++)
        {
            session.Decode(next);
        }
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.Zero);
    }

    [TestCaseSource(typeof(ModelTestSupport), nameof(Families))]
    public void ResetEmptiesASequence(MambaFamily family)
    {
        var tiny = TinyModel.Create(ConfigFor(family), seed: 25);
        using var model = Build(tiny);
        using var session = model.CreateSession();
        session.Prefill(0, [7, 8, 9, 10]);
        var first = LogitsOf(session, 0);
        session.Reset(0);
        session.Prefill(0, [7, 8, 9, 10]);
        Assert.That(LogitsOf(session, 0), Is.EqualTo(first));
    }
}
