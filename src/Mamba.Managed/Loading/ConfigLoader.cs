using System.Text.Json;
using Mamba.Models;

namespace Mamba.Loading;

/// <summary>Which config layout a file uses.</summary>
public enum ConfigLayout
{
    /// <summary>Hugging Face transformers, <c>model_type</c> <c>mamba</c> or <c>mamba2</c>.</summary>
    HuggingFace,

    /// <summary>The original state-spaces/mamba layout (<c>d_model</c>, <c>n_layer</c>, <c>ssm_cfg</c>).</summary>
    StateSpaces,
}

/// <summary>A loaded config with where it came from and which fields were not used.</summary>
/// <param name="Config">The normalized config.</param>
/// <param name="Layout">The layout of the file.</param>
/// <param name="FilePath">The file.</param>
/// <param name="IgnoredFields">
/// Top-level fields that are neither read nor known bookkeeping (so a caller may warn about them); they are
/// ignored because transformers itself keeps arbitrary extra config attributes.
/// </param>
public sealed record LoadedConfig(MambaConfig Config, ConfigLayout Layout, string FilePath, IReadOnlyList<string> IgnoredFields);

/// <summary>
/// Reads a model's <c>config.json</c> into a validated <see cref="MambaConfig"/>, from the Hugging Face layouts
/// (<c>model_type</c> <c>mamba</c>, <c>mamba2</c>) or the original state-spaces layout (no <c>model_type</c>;
/// <c>d_model</c>, <c>n_layer</c>, <c>ssm_cfg</c>).
/// </summary>
/// <remarks>
/// <para>Required: the sizes (hidden_size/d_model, num_hidden_layers/n_layer, vocab_size, state_size; for mamba2 also
/// num_heads and head_dim). Every other field defaults as the reference implementation defaults it.</para>
/// <para>Unknown fields: fields that only configure training or bookkeeping (initializer_range, time_step_min,
/// use_cache, torch_dtype, architectures, ...) are ignored. Fields that would change the computation in a way this
/// library does not implement raise <see cref="UnsupportedModelException"/>: an activation other than silu,
/// LayerNorm instead of RMSNorm (<c>rms_norm: false</c>), attention layers (<c>attn_layer_idx</c>), MLP blocks
/// (<c>d_intermediate &gt; 0</c>), falcon-mamba's extra norms (<c>mixer_rms_eps</c>), and in a Mamba-2
/// <c>ssm_cfg</c> a partial SSM width (<c>d_ssm</c>), per-channel D (<c>D_has_hdim</c>) or no gated norm
/// (<c>rmsnorm: false</c>). An <c>ssm_cfg</c> key the reference mixer would not accept is an error. Other unread
/// top-level fields are listed in <see cref="LoadedConfig.IgnoredFields"/>.</para>
/// </remarks>
public static class ConfigLoader
{
    /// <summary>Top-level fields known to not change inference.</summary>
    private static readonly HashSet<string> Bookkeeping = new(StringComparer.Ordinal)
    {
        "_name_or_path", "architectures", "model_type", "torch_dtype", "dtype", "transformers_version", "initializer_range",
        "rescale_prenorm_residual", "use_cache", "time_step_min", "time_step_max", "time_step_floor", "time_step_scale",
        "time_step_init_scheme", "fused_add_norm", "use_mambapy", "n_layer", "d_model", "pad_vocab_size_multiple",
        "output_hidden_states", "output_attentions", "return_dict", "use_return_dict", "is_encoder_decoder",
        "auto_map", "quantization_config", "id2label", "label2id", "problem_type", "task_specific_params",
        "max_position_embeddings", "tokenizer_class", "attn_cfg", "sep_token_id", "unk_token_id",
    };

    /// <summary>Reads and validates a config file.</summary>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    /// <exception cref="ConfigFormatException">Malformed config (message names file and field).</exception>
    /// <exception cref="UnsupportedModelException">A valid config this library cannot run.</exception>
    public static MambaConfig Load(string path) => LoadDetailed(path).Config;

