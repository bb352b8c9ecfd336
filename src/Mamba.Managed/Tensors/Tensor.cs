using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Mamba.Native;
using Mamba.Native.Interop;
using Mamba.Runtime;

namespace Mamba.Tensors;

/// <summary>
/// An n-dimensional array in a context's device memory, described to the native library as a DLPack tensor.
/// A tensor either owns its memory (disposing it frees the memory) or is a view of another tensor's memory
/// with its own shape, strides (in elements) and offset; a view must not outlive its owner.
/// </summary>
public sealed unsafe class Tensor : IDisposable
{
    private readonly DeviceMemoryHandle _memory;
    private readonly bool _ownsMemory;
    // Pinned so the DLTensor and its shape/strides arrays can be handed to native code without copying.
    private readonly DLTensor[] _dl;
    private readonly long[] _shape;
    private readonly long[] _strides;

    private Tensor(MambaContext context, DeviceMemoryHandle memory, bool ownsMemory, DType dtype, ReadOnlySpan<long> shape,
        ReadOnlySpan<long> strides, long offsetElements)
    {
        Context = context;
        _memory = memory;
        _ownsMemory = ownsMemory;
        DType = dtype;
        OffsetElements = offsetElements;
        _shape = GC.AllocateArray<long>(shape.Length, pinned: true);
        _strides = GC.AllocateArray<long>(shape.Length, pinned: true);
        shape.CopyTo(_shape);
        strides.CopyTo(_strides);
        _dl = GC.AllocateArray<DLTensor>(1, pinned: true);
        var device = context.Device;
        _dl[0] = new DLTensor
        {
            data = memory.Pointer,
            device = new DLDevice { device_type = device.Type == DeviceType.Cuda ? DLDeviceType.kDLCUDA : DLDeviceType.kDLCPU, device_id = device.Index },
            ndim = shape.Length,
            dtype = dtype.ToDLPack(),
            shape = (long*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_shape)),
            strides = (long*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_strides)),
            byte_offset = (ulong)(offsetElements * dtype.Size()),
        };
    }

    /// <summary>The context whose device holds the data.</summary>
    public MambaContext Context { get; }

    /// <summary>Element type.</summary>
    public DType DType { get; }

    /// <summary>Size of each axis.</summary>
    public ReadOnlySpan<long> Shape => _shape;

    /// <summary>Distance in elements between neighbours along each axis.</summary>
    public ReadOnlySpan<long> Strides => _strides;

    /// <summary>Number of axes.</summary>
    public int Rank => _shape.Length;

    /// <summary>Offset of element 0 from the start of the memory, in elements.</summary>
    public long OffsetElements { get; }

    /// <summary>Number of elements.</summary>
    public long ElementCount
    {
        get
        {
            long n = 1;
            foreach (var s in _shape)
            {
                n *= s;
            }
            return n;
        }
    }

    /// <summary>Whether the elements are laid out row-major without gaps.</summary>
    public bool IsContiguous
    {
        get
        {
            long expected = 1;
            for (var i = Rank - 1; i >= 0; i--)
            {
                if (_shape[i] != 1 && _strides[i] != expected)
                {
                    return false;
                }
                expected *= _shape[i];
            }
            return true;
        }
    }

    /// <summary>The DLPack description for native calls; valid while this tensor (and its owner) is alive.</summary>
    public DLTensor* DL
    {
        get
        {
            ObjectDisposedException.ThrowIf(_memory.IsClosed, this);
            return (DLTensor*)Unsafe.AsPointer(ref _dl[0]);
        }
    }

    /// <summary>Allocates an uninitialized contiguous tensor.</summary>
    public static Tensor Empty(MambaContext context, DType dtype, params long[] shape)
    {
        ArgumentNullException.ThrowIfNull(context);
        long n = 1;
        foreach (var s in shape)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(s, nameof(shape));
            n *= s;
        }
        var bytes = (nuint)Math.Max(n * dtype.Size(), 1);
        var memory = DeviceMemoryHandle.Allocate(context.Handle, bytes);
        return new Tensor(context, memory, true, dtype, shape, ContiguousStrides(shape), 0);
    }

    /// <summary>Allocates a contiguous tensor of <paramref name="dtype"/> and fills it from host values,
    /// converting on the device when <typeparamref name="T"/> is another float type.</summary>
    public static Tensor FromHost<T>(MambaContext context, ReadOnlySpan<T> values, long[] shape, DType? dtype = null) where T : unmanaged
    {
        var hostType = DTypeExtensions.Of<T>();
        var target = dtype ?? hostType;
        var result = Empty(context, target, shape);
        try
        {
            if (target == hostType)
            {
                result.CopyFrom(values);
            }
            else
            {
                using var staging = Empty(context, hostType, shape);
                staging.CopyFrom(values);
                staging.CopyTo(result);
            }
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    /// <summary>Uploads host values into this contiguous tensor of the same element type.</summary>
    public void CopyFrom<T>(ReadOnlySpan<T> values) where T : unmanaged
    {
        CheckHostTransfer<T>(values.Length);
        fixed (T* src = values)
        {
            MambaException.Check(NativeMethods.mamba_memcpy(Context.Pointer, ElementPointer, src, (nuint)(values.Length * sizeof(T)),
                mamba_memcpy_kind.MAMBA_MEMCPY_HOST_TO_DEVICE));
        }
        Context.Synchronize();
    }

    /// <summary>Downloads this contiguous tensor into host memory of the same element type.</summary>
    public void CopyTo<T>(Span<T> destination) where T : unmanaged
    {
        CheckHostTransfer<T>(destination.Length);
        fixed (T* dst = destination)
        {
            MambaException.Check(NativeMethods.mamba_memcpy(Context.Pointer, dst, ElementPointer, (nuint)(destination.Length * sizeof(T)),
                mamba_memcpy_kind.MAMBA_MEMCPY_DEVICE_TO_HOST));
        }
        Context.Synchronize();
    }

    /// <summary>Copies (and converts) this tensor into another of the same shape on the same context.</summary>
    public void CopyTo(Tensor destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        MambaException.Check(NativeMethods.mamba_copy(Context.Pointer, DL, destination.DL));
    }

    /// <summary>The values as float32, row-major, whatever the dtype and layout.</summary>
    public float[] ToFloatArray()
    {
        if (!DType.IsFloatingPoint())
        {
            throw new InvalidOperationException($"ToFloatArray needs a floating-point tensor; this one is {DType}");
        }
        var result = new float[ElementCount];
        if (DType == DType.Float32 && IsContiguous)
        {
            CopyTo<float>(result);
            return result;
        }
        using var staging = Empty(Context, DType.Float32, _shape);
        CopyTo(staging);
        staging.CopyTo<float>(result);
        return result;
    }

    /// <summary>A view with another shape, strides (contiguous when null) and offset (in elements, relative to this view).</summary>
    public Tensor View(long[] shape, long[]? strides = null, long offsetElements = 0)
    {
        ArgumentNullException.ThrowIfNull(shape);
        strides ??= ContiguousStrides(shape);
        if (strides.Length != shape.Length)
        {
            throw new ArgumentException($"strides has {strides.Length} axes but shape has {shape.Length}", nameof(strides));
        }
        CheckBounds(shape, strides, OffsetElements + offsetElements);
        return new Tensor(Context, _memory, false, DType, shape, strides, OffsetElements + offsetElements);
    }

    /// <summary>A view of <paramref name="length"/> elements of <paramref name="axis"/> starting at <paramref name="start"/>.</summary>
    public Tensor Slice(int axis, long start, long length)
    {
        if ((uint)axis >= (uint)Rank)
        {
            throw new ArgumentOutOfRangeException(nameof(axis), $"axis {axis} does not exist in a tensor of rank {Rank}");
        }
        if (start < 0 || length < 0 || start + length > _shape[axis])
        {
            throw new ArgumentOutOfRangeException(nameof(start), $"slice [{start}, {start + length}) is outside axis {axis} of size {_shape[axis]}");
        }
        var shape = (long[])_shape.Clone();
        shape[axis] = length;
        return new Tensor(Context, _memory, false, DType, shape, _strides, OffsetElements + start * _strides[axis]);
    }

    /// <summary>A view with two axes swapped.</summary>
    public Tensor Transpose(int axisA, int axisB)
    {
        var shape = (long[])_shape.Clone();
        var strides = (long[])_strides.Clone();
        (shape[axisA], shape[axisB]) = (shape[axisB], shape[axisA]);
        (strides[axisA], strides[axisB]) = (strides[axisB], strides[axisA]);
        return new Tensor(Context, _memory, false, DType, shape, strides, OffsetElements);
    }

    /// <summary>A contiguous view with another shape of the same element count.</summary>
    public Tensor Reshape(params long[] shape)
    {
        if (!IsContiguous)
        {
            throw new InvalidOperationException("only a contiguous tensor can be reshaped; copy it first");
        }
        long n = 1;
        foreach (var s in shape)
        {
            n *= s;
        }
        if (n != ElementCount)
        {
            throw new ArgumentException($"cannot reshape {ShapeString(_shape)} ({ElementCount} elements) to {ShapeString(shape)} ({n} elements)", nameof(shape));
        }
        return new Tensor(Context, _memory, false, DType, shape, ContiguousStrides(shape), OffsetElements);
    }

    /// <summary>Frees the memory if this tensor owns it; a view only becomes unusable.</summary>
    public void Dispose()
    {
        if (_ownsMemory)
        {
            _memory.Dispose();
        }
    }

    /// <inheritdoc />
    public override string ToString() => $"Tensor({ShapeString(_shape)}, {DType}, {Context.Device})";

    internal static string ShapeString(ReadOnlySpan<long> shape) => "(" + string.Join(", ", shape.ToArray()) + (shape.Length == 1 ? ",)" : ")");

    internal static long[] ContiguousStrides(ReadOnlySpan<long> shape)
    {
        var strides = new long[shape.Length];
        long s = 1;
        for (var i = shape.Length - 1; i >= 0; i--)
        {
            strides[i] = s;
            s *= shape[i];
        }
        return strides;
    }

    private void* ElementPointer => (byte*)_memory.Pointer + OffsetElements * DType.Size();

    private void CheckHostTransfer<T>(int length) where T : unmanaged
    {
        ObjectDisposedException.ThrowIf(_memory.IsClosed, this);
        if (DTypeExtensions.Of<T>() != DType)
        {
            throw new ArgumentException($"host element type {typeof(T).Name} does not match tensor dtype {DType}");
        }
        if (!IsContiguous)
        {
            throw new InvalidOperationException("host transfers need a contiguous tensor; copy the view into one first");
        }
        if (length != ElementCount)
        {
            throw new ArgumentException($"host buffer has {length} elements; the tensor {ShapeString(_shape)} has {ElementCount}");
        }
    }

    private void CheckBounds(long[] shape, long[] strides, long offset)
    {
        long min = offset, max = offset;
        for (var i = 0; i < shape.Length; i++)
        {
            if (shape[i] < 0)
            {
                throw new ArgumentOutOfRangeException(nameof(shape), $"negative size {shape[i]} at axis {i}");
            }
            if (shape[i] == 0)
            {
                return;
            }
            var span = (shape[i] - 1) * strides[i];
            if (span < 0)
            {
                min += span;
            }
            else
            {
                max += span;
            }
        }
        var capacity = (long)_memory.Bytes / DType.Size();
        if (min < 0 || max >= capacity)
        {
            throw new ArgumentOutOfRangeException(nameof(shape), $"view {ShapeString(shape)} reaches elements [{min}, {max}] outside the {capacity} elements of its memory");
        }
    }
}
