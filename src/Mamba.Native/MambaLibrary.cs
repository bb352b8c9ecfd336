using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Mamba.Native.Interop;

namespace Mamba.Native;

/// <summary>
/// Finds and loads libmamba: the file named by <c>MAMBA_NATIVE_LIBRARY</c>, else next to the application or
/// this assembly, else under <c>runtimes/&lt;rid&gt;/native/</c>, else the system's search path. In each folder
/// the CUDA build (<c>libmamba_cuda.so</c>) is preferred to the CPU-only one when it loads; it links CUDA's
/// cuBLAS libraries dynamically, and without them the CPU build is used and <see cref="LoadNotes"/> says why. Loading
/// also checks that the library's ABI version is the one these bindings were generated for.
/// </summary>
public static class MambaLibrary
{
    /// <summary>Environment variable that names the exact library file to load.</summary>
    public const string PathVariable = "MAMBA_NATIVE_LIBRARY";

    private static readonly Lazy<IntPtr> Handle = new(LoadAndVerify, LazyThreadSafetyMode.ExecutionAndPublication);

#pragma warning disable CA2255 // the resolver must be in place before any P/Invoke of this assembly runs
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register() =>
        NativeLibrary.SetDllImportResolver(typeof(MambaLibrary).Assembly, (name, _, _) =>
            name == NativeMethods.LibraryName ? Handle.Value : IntPtr.Zero);

    /// <summary>Loads the library now (it is otherwise loaded by the first native call) and returns its path.</summary>
    public static string Load()
    {
        _ = Handle.Value;
        return LoadedPath ?? "";
    }

    /// <summary>The file the library was loaded from, once loaded.</summary>
    public static string? LoadedPath { get; private set; }

    /// <summary>Why a preferred library was passed over (for example the CUDA build without CUDA's cuBLAS libraries);
    /// empty when the first library found was loaded.</summary>
    public static IReadOnlyList<string> LoadNotes => Notes;

    private static readonly List<string> Notes = [];

    /// <summary>The file name of the CUDA build of the library on this platform (null where there is none: macOS).</summary>
    public static string? CudaFileName =>
        OperatingSystem.IsWindows() ? "mamba_cuda.dll" : OperatingSystem.IsMacOS() ? null : "libmamba_cuda.so";

    /// <summary>What a failed load of the CUDA build most likely lacks, from the loader's message (or "").</summary>
    internal static string CudaLoadHint(string message) =>
        message.Contains("cublas", StringComparison.OrdinalIgnoreCase)
            ? " (the CUDA build needs the CUDA toolkit's cuBLAS libraries, libcublas and libcublasLt, on the library path)"
            : message.Contains("libcuda.so", StringComparison.Ordinal) || message.Contains("nvcuda", StringComparison.Ordinal)
                ? " (the CUDA build needs the NVIDIA driver's libcuda.so.1)"
                : "";

    /// <summary>The file name of the library on this platform.</summary>
    public static string FileName =>
        OperatingSystem.IsWindows() ? "mamba.dll" : OperatingSystem.IsMacOS() ? "libmamba.dylib" : "libmamba.so";

    /// <summary>The places searched, in order (the system search path comes last and is not listed).</summary>
    public static IReadOnlyList<string> CandidatePaths() => CandidatePaths(Environment.GetEnvironmentVariable(PathVariable));

