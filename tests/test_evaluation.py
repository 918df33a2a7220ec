"""The quality metrics on cases whose answer is known."""

import pytest
import torch

from adaconv.evaluation import (
    METRICS,
    coarse_ssim,
    color_distance,
    describe,
    describe_features,
    luminance,
    measure_features,
    measuring_network,
    measuring_setup,
    score,
    ssim,
    style_distance,
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
    assert metrics["coarse_ssim"] == pytest.approx(1.0)


def test_content_as_output_keeps_content_but_misses_style(content, style):
    metrics = score(content.image, content, style)
    assert metrics["content_error"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["style_distance"] > 0.1 and metrics["gram_distance"] > 0.1 and metrics["color_distance"] > 0.1


def test_style_as_output_matches_style_but_not_content(content, style):
    metrics = score(style.image, content, style)
    assert metrics["style_distance"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["gram_distance"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["content_error"] > 0.5 and metrics["ssim"] < 0.5


def test_features_moved_toward_the_style_statistics_lower_the_style_distance_monotonically(content, style):
    """AdaIN's α blend in feature space: each tap's statistics go from the content's (t=0) to the style's (t=1)."""
    features = measure_features(content.image)
    distances = []
    for t in torch.linspace(0, 1, 6, dtype=torch.float64):
        moved = []
        for feature, mean, std, style_mean, style_std in zip(features, content.means, content.stds,
                                                               style.means, style.stds):
            target_mean = ((1 - t) * mean + t * style_mean)[:, None, None]
            target_std = ((1 - t) * std + t * style_std)[:, None, None]
            normalised = (feature.double() - mean[:, None, None]) / std.clamp_min(1e-8)[:, None, None]
            moved.append(normalised * target_std + target_mean)
        distances.append(style_distance(describe_features(content.image, moved), style))
    assert distances[0] == pytest.approx(style_distance(content, style))
    assert distances[0] > 0.1 and distances[-1] == pytest.approx(0.0, abs=1e-6)
    assert all(a > b for a, b in zip(distances, distances[1:]))


def test_ssim_is_the_gaussian_window_definition_on_a_non_square_image():
    """The banded-matrix blur must equal the 11x11 Gaussian window applied directly (valid windows only)."""
    generator = torch.Generator().manual_seed(1)
    a = torch.rand(1, 40, 29, generator=generator, dtype=torch.float64)
    b = (a + 0.2 * torch.rand(1, 40, 29, generator=generator, dtype=torch.float64)).clamp(0, 1)
    coords = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-coords ** 2 / (2 * 1.5 ** 2))
    window = (g[:, None] * g[None, :] / g.sum() ** 2)[None, None]

    def blur(t):
        return torch.nn.functional.conv2d(t[None], window)

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2, blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    direct = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    assert ssim(a, b) == pytest.approx(float(direct.mean()), abs=1e-12)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="at least 11"):
        ssim(a[:, :8], b[:, :8])


def test_ssim_falls_with_noise_and_colour_distance_is_bounded(content):
    y = luminance(content.image)
    generator = torch.Generator().manual_seed(0)
    values = [ssim((y + sigma * torch.randn(y.shape, generator=generator)).clamp(0, 1), y)
              for sigma in (0.02, 0.1, 0.3)]
    assert values[0] > values[1] > values[2] > 0
    black, white = describe(torch.zeros(3, 64, 64), size=64), describe(torch.ones(3, 64, 64), size=64)
    assert color_distance(black, white) == pytest.approx(1.0)


def test_coarse_ssim_ignores_fine_texture_but_sees_moved_structure(content):
    """A 2-pixel checkerboard (texture finer than the 4x4 blocks) costs pixel SSIM and not coarse SSIM; the photo
    shifted by 8 pixels (its shapes moved, no texture added) costs coarse SSIM too."""
    y = luminance(content.image)
    rows, columns = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    checker = ((rows // 2 + columns // 2) % 2 * 2 - 1).to(y.dtype)  # ±1 in 2x2 squares: each 4x4 block sums to 0
    textured = y * 0.8 + 0.1 + 0.08 * checker  # kept inside [0, 1]: no clamping to break the block means
    reference = y * 0.8 + 0.1
    assert ssim(textured, reference) < 0.5
    assert coarse_ssim(textured, reference) == pytest.approx(1.0, abs=1e-9)
    shifted = torch.roll(reference, shifts=8, dims=-1)
    assert coarse_ssim(shifted, reference) < 0.8


def test_measuring_network_is_the_raw_vgg_not_the_models_encoder(content):
    assert measuring_network().normalisation_id == "raw"
    setup = measuring_setup()
    assert setup["normalisation"] == "raw" and setup["size"] == 512 and setup["metrics"] == list(METRICS)
    # only relu4_1 is kept as a map; the other taps are kept as statistics (64, 128, 256, 512 channels)
    assert content.content_features.shape == (512, SIZE // 8, SIZE // 8)
    assert [m.numel() for m in content.means] == [64, 128, 256, 512]
    assert [g.shape for g in content.grams] == [(c, c) for c in (64, 128, 256, 512)]


def test_summarize_gives_mean_and_median():
    records = [{m: float(i) for m in METRICS} for i in (1, 2, 6)]
    summary = summarize(records)
    assert summary["ssim"] == {"mean": 3.0, "median": 2.0}
