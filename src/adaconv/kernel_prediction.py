"""AdaConv's style encoder and kernel predictors (SPEC §3).

The style encoder turns the relu4_1 features of a 256x256 style image into the global style
descriptor W (s_d x k x k = 512 x 3 x 3); one kernel predictor per decoder scale turns W into
that scale's depthwise-separable kernels and biases.
"""

from __future__ import annotations

import torch
from torch import nn

from .padded_conv import ReflectionPaddedConv2d

STYLE_IMAGE_SIZE = 256        # the style encoder's fully connected layer fixes the input size
DESCRIPTOR_CHANNELS = 512     # s_d (consensus)
DESCRIPTOR_SIZE = 3           # k (consensus)
GROUPS = (512, 128, 32, 8)    # n_g per scale: 1, 2, 4, 8 channels per group (consensus)


class StyleEncoder(nn.Module):
    """relu4_1 of the style [B, 512, 32, 32] -> style descriptor W [B, 512, 3, 3].

    Three blocks of 3x3 conv (reflection pad) -> 2x2 average pool -> LeakyReLU (slope 0.2, our
    choice: the paper does not give it) reduce 32x32 to 4x4; a fully connected layer maps the
    flattened 512x4x4 to s_d·k·k.
    """

    def __init__(self, channels: int = 512, descriptor_channels: int = DESCRIPTOR_CHANNELS,
                 descriptor_size: int = DESCRIPTOR_SIZE, input_size: int = STYLE_IMAGE_SIZE // 8):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(3):
            layers += [ReflectionPaddedConv2d(channels, channels, 3, padding=1, padding_mode="reflect"),
                       nn.AvgPool2d(2), nn.LeakyReLU(0.2)]
        self.convs = nn.Sequential(*layers)
        self.pooled_size = input_size // 8
        self.descriptor_shape = (descriptor_channels, descriptor_size, descriptor_size)
        self.fc = nn.Linear(channels * self.pooled_size ** 2, descriptor_channels * descriptor_size ** 2)

    def forward(self, style_features: torch.Tensor) -> torch.Tensor:
        x = self.convs(style_features)
        if x.shape[-2:] != (self.pooled_size, self.pooled_size):
            raise ValueError(f"the style encoder needs {STYLE_IMAGE_SIZE}x{STYLE_IMAGE_SIZE} style images "
                             f"(features {self.pooled_size * 8}x{self.pooled_size * 8}), "
                             f"got features {tuple(style_features.shape[-2:])}")
        x = x.flatten(1)
        if torch.is_autocast_enabled(x.device.type):
            # the layer is memory-bound (38 M weights, a handful of rows): under bf16 autocast, casting its
            # weight to bf16 and its gradient back costs more than the fp32 product (measured: ~30% slower)
            with torch.autocast(x.device.type, enabled=False):
                return self.fc(x.float()).view(-1, *self.descriptor_shape)
        return self.fc(x).view(-1, *self.descriptor_shape)


class KernelPredictor(nn.Module):
    """Style descriptor W -> (spatial kernels, pointwise kernels, biases) for one scale.

    spatial:   3x3 conv on W -> [B, C, C/n_g, 3, 3]
    pointwise: global average of W -> 1x1 conv -> [B, C, C/n_g, 1, 1]
    biases:    global average of W -> 1x1 conv -> [B, C]
    """

    def __init__(self, channels: int, groups: int, descriptor_channels: int = DESCRIPTOR_CHANNELS,
                 kernel_size: int = DESCRIPTOR_SIZE, zero_init: bool = False):
        super().__init__()
        self.channels, self.groups, self.kernel_size = channels, groups, kernel_size
        per_group = channels // groups
        self.spatial = nn.Conv2d(descriptor_channels, channels * per_group, kernel_size,
                                 padding=kernel_size // 2)
        self.pointwise = nn.Conv2d(descriptor_channels, channels * per_group, 1)
        self.bias = nn.Conv2d(descriptor_channels, channels, 1)
        if zero_init:  # residual parametrisation: predicted kernels start at zero, the layer as AdaIN/identity
            for conv in (self.spatial, self.pointwise, self.bias):
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)

    def forward(self, descriptor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch = descriptor.shape[0]
        per_group = self.channels // self.groups
        spatial = self.spatial(descriptor).view(batch, self.channels, per_group, *descriptor.shape[-2:])
        pooled = descriptor.mean(dim=(2, 3), keepdim=True)
        pointwise = self.pointwise(pooled).view(batch, self.channels, per_group, 1, 1)
        bias = self.bias(pooled).view(batch, self.channels)
        return spatial, pointwise, bias
