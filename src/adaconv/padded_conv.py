"""A 3x3 convolution with reflection padding that autocast leaves in the input's dtype (decoder, VGG encoder and
style encoder all pad by reflection)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ReflectionPaddedConv2d(nn.Conv2d):
    """``nn.Conv2d(..., padding_mode="reflect")`` whose padding stays in the input's dtype under autocast.

    CPU autocast runs reflection padding in fp32: a bf16 activation was cast up, padded, and cast back down by the
    convolution, and the same again for the gradient, in every layer of the decoder, of both VGG passes and of the
    style encoder (~0.5 s of a 2.9 s AdaConv training step at 256² on an AMX CPU, docs/benchmarks.md). Padding
    copies values, so doing it in bf16 changes nothing but the time. Same parameters, initialisation and state
    dict as the plain module.
    """

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        with torch.autocast(input.device.type, enabled=False):
            padded = F.pad(input, self._reversed_padding_repeated_twice, mode="reflect")
        return F.conv2d(padded, weight, bias, self.stride, 0, self.dilation, self.groups)
