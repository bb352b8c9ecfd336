using Mamba.Cli;

namespace Mamba.Tests.Cli;

[TestFixture]
public class InfoCommandTests
{
    [Test]
    public void InfoListsVersionBackendAndCpu()
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var code = CliApp.Run(["info"], stdout, stderr);
        Assert.That(code, Is.EqualTo(0), stderr.ToString());
        var text = stdout.ToString();
        Assert.That(text, Does.Contain($"libmamba {Mamba.Runtime.MambaRuntime.Version}"));
        Assert.That(text, Does.Contain("backends: cpu"));
        Assert.That(text, Does.Contain("cpu "));
    }

    [Test]
    public void UnknownCommandFailsWithoutStackTrace()
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var code = CliApp.Run(["frobnicate"], stdout, stderr);
        Assert.That(code, Is.Not.EqualTo(0));
        Assert.That(stderr.ToString() + stdout.ToString(), Does.Not.Contain("   at "));
    }
}
