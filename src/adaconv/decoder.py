"""The decoder shared by both models (SPEC §2): the mirror of VGG-19 up to relu4_1.

Nearest x2 upsampling in place of pooling, reflection padding, ReLU after every conv but
the last, no normalisation layers. It is split into four *scales* (512, 256, 128 and 64
input channels) because AdaConv modulates the features at the start of each scale; with
no modulation it is the plain AdaIN decoder, so trained AdaIN weights load into AdaConv.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .padded_conv import ReflectionPaddedConv2d

SCALE_CHANNELS = (512, 256, 128, 64)
# Conv layers of each scale as (in, out); an upsampling follows every scale but the last.
SCALE_CONVS = (
    ((512, 256),),
    ((256, 256), (256, 256), (256, 256), (256, 128)),
    ((128, 128), (128, 64)),
    ((64, 64), (64, 3)),
)


def conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return ReflectionPaddedConv2d(cin, cout, 3, padding=1, padding_mode="reflect")


class Decoder(nn.Module):
    """relu4_1 features [B, 512, H/8, W/8] -> RGB image [B, 3, H, W] (unclamped)."""

    def __init__(self):
        super().__init__()
        self.scales = nn.ModuleList()
        for index, convs in enumerate(SCALE_CONVS):
            layers: list[nn.Module] = []
            for position, (cin, cout) in enumerate(convs):
                layers.append(conv3x3(cin, cout))
                last = index == len(SCALE_CONVS) - 1 and position == len(convs) - 1
                if not last:
                    layers.append(nn.ReLU(inplace=True))
            if index < len(SCALE_CONVS) - 1:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            self.scales.append(nn.Sequential(*layers))

    def forward(self, features: torch.Tensor,
                modulate: Callable[[int, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """``modulate(scale_index, x)``, if given, transforms the features at the start of each scale."""
        x = features
        for index, scale in enumerate(self.scales):
            if modulate is not None:
                x = modulate(index, x)
            x = scale(x)
        return x
