using Mamba.Native;
using Mamba.Native.Interop;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Ops;

public static unsafe partial class Kernels
{
    /// <summary>Mamba-1 selective scan over u, delta, z, y (batch, dim, len) with A (dim, dstate), B and C
    /// (batch, groups, dstate, len) or (dim, dstate); D and deltaBias (dim); states (batch, dim, dstate), float32
    /// (see mamba_selective_scan).</summary>
    public static void SelectiveScan(MambaContext context, Tensor u, Tensor delta, Tensor a, Tensor b, Tensor c, Tensor y,
        Tensor? d = null, Tensor? z = null, Tensor? deltaBias = null, bool deltaSoftplus = false,
        Tensor? initialState = null, Tensor? finalState = null)
    {
        ArgumentNullException.ThrowIfNull(context);
        var args = new mamba_selective_scan_args
        {
            u = u.DL,
            delta = delta.DL,
            A = a.DL,
            B = b.DL,
            C = c.DL,
            D = Optional(d),
            z = Optional(z),
            delta_bias = Optional(deltaBias),
            initial_state = Optional(initialState),
            y = y.DL,
            final_state = Optional(finalState),
            delta_softplus = deltaSoftplus ? 1 : 0,
        };
        MambaException.Check(NativeMethods.mamba_selective_scan(context.Handle.Pointer, &args));
        GC.KeepAlive(u);
        GC.KeepAlive(delta);
        GC.KeepAlive(a);
        GC.KeepAlive(b);
        GC.KeepAlive(c);
        GC.KeepAlive(d);
        GC.KeepAlive(z);
        GC.KeepAlive(deltaBias);
        GC.KeepAlive(initialState);
        GC.KeepAlive(y);
        GC.KeepAlive(finalState);
    }

    /// <summary>One Mamba-1 decode step: state (batch, dim, dstate) float32 updated in place from x, dt, z (batch, dim),
    /// B and C (batch, groups, dstate); y (batch, dim) (see mamba_selective_state_update). With
    /// <paramref name="dtProjWeight"/> (dim, dtRank), dt is the (batch, dtRank) low-rank input and the step first
    /// projects it per channel (Mamba-1's dt_proj without its bias, which goes in <paramref name="dtBias"/>).</summary>
    public static void SelectiveStateUpdate(MambaContext context, Tensor state, Tensor x, Tensor dt, Tensor a, Tensor b, Tensor c,
        Tensor y, Tensor? d = null, Tensor? z = null, Tensor? dtBias = null, bool dtSoftplus = false, Tensor? dtProjWeight = null)
    {
        ArgumentNullException.ThrowIfNull(context);
        var args = new mamba_selective_state_update_args
        {
            state = state.DL,
            x = x.DL,
            dt = dt.DL,
            A = a.DL,
            B = b.DL,
            C = c.DL,
            D = Optional(d),
            z = Optional(z),
            dt_bias = Optional(dtBias),
            y = y.DL,
            dt_softplus = dtSoftplus ? 1 : 0,
            dt_proj_weight = Optional(dtProjWeight),
        };
        MambaException.Check(NativeMethods.mamba_selective_state_update(context.Handle.Pointer, &args));
        GC.KeepAlive(state);
        GC.KeepAlive(x);
        GC.KeepAlive(dt);
        GC.KeepAlive(a);
        GC.KeepAlive(b);
        GC.KeepAlive(c);
        GC.KeepAlive(d);
        GC.KeepAlive(z);
        GC.KeepAlive(dtBias);
        GC.KeepAlive(y);
        GC.KeepAlive(dtProjWeight);
    }
}
