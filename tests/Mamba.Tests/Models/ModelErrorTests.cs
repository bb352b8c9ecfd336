using Mamba.Models;
using static Mamba.Tests.Models.ModelTestSupport;

namespace Mamba.Tests.Models;

[TestFixture]
public class ModelErrorTests
{
    [Test]
    public void MissingTensorIsNamed()
    {
        var tiny = TinyModel.Create(TinyModel.Mamba1Config(), seed: 1);
        tiny.Checkpoint.Remove("backbone.layers.1.mixer.x_proj.weight");
        var e = Assert.Throws<InvalidDataException>(() => Build(tiny).Dispose());
        Assert.That(e!.Message, Does.Contain("layers.1.mixer.x_proj.weight"));
    }

    [Test]
    public void WrongShapeIsNamedWithBothShapes()
    {
        var tiny = TinyModel.Create(TinyModel.Mamba2Config(), seed: 1);
        tiny.Checkpoint.Add("backbone.layers.0.mixer.out_proj.weight", new float[16 * 31], [16, 31]);
        var e = Assert.Throws<InvalidDataException>(() => Build(tiny).Dispose());
        Assert.That(e!.Message, Does.Contain("out_proj.weight").And.Contain("(16, 31)").And.Contain("(16, 32)"));
    }

    [Test]
    public void UntiedConfigWithoutHeadFails()
    {
        var tiny = TinyModel.Create(TinyModel.Mamba1Config(tied: true), seed: 1);
        var config = tiny.Config with { TieWordEmbeddings = false };
        Assert.Throws<InvalidDataException>(() => MambaModel.Create(config, tiny.Checkpoint, new MambaModelOptions { Device = Mamba.Runtime.Device.Cpu }).Dispose());
    }

    [Test]
    public void InconsistentConfigIsRejected()
    {
        var tiny = TinyModel.Create(TinyModel.Mamba2Config(), seed: 1);
        var config = tiny.Config with { NumHeads = 3 };
        var e = Assert.Throws<ArgumentException>(() => MambaModel.Create(config, tiny.Checkpoint).Dispose());
        Assert.That(e!.Message, Does.Contain("heads"));
    }

    [Test]
    public void TokenOutsideVocabularyIsRejected()
    {
        var tiny = TinyModel.Create(TinyModel.Mamba1Config(), seed: 1);
        using var model = Build(tiny);
        using var session = model.CreateSession();
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => session.Prefill(0, [1, 37]));
        Assert.That(e!.Message, Does.Contain("37"));
        Assert.Throws<ArgumentException>(() => session.Prefill(0, []));
        Assert.Throws<ArgumentException>(() => session.Decode([1, 2]));
        Assert.Throws<ArgumentOutOfRangeException>(() => session.Prefill(1, [1]));
    }
}
