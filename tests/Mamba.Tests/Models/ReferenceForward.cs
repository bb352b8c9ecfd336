using Mamba.Models;

namespace Mamba.Tests.Models;

/// <summary>The whole model in float64 with plain loops, straight from the Mamba and Mamba-2 equations:
/// logits for every position of one sequence.</summary>
internal static class ReferenceForward
{
    public static double[][] Logits(TinyModel m, int[] tokens)
    {
        var c = m.Config;
        int T = tokens.Length, H = c.HiddenSize, V = c.VocabSize;
        var emb = m.W("embeddings.weight");
        var hidden = new double[T][];
        for (var t = 0; t < T; t++)
        {
            hidden[t] = Enumerable.Range(0, H).Select(i => (double)emb[tokens[t] * H + i]).ToArray();
        }
        double[][]? residual = null;
        for (var l = 0; l < c.NumLayers; l++)
        {
            var p = $"layers.{l}.";
            residual = residual is null ? hidden : Add(hidden, residual);
            var normed = residual.Select(r => RmsNorm(r, m.W(p + "norm.weight"), c.NormEpsilon)).ToArray();
            hidden = c.Family == MambaFamily.Mamba1 ? Mamba1(m, p + "mixer.", normed) : Mamba2(m, p + "mixer.", normed);
        }
        residual = Add(hidden, residual!);
        var final = residual.Select(r => RmsNorm(r, m.W("norm_f.weight"), c.NormEpsilon)).ToArray();
        var head = c.TieWordEmbeddings ? emb : m.W("lm_head.weight");
        return final.Select(f => MatVec(head, V, H, f)).ToArray();
    }

    private static double[][] Mamba1(TinyModel m, string p, double[][] x)
    {
        var c = m.Config;
        int T = x.Length, H = c.HiddenSize, D = c.IntermediateSize, N = c.StateSize, R = c.TimeStepRank, K = c.ConvKernel;
        var xz = x.Select(r => MatVec(m.W(p + "in_proj.weight"), 2 * D, H, r)).ToArray();
        var xs = xz.Select(r => r[..D]).ToArray();
        var z = xz.Select(r => r[D..]).ToArray();
        var xc = Conv(xs, m.W(p + "conv1d.weight"), m.W(p + "conv1d.bias"), K);
        var xdbl = xc.Select(r => MatVec(m.W(p + "x_proj.weight"), R + 2 * N, D, r)).ToArray();
        var dtW = m.W(p + "dt_proj.weight");
        var dtB = m.W(p + "dt_proj.bias");
        var aLog = m.W(p + "A_log");
        var dSkip = m.W(p + "D");
        var state = new double[D, N];
        var y = new double[T][];
        for (var t = 0; t < T; t++)
        {
            var dtRaw = MatVec(dtW, D, R, xdbl[t][..R]);
            y[t] = new double[D];
            for (var d = 0; d < D; d++)
            {
                var dt = Softplus(dtRaw[d] + dtB[d]);
                double acc = 0;
                for (var n = 0; n < N; n++)
                {
                    var a = -Math.Exp(aLog[d * N + n]);
                    state[d, n] = Math.Exp(dt * a) * state[d, n] + dt * xdbl[t][R + n] * xc[t][d];
                    acc += xdbl[t][R + N + n] * state[d, n];
                }
                y[t][d] = (acc + dSkip[d] * xc[t][d]) * Silu(z[t][d]);
            }
        }
        return y.Select(r => MatVec(m.W(p + "out_proj.weight"), H, D, r)).ToArray();
    }

