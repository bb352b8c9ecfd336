using Mamba.Ops;
using Mamba.Runtime;
using Mamba.Tensors;

namespace Mamba.Modules;

/// <summary>Owns a set of tensors and frees them together.</summary>
public abstract class TensorSet : IDisposable
{
    private readonly List<Tensor> _owned = [];

    /// <summary>Allocates a tensor this set frees on dispose.</summary>
    protected Tensor Alloc(MambaContext context, DType dtype, params long[] shape)
    {
        var t = Tensor.Empty(context, dtype, shape);
        _owned.Add(t);
        return t;
    }

    /// <inheritdoc />
    public virtual void Dispose()
    {
        foreach (var t in _owned)
        {
            t.Dispose();
        }
        _owned.Clear();
        GC.SuppressFinalize(this);
    }
}

/// <summary>Recurrent state of one mixer layer for a batch: the convolution window and the SSM state.</summary>
public sealed class MixerState : TensorSet
{
    internal MixerState(MambaContext context, DType convDType, long[] convShape, long[] ssmShape)
    {
        Conv = Alloc(context, convDType, convShape);
        Ssm = Alloc(context, DType.Float32, ssmShape);
    }

    /// <summary>(batch, conv_dim, width - 1): the last inputs of the convolution, oldest first.</summary>
    public Tensor Conv { get; }

    /// <summary>(batch, ...): the SSM state, float32.</summary>
    public Tensor Ssm { get; }
}

/// <summary>A sequence mixer (Mamba-1 or Mamba-2) of one residual block.</summary>
public abstract class Mixer : IDisposable
{
    /// <summary>Model width.</summary>
    public abstract long HiddenSize { get; }

    /// <summary>A zero-free state for <paramref name="batch"/> sequences (zero it before use).</summary>
    public abstract MixerState CreateState(MambaContext context, int batch, DType activationDType);

    /// <summary>Activation buffers for up to <paramref name="rows"/> tokens of up to <paramref name="sequences"/> sequences
    /// at once, shareable by every layer of the same shape.</summary>
    public abstract TensorSet CreateScratch(MambaContext context, int rows, int sequences, DType activationDType);

    /// <summary>Runs <paramref name="length"/> tokens of each of <paramref name="sequences"/> sequences (x, y:
    /// (sequences * length, hidden), one sequence's tokens after another's), continuing from and updating rows
    /// [<paramref name="firstSequence"/>, firstSequence + sequences) of the state.</summary>
    public abstract void Prefill(MambaContext context, Tensor x, Tensor y, int sequences, int length, TensorSet scratch, MixerState state,
        int firstSequence);

    /// <summary>Prepares one decode step for a whole batch (x, y: (batch, hidden)): every view is made here, so running
    /// the returned action allocates nothing.</summary>
    public abstract Action CreateDecodeStep(MambaContext context, Tensor x, Tensor y, TensorSet scratch, MixerState state);

    /// <summary>Prepares one decode step of the whole residual block for a batch: the block's norm (x + residual, or x,
    /// into <paramref name="residualOut"/>, normalized into <paramref name="normed"/>), then the mixer from
    /// <paramref name="normed"/> into <paramref name="y"/>. residualOut overlaps neither x nor residual. Mixers that run
    /// their step as one native call pass the norm into it, which on CUDA folds it into in_proj where it can.</summary>
    public Action CreateBlockDecodeStep(MambaContext context, RmsNorm norm, Tensor x, Tensor? residual, Tensor residualOut, Tensor normed, Tensor y,
        TensorSet scratch, MixerState state)
    {
        ArgumentNullException.ThrowIfNull(norm);
        var native = CreateNativeBlockStep(context, x, y, scratch, state, new StepPreNorm(norm.Weight, norm.Eps, residual, residualOut, normed));
        if (native is not null)
        {
            return native;
        }
        var mixer = CreateDecodeStep(context, normed, y, scratch, state);
        return () =>
        {
            norm.Forward(context, x, normed, residual, residualOut);
            mixer();
        };
    }

    /// <summary>The whole block's step as one native call that takes the norm (null where the step runs as separate ops).</summary>
    private protected virtual Action? CreateNativeBlockStep(MambaContext context, Tensor x, Tensor y, TensorSet scratch, MixerState state,
        StepPreNorm preNorm) => null;

    /// <summary>The weight a decode step reads first (its in_proj): the previous layer's decode step prefetches part of it
    /// (<see cref="DecodePrefetch"/>).</summary>
    internal virtual Tensor? DecodeFirstWeight => null;

    /// <summary>The first weight of what follows this layer in a decode step (the next layer's in_proj, or the LM head),
    /// set by the model once its layers exist; read when a decode step is created.</summary>
    internal Tensor? NextDecodeWeight { get; set; }

    /// <inheritdoc />
    public abstract void Dispose();
}
