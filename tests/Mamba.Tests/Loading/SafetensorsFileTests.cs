using System.Runtime.InteropServices;
using Mamba.Loading;
using Mamba.Tensors;

namespace Mamba.Tests.Loading;

/// <summary>The memory-mapped safetensors reader and the writer, including every malformed-file case.</summary>
[TestFixture]
public class SafetensorsFileTests
{
    [Test]
    public void RoundTripsEveryFloatDtypeWithShapesAndMetadata()
    {
        using var dir = new TempDir();
        var rng = new Random(1234);
        var a = LoadingFixtures.RandomValues(rng, 3 * 5);
        var b = LoadingFixtures.RandomValues(rng, 7);
        var c = LoadingFixtures.RandomValues(rng, 2 * 3 * 4);
        new SafetensorsWriter()
            .Metadata("format", "pt")
            .Add("a", a, [3, 5])
            .Add("b.half", b, [7], DType.Float16)
            .Add("c.bf16", c, [2, 3, 4], DType.BFloat16)
            .Add("scalar", [0.25f], [])
            .Save(dir.File("m.safetensors"));

        using var file = SafetensorsFile.Open(dir.File("m.safetensors"));
        Assert.That(file.Metadata, Is.EquivalentTo(new Dictionary<string, string> { ["format"] = "pt" }));
        Assert.That(file.Tensors.Keys, Is.EquivalentTo(new[] { "a", "b.half", "c.bf16", "scalar" }));
        Assert.That(file.DataStart % 8, Is.Zero, "header is padded so data starts 8-byte aligned");

        var ta = file.Tensors["a"];
        Assert.That(ta.DType, Is.EqualTo(DType.Float32));
        Assert.That(ta.Shape, Is.EqualTo(new long[] { 3, 5 }));
        Assert.That(ta.SourceFile, Is.EqualTo(dir.File("m.safetensors")));
        Assert.That(ta.ToFloatArray(), Is.EqualTo(a), "float32 is stored exactly");

        var tb = file.Tensors["b.half"];
        Assert.That(tb.DType, Is.EqualTo(DType.Float16));
        var expectedHalf = b.Select(v => (double)(Half)v).ToArray();
        Assert.That(tb.ToFloatArray().Select(v => (double)v), Is.EqualTo(expectedHalf));

        var tc = file.Tensors["c.bf16"];
        Assert.That(tc.DType, Is.EqualTo(DType.BFloat16));
        Assert.That(tc.Shape, Is.EqualTo(new long[] { 2, 3, 4 }));
        // Reference bfloat16 rounding in float64: nearest multiple of 2^(e-7), ties to even.
        var actual = tc.ToFloatArray();
        for (var i = 0; i < c.Length; i++)
        {
            var x = (double)c[i];
            var exponent = Math.Floor(Math.Log2(Math.Abs(x)));
            var ulp = Math.Pow(2, exponent - 7);
            var expected = Math.Round(x / ulp, MidpointRounding.ToEven) * ulp;
            Assert.That(actual[i], Is.EqualTo(expected), $"element {i} ({x})");
        }

        Assert.That(file.Tensors["scalar"].Shape, Is.Empty);
        Assert.That(file.Tensors["scalar"].ToFloatArray(), Is.EqualTo(new[] { 0.25f }));
    }

    [Test]
    public unsafe void BytesPointIntoTheMappingWithoutCopies()
    {
        using var dir = new TempDir();
        var values = LoadingFixtures.RandomValues(new Random(7), 64);
        new SafetensorsWriter().Add("x", values, [8, 8]).Add("y", values, [64]).Save(dir.File("m.safetensors"));
        using var file = SafetensorsFile.Open(dir.File("m.safetensors"));
        var x = (SafetensorsTensor)file.Tensors["x"];
        var y = (SafetensorsTensor)file.Tensors["y"];
        fixed (byte* px = x.Bytes)
        fixed (byte* py = y.Bytes)
        {
            Assert.That((nint)px, Is.EqualTo(x.Pointer));
            Assert.That((long)(py - px), Is.EqualTo(y.FileOffset - x.FileOffset), "both spans are views of one mapping");
        }
        Assert.That(MemoryMarshal.Cast<byte, float>(y.Bytes).ToArray(), Is.EqualTo(values));
        Assert.That(x.FileOffset, Is.EqualTo(file.DataStart));
    }

    [Test]
    public void ReadingAfterDisposeThrows()
    {
        using var dir = new TempDir();
        new SafetensorsWriter().Add("x", [1f, 2f], [2]).Save(dir.File("m.safetensors"));
        var file = SafetensorsFile.Open(dir.File("m.safetensors"));
        var x = file.Tensors["x"];
        file.Dispose();
        Assert.Throws<ObjectDisposedException>(() => _ = x.Bytes.Length);
        file.Dispose(); // idempotent
    }

    [Test]
    public void MissingFileIsFileNotFound()
    {
        using var dir = new TempDir();
        Assert.Throws<FileNotFoundException>(() => SafetensorsFile.Open(dir.File("nope.safetensors")));
    }

