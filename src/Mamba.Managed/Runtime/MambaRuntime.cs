using System.Runtime.InteropServices;
using Mamba.Native;
using Mamba.Native.Interop;

namespace Mamba.Runtime;

/// <summary>Facts about the loaded native library: version, backends and devices.</summary>
public static unsafe class MambaRuntime
{
    /// <summary>Version of libmamba, e.g. "0.1.0".</summary>
    public static string Version => Marshal.PtrToStringUTF8((IntPtr)NativeMethods.mamba_version()) ?? "";

    /// <summary>How libmamba was built (compiler, BLAS, CUDA).</summary>
    public static string BuildInfo => Marshal.PtrToStringUTF8((IntPtr)NativeMethods.mamba_build_info()) ?? "";

    /// <summary>ABI version of the loaded library.</summary>
    public static int AbiVersion => NativeMethods.mamba_abi_version();

    /// <summary>Whether the CUDA backend was compiled into libmamba.</summary>
    public static bool HasCudaBackend => NativeMethods.mamba_backend_available(mamba_device_type.MAMBA_DEVICE_CUDA) != 0;

    /// <summary>Visible CUDA devices (0 without the backend, a driver or a GPU).</summary>
    public static int CudaDeviceCount
    {
        get
        {
            int count;
            MambaException.Check(NativeMethods.mamba_device_count(mamba_device_type.MAMBA_DEVICE_CUDA, &count));
            return count;
        }
    }

    /// <summary>Every device libmamba can run on: the CPU, then each CUDA device.</summary>
    public static IReadOnlyList<DeviceInfo> Devices()
    {
        var list = new List<DeviceInfo> { GetDeviceInfo(Device.Cpu) };
        for (var i = 0; i < CudaDeviceCount; i++)
        {
            list.Add(GetDeviceInfo(Device.Cuda(i)));
        }
        return list;
    }

    /// <summary>Queries one device.</summary>
    public static DeviceInfo GetDeviceInfo(Device device)
    {
        mamba_device_info info;
        MambaException.Check(NativeMethods.mamba_device_get_info(device.Native, device.Index, &info));
        var name = Marshal.PtrToStringUTF8((IntPtr)info.name) ?? "";
        return new DeviceInfo(device, name, info.compute_capability_major, info.compute_capability_minor,
            info.multiprocessor_count, info.total_memory_bytes, info.free_memory_bytes);
    }
}
