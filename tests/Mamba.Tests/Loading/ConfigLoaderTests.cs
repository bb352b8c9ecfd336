using Mamba.Loading;
using Mamba.Models;

namespace Mamba.Tests.Loading;

/// <summary>config.json in the Hugging Face mamba / mamba2 and the state-spaces layouts.</summary>
[TestFixture]
public class ConfigLoaderTests
{
    private static LoadedConfig Parse(string json) => ConfigLoader.Parse(json, "/models/tiny/config.json");

    [Test]
    public void HuggingFaceMamba1()
    {
        var loaded = Parse(LoadingFixtures.HfMamba1Config);
        var c = loaded.Config;
        Assert.Multiple(() =>
        {
            Assert.That(loaded.Layout, Is.EqualTo(ConfigLayout.HuggingFace));
            Assert.That(c.Family, Is.EqualTo(MambaFamily.Mamba1));
            Assert.That(c.HiddenSize, Is.EqualTo(8));
            Assert.That(c.NumLayers, Is.EqualTo(2));
            Assert.That(c.VocabSize, Is.EqualTo(16));
            Assert.That(c.StateSize, Is.EqualTo(4));
            Assert.That(c.IntermediateSize, Is.EqualTo(16));
            Assert.That(c.ConvKernel, Is.EqualTo(4));
            Assert.That(c.TimeStepRank, Is.EqualTo(2));
            Assert.That(c.NormEpsilon, Is.EqualTo(1e-5));
            Assert.That(c.ResidualInFp32, Is.True);
            Assert.That(c.TieWordEmbeddings, Is.True);
            Assert.That(c.UseBias, Is.False);
            Assert.That(c.UseConvBias, Is.True);
            Assert.That(c.BosTokenId, Is.EqualTo(0));
            Assert.That(c.EosTokenId, Is.EqualTo(0));
            Assert.That(c.PadTokenId, Is.EqualTo(0));
            Assert.That(loaded.IgnoredFields, Is.Empty, "every field of a transformers-written config is known");
        });
    }

    [TestCase(768, 48)]
    [TestCase(2560, 160)]
    [TestCase(20, 2)]
    public void TimeStepRankAutoIsCeilHiddenOver16(int hidden, int expected)
    {
        var c = Parse($$"""{"model_type":"mamba","hidden_size":{{hidden}},"num_hidden_layers":1,"vocab_size":10,"state_size":16,"time_step_rank":"auto","expand":2}""").Config;
        Assert.That(c.TimeStepRank, Is.EqualTo(expected));
        Assert.That(c.IntermediateSize, Is.EqualTo(2 * hidden));
    }

    private const string HfMamba2 = """
        {
          "architectures": ["Mamba2ForCausalLM"], "bos_token_id": 0, "chunk_size": 64, "conv_kernel": 4, "eos_token_id": 2,
          "expand": 2, "head_dim": 4, "hidden_act": "silu", "hidden_size": 8, "initializer_range": 0.1,
          "layer_norm_epsilon": 1e-06, "model_type": "mamba2", "n_groups": 2, "norm_before_gate": false,
          "num_heads": 4, "num_hidden_layers": 3, "pad_token_id": 1, "rescale_prenorm_residual": false,
          "residual_in_fp32": true, "rms_norm": true, "state_size": 4, "tie_word_embeddings": false,
          "time_step_floor": 0.0001, "time_step_limit": [0.0, {"__float__": "Infinity"}], "time_step_max": 0.1,
          "time_step_min": 0.001, "time_step_rank": "auto", "torch_dtype": "bfloat16", "transformers_version": "4.44.0",
          "use_bias": false, "use_cache": true, "use_conv_bias": true, "vocab_size": 32
        }
        """;

