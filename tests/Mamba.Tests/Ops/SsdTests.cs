using Mamba.Ops;
using Mamba.Runtime;
using Mamba.Tensors;
using static Mamba.Tests.Ops.OpTestSupport;

namespace Mamba.Tests.Ops;

[TestFixture]
public class SsdTests
{
    private const int Len = 20, Heads = 4, P = 3, G = 2, N = 5;
    private const float DtMin = 0.01f, DtMax = 0.5f;

    [TestCaseSource(typeof(TestSupport), nameof(TestSupport.Devices))]
    public void MapsArgumentsAndTheStateUpdateContinues(Device device)
    {
        using var ctx = TestSupport.ContextFor(device);
        var rng = new Random(9);
        const int steps = Len + 1;
        var x = Rand(rng, steps * Heads * P);
        var z = Rand(rng, steps * Heads * P);
        var dt = Rand(rng, steps * Heads, -4, 1);
        var b = Rand(rng, steps * G * N);
        var c = Rand(rng, steps * G * N);
        var a = Rand(rng, Heads, -3, -0.2);
        var d = Rand(rng, Heads);
        var dtBias = Rand(rng, Heads, -1, 0);
        var init = Rand(rng, Heads * P * N);

        var h = new double[Heads, P, N];
        for (var i = 0; i < init.Length; i++)
        {
            h[i / (P * N), i / N % P, i % N] = init[i];
        }
        var expected = new double[steps * Heads * P];
        for (var t = 0; t < steps; t++)
        {
            for (var hh = 0; hh < Heads; hh++)
            {
                var g = hh / (Heads / G);
                var step = Math.Clamp(Softplus(dt[t * Heads + hh] + dtBias[hh]), DtMin, DtMax);
                for (var p = 0; p < P; p++)
                {
                    var xv = x[(t * Heads + hh) * P + p];
                    double y = 0;
                    for (var n = 0; n < N; n++)
                    {
                        h[hh, p, n] = Math.Exp(step * a[hh]) * h[hh, p, n] + step * xv * b[(t * G + g) * N + n];
                        y += c[(t * G + g) * N + n] * h[hh, p, n];
                    }
                    expected[(t * Heads + hh) * P + p] = (y + d[hh] * xv) * Silu(z[(t * Heads + hh) * P + p]);
                }
            }
        }

        using var tx = Upload(ctx, x, 1, steps, Heads, P);
        using var tz = Upload(ctx, z, 1, steps, Heads, P);
        using var tdt = Upload(ctx, dt, 1, steps, Heads);
        using var tb = Upload(ctx, b, 1, steps, G, N);
        using var tc = Upload(ctx, c, 1, steps, G, N);
        using var ta = Upload(ctx, a, Heads);
        using var td = Upload(ctx, d, Heads);
        using var tbias = Upload(ctx, dtBias, Heads);
        using var tinit = Upload(ctx, init, 1, Heads, P, N);
        using var ty = Poisoned(ctx, 1, Len, Heads, P);
        using var tfinal = Poisoned(ctx, 1, Heads, P, N);
        Kernels.Ssd(ctx, tx.Slice(1, 0, Len), tdt.Slice(1, 0, Len), ta, tb.Slice(1, 0, Len), tc.Slice(1, 0, Len), ty, td,
            tz.Slice(1, 0, Len), tbias, dtSoftplus: true, DtMin, DtMax, chunkSize: 16, tinit, tfinal);
        AssertClose(ty, expected[..(Len * Heads * P)], 1e-4);

        using var ty1 = Poisoned(ctx, 1, Heads, P);
        Kernels.SsdStateUpdate(ctx, tfinal, tx.Slice(1, Len, 1).View([1, Heads, P]),
            tdt.Slice(1, Len, 1).View([1, Heads]), ta, tb.Slice(1, Len, 1).View([1, G, N]), tc.Slice(1, Len, 1).View([1, G, N]), ty1,
            td, tz.Slice(1, Len, 1).View([1, Heads, P]), tbias, dtSoftplus: true, DtMin, DtMax);
        AssertClose(ty1, expected[(Len * Heads * P)..], 1e-4);
    }

    [Test]
    public void NativeErrorSurfacesTyped()
    {
        using var ctx = new MambaContext(Device.Cpu);
        using var x = Tensor.Empty(ctx, DType.Float32, 1, 16, 2, 4);
        using var dt = Tensor.Empty(ctx, DType.Float32, 1, 16, 2);
        using var a = Tensor.Empty(ctx, DType.Float32, 3);
        using var b = Tensor.Empty(ctx, DType.Float32, 1, 16, 1, 4);
        using var y = Tensor.Empty(ctx, DType.Float32, 1, 16, 2, 4);
        AssertInvalidArgument(() => Kernels.Ssd(ctx, x, dt, a, b, b, y), "ssd", "A");
        using var state = Tensor.Empty(ctx, DType.Float32, 1, 2, 4, 4);
        using var x1 = Tensor.Empty(ctx, DType.Float32, 1, 2, 4);
        using var dt1 = Tensor.Empty(ctx, DType.Float32, 1, 2);
        using var b1 = Tensor.Empty(ctx, DType.Float32, 1, 1, 4);
        AssertInvalidArgument(() => Kernels.SsdStateUpdate(ctx, state, x1, dt1, a, b1, b1, x1), "ssd_state_update", "A");
    }
}