    /// <summary>The candidate paths for a given value of <see cref="PathVariable"/> (null: unset).</summary>
    internal static IReadOnlyList<string> CandidatePaths(string? explicitPath)
    {
        var paths = new List<string>();
        if (!string.IsNullOrWhiteSpace(explicitPath))
        {
            // An explicit path is the only candidate: silently falling back would hide a misconfiguration.
            paths.Add(Path.GetFullPath(explicitPath));
            return paths;
        }
        var folders = new List<string> { AppContext.BaseDirectory };
        var assemblyDir = Path.GetDirectoryName(typeof(MambaLibrary).Assembly.Location);
        if (!string.IsNullOrEmpty(assemblyDir))
        {
            folders.Add(assemblyDir);
        }
        // In each place the CUDA build comes first: it runs on the CPU too, but needs cuBLAS to load.
        string[] names = CudaFileName is { } cuda ? [cuda, FileName] : [FileName];
        foreach (var folder in folders.Distinct())
        {
            foreach (var place in new[] { folder, Path.Combine(folder, "runtimes", RuntimeInformation.RuntimeIdentifier, "native"), Path.Combine(folder, "runtimes", PortableRid(), "native") })
            {
                paths.AddRange(names.Select(name => Path.Combine(place, name)));
            }
        }
        return paths.Distinct().ToList();
    }

    /// <summary>The last error message of libmamba on this thread.</summary>
    public static unsafe string LastError() => Marshal.PtrToStringUTF8((IntPtr)NativeMethods.mamba_last_error()) ?? "";

    private static string PortableRid()
    {
        var os = OperatingSystem.IsWindows() ? "win" : OperatingSystem.IsMacOS() ? "osx" : "linux";
        return $"{os}-{RuntimeInformation.ProcessArchitecture.ToString().ToLowerInvariant()}";
    }

    private static IntPtr LoadAndVerify()
    {
        var handle = LoadLibrary();
        VerifyAbi(handle);
        return handle;
    }

    private static IntPtr LoadLibrary()
    {
        var tried = new List<string>();
        var failures = new List<string>();
        foreach (var path in CandidatePaths())
        {
            tried.Add(path);
            if (!File.Exists(path))
            {
                continue;
            }
            try
            {
                var handle = NativeLibrary.Load(path);
                LoadedPath = path;
                return handle;
            }
            catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
            {
                failures.Add($"{path}: {e.Message}");
                if (Path.GetFileName(path) == CudaFileName)
                {
                    var hint = CudaLoadHint(e.Message);
                    var reason = string.Join(' ', e.Message.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
                    Notes.Add($"CUDA build {path} not loaded{hint}: {reason}; using the CPU build.");
                }
            }
        }
        if (Environment.GetEnvironmentVariable(PathVariable) is not { Length: > 0 }
            && NativeLibrary.TryLoad(NativeMethods.LibraryName, typeof(MambaLibrary).Assembly, DllImportSearchPath.SafeDirectories, out var system))
        {
            LoadedPath = NativeMethods.LibraryName + " (system search path)";
            return system;
        }
        tried.Add("the system library search path (LD_LIBRARY_PATH, ldconfig)");
        var message = $"libmamba could not be loaded. Looked in:{Environment.NewLine}  " + string.Join(Environment.NewLine + "  ", tried);
        if (failures.Count > 0)
        {
            message += $"{Environment.NewLine}Found but failed to load:{Environment.NewLine}  " + string.Join(Environment.NewLine + "  ", failures);
        }
        message += $"{Environment.NewLine}Build it with ./build.sh --target=Native, or set {PathVariable} to the library file.";
        throw new MambaLibraryNotFoundException(message);
    }

    private static unsafe void VerifyAbi(IntPtr handle)
    {
        if (!NativeLibrary.TryGetExport(handle, "mamba_abi_version", out var export))
        {
            throw new MambaAbiMismatchException($"{LoadedPath} does not export mamba_abi_version: it is not libmamba or is too old.");
        }
        var version = ((delegate* unmanaged[Cdecl]<int>)export)();
        if (version != NativeConstants.MAMBA_ABI_VERSION)
        {
            throw new MambaAbiMismatchException(
                $"{LoadedPath} has ABI version {version}, but Mamba.Native {Assembly.GetExecutingAssembly().GetName().Version} " +
                $"was generated for ABI version {NativeConstants.MAMBA_ABI_VERSION}. Use a matching libmamba.");
        }
    }
}
