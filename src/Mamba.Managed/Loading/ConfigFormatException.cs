namespace Mamba.Loading;

/// <summary>
/// A model config is malformed: invalid JSON, unknown model type, a required field missing, a field of the
/// wrong type or out of range, or inconsistent sizes. The message names the file and the field.
/// </summary>
public class ConfigFormatException : FormatException
{
    /// <summary>Creates the exception; the message is prefixed with the file and field.</summary>
    public ConfigFormatException(string file, string? field, string problem, Exception? inner = null)
        : base(field is null ? $"{file}: {problem}" : $"{file}: field '{field}': {problem}", inner)
    {
        FilePath = file;
        Field = field;
    }

    /// <summary>The config file.</summary>
    public string FilePath { get; }

    /// <summary>The offending field (dotted for nested ones, e.g. "ssm_cfg.d_state"), when one is to blame.</summary>
    public string? Field { get; }
}

/// <summary>
/// A well-formed config or checkpoint asks for something this library does not implement (an attention
/// layer, LayerNorm instead of RMSNorm, an MLP block, a PyTorch pickle). The message says what and, where
/// possible, what to do instead.
/// </summary>
public class UnsupportedModelException : NotSupportedException
{
    /// <summary>Creates the exception.</summary>
    public UnsupportedModelException(string file, string? field, string problem)
        : base(field is null ? $"{file}: {problem}" : $"{file}: field '{field}': {problem}")
    {
        FilePath = file;
        Field = field;
    }

    /// <summary>The file that asks for the unsupported feature.</summary>
    public string FilePath { get; }

    /// <summary>The field that does, if any.</summary>
    public string? Field { get; }
}
