using Mamba.Native.Interop;

namespace Mamba.Native;

/// <summary>A libmamba call failed. <see cref="Status"/> is the native status; the message is the library's own.</summary>
public class MambaException : Exception
{
    /// <summary>Creates an exception for a native status and message.</summary>
    public MambaException(mamba_status status, string message) : base(message) => Status = status;

    /// <summary>The status the native call returned.</summary>
    public mamba_status Status { get; }

    /// <summary>Throws the exception type that matches <paramref name="status"/> unless it is OK.</summary>
    public static void Check(mamba_status status)
    {
        if (status != mamba_status.MAMBA_STATUS_OK)
        {
            throw FromStatus(status, MambaLibrary.LastError());
        }
    }

    /// <summary>The exception type that matches a status.</summary>
    public static MambaException FromStatus(mamba_status status, string message) => status switch
    {
        mamba_status.MAMBA_STATUS_INVALID_ARGUMENT => new MambaInvalidArgumentException(message),
        mamba_status.MAMBA_STATUS_UNSUPPORTED => new MambaUnsupportedException(message),
        mamba_status.MAMBA_STATUS_OUT_OF_MEMORY => new MambaOutOfMemoryException(message),
        mamba_status.MAMBA_STATUS_BACKEND_UNAVAILABLE => new MambaBackendUnavailableException(message),
        mamba_status.MAMBA_STATUS_DEVICE_ERROR => new MambaDeviceException(message),
        _ => new MambaException(status, message),
    };
}

/// <summary>A null pointer, a wrong shape, stride, dtype or device, or an out-of-range value.</summary>
public sealed class MambaInvalidArgumentException(string message) : MambaException(mamba_status.MAMBA_STATUS_INVALID_ARGUMENT, message);

/// <summary>A well-formed request the library or backend does not support.</summary>
public sealed class MambaUnsupportedException(string message) : MambaException(mamba_status.MAMBA_STATUS_UNSUPPORTED, message);

/// <summary>Host or device memory ran out.</summary>
public sealed class MambaOutOfMemoryException(string message) : MambaException(mamba_status.MAMBA_STATUS_OUT_OF_MEMORY, message);

/// <summary>The backend was not built into libmamba, or the device does not exist.</summary>
public sealed class MambaBackendUnavailableException(string message) : MambaException(mamba_status.MAMBA_STATUS_BACKEND_UNAVAILABLE, message);

/// <summary>The device runtime (CUDA) reported an error.</summary>
public sealed class MambaDeviceException(string message) : MambaException(mamba_status.MAMBA_STATUS_DEVICE_ERROR, message);

/// <summary>libmamba could not be found or loaded; the message lists every place that was tried.</summary>
public sealed class MambaLibraryNotFoundException(string message, Exception? inner = null) : DllNotFoundException(message, inner);

/// <summary>The loaded libmamba was built for another ABI version than these bindings.</summary>
public sealed class MambaAbiMismatchException(string message) : Exception(message);
