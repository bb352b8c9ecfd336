// The build: native library (CMake), bindings, managed projects, tests, benchmarks, packages.
//   ./build.sh --target=Run      mamba generate with the shipped model (the README's main command)
//   ./build.sh --target=Test     CTest + NUnit, with results under artifacts/test-results
var target = Argument("target", "Test");
var configuration = Argument("configuration", "Release");
var cuda = Argument("cuda", EnvironmentVariable("MAMBA_CUDA") ?? "AUTO");
// CUDA build of libmamba to ship in Mamba.Native as runtimes/linux-x64/native/libmamba_cuda.so (Pack), if it exists.
var cudaLibraryArgument = Argument<string>("cuda-library", EnvironmentVariable("MAMBA_CUDA_LIBRARY"));
// Default main job: stream a continuation from the shipped model (models/mamba2-pystdlib).
var runArgs = Argument("args", "generate --prompt \"def fibonacci(n):\" --max-tokens 64");

var root = MakeAbsolute(Directory("."));
var nativeBuild = root.Combine("build/native");
var results = root.Combine("artifacts/test-results");
var solution = root.CombineWithFilePath("Mamba.slnx");
var tests = root.CombineWithFilePath("tests/Mamba.Tests/Mamba.Tests.csproj");
var cli = root.CombineWithFilePath("src/Mamba.Cli/Mamba.Cli.csproj");

void Exec(string tool, string arguments, DirectoryPath workingDirectory = null)
{
    var code = StartProcess(tool, new ProcessSettings { Arguments = arguments, WorkingDirectory = workingDirectory ?? root });
    if (code != 0)
    {
        throw new Exception($"{tool} {arguments} exited with {code}");
    }
}

Task("Native")
    .Description("Configure and build libmamba, its GoogleTest suite and native benchmark with CMake")
    .Does(() =>
{
    Exec("cmake", $"-S native -B \"{nativeBuild}\" -G Ninja -DCMAKE_BUILD_TYPE={configuration} -DMAMBA_CUDA={cuda}");
    Exec("cmake", $"--build \"{nativeBuild}\" -j {Environment.ProcessorCount}");
});

Task("Bindings")
    .Description("Regenerate src/Mamba.Native/Generated from mamba.h")
    .Does(() => Exec("/usr/bin/python3", "tools/bindgen/generate.py"));

Task("CheckBindings")
    .Description("Fail when the committed bindings differ from a fresh generation")
    .Does(() => Exec("/usr/bin/python3", "tools/bindgen/generate.py --check"));

Task("Build")
    .Description("Build the managed projects (libmamba is copied next to each app)")
    .IsDependentOn("Native")
    .Does(() => DotNetBuild(solution.FullPath, new DotNetBuildSettings { Configuration = configuration }));

Task("Test")
    .Description("Run CTest, the NUnit suite (including the NuGet consumer test over Pack's output) and pytest; results go to artifacts/test-results")
    .IsDependentOn("Pack")
    .Does(() =>
{
    CleanDirectory(results);
    var failures = new List<string>();
    var ctest = StartProcess("ctest", new ProcessSettings
    {
        Arguments = $"--test-dir \"{nativeBuild}\" -j {Environment.ProcessorCount} --output-on-failure --output-junit \"{results}/ctest.xml\"",
        WorkingDirectory = root,
    });
    if (ctest != 0) failures.Add("CTest");
    var pytest = StartProcess("/usr/bin/python3", new ProcessSettings
    {
        Arguments = $"-m pytest examples/python -q -p no:cacheprovider --junitxml \"{results}/python.xml\"",
        WorkingDirectory = root,
        EnvironmentVariables = new Dictionary<string, string> { ["MAMBA_NATIVE_LIBRARY"] = $"{nativeBuild}/lib/libmamba.so" },
    });
    if (pytest != 0) failures.Add("pytest");
    var nunitDir = root.Combine($"tests/Mamba.Tests/bin/{configuration}/net10.0");
    var nunit = StartProcess("dotnet", new ProcessSettings
    {
        Arguments = $"\"{nunitDir}/Mamba.Tests.dll\" --report-trx --report-trx-filename nunit.trx --results-directory \"{results}\"",
        WorkingDirectory = root,
    });
    if (nunit != 0) failures.Add("NUnit");
    Exec("python3", $"tools/ci/summarize.py \"{results}\"");
    if (failures.Count > 0)
    {
        throw new Exception("failing suites: " + string.Join(", ", failures));
    }
});

Task("Pack")
    .Description("NuGet packages (Mamba.Native with libmamba under runtimes/linux-x64/native, Mamba.Managed, the mamba tool) into artifacts/packages")
    .IsDependentOn("Build")
    .Does(() =>
{
    var packages = root.Combine("artifacts/packages");
    CleanDirectory(packages);
    var cudaLibrary = MakeAbsolute(File(cudaLibraryArgument ?? "build/cuda/lib/libmamba.so"));
    if (cudaLibraryArgument is not null && !FileExists(cudaLibrary))
    {
        throw new Exception($"--cuda-library: {cudaLibrary} does not exist");
    }
    var packedCudaLibrary = root.CombineWithFilePath("artifacts/native/libmamba_cuda.so");
    if (FileExists(cudaLibrary))
    {
        // Copied under its packaged name: the source may be a versioned file name (libmamba.so.0.1.0) or a symlink.
        EnsureDirectoryExists(packedCudaLibrary.GetDirectory());
        System.IO.File.Copy(cudaLibrary.FullPath, packedCudaLibrary.FullPath, overwrite: true);
        Information($"Mamba.Native carries the CUDA build {cudaLibrary} as libmamba_cuda.so");
    }
    else
    {
        DeleteFiles(packedCudaLibrary.FullPath);
        Information($"no CUDA build at {cudaLibrary}: Mamba.Native carries the CPU build only");
    }
    foreach (var project in new[] { "src/Mamba.Native/Mamba.Native.csproj", "src/Mamba.Managed/Mamba.Managed.csproj", "src/Mamba.Cli/Mamba.Cli.csproj" })
    {
        DotNetPack(root.CombineWithFilePath(project).FullPath, new DotNetPackSettings
        {
            Configuration = configuration,
            NoBuild = true,
            OutputDirectory = packages,
            MSBuildSettings = new DotNetMSBuildSettings().WithProperty("MambaCudaLibrary", packedCudaLibrary.FullPath),
        });
    }
});

Task("Run")
    .Description("Run the mamba CLI (--args=\"...\", default: generate from the shipped model)")
    .IsDependentOn("Build")
    .Does(() => Exec("dotnet", $"\"{root}/src/Mamba.Cli/bin/{configuration}/net10.0/mamba.dll\" {runArgs}"));

Task("Bench")
    .Description("Run the native benchmark, then the BenchmarkDotNet suite (--filter=PATTERN narrows it)")
    .IsDependentOn("Build")
    .Does(() =>
{
    var filter = Argument("filter", "*");
    Exec($"{nativeBuild}/bin/mamba_bench", "--device cpu");
    Exec("dotnet", $"\"{root}/bench/Mamba.Benchmarks/bin/{configuration}/net10.0/Mamba.Benchmarks.dll\" --filter \"{filter}\" --artifacts \"{root}/artifacts/benchmarks\"");
});

RunTarget(target);
