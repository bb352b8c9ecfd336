using System.Runtime.InteropServices;
using Mamba.Tensors;

namespace Mamba.Loading;

/// <summary>Conversions of stored tensors to host arrays (for small tensors and tests; weights go to the device as bytes).</summary>
public static class CheckpointTensorExtensions
{
    /// <summary>Product of the shape.</summary>
    public static long ElementCount(this ICheckpointTensor tensor) => tensor.Shape.Aggregate(1L, (a, d) => a * d);

    /// <summary>The values as float32 (F32 copied, F16/BF16 widened exactly).</summary>
    /// <exception cref="NotSupportedException">An integer tensor.</exception>
    public static float[] ToFloatArray(this ICheckpointTensor tensor)
    {
        var bytes = tensor.Bytes;
        switch (tensor.DType)
        {
            case DType.Float32:
                return MemoryMarshal.Cast<byte, float>(bytes).ToArray();
            case DType.Float16:
            {
                var result = new float[bytes.Length / 2];
                for (var i = 0; i < result.Length; i++)
                {
                    result[i] = (float)BitConverter.UInt16BitsToHalf(BitConverter.ToUInt16(bytes.Slice(2 * i, 2)));
                }
                return result;
            }
            case DType.BFloat16:
            {
                var result = new float[bytes.Length / 2];
                for (var i = 0; i < result.Length; i++)
                {
                    result[i] = BFloat16Bits.ToFloat(BitConverter.ToUInt16(bytes.Slice(2 * i, 2)));
                }
                return result;
            }
            default:
                throw new NotSupportedException($"{tensor.SourceFile}: tensor '{tensor.Name}' is {tensor.DType}, not a floating-point type");
        }
    }
}

/// <summary>bfloat16 bit conversions (the upper half of a float32).</summary>
internal static class BFloat16Bits
{
    /// <summary>Widens bfloat16 bits to float32 (exact).</summary>
    public static float ToFloat(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>Rounds float32 to bfloat16 bits, to nearest even; NaN stays NaN.</summary>
    public static ushort FromFloat(float value)
    {
        var bits = (uint)BitConverter.SingleToInt32Bits(value);
        if (float.IsNaN(value))
        {
            return (ushort)((bits >> 16) | 0x40);
        }
        var rounding = 0x7FFFu + ((bits >> 16) & 1);
        return (ushort)((bits + rounding) >> 16);
    }
}

/// <summary>Float values in a stored dtype's bytes (the inverse of <see cref="CheckpointTensorExtensions.ToFloatArray"/>).</summary>
internal static class StoredFloats
{
    /// <summary>Writes <paramref name="values"/> as <paramref name="dtype"/> (F32, F16 or BF16, rounded to nearest
    /// even) into <paramref name="destination"/>, which must hold exactly that many bytes.</summary>
    /// <exception cref="ArgumentException">Another dtype, or a destination of another size.</exception>
    public static void Encode(ReadOnlySpan<float> values, DType dtype, Span<byte> destination)
    {
        if (dtype is not (DType.Float32 or DType.Float16 or DType.BFloat16))
        {
            throw new ArgumentException($"float values cannot be stored as {dtype}", nameof(dtype));
        }
        if (destination.Length != (long)values.Length * dtype.Size())
        {
            throw new ArgumentException($"{values.Length} values of {dtype} need {(long)values.Length * dtype.Size()} bytes, not {destination.Length}", nameof(destination));
        }
        switch (dtype)
        {
            case DType.Float32:
                values.CopyTo(MemoryMarshal.Cast<byte, float>(destination));
                break;
            case DType.Float16:
                var halves = MemoryMarshal.Cast<byte, Half>(destination);
                for (var i = 0; i < values.Length; i++)
                {
                    halves[i] = (Half)values[i];
                }
                break;
            default:
                var bf = MemoryMarshal.Cast<byte, ushort>(destination);
                for (var i = 0; i < values.Length; i++)
                {
                    bf[i] = BFloat16Bits.FromFloat(values[i]);
                }
                break;
        }
    }
}