    /// <summary>Reads and validates a config file, with its layout and ignored fields.</summary>
    public static LoadedConfig LoadDetailed(string path)
    {
        path = Path.GetFullPath(path);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"model config not found: {path}", path);
        }
        return Parse(File.ReadAllText(path), path);
    }

    /// <summary>Parses config JSON; <paramref name="file"/> is used in messages.</summary>
    public static LoadedConfig Parse(string json, string file)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(ConfigFields.QuoteNonFiniteLiterals(json), new JsonDocumentOptions { AllowTrailingCommas = true });
        }
        catch (JsonException e)
        {
            throw new ConfigFormatException(file, null, $"not valid JSON: {e.Message}", e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new ConfigFormatException(file, null, $"expected a JSON object, got a {doc.RootElement.ValueKind}");
            }
            var f = new ConfigFields(file, doc.RootElement);
            var modelType = f.String("model_type");
            MambaConfig config;
            ConfigLayout layout;
            switch (modelType)
            {
                case "mamba":
                    config = HuggingFaceMamba1(f);
                    layout = ConfigLayout.HuggingFace;
                    break;
                case "mamba2":
                    config = HuggingFaceMamba2(f);
                    layout = ConfigLayout.HuggingFace;
                    break;
                case null when f.Has("d_model") && f.Has("n_layer"):
                    config = StateSpaces(f);
                    layout = ConfigLayout.StateSpaces;
                    break;
                case null:
                    throw new ConfigFormatException(file, "model_type",
                        "missing, and the file is not a state-spaces config either (no d_model and n_layer); expected model_type \"mamba\" or \"mamba2\"");
                default:
                    throw new ConfigFormatException(file, "model_type", $"unknown model type \"{modelType}\"; supported: \"mamba\", \"mamba2\" (and state-spaces configs without model_type)");
            }
            Validate(config, file);
            var ignored = f.Names.Where(n => !f.Read.Contains(n) && !Bookkeeping.Contains(n)).ToList();
            return new LoadedConfig(config, layout, file, ignored);
        }
    }

    private static void RequireSilu(ConfigFields f, string field)
    {
        var act = f.String(field);
        if (act is not null and not "silu" and not "swish")
        {
            throw new UnsupportedModelException(f.File, f.FieldName(field), $"activation \"{act}\" is not supported (only silu)");
        }
    }

    private static void RejectIfPresent(ConfigFields f, string field, string what)
    {
        if (f.Has(field))
        {
            f.Raw(field);
            throw new UnsupportedModelException(f.File, f.FieldName(field), what);
        }
    }

    private static void ReadCommonHuggingFace(ConfigFields f)
    {
        RequireSilu(f, "hidden_act");
        RejectIfPresent(f, "mixer_rms_eps", "extra RMSNorms on B, C and dt (falcon-mamba) are not supported");
    }

    private static (int? Bos, int? Eos, int? Pad) TokenIds(ConfigFields f) =>
        (f.OptionalInt("bos_token_id"), f.OptionalInt("eos_token_id"), f.OptionalInt("pad_token_id"));

    private static int HiddenSize(ConfigFields f) => f.Has("hidden_size") || !f.Has("d_model") ? f.Int("hidden_size", min: 1) : f.Int("d_model", min: 1);

    private static int NumLayers(ConfigFields f) =>
        f.Has("num_hidden_layers") || !f.Has("n_layer") ? f.Int("num_hidden_layers", min: 1) : f.Int("n_layer", min: 1);

    private static int IntermediateSize(ConfigFields f, int hidden)
    {
        var fromExpand = f.Has("expand") ? (int)(f.Double("expand") * hidden) : (int?)null;
        if (f.Has("intermediate_size"))
        {
            var given = f.Int("intermediate_size", min: 1);
            if (fromExpand is { } e && e != given)
            {
                throw f.Error("intermediate_size", $"{given} disagrees with expand * hidden_size = {e}");
            }
            return given;
        }
        return fromExpand ?? 2 * hidden;
    }

    private static MambaConfig HuggingFaceMamba1(ConfigFields f)
    {
        ReadCommonHuggingFace(f);
        f.Raw("rms_norm"); // written by older transformers, but its Mamba-1 always uses RMSNorm
        var hidden = HiddenSize(f);
        var ids = TokenIds(f);
        return new MambaConfig
        {
            Family = MambaFamily.Mamba1,
            HiddenSize = hidden,
            NumLayers = NumLayers(f),
            VocabSize = f.Int("vocab_size", min: 1),
            StateSize = f.Int("state_size", min: 1),
            IntermediateSize = IntermediateSize(f, hidden),
            ConvKernel = f.Int("conv_kernel", 4, min: 1),
            TimeStepRank = TimeStepRank(f, "time_step_rank", hidden),
            NormEpsilon = f.Double("layer_norm_epsilon", 1e-5),
            ResidualInFp32 = f.Bool("residual_in_fp32", true),
            TieWordEmbeddings = f.Bool("tie_word_embeddings", true),
            UseBias = f.Bool("use_bias", false),
            UseConvBias = f.Bool("use_conv_bias", true),
            BosTokenId = ids.Bos,
            EosTokenId = ids.Eos,
            PadTokenId = ids.Pad,
        };
    }

    private static MambaConfig HuggingFaceMamba2(ConfigFields f)
    {
        ReadCommonHuggingFace(f);
        if (!f.Bool("rms_norm", true))
        {
            throw new UnsupportedModelException(f.File, "rms_norm", "Mamba-2 without the gated RMSNorm is not supported");
        }
        f.Raw("time_step_rank"); // unused by Mamba-2
        var hidden = HiddenSize(f);
        var ids = TokenIds(f);
        return new MambaConfig
        {
            Family = MambaFamily.Mamba2,
            HiddenSize = hidden,
            NumLayers = NumLayers(f),
            VocabSize = f.Int("vocab_size", min: 1),
            StateSize = f.Int("state_size", min: 1),
            IntermediateSize = IntermediateSize(f, hidden),
            ConvKernel = f.Int("conv_kernel", 4, min: 1),
            NumHeads = f.Int("num_heads", min: 1),
            HeadDim = f.Int("head_dim", min: 1),
            NumGroups = f.Int("n_groups", 1, min: 1),
            ChunkSize = f.Int("chunk_size", 256, min: 1),
            TimeStepLimit = TimeStepLimit(f, "time_step_limit"),
            NormBeforeGate = f.Bool("norm_before_gate", false),
            NormEpsilon = f.Double("layer_norm_epsilon", 1e-5),
            ResidualInFp32 = f.Bool("residual_in_fp32", true),
            TieWordEmbeddings = f.Bool("tie_word_embeddings", false),
            UseBias = f.Bool("use_bias", false),
            UseConvBias = f.Bool("use_conv_bias", true),
            BosTokenId = ids.Bos,
            EosTokenId = ids.Eos,
            PadTokenId = ids.Pad,
        };
    }

    /// <summary>ssm_cfg keys the reference Mamba-1 / Mamba-2 mixers accept that do not change inference.</summary>
    private static readonly HashSet<string> SsmInitOnly = new(StringComparer.Ordinal)
    {
        "layer", "dt_min", "dt_max", "dt_init", "dt_scale", "dt_init_floor", "dt_limit", "A_init_range", "use_fast_path",
        "layer_idx", "device", "dtype", "process_group", "sequence_parallel", "use_mem_eff_path",
    };

    private static readonly HashSet<string> Mamba1SsmKeys = new(StringComparer.Ordinal)
    {
        "d_state", "d_conv", "expand", "dt_rank", "bias", "conv_bias",
    };

    private static readonly HashSet<string> Mamba2SsmKeys = new(StringComparer.Ordinal)
    {
        "d_state", "d_conv", "expand", "headdim", "ngroups", "chunk_size", "bias", "conv_bias", "rmsnorm",
        "norm_before_gate", "d_ssm", "D_has_hdim", "activation", "conv_init",
    };

    private static MambaConfig StateSpaces(ConfigFields f)
    {
        var hidden = f.Int("d_model", min: 1);
        var layers = f.Int("n_layer", min: 1);
        var vocab = f.Int("vocab_size", min: 1);
        var padMultiple = f.Int("pad_vocab_size_multiple", 8, min: 1);
        var padded = vocab % padMultiple == 0 ? vocab : vocab + padMultiple - vocab % padMultiple;
        if (f.Int("d_intermediate", 0, min: 0) > 0)
        {
            throw new UnsupportedModelException(f.File, "d_intermediate", "MLP blocks after the mixer (d_intermediate > 0) are not supported");
        }
        if (f.Raw("attn_layer_idx") is { ValueKind: JsonValueKind.Array } attn && attn.GetArrayLength() > 0)
        {
            throw new UnsupportedModelException(f.File, "attn_layer_idx", "hybrid models with attention layers are not supported");
        }
        if (!f.Bool("rms_norm", true))
        {
            throw new UnsupportedModelException(f.File, "rms_norm", "LayerNorm blocks (rms_norm: false) are not supported; only RMSNorm");
        }
        f.Raw("fused_add_norm");
        var ssm = f.Object("ssm_cfg");
        var layer = ssm?.String("layer") ?? "Mamba1";
        var common = new MambaConfig
        {
            Family = MambaFamily.Mamba1,
            HiddenSize = hidden,
            NumLayers = layers,
            VocabSize = padded,
            UnpaddedVocabSize = vocab,
            StateSize = 16,
            IntermediateSize = 2 * hidden,
            ConvKernel = 4,
            ResidualInFp32 = f.Bool("residual_in_fp32", true),
            TieWordEmbeddings = f.Bool("tie_embeddings", true),
        };
        return layer switch
        {
            "Mamba1" => StateSpacesMamba1(f, ssm, common),
            "Mamba2" => StateSpacesMamba2(f, ssm!, common),
            _ => throw new ConfigFormatException(f.File, "ssm_cfg.layer", $"unknown layer \"{layer}\"; expected \"Mamba1\" or \"Mamba2\""),
        };
    }

    private static void RejectUnknownSsmKeys(ConfigFields ssm, HashSet<string> known)
    {
        foreach (var name in ssm.Names)
        {
            if (!known.Contains(name) && !SsmInitOnly.Contains(name))
            {
                throw ssm.Error(name, "unknown ssm_cfg key (the reference mixer does not accept it)");
            }
        }
    }

    private static MambaConfig StateSpacesMamba1(ConfigFields f, ConfigFields? ssm, MambaConfig common)
    {
        if (ssm is null)
        {
            return common with { TimeStepRank = (common.HiddenSize + 15) / 16 };
        }
        RejectUnknownSsmKeys(ssm, Mamba1SsmKeys);
        var inner = (int)(ssm.Double("expand", 2) * common.HiddenSize);
        return common with
        {
            StateSize = ssm.Int("d_state", 16, min: 1),
            ConvKernel = ssm.Int("d_conv", 4, min: 1),
            IntermediateSize = inner,
            TimeStepRank = TimeStepRank(ssm, "dt_rank", common.HiddenSize),
            UseBias = ssm.Bool("bias", false),
            UseConvBias = ssm.Bool("conv_bias", true),
        };
    }

    private static MambaConfig StateSpacesMamba2(ConfigFields f, ConfigFields ssm, MambaConfig common)
    {
        RejectUnknownSsmKeys(ssm, Mamba2SsmKeys);
        var inner = (int)(ssm.Double("expand", 2) * common.HiddenSize);
        if (ssm.OptionalInt("d_ssm") is { } dSsm && dSsm != inner)
        {
            throw new UnsupportedModelException(f.File, "ssm_cfg.d_ssm", $"an SSM narrower than the mixer (d_ssm {dSsm} != d_inner {inner}) is not supported");
        }
        if (ssm.Bool("D_has_hdim", false))
        {
            throw new UnsupportedModelException(f.File, "ssm_cfg.D_has_hdim", "per-channel D (D_has_hdim: true) is not supported");
        }
        if (!ssm.Bool("rmsnorm", true))
        {
            throw new UnsupportedModelException(f.File, "ssm_cfg.rmsnorm", "Mamba-2 without the gated RMSNorm is not supported");
        }
        var act = ssm.String("activation");
        if (act is not null and not "silu" and not "swish")
        {
            throw new UnsupportedModelException(f.File, "ssm_cfg.activation", $"activation \"{act}\" is not supported (only silu)");
        }
        var headDim = ssm.Int("headdim", 64, min: 1);
        if (inner % headDim != 0)
        {
            throw ssm.Error("headdim", $"{headDim} does not divide d_inner = expand * d_model = {inner}");
        }
        return common with
        {
            Family = MambaFamily.Mamba2,
            StateSize = ssm.Int("d_state", 128, min: 1),
            ConvKernel = ssm.Int("d_conv", 4, min: 1),
            IntermediateSize = inner,
            HeadDim = headDim,
            NumHeads = inner / headDim,
            NumGroups = ssm.Int("ngroups", 1, min: 1),
            ChunkSize = ssm.Int("chunk_size", 256, min: 1),
            TimeStepLimit = TimeStepLimit(ssm, "dt_limit"),
            NormBeforeGate = ssm.Bool("norm_before_gate", false),
            UseBias = ssm.Bool("bias", false),
            UseConvBias = ssm.Bool("conv_bias", true),
        };
    }

    private static int TimeStepRank(ConfigFields f, string field, int hidden)
    {
        var raw = f.Raw(field);
        if (raw is null || raw.Value.ValueKind == JsonValueKind.String && raw.Value.GetString() == "auto")
        {
            return (hidden + 15) / 16; // ceil(hidden / 16)
        }
        return f.Int(field, min: 1);
    }

    private static (float Min, float Max) TimeStepLimit(ConfigFields f, string field)
    {
        if (f.Raw(field) is not { } raw)
        {
            return (0f, float.PositiveInfinity);
        }
        if (raw.ValueKind != JsonValueKind.Array || raw.GetArrayLength() != 2)
        {
            throw f.Error(field, "expected a pair [min, max]");
        }
        var min = f.ToDouble(field + "[0]", raw[0]);
        var max = f.ToDouble(field + "[1]", raw[1]);
        if (double.IsNaN(min) || double.IsNaN(max) || min < 0 || max < min)
        {
            throw f.Error(field, $"[{min}, {max}] is not a valid range (0 <= min <= max)");
        }
        return ((float)min, (float)max);
    }

    /// <summary>Cross-field checks shared by every layout.</summary>
    private static void Validate(MambaConfig c, string file)
    {
        if (c.NormEpsilon <= 0 || double.IsNaN(c.NormEpsilon))
        {
            throw new ConfigFormatException(file, "layer_norm_epsilon", $"must be positive, got {c.NormEpsilon}");
        }
        if (c.Family == MambaFamily.Mamba2)
        {
            if ((long)c.NumHeads * c.HeadDim != c.IntermediateSize)
            {
                throw new ConfigFormatException(file, "num_heads",
                    $"num_heads {c.NumHeads} * head_dim {c.HeadDim} = {(long)c.NumHeads * c.HeadDim} differs from the mixer width expand * hidden_size = {c.IntermediateSize}");
            }
            if (c.NumHeads % c.NumGroups != 0)
            {
                throw new ConfigFormatException(file, "n_groups", $"{c.NumGroups} groups do not divide {c.NumHeads} heads");
            }
        }
        if (c.Family == MambaFamily.Mamba1 && c.TimeStepRank <= 0)
        {
            throw new ConfigFormatException(file, "time_step_rank", "must be positive");
        }
    }
}
