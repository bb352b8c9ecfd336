using System.Text.Json.Nodes;
using Mamba.Tokenization;

namespace Mamba.Tests.Tokenization;

/// <summary>Loading tokenizer.json and tokenizer_config.json: layouts, token ids, and clear errors for bad files.</summary>
[TestFixture]
public class TokenizerFileTests
{
    private string _dir = null!;

    [SetUp]
    public void CreateScratchDirectory()
    {
        _dir = Path.Combine(Path.GetTempPath(), "mamba-tokenizer-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
    }

    [TearDown]
    public void RemoveScratchDirectory() => Directory.Delete(_dir, recursive: true);

    private static JsonObject Reference() => JsonNode.Parse(File.ReadAllText(TokenizerTestData.TokenizerJson))!.AsObject();

    private string Write(string name, string text)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllText(path, text);
        return path;
    }

    private string Write(JsonObject json) => Write("tokenizer.json", json.ToJsonString());

    private TokenizerFormatException LoadFails(string tokenizerJson, string? config = null)
    {
        var e = Assert.Throws(Is.InstanceOf<TokenizerFormatException>(), () => MambaTokenizer.FromFile(tokenizerJson, config))!;
        return (TokenizerFormatException)e;
    }

    [Test]
    public void ReportsVocabularyAndTokenStrings()
    {
        var tokenizer = TokenizerTestData.Tokenizer;
        var json = Reference();
        var maxId = json["model"]!["vocab"]!.AsObject().Max(p => (int)p.Value!);
        maxId = Math.Max(maxId, json["added_tokens"]!.AsArray().Max(t => (int)t!["id"]!));
        Assert.That(tokenizer.VocabSize, Is.EqualTo(maxId + 1));
        Assert.That(tokenizer.TokenToString(0), Is.EqualTo("<|endoftext|>"));
        Assert.That(tokenizer.TokenToString(1), Is.EqualTo("<|padding|>"));
        var hello = tokenizer.Encode(" the");
        Assert.That(hello, Has.Count.EqualTo(1), "' the' is a single token of any English-trained vocabulary");
        Assert.That(tokenizer.TokenToString(hello[0]), Is.EqualTo("Ġthe"));
        Assert.That(tokenizer.TokenToString(-1), Is.Null);
        Assert.That(tokenizer.TokenToString(tokenizer.VocabSize), Is.Null);
        Assert.That(tokenizer.TokenToId("Ġthe"), Is.EqualTo(hello[0]));
        Assert.That(tokenizer.TokenToId("<|padding|>"), Is.EqualTo(1));
        Assert.That(tokenizer.TokenToId("    "), Is.EqualTo(tokenizer.Encode("    ").Single()), "an added whitespace token");
        Assert.That(tokenizer.TokenToId("no such token"), Is.Null);
        Assert.That(tokenizer.IsSpecialToken(0), Is.True);
        Assert.That(tokenizer.IsSpecialToken(hello[0]), Is.False);
    }

    [Test]
    public void BosAndEosDefaultToThePostProcessorAndEndOfText()
    {
        var tokenizer = TokenizerTestData.Tokenizer;
        Assert.That(tokenizer.BosTokenId, Is.EqualTo(0));
        Assert.That(tokenizer.EosTokenId, Is.EqualTo(0));
        Assert.That(tokenizer.Encode("hi", addSpecialTokens: true), Is.EqualTo(new[] { 0 }.Concat(tokenizer.Encode("hi"))));
    }

    [Test]
    public void ShippedModelTokenizerLoadsWithEndOfTextAsBosAndEos()
    {
        var path = Path.Combine(TestSupport.RepoRoot, "models", "mamba2-pystdlib", "tokenizer.json");
        var tokenizer = MambaTokenizer.FromFile(path);
        var modelConfig = JsonNode.Parse(File.ReadAllText(Path.Combine(TestSupport.RepoRoot, "models", "mamba2-pystdlib", "config.json")))!;
        Assert.That(tokenizer.VocabSize, Is.LessThanOrEqualTo((int)modelConfig["vocab_size"]!));
        Assert.That(tokenizer.BosTokenId, Is.EqualTo((int)modelConfig["bos_token_id"]!));
        Assert.That(tokenizer.EosTokenId, Is.EqualTo((int)modelConfig["eos_token_id"]!));
        Assert.That(tokenizer.Encode("def f():", addSpecialTokens: true), Is.EqualTo(tokenizer.Encode("def f():")),
            "a ByteLevel post-processor adds no tokens");
    }