    [Test]
    public void HuggingFaceMamba2WithWrappedInfinity()
    {
        var loaded = Parse(HfMamba2);
        var c = loaded.Config;
        Assert.Multiple(() =>
        {
            Assert.That(c.Family, Is.EqualTo(MambaFamily.Mamba2));
            Assert.That(c.NumHeads, Is.EqualTo(4));
            Assert.That(c.HeadDim, Is.EqualTo(4));
            Assert.That(c.NumGroups, Is.EqualTo(2));
            Assert.That(c.ChunkSize, Is.EqualTo(64));
            Assert.That(c.IntermediateSize, Is.EqualTo(16));
            Assert.That(c.NumLayers, Is.EqualTo(3));
            Assert.That(c.TimeStepLimit, Is.EqualTo((0f, float.PositiveInfinity)));
            Assert.That(c.NormEpsilon, Is.EqualTo(1e-6));
            Assert.That(c.TieWordEmbeddings, Is.False);
            Assert.That(c.NormBeforeGate, Is.False);
            Assert.That(c.EosTokenId, Is.EqualTo(2));
            Assert.That(loaded.IgnoredFields, Is.Empty);
        });
    }

    [TestCase("[0.0, Infinity]", 0f, float.PositiveInfinity)]
    [TestCase("[0.001, 0.1]", 0.001f, 0.1f)]
    [TestCase("[0.0, \"Infinity\"]", 0f, float.PositiveInfinity)]
    public void TimeStepLimitSpellings(string limit, float min, float max)
    {
        var json = HfMamba2.Replace("[0.0, {\"__float__\": \"Infinity\"}]", limit, StringComparison.Ordinal);
        Assert.That(Parse(json).Config.TimeStepLimit, Is.EqualTo((min, max)));
    }

    [Test]
    public void BareInfinityInsideStringsIsLeftAlone()
    {
        var json = HfMamba2.Replace("\"_name_or_path\"", "\"x\"", StringComparison.Ordinal)
            .Replace("\"architectures\": [\"Mamba2ForCausalLM\"]", "\"architectures\": [\"Infinity NaN\"]", StringComparison.Ordinal);
        Assert.That(Parse(json).Config.HiddenSize, Is.EqualTo(8));
    }

    [Test]
    public void StateSpacesMamba1PadsVocab()
    {
        var loaded = Parse("""
            {"d_model": 768, "n_layer": 24, "vocab_size": 50277, "ssm_cfg": {}, "rms_norm": true, "residual_in_fp32": true,
             "fused_add_norm": true, "pad_vocab_size_multiple": 8}
            """);
        var c = loaded.Config;
        Assert.Multiple(() =>
        {
            Assert.That(loaded.Layout, Is.EqualTo(ConfigLayout.StateSpaces));
            Assert.That(c.Family, Is.EqualTo(MambaFamily.Mamba1));
            Assert.That(c.VocabSize, Is.EqualTo(50280));
            Assert.That(c.UnpaddedVocabSize, Is.EqualTo(50277));
            Assert.That(c.HiddenSize, Is.EqualTo(768));
            Assert.That(c.IntermediateSize, Is.EqualTo(1536));
            Assert.That(c.StateSize, Is.EqualTo(16));
            Assert.That(c.TimeStepRank, Is.EqualTo(48));
            Assert.That(c.ConvKernel, Is.EqualTo(4));
            Assert.That(c.TieWordEmbeddings, Is.True);
        });
    }

    [Test]
    public void StateSpacesMamba2()
    {
        var c = Parse("""
            {"d_model": 768, "d_intermediate": 0, "n_layer": 24, "vocab_size": 50277,
             "ssm_cfg": {"layer": "Mamba2", "d_state": 64, "headdim": 32, "ngroups": 2, "chunk_size": 128},
             "attn_layer_idx": [], "attn_cfg": {}, "rms_norm": true, "residual_in_fp32": true, "fused_add_norm": true,
             "pad_vocab_size_multiple": 16, "tie_embeddings": true}
            """).Config;
        Assert.Multiple(() =>
        {
            Assert.That(c.Family, Is.EqualTo(MambaFamily.Mamba2));
            Assert.That(c.VocabSize, Is.EqualTo(50288));
            Assert.That(c.StateSize, Is.EqualTo(64));
            Assert.That(c.HeadDim, Is.EqualTo(32));
            Assert.That(c.NumHeads, Is.EqualTo(48));
            Assert.That(c.NumGroups, Is.EqualTo(2));
            Assert.That(c.ChunkSize, Is.EqualTo(128));
            Assert.That(c.IntermediateSize, Is.EqualTo(1536));
        });
    }

