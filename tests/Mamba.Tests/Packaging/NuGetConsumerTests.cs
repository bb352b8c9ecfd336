using System.Diagnostics;
using System.Text.Json;

namespace Mamba.Tests.Packaging;

/// <summary>
/// A fresh console project that knows nothing of this repository restores Mamba.Managed from the packages
/// the Pack target made, and greedily continues the shipped model's reference prompt: the tokens must be
/// the ones PyTorch produced (models/mamba2-pystdlib/reference.json). Proves the package carries a working
/// libmamba under runtimes/linux-x64/native and everything the managed API needs.
/// </summary>
[TestFixture]
[Category("Packaging")]
[NonParallelizable]
public class NuGetConsumerTests
{
    private const int Tokens = 16;

    [Test]
    [CancelAfter(600_000)]
    public void FreshProjectGeneratesWithThePackage()
    {
        var packages = Environment.GetEnvironmentVariable("MAMBA_PACKAGES_DIR") ?? Path.Combine(TestSupport.RepoRoot, "artifacts", "packages");
        var package = Directory.Exists(packages) ? Directory.GetFiles(packages, "Mamba.Managed.*.nupkg").FirstOrDefault() : null;
        if (package is null)
        {
            Assert.Ignore($"no Mamba.Managed package in {packages}: run ./build.sh --target=Pack first");
        }
        var version = Path.GetFileNameWithoutExtension(package!)["Mamba.Managed.".Length..];
        var modelDir = Path.Combine(TestSupport.RepoRoot, "models", "mamba2-pystdlib");
        using var reference = JsonDocument.Parse(File.ReadAllText(Path.Combine(modelDir, "reference.json")));
        var expected = reference.RootElement.GetProperty("greedy_ids").EnumerateArray().Take(Tokens).Select(e => e.GetInt32()).ToArray();

        var work = Directory.CreateTempSubdirectory("mamba-consumer-");
        try
        {
            File.WriteAllText(Path.Combine(work.FullName, "nuget.config"), $"""
                <?xml version="1.0" encoding="utf-8"?>
                <configuration>
                  <packageSources>
                    <clear />
                    <add key="local" value="{packages}" />
                  </packageSources>
                </configuration>
                """);
            // Its own package folder: a package of the same version cached by an earlier run must not be used.
            File.WriteAllText(Path.Combine(work.FullName, "Consumer.csproj"), $"""
                <Project Sdk="Microsoft.NET.Sdk">
                  <PropertyGroup>
                    <OutputType>Exe</OutputType>
                    <TargetFramework>net10.0</TargetFramework>
                    <Nullable>enable</Nullable>
                    <ImplicitUsings>enable</ImplicitUsings>
                    <RestorePackagesPath>{Path.Combine(work.FullName, "packages")}</RestorePackagesPath>
                  </PropertyGroup>
                  <ItemGroup>
                    <PackageReference Include="Mamba.Managed" Version="{version}" />
                  </ItemGroup>
                </Project>
                """);
            File.WriteAllText(Path.Combine(work.FullName, "Program.cs"), $$"""
                using Mamba.Models;
                using var model = MambaModel.Load(args[0], new MambaModelOptions { Device = Mamba.Runtime.Device.Cpu });
                var prompt = model.Tokenizer!.Encode(args[1]);
                var ids = new List<int>();
                await foreach (var id in model.GenerateTokensAsync(prompt, new() { MaxNewTokens = {{Tokens}}, StopAtEndOfSequence = false }))
                    ids.Add(id);
                Console.WriteLine("ids: " + string.Join(",", ids));
                """);
            var prompt = reference.RootElement.GetProperty("prompt").GetString()!;
            var output = Run(work.FullName, "run", "-c", "Release", "--", modelDir, prompt);
            var line = output.Split('\n').Select(l => l.Trim()).LastOrDefault(l => l.StartsWith("ids: ", StringComparison.Ordinal));
            Assert.That(line, Is.Not.Null, output);
            var actual = line!["ids: ".Length..].Split(',').Select(int.Parse).ToArray();
            Assert.That(actual, Is.EqualTo(expected));
        }
        finally
        {
            work.Delete(recursive: true);
        }
    }

    private static string Run(string directory, params string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet") { WorkingDirectory = directory, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }
        start.Environment.Remove("MAMBA_NATIVE_LIBRARY"); // the package's own libmamba must be the one loaded
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        var all = stdout + stderr.Result;
        Assert.That(process.ExitCode, Is.Zero, $"dotnet {string.Join(' ', arguments)} failed:\n{all}");
        return all;
    }
}
