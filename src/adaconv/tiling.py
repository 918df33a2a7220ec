"""High-resolution stylisation in overlapping tiles, with every statistic that must be global taken globally.

Both networks are convolutional, except for one thing: the instance normalisation of the content features
(AdaIN at relu4_1; AdaConv at the input of each of its four adaptive layers) uses the mean and σ of the *whole*
image. Normalising each tile by its own statistics would give every tile a slightly different colour cast, which
shows as seams. So a tiled run is:

1. the encoder over the tiles, its relu4_1 features stitched into one map for the whole image (1 GB at 8K);
2. the relu4_1 statistics from that map; for AdaConv, one pass over the tiles per further scale, each measuring
   the statistics of that scale's input with the earlier scales already normalised globally;
3. the decoder over the tiles with those statistics, the tiles cross-faded into the output.

Tiles start on multiples of 8 (so the encoder's pooling grid lines up) and overlap by 2·margin + feather pixels.
Each tile's outer ``margin`` is context only (weight 0): there the tile's reflection padding differs from the real
neighbourhood, and ``margin`` exceeds how far that reaches (about 30 px through the encoder to relu4_1 and 45 px
through the AdaConv decoder). Inside the margins neighbouring tiles cross-fade linearly over ``feather`` pixels,
so the output is a partition-of-unity blend and equals the untiled output to float precision.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .errors import AdaconvError
from .modulation import EPS

ALIGN = 8              # the encoder's three 2x poolings: tile origins on this grid keep them aligned
TILE_SIZE = 1024       # default tile side in pixels: ~0.3 GB per decoder activation, overlap overhead ~1.4x
TILE_MARGIN = 64       # context discarded at each inner tile edge (≥ the ~45 px reach of a tile edge)
TILE_FEATHER = 32      # width of the cross-fade between neighbouring tiles
MIN_TILE_SIZE = 256


@dataclass(frozen=True)
class AxisWindow:
    """One tile's extent along one axis, in pixels, with its blend weights (the windows' weights sum to 1)."""

    start: int
    stop: int
    weights: torch.Tensor  # [stop - start], float64

    def at(self, factor: int) -> tuple[slice, torch.Tensor]:
        """The window on a grid ``factor`` times coarser than the pixels, and its weights there (averaged)."""
        weights = self.weights.reshape(-1, factor).mean(1)
        return slice(self.start // factor, self.stop // factor), weights


Tile = tuple[AxisWindow, AxisWindow]  # rows, columns


def axis_windows(length: int, tile: int, margin: int = TILE_MARGIN, feather: int = TILE_FEATHER) -> list[AxisWindow]:
    """Overlapping windows covering ``length`` pixels (all sizes multiples of 8)."""
    if any(value % ALIGN for value in (length, tile, margin, feather)):
        raise ValueError(f"length, tile, margin and feather must be multiples of {ALIGN}")
    if tile <= 2 * margin + feather:
        raise AdaconvError(f"tile size {tile} must exceed the tile overlap {2 * margin + feather}")
    if length <= tile:
        return [AxisWindow(0, length, torch.ones(length, dtype=torch.float64))]
    tile = balanced_tile(length, tile, 2 * margin + feather)
    stride = tile - 2 * margin - feather
    starts = [0]
    while starts[-1] + tile < length:
        starts.append(min(starts[-1] + stride, length - tile))
    ramp = (torch.arange(feather, dtype=torch.float64) + 0.5) / feather
    raw = []
    for start in starts:
        weights = torch.ones(tile, dtype=torch.float64)
        if start > 0:  # an inner edge at the top/left: context, then fade in
            weights[:margin] = 0
            weights[margin:margin + feather] = ramp
        if start + tile < length:  # an inner edge at the bottom/right: fade out, then context
            weights[tile - margin:] = 0
            weights[tile - margin - feather:tile - margin] *= ramp.flip(0)
        raw.append(weights)
    total = torch.zeros(length, dtype=torch.float64)
    for start, weights in zip(starts, raw):
        total[start:start + tile] += weights
    return [AxisWindow(start, start + tile, weights / total[start:start + tile]) for start, weights in zip(starts, raw)]


def balanced_tile(length: int, tile: int, overlap: int) -> int:
    """The smallest tile side (a multiple of 8, at most ``tile``) that covers ``length`` with as few tiles as
    ``tile`` needs. Without it the last tile of an axis is pushed back over its neighbour: 3840x2160 in 1024-pixel
    tiles would compute 15.7 Mpx for 8.3 Mpx of image; in balanced 896x832 tiles, 11.2 Mpx (same count, 29% less)."""
    count = math.ceil((length - overlap) / (tile - overlap))
    side = math.ceil((length + (count - 1) * overlap) / count)
    return min(tile, side + (-side) % ALIGN)


def tile_grid(height: int, width: int, tile: int = TILE_SIZE, margin: int = TILE_MARGIN,
              feather: int = TILE_FEATHER) -> list[Tile]:
    """Every (rows, columns) pair of windows covering a height x width image (multiples of 8)."""
    rows = axis_windows(height, tile, margin, feather)
    columns = axis_windows(width, tile, margin, feather)
    return [(r, c) for r in rows for c in columns]


def check_tile_size(size: int) -> int:
    """A user's tile size, rounded down to a multiple of 8."""
    if size < MIN_TILE_SIZE:
        raise AdaconvError(f"tile size must be at least {MIN_TILE_SIZE} pixels, got {size}")
    return size - size % ALIGN


