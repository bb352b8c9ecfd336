using Mamba.Tensors;

namespace Mamba.Loading;

/// <summary>The safetensors dtype strings this library maps to <see cref="DType"/>.</summary>
public static class SafetensorsDTypes
{
    /// <summary>The mapped dtype strings, for error messages.</summary>
    public const string Supported = "F32, F16, BF16, I32, I64";

    /// <summary>The dtype of a safetensors dtype string, or null when it is not mapped (F64, I8, F8_E4M3, ...).</summary>
    public static DType? Parse(string name) => name switch
    {
        "F32" => DType.Float32,
        "F16" => DType.Float16,
        "BF16" => DType.BFloat16,
        "I32" => DType.Int32,
        "I64" => DType.Int64,
        _ => null,
    };

    /// <summary>The safetensors name of a dtype.</summary>
    public static string Name(DType dtype) => dtype switch
    {
        DType.Float32 => "F32",
        DType.Float16 => "F16",
        DType.BFloat16 => "BF16",
        DType.Int32 => "I32",
        DType.Int64 => "I64",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "no safetensors name"),
    };
}
