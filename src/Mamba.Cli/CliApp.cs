using System.CommandLine;
using Mamba.Native;

namespace Mamba.Cli;

/// <summary>Builds the command tree and turns failures into one clear line and a non-zero exit code.</summary>
internal static class CliApp
{
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var root = new RootCommand("Mamba.NET: fast Mamba and Mamba-2 inference")
        {
            InfoCommand.Create(stdout),
            GenerateCommand.Create(stdout, stderr),
            ScoreCommand.Create(stdout, stderr),
            BenchCommand.Create(stdout, stderr),
            GraphOverheadBench.Create(stdout),
        };
        try
        {
            var parse = root.Parse(args);
            return parse.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
        }
        catch (Exception e) when (e is MambaException or MambaLibraryNotFoundException or MambaAbiMismatchException
                                      or IOException or FormatException or InvalidDataException or ArgumentException or NotSupportedException
                                      or InvalidOperationException or UnauthorizedAccessException)
        {
            stderr.WriteLine($"mamba: error: {e.Message}");
            return 1;
        }
        catch (OperationCanceledException)
        {
            stderr.WriteLine("mamba: cancelled");
            return 130;
        }
    }
}
