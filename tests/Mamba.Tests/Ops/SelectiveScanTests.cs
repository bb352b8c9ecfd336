using Mamba.Ops;
using Mamba.Runtime;
using Mamba.Tensors;
using static Mamba.Tests.Ops.OpTestSupport;

namespace Mamba.Tests.Ops;

[TestFixture]
public class SelectiveScanTests
{
    private const int Batch = 2, Dim = 4, Len = 6, N = 3;

    [TestCaseSource(typeof(TestSupport), nameof(TestSupport.Devices))]
    public void MapsArgumentsAndTheStateUpdateContinues(Device device)
    {
        using var ctx = TestSupport.ContextFor(device);
        var rng = new Random(8);
        var u = Rand(rng, Batch * Dim * (Len + 1));
        var delta = Rand(rng, Batch * Dim * (Len + 1), -3, 0);
        var z = Rand(rng, Batch * Dim * (Len + 1));
        var bIn = Rand(rng, Batch * N * (Len + 1));
        var cIn = Rand(rng, Batch * N * (Len + 1));
        var a = Rand(rng, Dim * N, -2, -0.1);
        var d = Rand(rng, Dim);
        var bias = Rand(rng, Dim, -1, 0);
        var init = Rand(rng, Batch * Dim * N);
        // Element (b, d, t) of a (batch, dim, len + 1) array, and (b, n, t) of B/C; step Len is the decode step.
        float At(float[] v, int b, int c, int t, int channels) => v[(b * channels + c) * (Len + 1) + t];

        var h = new double[Batch, Dim, N];
        var expectedY = new double[Batch * Dim * Len];
        var expectedStep = new double[Batch * Dim];
        for (var b = 0; b < Batch; b++)
        {
            for (var c = 0; c < Dim; c++)
            {
                for (var n = 0; n < N; n++)
                {
                    h[b, c, n] = init[(b * Dim + c) * N + n];
                }
                for (var t = 0; t <= Len; t++)
                {
                    var dt = Softplus(At(delta, b, c, t, Dim) + bias[c]);
                    double y = 0;
                    for (var n = 0; n < N; n++)
                    {
                        h[b, c, n] = Math.Exp(dt * a[c * N + n]) * h[b, c, n] + dt * At(bIn, b, n, t, N) * At(u, b, c, t, Dim);
                        y += At(cIn, b, n, t, N) * h[b, c, n];
                    }
                    y = (y + d[c] * At(u, b, c, t, Dim)) * Silu(At(z, b, c, t, Dim));
                    if (t < Len)
                    {
                        expectedY[(b * Dim + c) * Len + t] = y;
                    }
                    else
                    {
                        expectedStep[b * Dim + c] = y;
                    }
                }
            }
        }

        // The scan reads the first Len steps as views of the (…, Len + 1) arrays; the state update reads step Len.
        using var tu = Upload(ctx, u, Batch, Dim, Len + 1);
        using var tdelta = Upload(ctx, delta, Batch, Dim, Len + 1);
        using var tz = Upload(ctx, z, Batch, Dim, Len + 1);
        using var tb = Upload(ctx, bIn, Batch, 1, N, Len + 1);
        using var tc = Upload(ctx, cIn, Batch, 1, N, Len + 1);
        using var ta = Upload(ctx, a, Dim, N);
        using var td = Upload(ctx, d, Dim);
        using var tbias = Upload(ctx, bias, Dim);
        using var tinit = Upload(ctx, init, Batch, Dim, N);
        using var ty = Poisoned(ctx, Batch, Dim, Len);
        using var tfinal = Poisoned(ctx, Batch, Dim, N);
        Kernels.SelectiveScan(ctx, tu.Slice(2, 0, Len), tdelta.Slice(2, 0, Len), ta, tb.Slice(3, 0, Len), tc.Slice(3, 0, Len), ty,
            td, tz.Slice(2, 0, Len), tbias, deltaSoftplus: true, tinit, tfinal);
        AssertClose(ty, expectedY, 1e-4);

        var step = (Tensor t, int axis) => t.Slice(axis, Len, 1);
        using var ty1 = Poisoned(ctx, Batch, Dim);
        Kernels.SelectiveStateUpdate(ctx, tfinal, step(tu, 2).View([Batch, Dim], [Dim * (Len + 1), Len + 1]),
            step(tdelta, 2).View([Batch, Dim], [Dim * (Len + 1), Len + 1]), ta,
            step(tb, 3).View([Batch, 1, N], [N * (Len + 1), N * (Len + 1), Len + 1]),
            step(tc, 3).View([Batch, 1, N], [N * (Len + 1), N * (Len + 1), Len + 1]), ty1, td,
            step(tz, 2).View([Batch, Dim], [Dim * (Len + 1), Len + 1]), tbias, dtSoftplus: true);
        AssertClose(ty1, expectedStep, 1e-4);
    }

