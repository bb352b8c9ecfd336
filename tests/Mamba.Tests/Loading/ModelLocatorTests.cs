using System.Text;
using Mamba.Loading;
using Mamba.Loading.Hub;
using Mamba.Models;

namespace Mamba.Tests.Loading;

/// <summary>From a user's string (directory, file or hub id) to config, validated weights and tokenizer.</summary>
[TestFixture]
public class ModelLocatorTests
{
    private static void WriteTinyModel(TempDir dir, bool tokenizer = true)
    {
        dir.Write("config.json", LoadingFixtures.HfMamba1Config);
        LoadingFixtures.FullCheckpoint(ConfigLoader.Parse(LoadingFixtures.HfMamba1Config, "config.json").Config, TensorNaming.HuggingFace, new Random(8))
            .Save(dir.File("model.safetensors"));
        if (tokenizer)
        {
            dir.Write("tokenizer.json", "{}");
        }
    }

    [Test]
    public void LocalDirectoryConfigFileAndWeightsFile()
    {
        using var dir = new TempDir();
        WriteTinyModel(dir);
        foreach (var input in new[] { dir.Path, dir.File("config.json"), dir.File("model.safetensors") })
        {
            var files = ModelLocator.Locate(input);
            Assert.That(files.Directory, Is.EqualTo(dir.Path), input);
            Assert.That(files.ConfigPath, Is.EqualTo(dir.File("config.json")));
            Assert.That(files.WeightsPath, Is.EqualTo(dir.File("model.safetensors")));
            Assert.That(files.TokenizerPath, Is.EqualTo(dir.File("tokenizer.json")));
            Assert.That(files.TokenizerConfigPath, Is.Null);
            Assert.That(files.RepoId, Is.Null);
        }
    }

    [Test]
    public void LoadValidatesEverything()
    {
        using var dir = new TempDir();
        WriteTinyModel(dir, tokenizer: false);
        using var model = LoadedModel.Load(dir.Path);
        Assert.That(model.Config.Family, Is.EqualTo(MambaFamily.Mamba1));
        Assert.That(model.Files.TokenizerPath, Is.Null);
        Assert.That(model.Weights.Get(1, "x_proj.weight").Shape, Is.EqualTo(new long[] { 10, 16 }));

        // A config that disagrees with the weights fails before anything is computed.
        dir.Write("config.json", LoadingFixtures.HfMamba1Config.Replace("\"state_size\": 4", "\"state_size\": 8", StringComparison.Ordinal));
        var e = Assert.Throws<CheckpointFormatException>(() => LoadedModel.Load(dir.Path))!;
        Assert.That(e.Message, Does.Contain("A_log").And.Contain(dir.File("model.safetensors")));
    }

    [Test]
    public void BadInputsAreNamed()
    {
        using var dir = new TempDir();
        Assert.Throws<FileNotFoundException>(() => ModelLocator.Locate(dir.File("nope")));
        Assert.Throws<FileNotFoundException>(() => ModelLocator.Locate("./nope/model"));
        Assert.Throws<FileNotFoundException>(() => ModelLocator.Locate(dir.Path), "no weights");
        dir.Write("model.safetensors", new SafetensorsWriter().Add("x", [1f], [1]).ToBytes());
        var e = Assert.Throws<FileNotFoundException>(() => ModelLocator.Locate(dir.Path))!;
        Assert.That(e.Message, Does.Contain("config.json"));
        Assert.Throws<ArgumentException>(() => ModelLocator.Locate("not a model id!"));
        Assert.Throws<ArgumentException>(() => ModelLocator.Locate("owner--x/name"));
    }

    [Test]
    public async Task HubIdWithRevisionDownloadsAndLoads()
    {
        using var hub = new FakeHub();
        using var source = new TempDir();
        WriteTinyModel(source);
        hub.Add("tiny-org/tiny-mamba", "config.json", File.ReadAllBytes(source.File("config.json")));
        hub.Add("tiny-org/tiny-mamba", "tokenizer.json", Encoding.UTF8.GetBytes("{}"));
        hub.Add("tiny-org/tiny-mamba", "model.safetensors", File.ReadAllBytes(source.File("model.safetensors")), lfs: true);
        using var cache = new TempDir();
        using var client = new HubClient(new HubOptions { Endpoint = hub.Endpoint, CacheDirectory = cache.Path });

        using var model = await LoadedModel.LoadAsync($"tiny-org/tiny-mamba@{hub.Commit}", client);
        Assert.That(model.Files.RepoId, Is.EqualTo("tiny-org/tiny-mamba"));
        Assert.That(model.Files.Commit, Is.EqualTo(hub.Commit));
        Assert.That(model.Files.TokenizerPath, Does.StartWith(cache.Path));
        using var local = LoadedModel.Load(source.Path);
        Assert.That(model.Weights.Get(0, "in_proj.weight").ToFloatArray(), Is.EqualTo(local.Weights.Get(0, "in_proj.weight").ToFloatArray()));
    }
}
