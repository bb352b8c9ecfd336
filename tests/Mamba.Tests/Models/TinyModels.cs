using Mamba.Models;
using Mamba.Tensors;

namespace Mamba.Tests.Models;

/// <summary>Small random Mamba and Mamba-2 checkpoints, with the stored weights kept for the float64 reference.</summary>
internal sealed class TinyModel
{
    public required MambaConfig Config { get; init; }
    public required InMemoryCheckpoint Checkpoint { get; init; }
    public required Dictionary<string, float[]> Weights { get; init; }

    public float[] W(string name) => Weights[name];

    public static MambaConfig Mamba1Config(bool tied = true) => new()
    {
        Family = MambaFamily.Mamba1,
        HiddenSize = 16,
        NumLayers = 2,
        VocabSize = 37,
        StateSize = 8,
        IntermediateSize = 32,
        ConvKernel = 4,
        TimeStepRank = 4,
        TieWordEmbeddings = tied,
        UseConvBias = true,
    };

    public static MambaConfig Mamba2Config(bool tied = true) => new()
    {
        Family = MambaFamily.Mamba2,
        HiddenSize = 16,
        NumLayers = 2,
        VocabSize = 37,
        StateSize = 16,
        IntermediateSize = 32,
        ConvKernel = 4,
        NumHeads = 4,
        HeadDim = 8,
        NumGroups = 2,
        ChunkSize = 16,
        TieWordEmbeddings = tied,
        TimeStepLimit = (0.002f, 0.09f),
    };

    public static TinyModel Create(MambaConfig config, int seed, DType dtype = DType.Float32)
    {
        var rng = new Random(seed);
        var ckpt = new InMemoryCheckpoint();
        var weights = new Dictionary<string, float[]>();
        float[] Uniform(int n, double lo, double hi) => Enumerable.Range(0, n).Select(_ => (float)(lo + rng.NextDouble() * (hi - lo))).ToArray();
        void Add(string name, float[] v, long[] shape, DType? t = null) => weights[name] = ckpt.Add("backbone." + name, v, shape, t ?? dtype);
        void AddMatrix(string name, int rows, int cols) => Add(name, Uniform(rows * cols, -1, 1).Select(x => x / MathF.Sqrt(cols)).ToArray(), [rows, cols]);

        int h = config.HiddenSize, v = config.VocabSize, di = config.IntermediateSize, n = config.StateSize, k = config.ConvKernel;
        Add("embeddings.weight", Uniform(v * h, -1, 1), [v, h]);
        for (var l = 0; l < config.NumLayers; l++)
        {
            var p = $"layers.{l}.";
            Add(p + "norm.weight", Uniform(h, 0.5, 1.5), [h]);
            if (config.Family == MambaFamily.Mamba1)
            {
                var r = config.TimeStepRank;
                AddMatrix(p + "mixer.in_proj.weight", 2 * di, h);
                Add(p + "mixer.conv1d.weight", Uniform(di * k, -0.5, 0.5), [di, 1, k]);
                Add(p + "mixer.conv1d.bias", Uniform(di, -0.2, 0.2), [di]);
                AddMatrix(p + "mixer.x_proj.weight", r + 2 * n, di);
                AddMatrix(p + "mixer.dt_proj.weight", di, r);
                // Biases that put softplus(dt) between 0.001 and 0.1, as Mamba initializes them.
                Add(p + "mixer.dt_proj.bias", Uniform(di, 0.001, 0.1).Select(d => (float)Math.Log(Math.Exp(d) - 1)).ToArray(), [di]);
                Add(p + "mixer.A_log", Uniform(di * n, 0, 2.5), [di, n], DType.Float32);
                Add(p + "mixer.D", Uniform(di, 0.5, 1.5), [di], DType.Float32);
                AddMatrix(p + "mixer.out_proj.weight", h, di);
            }
            else
            {
                int heads = config.NumHeads, g = config.NumGroups, cd = di + 2 * g * n;
                AddMatrix(p + "mixer.in_proj.weight", di + cd + heads, h);
                Add(p + "mixer.conv1d.weight", Uniform(cd * k, -0.5, 0.5), [cd, 1, k]);
                Add(p + "mixer.conv1d.bias", Uniform(cd, -0.2, 0.2), [cd]);
                Add(p + "mixer.dt_bias", Uniform(heads, 0.001, 0.1).Select(d => (float)Math.Log(Math.Exp(d) - 1)).ToArray(), [heads], DType.Float32);
                Add(p + "mixer.A_log", Uniform(heads, 0, 2.5), [heads], DType.Float32);
                Add(p + "mixer.D", Uniform(heads, 0.5, 1.5), [heads], DType.Float32);
                Add(p + "mixer.norm.weight", Uniform(di, 0.5, 1.5), [di]);
                AddMatrix(p + "mixer.out_proj.weight", h, di);
            }
        }
        Add("norm_f.weight", Uniform(h, 0.5, 1.5), [h]);
        if (!config.TieWordEmbeddings)
        {
            weights["lm_head.weight"] = ckpt.Add("lm_head.weight", Uniform(v * h, -1, 1), [v, h], dtype);
        }
        return new TinyModel { Config = config, Checkpoint = ckpt, Weights = weights };
    }

    public static int[] RandomTokens(Random rng, int count, int vocab) => Enumerable.Range(0, count).Select(_ => rng.Next(vocab)).ToArray();
}
