"""Sizing images for the networks: content of any size, styles as each model expects them."""

from __future__ import annotations

import torch
import torch.nn.functional as F

MULTIPLE = 8                  # three 2x poolings between the image and relu4_1
DEFAULT_STYLE_SIZE = 512  # short side at which a style is read, as in the AdaIN paper's test setting


def resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[..., 3, H, W] -> [..., 3, height, width], antialiased when shrinking."""
    squeeze = image.ndim == 3
    batch = image[None] if squeeze else image
    if batch.shape[-2:] != (height, width):
        shrinking = height < batch.shape[-2] or width < batch.shape[-1]
        batch = F.interpolate(batch, size=(height, width), mode="bilinear", antialias=shrinking,
                              align_corners=False).clamp(0, 1)
    return batch[0] if squeeze else batch


def resize_short_side(image: torch.Tensor, size: int) -> torch.Tensor:
    height, width = image.shape[-2:]
    factor = size / min(height, width)
    return resize(image, max(1, round(height * factor)), max(1, round(width * factor)))


def resize_long_side(image: torch.Tensor, size: int) -> torch.Tensor:
    height, width = image.shape[-2:]
    factor = size / max(height, width)
    return resize(image, max(1, round(height * factor)), max(1, round(width * factor)))


def center_crop(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    top = (image.shape[-2] - height) // 2
    left = (image.shape[-1] - width) // 2
    return image[..., top:top + height, left:left + width]


def prepare_style(image: torch.Tensor, kind: str, style_size: int | None = None) -> torch.Tensor:
    """A style image as the models read it: short side ``style_size`` (default 512), any aspect.

    Both models take their channel statistics from this image, so ``style_size`` sets the size of the brush
    strokes; AdaConv's style encoder additionally reads it resized whole to 256x256 (done in the model).
    """
    del kind  # both models read a style the same way (AdaConv: from session 9 on, see AdaConvModel.encode_style)
    return resize_short_side(image, style_size or DEFAULT_STYLE_SIZE)


def pad_to_multiple(image: torch.Tensor, multiple: int = MULTIPLE) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad [B, 3, H, W] on the bottom and right to multiples of ``multiple``; returns the original size."""
    height, width = image.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        image = F.pad(image, (0, pad_w, 0, pad_h), mode=mode)
    return image, (height, width)