    private static CheckpointFormatException OpenBad(TempDir dir, byte[] bytes)
    {
        var path = dir.Write("bad.safetensors", bytes);
        var e = Assert.Throws<CheckpointFormatException>(() => SafetensorsFile.Open(path).Dispose())!;
        Assert.That(e.Message, Does.Contain(path), "the message names the file");
        Assert.That(e.FilePath, Is.EqualTo(path));
        Assert.That(e, Is.InstanceOf<FormatException>());
        return e;
    }

    private const string OneF32 = """{"x":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}""";

    [Test]
    public void ValidRawFileOpens()
    {
        // Guards the malformed cases below: they differ from this one in one detail each.
        using var dir = new TempDir();
        var path = dir.Write("ok.safetensors", LoadingFixtures.RawFile(OneF32, 16));
        using var file = SafetensorsFile.Open(path);
        Assert.That(file.Tensors["x"].Shape, Is.EqualTo(new long[] { 2, 2 }));
    }

    [TestCase(0)]
    [TestCase(5)]
    public void TruncatedBeforeHeaderLength(int length)
    {
        using var dir = new TempDir();
        Assert.That(OpenBad(dir, new byte[length]).Problem, Does.Contain("truncated"));
    }

    [Test]
    public void HeaderLengthBeyondFile()
    {
        using var dir = new TempDir();
        var e = OpenBad(dir, LoadingFixtures.RawFile(OneF32, 16, declaredHeaderLength: 1_000_000));
        Assert.That(e.Problem, Does.Contain("header length 1000000 runs past the end"));
    }

    [Test]
    public void HugeHeaderLengthDoesNotAllocate()
    {
        using var dir = new TempDir();
        var e = OpenBad(dir, LoadingFixtures.RawFile(OneF32, 16, declaredHeaderLength: ulong.MaxValue));
        Assert.That(e.Problem, Does.Contain("runs past the end"));
    }

    [TestCase("{\"x\": {\"dtype\": \"F32\",", "not valid JSON")]
    [TestCase("[1, 2, 3]", "expected an object")]
    [TestCase("{\"x\": 5}", "tensor 'x': entry is a JSON Number")]
    [TestCase("{\"x\":{\"shape\":[4],\"data_offsets\":[0,16]}}", "tensor 'x': missing string field 'dtype'")]
    [TestCase("{\"x\":{\"dtype\":\"F32\",\"data_offsets\":[0,16]}}", "tensor 'x': missing array field 'shape'")]
    [TestCase("{\"x\":{\"dtype\":\"F32\",\"shape\":[4]}}", "tensor 'x': missing field 'data_offsets'")]
    [TestCase("{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0]}}", "tensor 'x': missing field 'data_offsets'")]
    [TestCase("{\"x\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]}}", "dtype 'F64' is not supported")]
    [TestCase("{\"x\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}", "shape[0] is -4")]
    [TestCase("{\"x\":{\"dtype\":\"F32\",\"shape\":[\"4\"],\"data_offsets\":[0,16]}}", "shape[0] is \"4\"")]
    [TestCase("{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[-1,16]}}", "data_offsets[0] is -1")]
    [TestCase("{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,0]}}", "end before they begin")]
    [TestCase("{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,24]}}", "run past the end of the data")]
    [TestCase("{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", "hold 16 bytes, but shape [3] of F32 needs 12")]
    [TestCase("{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[2,14]}}", "not aligned")]
    [TestCase("{\"x\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,16]}}", "overflows")]
    [TestCase("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", "names 'x' twice")]
    [TestCase("{\"__metadata__\":{\"format\":1},\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", "__metadata__ entry 'format'")]
    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", "overlap")]
    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", "overlap")]
    public void MalformedHeaderIsRejected(string header, string expected)
    {
        using var dir = new TempDir();
        var e = OpenBad(dir, LoadingFixtures.RawFile(header, 16));
        Assert.That(e.Problem, Does.Contain(expected));
    }

    [Test]
    public void TruncatedDataIsRejected()
    {
        using var dir = new TempDir();
        var full = new SafetensorsWriter().Add("x", LoadingFixtures.RandomValues(new Random(3), 32), [32]).ToBytes();
        var e = OpenBad(dir, full[..^4]);
        Assert.That(e.Problem, Does.Contain("tensor 'x'").And.Contain("run past the end"));
    }

    [Test]
    public void GapsAndEmptyTensorsAreAllowed()
    {
        using var dir = new TempDir();
        var header = """{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"e":{"dtype":"F32","shape":[0,3],"data_offsets":[4,4]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]}}""";
        var path = dir.Write("gap.safetensors", LoadingFixtures.RawFile(header, 16));
        using var file = SafetensorsFile.Open(path);
        Assert.That(file.Tensors["e"].Bytes.Length, Is.Zero);
        Assert.That(file.Tensors["b"].Bytes.Length, Is.EqualTo(4));
    }

    [Test]
    public void WriterRejectsInconsistentInput()
    {
        var w = new SafetensorsWriter().Add("x", [1f, 2f], [2]);
        Assert.Throws<ArgumentException>(() => w.Add("x", [1f], [1]), "duplicate");
        Assert.Throws<ArgumentException>(() => w.Add("y", [1f, 2f, 3f], [2]), "count");
        Assert.Throws<ArgumentException>(() => w.Add("__metadata__", [1f], [1]), "reserved");
        Assert.Throws<ArgumentException>(() => w.Add("z", [1f], [1], DType.Int32), "float as int");
    }
}