    [Test]
    public void ConfigOverridesBosEosAndWhetherTheyAreAdded()
    {
        var path = Write(Reference());
        var config = Write("tokenizer_config.json",
            """{"add_bos_token": false, "add_eos_token": true, "bos_token": {"__type": "AddedToken", "content": "<|padding|>"}, "eos_token": "<|endoftext|>"}""");
        var tokenizer = MambaTokenizer.FromFile(path, config);
        Assert.That(tokenizer.BosTokenId, Is.EqualTo(1));
        Assert.That(tokenizer.EosTokenId, Is.EqualTo(0));
        var plain = tokenizer.Encode("hi there");
        Assert.That(tokenizer.Encode("hi there", addSpecialTokens: true), Is.EqualTo(plain.Append(0)));

        var neoxStyle = MambaTokenizer.FromFile(path, Write("neox_config.json", """{"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}"""));
        Assert.That(neoxStyle.Encode("hi there", addSpecialTokens: true), Is.EqualTo(new[] { 0 }.Concat(plain)), "no add_*_token: the file's post-processor stays");
    }

    [Test]
    public void NoPostProcessorMeansNothingIsAdded()
    {
        var json = Reference();
        json["post_processor"] = JsonNode.Parse("""{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}""");
        var tokenizer = MambaTokenizer.FromFile(Write(json));
        Assert.That(tokenizer.Encode("hi", addSpecialTokens: true), Is.EqualTo(tokenizer.Encode("hi")));
        Assert.That(tokenizer.EosTokenId, Is.EqualTo(0), "<|endoftext|> is the conventional end of text");
    }

    [Test]
    public void MergesInTheOtherLayoutGiveTheSameIds()
    {
        // Newer files store merges as ["a", "b"] pairs, older ones as "a b" strings; rewrite whichever this is.
        var json = Reference();
        var merges = json["model"]!["merges"]!.AsArray();
        var pairs = merges.Select(m => m is JsonArray pair ? ((string)pair[0]!, (string)pair[1]!) : Split((string)m!)).ToList();
        var asPairs = merges[0] is not JsonArray;
        json["model"]!["merges"] = new JsonArray(pairs
            .Select(p => asPairs ? (JsonNode)new JsonArray(p.Item1, p.Item2) : JsonValue.Create(p.Item1 + " " + p.Item2)!)
            .ToArray());
        var tokenizer = MambaTokenizer.FromFile(Write(json));
        foreach (var c in TokenizerTestData.EncodeCases(TokenizerTestData.NeoX))
        {
            Assert.That(tokenizer.Encode(c.Text), Is.EqualTo(c.Ids), c.ToString());
        }

        static (string, string) Split(string merge)
        {
            var space = merge.IndexOf(' ');
            return (merge[..space], merge[(space + 1)..]);
        }
    }

    [Test]
    public void DecodeRejectsIdsOutsideTheVocabulary()
    {
        var tokenizer = TokenizerTestData.Tokenizer;
        Assert.Throws<ArgumentOutOfRangeException>(() => tokenizer.Decode([5, tokenizer.VocabSize]));
        Assert.Throws<ArgumentOutOfRangeException>(() => tokenizer.Decode([-1]));
        Assert.Throws<ArgumentOutOfRangeException>(() => tokenizer.CreateStreamDecoder().Push(tokenizer.VocabSize + 7));
    }

    [Test]
    public void SkipsSpecialTokensOnlyWhenAsked()
    {
        var tokenizer = TokenizerTestData.Tokenizer;
        var ids = tokenizer.Encode("a<|endoftext|>b<|padding|>    c");
        Assert.That(ids, Does.Contain(0).And.Contain(1));
        Assert.That(tokenizer.Decode(ids), Is.EqualTo("a<|endoftext|>b<|padding|>    c"));
        Assert.That(tokenizer.Decode(ids, skipSpecialTokens: true), Is.EqualTo("ab    c"), "the 4-space added token is not special");
    }

