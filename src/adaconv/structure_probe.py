"""The structure probe: does a model carry the *shapes* of a style into its output, or only its statistics?

AdaConv's claim (Chandran et al. 2021, the circles-and-squares figure) is that predicted kernels transfer local
structure that AdaIN's per-channel statistics cannot. The probe style is a generated black-and-white image of circles
and squares; two statistics of the luminance Y (central-difference gradients after a [1 2 1] smoothing, i.e. Sobel / 8)
say how much of its structure an image has:

- sharp-edge density: the fraction of pixels whose gradient magnitude is at least ``EDGE_THRESHOLD`` (0.25 per
  pixel, i.e. a black-to-white step spread over at most two pixels). The probe is mostly such edges; a photo has
  few; blurring removes them. Transferring the probe's crisp outlines raises it, transferring only grey levels
  does not.
- orientation match: 1 − total variation between the gradient-energy-weighted orientation histograms (18 bins over
  0–180°) of the image and the probe: squares put their energy on 0° and 90°, circles spread it evenly.

Both depend on resolution (an upscaled image has softer edges), so ``probe_statistics`` first brings every image
to ``PROBE_SIZE`` × ``PROBE_SIZE`` (short side resized, centre crop), the size of the probe itself. The evaluate
command reports both for the probe itself, the content photos and the stylised outputs.
"""

from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from .imageio import pil_to_tensor
from .preprocessing import center_crop, resize_short_side

EDGE_THRESHOLD = 0.25
ORIENTATION_BINS = 18
PROBE_SIZE = 512
PROBE_SEED = 2021


def probe_image(size: int = PROBE_SIZE, seed: int = PROBE_SEED, shapes: str = "both") -> Image.Image:
    """Black circles and squares (filled and outlined) on white, deterministic for (size, seed).

    ``shapes``: "both", "circles" or "squares" (single-shape images are used to test the orientation statistic).
    """
    if shapes not in ("both", "circles", "squares"):
        raise ValueError(f"shapes must be both, circles or squares, got {shapes!r}")
    rng = random.Random(seed)
    image = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(image)
    count = max(4, round(28 * (size / 512) ** 2))
    for index in range(count):
        radius = rng.uniform(0.03, 0.09) * size
        x, y = rng.uniform(0, size), rng.uniform(0, size)
        box = [x - radius, y - radius, x + radius, y + radius]
        kind = shapes if shapes != "both" else ("circles", "squares")[index % 2]
        filled = rng.random() < 0.5
        width = max(2, round(size / 128))
        if kind == "circles":
            draw.ellipse(box, fill=0 if filled else None, outline=0, width=width)
        else:
            draw.rectangle(box, fill=0 if filled else None, outline=0, width=width)
    return image.convert("RGB")


def _gradients(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[3, H, W] in [0, 1] -> (gx, gy) of the luminance, per pixel, 'valid' region."""
    luma = (image.double() * torch.tensor((0.299, 0.587, 0.114), dtype=torch.float64).view(3, 1, 1)).sum(0)
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=torch.float64) / 8
    x = luma[None, None]
    gx = F.conv2d(x, sobel[None, None])[0, 0]
    gy = F.conv2d(x, sobel.T.contiguous()[None, None])[0, 0]
    return gx, gy


def sharp_edge_density(image: torch.Tensor) -> float:
    gx, gy = _gradients(image)
    return float((torch.hypot(gx, gy) >= EDGE_THRESHOLD).double().mean())


def orientation_histogram(image: torch.Tensor, bins: int = ORIENTATION_BINS) -> torch.Tensor:
    """Gradient-energy-weighted histogram of edge orientations in [0°, 180°), normalised to sum 1."""
    gx, gy = _gradients(image)
    energy = (gx ** 2 + gy ** 2).flatten()
    angle = torch.atan2(gy, gx).flatten() % math.pi
    index = (angle / math.pi * bins).long().clamp_max(bins - 1)
    histogram = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, energy)
    return histogram / histogram.sum().clamp_min(1e-12)


def orientation_match(image: torch.Tensor, reference: torch.Tensor) -> float:
    return float(1 - 0.5 * (orientation_histogram(image) - orientation_histogram(reference)).abs().sum())


def probe_statistics(image: torch.Tensor, probe: torch.Tensor) -> dict[str, float]:
    """Both structure statistics of ``image`` ([3, H, W] in [0, 1]) against the probe, at ``PROBE_SIZE``."""
    image, probe = _at_probe_size(image), _at_probe_size(probe)
    return {"sharp_edge_density": sharp_edge_density(image), "orientation_match": orientation_match(image, probe)}


def _at_probe_size(image: torch.Tensor) -> torch.Tensor:
    if image.shape[-2:] == (PROBE_SIZE, PROBE_SIZE):
        return image
    return center_crop(resize_short_side(image.float(), PROBE_SIZE), PROBE_SIZE, PROBE_SIZE).clamp(0, 1)


def probe_tensor(size: int = PROBE_SIZE) -> torch.Tensor:
    return pil_to_tensor(probe_image(size))