def crop(tensor: torch.Tensor, tile: Tile, factor: int = 1) -> torch.Tensor:
    """The tile's part of a [B, C, H/factor, W/factor] tensor."""
    (rows, _), (columns, _) = tile[0].at(factor), tile[1].at(factor)
    return tensor[..., rows, columns]


def _weights(tile: Tile, factor: int, like: torch.Tensor) -> tuple[slice, slice, torch.Tensor]:
    (rows, row_weights), (columns, column_weights) = tile[0].at(factor), tile[1].at(factor)
    weights = (row_weights[:, None] * column_weights[None, :]).to(like.device, like.dtype)
    return rows, columns, weights


def stitch(run: Callable[[Tile], torch.Tensor], grid: list[Tile], size: tuple[int, int], factor: int = 1,
           advance: Callable[[], object] | None = None) -> torch.Tensor:
    """Blend ``run(tile)`` ([1, C, h, w] covering the tile on a grid ``factor`` times coarser than the pixels)
    over every tile into one [1, C, height/factor, width/factor] tensor."""
    height, width = size
    output = None
    for tile in grid:
        result = run(tile).float()
        if output is None:
            output = result.new_zeros(1, result.shape[1], height // factor, width // factor)
        rows, columns, weights = _weights(tile, factor, result)
        output[..., rows, columns] += result * weights
        if advance is not None:
            advance()
    return output


def channel_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and σ = sqrt(var + eps) of one whole [1, C, H, W] map, as :func:`modulation.mean_std`."""
    var, mean = torch.var_mean(features.float(), dim=(2, 3), keepdim=True, unbiased=False)
    return mean, (var + EPS).sqrt()


def tiled_statistics(run: Callable[[Tile], torch.Tensor], grid: list[Tile], factor: int,
                     advance: Callable[[], object] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and σ of a map seen only tile by tile (``run(tile)`` as in :func:`stitch`).

    Each tile contributes its pixels with its blend weights, which sum to 1 at every pixel, so every pixel counts
    once. Tiles are merged with Chan et al.'s pairwise update (float64), which stays exact for large maps."""
    count, mean, squares = 0.0, None, None
    for tile in grid:
        x = run(tile).float()
        _, _, weights = _weights(tile, factor, x)
        tile_count = float(weights.sum())
        tile_mean = (x * weights).sum((0, 2, 3), dtype=torch.float64) / tile_count
        centred = x - tile_mean.to(x.dtype).view(1, -1, 1, 1)
        tile_squares = (centred.square() * weights).sum((0, 2, 3), dtype=torch.float64)
        if mean is None:
            count, mean, squares = tile_count, tile_mean, tile_squares
        else:
            total = count + tile_count
            delta = tile_mean - mean
            mean = mean + delta * (tile_count / total)
            squares = squares + tile_squares + delta.square() * (count * tile_count / total)
            count = total
        if advance is not None:
            advance()
    channels = mean.shape[0]
    variance = (squares / count).float().view(1, channels, 1, 1)
    return mean.float().view(1, channels, 1, 1), (variance + EPS).sqrt()


def encode_tiled(encoder, image: torch.Tensor, grid: list[Tile],
                 advance: Callable[[], object] | None = None) -> torch.Tensor:
    """relu4_1 features [1, 512, H/8, W/8] of a [1, 3, H, W] image, computed tile by tile."""
    return stitch(lambda tile: encoder.encode(_dense(crop(image, tile))), grid, tuple(image.shape[-2:]), ALIGN,
                  advance)


def decode_tiled(model, features: torch.Tensor, style, grid: list[Tile], *, masks: torch.Tensor | None = None,
                 advance: Callable[[], object] | None = None) -> torch.Tensor:
    """The decoded image [1, 3, H, W] from whole-image relu4_1 ``features``, tile by tile, every normalisation
    with whole-image statistics. ``style``: a code, four per-scale codes, or one code per region of ``masks``."""
    size = (features.shape[-2] * ALIGN, features.shape[-1] * ALIGN)
    statistics = [channel_statistics(features)]

    def global_statistics(scale: int, _features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return statistics[scale]

    def region(tile: Tile) -> torch.Tensor | None:
        return None if masks is None else crop(masks, tile)

    for scale in range(1, model.normalized_scales):
        factor = ALIGN >> scale
        statistics.append(tiled_statistics(
            lambda tile, scale=scale: model.decoder_input(_dense(crop(features, tile, ALIGN)), style, scale,
                                                          global_statistics, region(tile)),
            grid, factor, advance))

    def decode(tile: Tile) -> torch.Tensor:
        tile_features = _dense(crop(features, tile, ALIGN))
        if masks is None:
            return model.decode(tile_features, style, global_statistics)
        return model.decode_regions(tile_features, style, region(tile), global_statistics)

    return stitch(decode, grid, size, 1, advance)


def passes(model) -> int:
    """How many times a tiled run visits every tile (for progress bars)."""
    return 2 + model.normalized_scales - 1


def _dense(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.contiguous(memory_format=torch.channels_last)