    [Test]
    public void UnknownHarmlessFieldsAreReportedNotFatal()
    {
        var json = LoadingFixtures.HfMamba1Config.Replace("\"use_cache\": true", "\"use_cache\": true, \"my_tag\": [1]", StringComparison.Ordinal);
        Assert.That(Parse(json).IgnoredFields, Is.EqualTo(new[] { "my_tag" }));
    }

    [Test]
    public void LoadReadsTheFile()
    {
        using var dir = new TempDir();
        var path = dir.Write("config.json", LoadingFixtures.HfMamba1Config);
        Assert.That(ConfigLoader.Load(path).HiddenSize, Is.EqualTo(8));
        Assert.Throws<FileNotFoundException>(() => ConfigLoader.Load(dir.File("missing.json")));
    }

    private static ConfigFormatException Bad(string json, string? field, string expected)
    {
        var e = Assert.Throws<ConfigFormatException>(() => Parse(json))!;
        Assert.That(e.Message, Does.Contain("/models/tiny/config.json"));
        Assert.That(e.Field, Is.EqualTo(field));
        Assert.That(e.Message, Does.Contain(expected));
        return e;
    }

    [Test]
    public void MalformedConfigs()
    {
        Assert.Multiple(() =>
        {
            Bad("{\"model_type\": ", null, "not valid JSON");
            Bad("[1]", null, "expected a JSON object");
            Bad("""{"model_type": "llama", "hidden_size": 8}""", "model_type", "unknown model type \"llama\"");
            Bad("""{"hidden_size": 8}""", "model_type", "missing");
            Bad(LoadingFixtures.HfMamba1Config.Replace("\"hidden_size\": 8,", "", StringComparison.Ordinal).Replace("\"n_layer\": 2,", "", StringComparison.Ordinal),
                "hidden_size", "required field is missing");
            Bad(LoadingFixtures.HfMamba1Config.Replace("\"state_size\": 4", "\"state_size\": \"4\"", StringComparison.Ordinal), "state_size",
                "expected an integer, got the string \"4\"");
            Bad(LoadingFixtures.HfMamba1Config.Replace("\"state_size\": 4", "\"state_size\": 4.5", StringComparison.Ordinal), "state_size", "expected an integer");
            Bad(LoadingFixtures.HfMamba1Config.Replace("\"state_size\": 4", "\"state_size\": 0", StringComparison.Ordinal), "state_size", "at least 1");
            Bad(LoadingFixtures.HfMamba1Config.Replace("\"use_bias\": false", "\"use_bias\": 0", StringComparison.Ordinal), "use_bias", "expected true or false");
            Bad(LoadingFixtures.HfMamba1Config.Replace("\"intermediate_size\": 16", "\"intermediate_size\": 24", StringComparison.Ordinal), "intermediate_size",
                "disagrees with expand * hidden_size = 16");
            Bad(LoadingFixtures.HfMamba1Config.Replace("\"layer_norm_epsilon\": 1e-05", "\"layer_norm_epsilon\": -1", StringComparison.Ordinal), "layer_norm_epsilon",
                "must be positive");
            Bad(HfMamba2.Replace("\"num_heads\": 4", "\"num_heads\": 3", StringComparison.Ordinal), "num_heads", "differs from the mixer width");
            Bad(HfMamba2.Replace("\"n_groups\": 2", "\"n_groups\": 3", StringComparison.Ordinal), "n_groups", "do not divide");
            Bad(HfMamba2.Replace("\"head_dim\": 4,", "", StringComparison.Ordinal), "head_dim", "required field is missing");
            Bad(HfMamba2.Replace("[0.0, {\"__float__\": \"Infinity\"}]", "[1.0, 0.5]", StringComparison.Ordinal), "time_step_limit", "not a valid range");
            Bad(HfMamba2.Replace("[0.0, {\"__float__\": \"Infinity\"}]", "0.5", StringComparison.Ordinal), "time_step_limit", "expected a pair");
            Bad("""{"d_model": 8, "n_layer": 1, "vocab_size": 10, "ssm_cfg": {"layer": "Mamba3"}}""", "ssm_cfg.layer", "unknown layer");
            Bad("""{"d_model": 8, "n_layer": 1, "vocab_size": 10, "ssm_cfg": {"d_state": 16, "dt_ranks": 4}}""", "ssm_cfg.dt_ranks", "unknown ssm_cfg key");
            Bad("""{"d_model": 8, "n_layer": 1, "vocab_size": 10, "ssm_cfg": {"d_state": "big"}}""", "ssm_cfg.d_state", "expected an integer");
            Bad("""{"d_model": 8, "n_layer": 1, "vocab_size": 10, "ssm_cfg": {"layer": "Mamba2", "headdim": 5}}""", "ssm_cfg.headdim", "does not divide");
            Bad("""{"d_model": 8, "n_layer": 1, "vocab_size": 10, "ssm_cfg": 3}""", "ssm_cfg", "expected an object");
        });
    }