    [TestCaseSource(typeof(TestSupport), nameof(TestSupport.Devices))]
    public void StateUpdateProjectsLowRankDt(Device device)
    {
        const int Rank = 5, Width = Rank + 2 * N + 1;
        using var ctx = TestSupport.ContextFor(device);
        var rng = new Random(9);
        var x = Rand(rng, Batch * Dim);
        var xdbl = Rand(rng, Batch * Width);
        var w = Rand(rng, Dim * Rank, -0.5, 0.5);
        var a = Rand(rng, Dim * N, -2, -0.1);
        var bc = Rand(rng, Batch * N);
        var bias = Rand(rng, Dim, -1, 0);
        var init = Rand(rng, Batch * Dim * N);
        var expectedY = new double[Batch * Dim];
        var expectedState = new double[Batch * Dim * N];
        for (var b = 0; b < Batch; b++)
        {
            for (var c = 0; c < Dim; c++)
            {
                double dt = bias[c];
                for (var r = 0; r < Rank; r++)
                {
                    dt += (double)w[c * Rank + r] * xdbl[b * Width + r];
                }
                dt = Softplus(dt);
                double y = 0;
                for (var n = 0; n < N; n++)
                {
                    var i = (b * Dim + c) * N + n;
                    expectedState[i] = Math.Exp(dt * a[c * N + n]) * init[i] + dt * bc[b * N + n] * x[b * Dim + c];
                    y += bc[b * N + n] * expectedState[i];
                }
                expectedY[b * Dim + c] = y;
            }
        }

        using var tx = Upload(ctx, x, Batch, Dim);
        using var txdbl = Upload(ctx, xdbl, Batch, Width);
        using var tw = Upload(ctx, w, Dim, Rank);
        using var ta = Upload(ctx, a, Dim, N);
        using var tbc = Upload(ctx, bc, Batch, 1, N);
        using var tbias = Upload(ctx, bias, Dim);
        using var state = Upload(ctx, init, Batch, Dim, N);
        using var ty = Poisoned(ctx, Batch, Dim);
        // dt is the first Rank columns of the wider x_proj-like buffer, as in the Mamba-1 decode step.
        Kernels.SelectiveStateUpdate(ctx, state, tx, txdbl.View([Batch, Rank], [Width, 1]), ta, tbc, tbc, ty, dtBias: tbias,
            dtSoftplus: true, dtProjWeight: tw);
        AssertClose(ty, expectedY, 1e-4);
        AssertClose(state, expectedState, 1e-4);
        // Without the weight, a (batch, rank) dt is the wrong shape.
        AssertInvalidArgument(() => Kernels.SelectiveStateUpdate(ctx, state, tx, txdbl.View([Batch, Rank], [Width, 1]), ta, tbc, tbc, ty),
            "selective_state_update", "dt");
    }

    [Test]
    public void NativeErrorSurfacesTyped()
    {
        using var ctx = new MambaContext(Device.Cpu);
        using var u = Tensor.Empty(ctx, DType.Float32, 1, 4, 5);
        using var a = Tensor.Empty(ctx, DType.Float32, 3, 2);
        using var b = Tensor.Empty(ctx, DType.Float32, 1, 1, 2, 5);
        using var y = Tensor.Empty(ctx, DType.Float32, 1, 4, 5);
        AssertInvalidArgument(() => Kernels.SelectiveScan(ctx, u, u, a, b, b, y), "selective_scan", "A");
        using var state = Tensor.Empty(ctx, DType.Float32, 1, 4, 2);
        using var x = Tensor.Empty(ctx, DType.Float32, 1, 4);
        using var b1 = Tensor.Empty(ctx, DType.Float32, 1, 1, 2);
        AssertInvalidArgument(() => Kernels.SelectiveStateUpdate(ctx, state, x, x, a, b1, b1, x), "selective_state_update", "A");
    }
}
