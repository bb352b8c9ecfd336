using System.CommandLine;
using Mamba.Cli;

return CliApp.Run(args, Console.Out, Console.Error);