    private static double[][] Mamba2(TinyModel m, string p, double[][] x)
    {
        var c = m.Config;
        int T = x.Length, H = c.HiddenSize, D = c.IntermediateSize, N = c.StateSize, K = c.ConvKernel;
        int heads = c.NumHeads, P = c.HeadDim, G = c.NumGroups, cd = D + 2 * G * N;
        var proj = x.Select(r => MatVec(m.W(p + "in_proj.weight"), D + cd + heads, H, r)).ToArray();
        var z = proj.Select(r => r[..D]).ToArray();
        var xbc = Conv(proj.Select(r => r[D..(D + cd)]).ToArray(), m.W(p + "conv1d.weight"), m.W(p + "conv1d.bias"), K);
        var dtBias = m.W(p + "dt_bias");
        var aLog = m.W(p + "A_log");
        var dSkip = m.W(p + "D");
        var normW = m.W(p + "norm.weight");
        var state = new double[heads, P, N];
        var outputs = new double[T][];
        for (var t = 0; t < T; t++)
        {
            var y = new double[D];
            for (var h = 0; h < heads; h++)
            {
                var g = h / (heads / G);
                var dt = Math.Clamp(Softplus(proj[t][D + cd + h] + dtBias[h]), c.TimeStepLimit.Min, c.TimeStepLimit.Max);
                var decay = Math.Exp(dt * -Math.Exp(aLog[h]));
                for (var pp = 0; pp < P; pp++)
                {
                    var xv = xbc[t][h * P + pp];
                    double acc = 0;
                    for (var n = 0; n < N; n++)
                    {
                        state[h, pp, n] = decay * state[h, pp, n] + dt * xv * xbc[t][D + g * N + n];
                        acc += xbc[t][D + G * N + g * N + n] * state[h, pp, n];
                    }
                    y[h * P + pp] = acc + dSkip[h] * xv;
                }
            }
            // Gated RMSNorm, normalized per group of D / G channels (norm after the gate).
            var gated = new double[D];
            var groupSize = D / G;
            for (var g = 0; g < G; g++)
            {
                double ss = 0;
                for (var i = g * groupSize; i < (g + 1) * groupSize; i++)
                {
                    gated[i] = y[i] * Silu(z[t][i]);
                    ss += gated[i] * gated[i];
                }
                var inv = 1 / Math.Sqrt(ss / groupSize + c.NormEpsilon);
                for (var i = g * groupSize; i < (g + 1) * groupSize; i++)
                {
                    gated[i] = gated[i] * inv * normW[i];
                }
            }
            outputs[t] = MatVec(m.W(p + "out_proj.weight"), H, D, gated);
        }
        return outputs;
    }

    private static double[][] Conv(double[][] x, float[] w, float[] bias, int K)
    {
        int T = x.Length, D = x[0].Length;
        var y = new double[T][];
        for (var t = 0; t < T; t++)
        {
            y[t] = new double[D];
            for (var d = 0; d < D; d++)
            {
                double acc = bias[d];
                for (var k = 0; k < K; k++)
                {
                    var s = t - (K - 1) + k;
                    if (s >= 0)
                    {
                        acc += w[d * K + k] * x[s][d];
                    }
                }
                y[t][d] = Silu(acc);
            }
        }
        return y;
    }

    private static double[] MatVec(float[] w, int rows, int cols, double[] x)
    {
        var y = new double[rows];
        for (var r = 0; r < rows; r++)
        {
            double acc = 0;
            for (var i = 0; i < cols; i++)
            {
                acc += w[r * cols + i] * x[i];
            }
            y[r] = acc;
        }
        return y;
    }

    private static double[] RmsNorm(double[] x, float[] w, double eps)
    {
        var inv = 1 / Math.Sqrt(x.Sum(v => v * v) / x.Length + eps);
        return x.Select((v, i) => v * inv * w[i]).ToArray();
    }

    private static double[][] Add(double[][] a, double[][] b) => a.Select((r, t) => r.Select((v, i) => v + b[t][i]).ToArray()).ToArray();

    private static double Silu(double v) => v / (1 + Math.Exp(-v));

    private static double Softplus(double v) => v > 20 ? v : Math.Log(1 + Math.Exp(v));
}
