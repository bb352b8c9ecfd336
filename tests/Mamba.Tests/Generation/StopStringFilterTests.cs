using Mamba.Generation;

namespace Mamba.Tests.Generation;

[TestFixture]
public class StopStringFilterTests
{
    [Test]
    public void StopStringSplitAcrossPiecesNeverReachesTheOutput()
    {
        var f = new StopStringFilter(["\n\nUser:"]);
        var output = f.Push("Hello") + f.Push(" world\n") + f.Push("\nUs") + f.Push("er: more");
        Assert.That(output + f.Flush(), Is.EqualTo("Hello world"));
        Assert.That(f.Stopped, Is.True);
    }

    [Test]
    public void HeldBackTextIsReleasedWhenItIsNotAStop()
    {
        var f = new StopStringFilter(["END"]);
        Assert.That(f.Push("the E"), Is.EqualTo("the "));
        Assert.That(f.Push("ND"), Is.EqualTo(""));
        Assert.That(f.Stopped, Is.True);
        var g = new StopStringFilter(["END"]);
        Assert.That(g.Push("the E") + g.Push("xit EN"), Is.EqualTo("the Exit "));
        Assert.That(g.Flush(), Is.EqualTo("EN"));
        Assert.That(g.Stopped, Is.False);
    }
}
