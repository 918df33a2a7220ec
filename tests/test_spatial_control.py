"""Spatial control: masks from label images or mask files, feathered, summing to one."""

import pytest
import torch

from adaconv.errors import AdaconvError
from adaconv.spatial_control import at_resolution, load_masks, masks_from_label_image


def test_label_image_regions_are_ordered_by_colour(data_dir):
    masks = load_masks(data_dir / "gallery" / "mask" / "mask.png", 2, 80, 60)
    assert masks.shape == (2, 80, 60)
    assert torch.allclose(masks.sum(0), torch.ones(80, 60), atol=1e-6)
    label = torch.zeros(3, 4, 4)
    label[:, :, 2:] = 1.0
    one_hot = masks_from_label_image(label)
    assert one_hot[0, 0, 0] == 1 and one_hot[1, 0, 3] == 1  # black first, then white


def test_borders_are_feathered_and_layers_get_normalised_masks():
    label = torch.zeros(3, 64, 64)
    label[:, :, 32:] = 1.0
    masks = load_masks(label, 2, 64, 64)
    row = masks[1, 32]
    assert 0.05 < row[31] < 0.95 and row[0] < 0.01 and row[-1] > 0.99  # smooth across the border only
    small = at_resolution(masks, 8, 8)
    assert small.shape == (2, 1, 1, 8, 8) and torch.allclose(small.sum(0), torch.ones(1, 1, 8, 8), atol=1e-6)


def test_region_count_must_match_the_styles(data_dir):
    with pytest.raises(AdaconvError, match="2 region"):
        load_masks(data_dir / "gallery" / "mask" / "mask.png", 3, 32, 32)
