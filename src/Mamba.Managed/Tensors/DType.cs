using Mamba.Native.Interop;

namespace Mamba.Tensors;

/// <summary>Element types of tensors.</summary>
public enum DType
{
    /// <summary>IEEE float32.</summary>
    Float32,

    /// <summary>IEEE float16.</summary>
    Float16,

    /// <summary>bfloat16.</summary>
    BFloat16,

    /// <summary>int32.</summary>
    Int32,

    /// <summary>int64.</summary>
    Int64,
}

/// <summary>Sizes and DLPack codes of <see cref="DType"/>.</summary>
public static class DTypeExtensions
{
    /// <summary>Bytes per element.</summary>
    public static int Size(this DType dtype) => dtype switch
    {
        DType.Float16 or DType.BFloat16 => 2,
        DType.Int64 => 8,
        _ => 4,
    };

    /// <summary>Whether the type is a floating-point type.</summary>
    public static bool IsFloatingPoint(this DType dtype) => dtype is DType.Float32 or DType.Float16 or DType.BFloat16;

    internal static DLDataType ToDLPack(this DType dtype) => dtype switch
    {
        DType.Float32 => new DLDataType { code = (byte)DLDataTypeCode.kDLFloat, bits = 32, lanes = 1 },
        DType.Float16 => new DLDataType { code = (byte)DLDataTypeCode.kDLFloat, bits = 16, lanes = 1 },
        DType.BFloat16 => new DLDataType { code = (byte)DLDataTypeCode.kDLBfloat, bits = 16, lanes = 1 },
        DType.Int32 => new DLDataType { code = (byte)DLDataTypeCode.kDLInt, bits = 32, lanes = 1 },
        DType.Int64 => new DLDataType { code = (byte)DLDataTypeCode.kDLInt, bits = 64, lanes = 1 },
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };

    /// <summary>The dtype of a CLR element type used for host transfers.</summary>
    public static DType Of<T>() where T : unmanaged =>
        typeof(T) == typeof(float) ? DType.Float32
        : typeof(T) == typeof(Half) ? DType.Float16
        : typeof(T) == typeof(int) ? DType.Int32
        : typeof(T) == typeof(long) ? DType.Int64
        : typeof(T) == typeof(ushort) ? DType.BFloat16
        : throw new NotSupportedException($"{typeof(T).Name} has no tensor dtype (use float, Half, int, long, or ushort for raw bfloat16 bits)");
}
