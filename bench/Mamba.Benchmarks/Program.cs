using BenchmarkDotNet.Running;

// dotnet run -c Release --project bench/Mamba.Benchmarks -- --filter '*'
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
