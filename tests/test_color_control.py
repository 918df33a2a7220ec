"""Colour preservation: the luminance mode keeps the content's chroma; the histogram mode matches colour moments."""

import torch

from adaconv.color_control import keep_content_chroma, match_color_statistics, rgb_to_ycbcr, ycbcr_to_rgb
from adaconv.imageio import to_tensor
from adaconv.preprocessing import resize_short_side


def test_luminance_mode_keeps_content_chroma_exactly(content_path, style_path):
    content = resize_short_side(to_tensor(content_path), 64)
    output = torch.rand_like(content)
    combined = keep_content_chroma(output, content)  # in float, before any clipping
    assert torch.allclose(rgb_to_ycbcr(combined.double())[1:], rgb_to_ycbcr(content.double())[1:], atol=1e-6)
    assert torch.allclose(rgb_to_ycbcr(combined.double())[0], rgb_to_ycbcr(output.double())[0], atol=1e-6)


def test_ycbcr_round_trip():
    image = torch.rand(3, 8, 8, dtype=torch.float64)
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(image)), image, atol=1e-12)


def test_histogram_mode_gives_the_style_the_contents_colour_moments(data_dir):
    content = resize_short_side(to_tensor(data_dir / "bench" / "content" / "04.png"), 96)
    style = resize_short_side(to_tensor(data_dir / "bench" / "style" / "12.png"), 96)
    matched = match_color_statistics(style, content)
    assert matched.shape == style.shape
    gap_before = (style.mean((1, 2)) - content.mean((1, 2))).abs().max()
    gap_after = (matched.mean((1, 2)) - content.mean((1, 2))).abs().max()
    assert gap_after < 0.03 < gap_before
    target = torch.cov(content.reshape(3, -1))
    before = (torch.cov(style.reshape(3, -1)) - target).norm()
    after = (torch.cov(matched.reshape(3, -1)) - target).norm()
    assert after < 0.5 * before  # exact before clipping to [0, 1]; clipping bends the brightest colours
