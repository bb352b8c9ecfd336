using Mamba.Native;
using Mamba.Native.Interop;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Ops;

public static unsafe partial class Kernels
{
    /// <summary>Mamba-2 SSD chunked scan: x, z, y (batch, len, heads, headdim), dt (batch, len, heads), A and dtBias (heads),
    /// B and C (batch, len, groups, dstate), D (heads) or (heads, headdim); states (nseq, heads, headdim, dstate) float32;
    /// optional cuSeqlens packs sequences (see mamba_ssd).</summary>
    public static void Ssd(MambaContext context, Tensor x, Tensor dt, Tensor a, Tensor b, Tensor c, Tensor y,
        Tensor? d = null, Tensor? z = null, Tensor? dtBias = null, bool dtSoftplus = false,
        float dtMin = 0f, float dtMax = float.PositiveInfinity, long chunkSize = 0,
        Tensor? initialStates = null, Tensor? finalStates = null, Tensor? cuSeqlens = null)
    {
        ArgumentNullException.ThrowIfNull(context);
        var args = new mamba_ssd_args
        {
            x = x.DL,
            dt = dt.DL,
            A = a.DL,
            B = b.DL,
            C = c.DL,
            D = Optional(d),
            z = Optional(z),
            dt_bias = Optional(dtBias),
            initial_states = Optional(initialStates),
            cu_seqlens = Optional(cuSeqlens),
            y = y.DL,
            final_states = Optional(finalStates),
            chunk_size = chunkSize,
            dt_min = dtMin,
            dt_max = dtMax,
            dt_softplus = dtSoftplus ? 1 : 0,
        };
        MambaException.Check(NativeMethods.mamba_ssd(context.Handle.Pointer, &args));
        GC.KeepAlive(x);
        GC.KeepAlive(dt);
        GC.KeepAlive(a);
        GC.KeepAlive(b);
        GC.KeepAlive(c);
        GC.KeepAlive(d);
        GC.KeepAlive(z);
        GC.KeepAlive(dtBias);
        GC.KeepAlive(initialStates);
        GC.KeepAlive(cuSeqlens);
        GC.KeepAlive(y);
        GC.KeepAlive(finalStates);
    }

    /// <summary>One Mamba-2 decode step: state (batch, heads, headdim, dstate) float32 updated in place from x, z
    /// (batch, heads, headdim), dt (batch, heads), B and C (batch, groups, dstate); y (batch, heads, headdim)
    /// (see mamba_ssd_state_update).</summary>
    public static void SsdStateUpdate(MambaContext context, Tensor state, Tensor x, Tensor dt, Tensor a, Tensor b, Tensor c,
        Tensor y, Tensor? d = null, Tensor? z = null, Tensor? dtBias = null, bool dtSoftplus = false,
        float dtMin = 0f, float dtMax = float.PositiveInfinity)
    {
        ArgumentNullException.ThrowIfNull(context);
        var args = new mamba_ssd_state_update_args
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
            dt_min = dtMin,
            dt_max = dtMax,
            dt_softplus = dtSoftplus ? 1 : 0,
        };
        MambaException.Check(NativeMethods.mamba_ssd_state_update(context.Handle.Pointer, &args));
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
    }
}
