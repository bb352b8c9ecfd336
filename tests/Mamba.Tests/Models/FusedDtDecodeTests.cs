using Mamba.Models;
using Mamba.Modules;
using Mamba.Runtime;
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

    private static (int[][] Tokens, float[][][] Logits) Decode(Device device, TinyModel tiny, int[][] prompts, string? fusedMaxBatch, bool graphs)
    {
        using var env = NativeEnvironment.Set(Mamba1Mixer.FusedDtMaxBatchVariable, fusedMaxBatch);
        using var model = BuildOn(device, tiny, new MambaModelOptions { UseCudaGraphs = graphs });
        using var session = model.CreateSession(prompts.Length);
        return GreedyDecode(session, prompts, Steps);
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
