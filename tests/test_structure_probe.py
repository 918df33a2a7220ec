"""The structure probe: a generated circles-and-squares style and the statistics that detect its structure."""

import torch
import torch.nn.functional as F

from adaconv.imageio import pil_to_tensor
from adaconv.structure_probe import (
    ORIENTATION_BINS,
    orientation_histogram,
    orientation_match,
    probe_image,
    probe_statistics,
    sharp_edge_density,
)


def colour_matched_blur(image: torch.Tensor, sigma: float = 3.0) -> torch.Tensor:
    """Blurred, then given the original's per-channel mean and std: same colours, no crisp shapes."""
    radius = int(3 * sigma)
    taps = torch.exp(-torch.arange(-radius, radius + 1.0) ** 2 / (2 * sigma ** 2))
    kernel = (taps[:, None] * taps[None, :] / taps.sum() ** 2)[None, None]
    blurred = F.conv2d(F.pad(image[:, None], (radius,) * 4, mode="reflect"), kernel)[:, 0]
    mean, std = image.mean((1, 2), keepdim=True), image.std((1, 2), keepdim=True)
    matched = (blurred - blurred.mean((1, 2), keepdim=True)) / blurred.std((1, 2), keepdim=True) * std + mean
    return matched.clamp(0, 1)


def test_probe_is_deterministic_black_and_white():
    first, second = pil_to_tensor(probe_image(256)), pil_to_tensor(probe_image(256))
    assert torch.equal(first, second) and first.shape == (3, 256, 256)
    assert set(first.unique().tolist()) == {0.0, 1.0}


def test_probe_is_more_structured_than_its_colour_matched_blur():
    probe = pil_to_tensor(probe_image(256))
    blurred = colour_matched_blur(probe)
    assert sharp_edge_density(probe) > 0.02
    assert sharp_edge_density(blurred) < 0.1 * sharp_edge_density(probe)
    assert probe_statistics(probe, probe)["orientation_match"] == 1.0


def test_orientation_statistic_tells_squares_from_circles():
    squares = orientation_histogram(pil_to_tensor(probe_image(256, shapes="squares")))
    circles = orientation_histogram(pil_to_tensor(probe_image(256, shapes="circles")))
    axis_bins = [0, ORIENTATION_BINS // 2]
    assert squares[axis_bins].sum() > 0.8
    assert circles[axis_bins].sum() < 0.35 and circles.max() < 0.2
    probe = pil_to_tensor(probe_image(256))
    assert orientation_match(pil_to_tensor(probe_image(256, shapes="squares")), probe) < 1.0
