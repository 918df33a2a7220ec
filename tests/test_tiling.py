"""Tiling: windows on the 8-pixel grid whose blend weights sum to one, statistics that are the whole image's, and
tiled stylisation equal to the untiled one."""

import subprocess
import sys
import warnings

import pytest
import torch
from PIL import Image

from adaconv.errors import AdaconvError
from adaconv.imageio import to_tensor
from adaconv.inference import ContentResized
from adaconv.preprocessing import resize
from adaconv.tiling import (
    TILE_FEATHER,
    TILE_MARGIN,
    axis_windows,
    channel_statistics,
    crop,
    stitch,
    tile_grid,
    tiled_statistics,
)


@pytest.mark.parametrize("length", [256, 1024, 1032, 2000, 4096])
def test_windows_cover_the_axis_with_weights_summing_to_one(length):
    windows = axis_windows(length, 512)
    total = torch.zeros(length, dtype=torch.float64)
    sides = {window.stop - window.start for window in windows}
    assert len(sides) == 1 and sides.pop() <= min(length, 512)  # one tile side, never above the asked one
    for window in windows:
        assert window.start % 8 == 0
        total[window.start:window.stop] += window.weights
    assert torch.allclose(total, torch.ones(length, dtype=torch.float64), atol=1e-12)
    assert windows[0].start == 0 and windows[-1].stop == length


@pytest.mark.parametrize("length, count, side", [(2160, 3, 832), (3840, 5, 896), (1032, 2, 600), (1024, 1, 1024)])
def test_tiles_are_balanced_over_the_axis(length, count, side):
    """As few tiles as 1024-pixel ones need, each as small as covering the axis allows (no pushed-back last tile):
    2160 = 3 tiles of 832 with 160 overlap, where 1024-pixel tiles would overlap by up to 912."""
    windows = axis_windows(length, 1024)
    assert len(windows) == count and {w.stop - w.start for w in windows} == {side}


def test_inner_edges_are_context_only_and_neighbours_overlap_by_160_pixels():
    windows = axis_windows(2000, 512)
    assert len(windows) > 2
    for before, after in zip(windows, windows[1:]):
        assert before.stop - after.start >= 2 * TILE_MARGIN + TILE_FEATHER == 160
    middle = windows[1]
    assert (middle.weights[:TILE_MARGIN] == 0).all() and (middle.weights[-TILE_MARGIN:] == 0).all()
    assert (middle.weights[TILE_MARGIN:-TILE_MARGIN] > 0).all()
    assert windows[0].weights[0] == 1 and windows[-1].weights[-1] == 1  # the image's own borders need no context


def test_coarser_grids_keep_a_partition_of_unity():
    for factor in (2, 4, 8):
        total = torch.zeros(2000 // factor, dtype=torch.float64)
        for window in axis_windows(2000, 512):
            index, weights = window.at(factor)
            total[index] += weights
        assert torch.allclose(total, torch.ones_like(total), atol=1e-12)


def test_stitching_and_statistics_of_tiles_equal_the_whole_map():
    torch.manual_seed(0)
    grid = tile_grid(600, 1000, 384)
    assert len(grid) == 2 * 4
    whole = torch.rand(1, 5, 600 // 4, 1000 // 4) * torch.arange(1.0, 6.0).view(1, 5, 1, 1) + 3.0
    assert torch.allclose(stitch(lambda tile: crop(whole, tile, 4), grid, (600, 1000), 4), whole, atol=1e-6)
    mean, std = tiled_statistics(lambda tile: crop(whole, tile, 4), grid, 4)
    expected_mean, expected_std = channel_statistics(whole)
    assert torch.allclose(mean, expected_mean, rtol=1e-6) and torch.allclose(std, expected_std, rtol=1e-5)


def test_tile_sizes_are_checked():
    with pytest.raises(AdaconvError, match="overlap"):
        axis_windows(1024, 160)
    with pytest.raises(ValueError, match="multiples of 8"):
        axis_windows(1000, 500)


# -- with the networks ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def wide_content(content_path):
    return resize(to_tensor(content_path), 250, 390)  # 256 x 392 padded: three tiles of 256 across, a middle one


def test_tiled_adain_with_a_mask_and_alpha_equals_the_untiled_run(stylizers, wide_content, style_path, data_dir):
    other = data_dir / "bench" / "style" / "30.png"
    label = torch.zeros(3, 250, 390)
    label[:, :, 200:] = 1.0
    options = {"mask": label, "alpha": 0.7}
    whole = stylizers["adain"].stylize_tensor(wide_content, [style_path, other], tile="off", **options)
    tiled = stylizers["adain"].stylize_tensor(wide_content, [style_path, other], tile="on", tile_size=256, **options)
    assert (whole - tiled).abs().max() < 1e-4


def test_tiled_adaconv_per_scale_mixing_equals_the_untiled_run(stylizers, wide_content, style_path, data_dir):
    styles = [style_path, style_path, data_dir / "bench" / "style" / "30.png", style_path]
    whole = stylizers["adaconv"].stylize_tensor(wide_content, [], style_per_scale=styles, tile="off")
    tiled = stylizers["adaconv"].stylize_tensor(wide_content, [], style_per_scale=styles, tile="on", tile_size=256)
    assert (whole - tiled).abs().max() < 1e-4


def test_tiling_lifts_the_2048_cap(stylizers, style_path):
    panorama = torch.rand(3, 16, 2100)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert stylizers["adain"].stylize(panorama, style_path, style_size=64).size == (2100, 16)
        assert not [w for w in caught if issubclass(w.category, ContentResized)]
    with pytest.warns(ContentResized, match="long side 2048"):
        assert stylizers["adain"].stylize(panorama, style_path, style_size=64, tile="off").size == (2048, 16)
    with pytest.raises(AdaconvError, match="tile must be one of"):
        stylizers["adain"].stylize(panorama, style_path, tile="yes")
    with pytest.raises(AdaconvError, match="at least 256"):
        stylizers["adain"].stylize(panorama, style_path, tile="on", tile_size=100)


def test_command_line_tile_options(tmp_path, content_path, style_path, adain_weights):
    photo = tmp_path / "photo.png"
    Image.open(content_path).convert("RGB").resize((392, 256)).save(photo)
    out = tmp_path / "out.png"
    common = ["-m", "adaconv", "stylize", str(photo), "--style", str(style_path), "--weights", str(adain_weights),
              "--style-size", "64", "-o", str(out)]
    result = subprocess.run([sys.executable, *common, "--tile", "on", "--tile-size", "256"], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert Image.open(out).size == (392, 256)
    result = subprocess.run([sys.executable, *common, "--tile", "on", "--tile-size", "64"], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "at least 256" in result.stderr
