"""Spatial control: different styles in different regions of one picture (AdaIN paper §7.2, AdaConv per layer).

Regions come from one label image (each distinct colour is a region, ordered by colour value, so black comes
before white) or from N greyscale mask images (one per region). Masks are feathered with a Gaussian blur so
borders blend smoothly, then normalised to sum to one at every pixel; the models resize them to each layer's
resolution and blend per region there (AdaIN: the AdaIN output at relu4_1; AdaConv: every adaptive layer's output,
i.e. each region's predicted kernels act where its mask is).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import AdaconvError
from .imageio import to_tensor
from .preprocessing import resize

FEATHER = 0.01  # Gaussian σ of the border blend, as a fraction of the image's long side


def masks_from_label_image(image: torch.Tensor) -> torch.Tensor:
    """[3, H, W] label image -> [N, H, W] one-hot masks, one per distinct colour (ordered by colour value)."""
    codes = (image * 255).round().long()
    keys = (codes[0] * 256 + codes[1]) * 256 + codes[2]
    values = torch.unique(keys)
    return torch.stack([(keys == v).float() for v in values])


def load_masks(sources, count: int, height: int, width: int) -> torch.Tensor:
    """One label image or ``count`` mask images -> [count, height, width] feathered masks summing to 1."""
    sources = list(sources) if isinstance(sources, (list, tuple)) else [sources]
    if len(sources) == 1:
        label = to_tensor(sources[0]) if not isinstance(sources[0], torch.Tensor) else sources[0]
        masks = masks_from_label_image(label) if label.ndim == 3 else label
        if masks.shape[0] != count:
            raise AdaconvError(f"the mask has {masks.shape[0]} region(s) but {count} style(s) were given")
    elif len(sources) == count:
        masks = torch.stack([(to_tensor(s) if not isinstance(s, torch.Tensor) else s).mean(0) for s in sources])
    else:
        raise AdaconvError(f"give one label image or one mask per style ({count}), not {len(sources)} masks")
    masks = resize(masks[:, None], height, width)[:, 0] if masks.shape[-2:] != (height, width) else masks
    return normalise(feather(masks))


def feather(masks: torch.Tensor, sigma_fraction: float = FEATHER) -> torch.Tensor:
    sigma = max(0.5, sigma_fraction * max(masks.shape[-2:]))
    radius = int(3 * sigma)
    taps = torch.exp(-torch.arange(-radius, radius + 1, dtype=torch.float32) ** 2 / (2 * sigma ** 2))
    taps = taps / taps.sum()
    x = masks[:, None]
    mode = "reflect" if radius < min(masks.shape[-2:]) else "replicate"
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode=mode), taps.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode=mode), taps.view(1, 1, -1, 1))
    return x[:, 0]


def normalise(masks: torch.Tensor) -> torch.Tensor:
    total = masks.sum(0, keepdim=True)
    if (total <= 0).any():
        uncovered = total <= 0
        masks = masks + uncovered.float() / masks.shape[0]  # pixels no mask covers get every style equally
        total = masks.sum(0, keepdim=True)
    return masks / total


def at_resolution(masks: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[N, H, W] -> [N, 1, 1, height, width]: ready to weight [1, C, height, width] features per region."""
    resized = F.interpolate(masks[:, None], size=(height, width), mode="bilinear", align_corners=False,
                            antialias=masks.shape[-2] > height)
    return normalise(resized[:, 0])[:, None, None]
