using Mamba.Models;
using Mamba.Modules;
using Mamba.Runtime;
using Mamba.Tensors;
using static Mamba.Tests.Models.ModelTestSupport;

namespace Mamba.Tests.Models;

/// <summary>MAMBA_FUSED_DT_MAX_BATCH moves the batch up to which a Mamba-1 decode step projects dt inside the state update:
/// with dt_proj always on its own (0) and always fused (16) a float32 batch of three decodes the same tokens, with logits
/// that differ by the float32 rounding of the two orders of the projection's sum. A malformed value fails when the
/// decode step is made, naming the variable.</summary>
[TestFixture]
[NonParallelizable] // changes the process environment
public class FusedDtDecodeTests
{
    private const int Steps = 6;

    private static (int[][] Tokens, float[][][] Logits) Decode(Device device, TinyModel tiny, int[][] prompts, string? fusedMaxBatch, bool graphs,
        int steps = Steps)
    {
        using var env = NativeEnvironment.Set(Mamba1Mixer.FusedDtMaxBatchVariable, fusedMaxBatch);
        using var model = BuildOn(device, tiny, new MambaModelOptions { UseCudaGraphs = graphs });
        using var session = model.CreateSession(prompts.Length);
        return GreedyDecode(session, prompts, steps);
    }

    [TestCaseSource(typeof(TestSupport), nameof(TestSupport.Devices))]
    public void SeparateAndFusedDtDecodeAlike(Device device)
    {
        var tiny = TinyModel.Create(ConfigFor(MambaFamily.Mamba1), seed: 61);
        var rng = new Random(23);
        var prompts = new[] { 5, 3, 8 }.Select(n => TinyModel.RandomTokens(rng, n, tiny.Config.VocabSize)).ToArray();
        var graphs = device.Type == DeviceType.Cuda;
        var separate = Decode(device, tiny, prompts, "0", graphs);
        var fused = Decode(device, tiny, prompts, "16", graphs);
        Assert.That(fused.Tokens, Is.EqualTo(separate.Tokens));
        for (var step = 0; step < Steps; step++)
        {
            for (var s = 0; s < prompts.Length; s++)
            {
                var a = separate.Logits[step][s];
                var b = fused.Logits[step][s];
                var scale = a.Max(Math.Abs);
                var worst = a.Zip(b, (x, y) => Math.Abs(x - y)).Max();
                Assert.That(worst, Is.LessThanOrEqualTo(1e-4 * Math.Max(scale, 1f)), $"step {step}, sequence {s}");
            }
        }
    }

    /// <summary>On CUDA the two settings run different kernels (dt_proj inside the state update, against its own GEMM
    /// writing dt in bfloat16 first), so a bfloat16 model's first decode step gives logits that differ in their bits (the
    /// setting took effect) by no more than that rounding carries through. (On the CPU both paths keep dt in float32. The
    /// ops alone give states that differ in their last bits, since the two sums of the projection round differently, but
    /// in the tiny model those differences are rounded away before the logits, which come out the same bits.)</summary>
    [Test]
    [Category(TestSupport.Gpu)]
    public void OnCudaTheSettingMovesDtProj()
    {
        TestSupport.RequireCuda();
        var tiny = TinyModel.Create(ConfigFor(MambaFamily.Mamba1), seed: 63, DType.BFloat16);
        var rng = new Random(29);
        var prompts = new[] { 6, 4 }.Select(n => TinyModel.RandomTokens(rng, n, tiny.Config.VocabSize)).ToArray();
        var separate = Decode(Device.Cuda(0), tiny, prompts, "0", false, steps: 1);
        var fused = Decode(Device.Cuda(0), tiny, prompts, "16", false, steps: 1);
        var differ = false;
        for (var s = 0; s < prompts.Length; s++)
        {
            var a = separate.Logits[0][s];
            var b = fused.Logits[0][s];
            var scale = Math.Max(a.Max(Math.Abs), 1f);
            Assert.That(a.Zip(b, (x, y) => Math.Abs(x - y)).Max(), Is.LessThanOrEqualTo(5e-2 * scale), $"sequence {s}");
            differ |= !a.SequenceEqual(b);
        }
        Assert.That(differ, Is.True, "the two settings gave the same bits: the setting did not move dt_proj");
    }

    [Test]
    public void ValueIsReadAndAMalformedOneNamesTheVariable()
    {
        using (NativeEnvironment.Set(Mamba1Mixer.FusedDtMaxBatchVariable, null))
        {
            Assert.That(Mamba1Mixer.FusedDtMaxBatch(), Is.EqualTo(Mamba1Mixer.FusedDtProjMaxBatch));
        }
        using (NativeEnvironment.Set(Mamba1Mixer.FusedDtMaxBatchVariable, " 16 "))
        {
            Assert.That(Mamba1Mixer.FusedDtMaxBatch(), Is.EqualTo(16));
        }
        using (NativeEnvironment.Set(Mamba1Mixer.FusedDtMaxBatchVariable, "1025"))
        {
            Assert.Throws<FormatException>(() => Mamba1Mixer.FusedDtMaxBatch());
        }
        var tiny = TinyModel.Create(ConfigFor(MambaFamily.Mamba1), seed: 62);
        var prompts = new[] { new[] { 1, 2 } };
        var error = Assert.Throws<FormatException>(() => Decode(Device.Cpu, tiny, prompts, "eight", false));
        Assert.That(error!.Message, Does.Contain(Mamba1Mixer.FusedDtMaxBatchVariable));
    }
}