    [TestCase("""{"model_type":"mamba","hidden_size":8,"num_hidden_layers":1,"vocab_size":10,"state_size":4,"hidden_act":"gelu"}""", "hidden_act")]
    [TestCase("""{"model_type":"mamba","hidden_size":8,"num_hidden_layers":1,"vocab_size":10,"state_size":4,"mixer_rms_eps":1e-6}""", "mixer_rms_eps")]
    [TestCase("""{"model_type":"mamba2","hidden_size":8,"num_hidden_layers":1,"vocab_size":10,"state_size":4,"num_heads":4,"head_dim":4,"rms_norm":false}""", "rms_norm")]
    [TestCase("""{"d_model": 8, "n_layer": 1, "vocab_size": 10, "attn_layer_idx": [0]}""", "attn_layer_idx")]
    [TestCase("""{"d_model": 8, "n_layer": 1, "vocab_size": 10, "d_intermediate": 32}""", "d_intermediate")]
    [TestCase("""{"d_model": 8, "n_layer": 1, "vocab_size": 10, "rms_norm": false}""", "rms_norm")]
    [TestCase("""{"d_model": 8, "n_layer": 1, "vocab_size": 10, "ssm_cfg": {"layer": "Mamba2", "headdim": 4, "d_ssm": 8}}""", "ssm_cfg.d_ssm")]
    [TestCase("""{"d_model": 8, "n_layer": 1, "vocab_size": 10, "ssm_cfg": {"layer": "Mamba2", "headdim": 4, "D_has_hdim": true}}""", "ssm_cfg.D_has_hdim")]
    [TestCase("""{"d_model": 8, "n_layer": 1, "vocab_size": 10, "ssm_cfg": {"layer": "Mamba2", "headdim": 4, "rmsnorm": false}}""", "ssm_cfg.rmsnorm")]
    public void MathChangingFeaturesAreUnsupported(string json, string field)
    {
        var e = Assert.Throws<UnsupportedModelException>(() => Parse(json))!;
        Assert.That(e.Field, Is.EqualTo(field));
        Assert.That(e.Message, Does.Contain("/models/tiny/config.json").And.Contain(field).And.Contain("not supported"));
    }
}