    [Test]
    public void LoneSurrogatesEncodeAsReplacementCharacters()
    {
        var tokenizer = TokenizerTestData.Tokenizer;
        Assert.That(tokenizer.Encode("a\uD800b \uDC00 c\uD83D"), Is.EqualTo(tokenizer.Encode("a\uFFFDb \uFFFD c\uFFFD")));
        Assert.That(tokenizer.Encode("ok 😀"), Is.EqualTo(tokenizer.Encode("ok \uD83D\uDE00")), "a valid pair is kept");
    }

    [Test]
    public void FromDirectoryPicksUpTheConfigWhenPresent()
    {
        Write(Reference());
        Assert.That(MambaTokenizer.FromDirectory(_dir).Encode("x", addSpecialTokens: true)[0], Is.EqualTo(0), "the file's BOS template");
        Write("tokenizer_config.json", """{"add_bos_token": false, "eos_token": "<|padding|>"}""");
        var withConfig = MambaTokenizer.FromDirectory(_dir);
        Assert.That(withConfig.Encode("x", addSpecialTokens: true), Is.EqualTo(withConfig.Encode("x")));
        Assert.That(withConfig.EosTokenId, Is.EqualTo(1));
        var empty = Path.Combine(_dir, "empty");
        Directory.CreateDirectory(empty);
        var e = Assert.Throws<FileNotFoundException>(() => MambaTokenizer.FromDirectory(empty))!;
        Assert.That(e.Message, Does.Contain("no tokenizer.json in " + empty));
    }

    [Test]
    public void MissingFileNamesThePath()
    {
        var path = Path.Combine(_dir, "absent", "tokenizer.json");
        var e = Assert.Throws(Is.InstanceOf<IOException>(), () => MambaTokenizer.FromFile(path))!;
        Assert.That(e.Message, Does.Contain("tokenizer.json"));
    }

    [Test]
    public void MalformedJsonNamesTheFile()
    {
        var path = Write("tokenizer.json", """{"model": {"type": "BPE", "vocab": {"a": 0,}""");
        var e = LoadFails(path);
        Assert.That(e.FilePath, Is.EqualTo(path));
        Assert.That(e.Message, Does.StartWith(path).And.Contain("not valid JSON"));
    }

    private static IEnumerable<TestCaseData> BrokenFiles()
    {
        TestCaseData Case(string name, Action<JsonObject> change, string expected) =>
            new TestCaseData(change, expected).SetArgDisplayNames(name);
        yield return Case("top level array", j => j.Clear(), "missing \"model\"");
        yield return Case("no model", j => j.Remove("model"), "missing \"model\"");
        yield return Case("no vocab", j => j["model"]!.AsObject().Remove("vocab"), "missing \"vocab\"");
        yield return Case("vocab array", j => j["model"]!["vocab"] = new JsonArray(), "\"vocab\" is a Array");
        yield return Case("negative id", j => j["model"]!["vocab"]!["a"] = -3, "\"a\" has id -3");
        yield return Case("huge id", j => j["model"]!["vocab"]!["a"] = 2_000_000_000, "\"a\" has id 2000000000");
        yield return Case("huge added id", j => j["added_tokens"]![2]!["id"] = int.MaxValue, "added_tokens[2] (\"  \") has no \"id\" from 0 to");
        yield return Case("duplicate id", j => j["model"]!["vocab"]!["b"] = (int)j["model"]!["vocab"]!["a"]!, "gives id");
        yield return Case("merge not in vocab", j => j["model"]!["merges"]!.AsArray().Add(new JsonArray("a", "Ā€Ā")), "\"Ā€Ā\", which is not in model.vocab");
        yield return Case("merge string shape", j => j["model"]!["merges"]!.AsArray().Add("a b c"), "not two tokens separated by one space");
        yield return Case("merge number", j => j["model"]!["merges"]!.AsArray().Add(7), "expected \"a b\"");
        yield return Case("unk not in vocab", j => j["model"]!["unk_token"] = "<unk>", "unk_token \"<unk>\" is not in the vocabulary");
        yield return Case("added token without id", j => j["added_tokens"]!.AsArray().Add(new JsonObject { ["content"] = "<x>" }), "added_tokens[5] (\"<x>\") has no \"id\"");
        yield return Case("added token flag", j => j["added_tokens"]![0]!["special"] = "yes", "\"special\" is \"yes\", expected true or false");
        yield return Case("template without $A", j => j["post_processor"]!["single"]!.AsArray().RemoveAt(1), "does not contain the sequence $A");
        yield return Case("template unknown special", j => j["post_processor"]!["special_tokens"] = new JsonObject(), "no ids for \"<|endoftext|>\"");
    }

