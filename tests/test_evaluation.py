"""The quality metrics on cases whose answer is known."""

import pytest
import torch

from adaconv.evaluation import (
    METRICS,
    color_distance,
    describe,
    luminance,
    measuring_network,
    score,
    ssim,
    statistics_distance,
    summarize,
)
from adaconv.imageio import to_tensor

SIZE = 128


@pytest.fixture(scope="module")
def content(data_dir):
    return describe(to_tensor(data_dir / "bench" / "content" / "00.png"), size=SIZE)


@pytest.fixture(scope="module")
def style(data_dir):
    return describe(to_tensor(data_dir / "bench" / "style" / "00.png"), size=SIZE)


def test_identical_images_have_zero_distances(content):
    metrics = score(content, content, content)
    assert metrics["content_error"] == 0 and metrics["style_distance"] == 0 and metrics["gram_distance"] == 0
    assert metrics["color_distance"] == 0 and metrics["ssim"] == pytest.approx(1.0)


def test_content_as_output_keeps_content_but_misses_style(content, style):
    metrics = score(content.image, content, style)
    assert metrics["content_error"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["style_distance"] > 0.1 and metrics["gram_distance"] > 0.1 and metrics["color_distance"] > 0.1


def test_style_as_output_matches_style_but_not_content(content, style):
    metrics = score(style.image, content, style)
    assert metrics["style_distance"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["gram_distance"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["content_error"] > 0.5 and metrics["ssim"] < 0.5


def test_statistics_moved_toward_the_style_lower_the_style_distance_monotonically(content, style):
    distances = []
    for t in torch.linspace(0, 1, 6):
        means = [(1 - t) * c + t * s for c, s in zip(content.means, style.means)]
        stds = [(1 - t) * c + t * s for c, s in zip(content.stds, style.stds)]
        # renormalise the content's features to those statistics and measure them again from the features
        moved = [((f.flatten(1).double() - cm[:, None]) / cs.clamp_min(1e-8)[:, None]) * s[:, None] + m[:, None]
                 for f, cm, cs, m, s in zip(content.features, content.means, content.stds, means, stds)]
        distances.append(statistics_distance([x.mean(1) for x in moved], [x.std(1, unbiased=False) for x in moved],
                                             style.means, style.stds))
    assert distances[0] > 0.1 and distances[-1] == pytest.approx(0.0, abs=1e-6)
    assert all(a > b for a, b in zip(distances, distances[1:]))


def test_ssim_falls_with_noise_and_colour_distance_is_bounded(content):
    y = luminance(content.image)
    generator = torch.Generator().manual_seed(0)
    values = [ssim((y + sigma * torch.randn(y.shape, generator=generator)).clamp(0, 1), y)
              for sigma in (0.02, 0.1, 0.3)]
    assert values[0] > values[1] > values[2] > 0
    black, white = describe(torch.zeros(3, 64, 64), size=64), describe(torch.ones(3, 64, 64), size=64)
    assert color_distance(black, white) == pytest.approx(1.0)


def test_measuring_network_is_the_raw_vgg_not_the_models_encoder():
    assert measuring_network().normalisation_id == "raw"


def test_summarize_gives_mean_and_median():
    records = [{m: float(i) for m in METRICS} for i in (1, 2, 6)]
    summary = summarize(records)
    assert summary["ssim"] == {"mean": 3.0, "median": 2.0}