    [TestCaseSource(nameof(BrokenFiles))]
    public void MalformedFieldsAreNamed(Action<JsonObject> change, string expected)
    {
        var json = Reference();
        change(json);
        var path = Write(json);
        var e = LoadFails(path);
        Assert.That(e, Is.Not.InstanceOf<UnsupportedTokenizerException>());
        Assert.That(e.Message, Does.StartWith(path + ": ").And.Contain(expected));
    }

    private static IEnumerable<TestCaseData> UnsupportedFiles()
    {
        TestCaseData Case(string name, Action<JsonObject> change, string expected) =>
            new TestCaseData(change, expected).SetArgDisplayNames(name);
        yield return Case("unigram", j => j["model"] = JsonNode.Parse("""{"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0.0]]}"""), "model type 'Unigram' is not supported");
        yield return Case("wordpiece", j => j["model"]!["type"] = "WordPiece", "model type 'WordPiece' is not supported");
        yield return Case("metaspace", j => j["pre_tokenizer"] = JsonNode.Parse("""{"type": "Metaspace", "replacement": "▁"}"""), "pre_tokenizer type 'Metaspace' is not supported");
        yield return Case("split sequence", j => j["pre_tokenizer"] = JsonNode.Parse("""{"type": "Sequence", "pretokenizers": []}"""), "pre_tokenizer type 'Sequence' is not supported");
        yield return Case("no pre-tokenizer", j => j["pre_tokenizer"] = null, "pre_tokenizer is null");
        yield return Case("bert normalizer", j => j["normalizer"] = JsonNode.Parse("""{"type": "BertNormalizer"}"""), "normalizer type 'BertNormalizer' is not supported");
        yield return Case("wordpiece decoder", j => j["decoder"] = JsonNode.Parse("""{"type": "WordPiece", "prefix": "##"}"""), "decoder type 'WordPiece' is not supported");
        yield return Case("unknown post-processor", j => j["post_processor"] = JsonNode.Parse("""{"type": "Fancy"}"""), "post_processor type 'Fancy' is not supported");
        yield return Case("dropout", j => j["model"]!["dropout"] = 0.1, "dropout");
        yield return Case("subword prefix", j => j["model"]!["continuing_subword_prefix"] = "##", "continuing-subword prefix");
    }

    [TestCaseSource(nameof(UnsupportedFiles))]
    public void UnsupportedFeaturesAreNamed(Action<JsonObject> change, string expected)
    {
        var json = Reference();
        change(json);
        var path = Write(json);
        var e = LoadFails(path);
        Assert.That(e, Is.InstanceOf<UnsupportedTokenizerException>());
        Assert.That(e.Message, Does.StartWith(path + ": ").And.Contain(expected));
    }

    [Test]
    public void ConfigProblemsNameTheConfigFile()
    {
        var path = Write(Reference());
        var unknown = Write("unknown_bos.json", """{"bos_token": "<s>"}""");
        Assert.That(LoadFails(path, unknown).Message, Does.StartWith(unknown + ": ").And.Contain("bos_token \"<s>\" is not a token"));
        var badFlag = Write("bad_flag.json", """{"add_bos_token": "true"}""");
        Assert.That(LoadFails(path, badFlag).Message, Does.StartWith(badFlag + ": ").And.Contain("add_bos_token"));
        var notJson = Write("not_json.json", "{bos_token: <s>}");
        Assert.That(LoadFails(path, notJson).Message, Does.StartWith(notJson + ": ").And.Contain("not valid JSON"));
    }
}
