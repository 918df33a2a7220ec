"""How much an AdaConv model uses its predicted kernels: a diagnostic for training and evaluation.

The residual AdaConv (models.py) is AdaIN at its first adaptive layer and the identity at the other three, plus
what its kernel predictors add. Whether training has made those additions matter, and whether they depend on
the style (the point of AdaConv) or are one learned filter for every style, cannot be read off the loss. This
measures it on real images, at each of the four adaptive layers, with the layer's actual input:

- ``departure``: RMS(layer(x) − base(x)) / RMS(base(x)), averaged over the (content, style) pairs: how far the
  layer's output is from what AdaIN / the identity would give. 0 for an untrained (zero-initialised) model.
- ``style_dependence``: how much the departure changes with the style *at the same input*: every style's kernels
  are applied to the input that each style's own pass produced, and the RMS of the departures' deviation from
  their mean over the styles is taken, relative to RMS(base(x)). (The same input matters: after the first layer
  the input itself depends on the style, so even one fixed filter would give style-dependent outputs.) A
  predictor that learned only its biases — one kernel for every style — has departure > 0 and style dependence 0.

Only the residual parametrisation has a base to measure against; the paper's form is all "departure".
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .models import AdaConvModel, StyleCode
from .modulation import adain


def _rms(tensor: torch.Tensor) -> float:
    return float(tensor.float().pow(2).mean().sqrt())


@torch.no_grad()
def kernel_usage(model: AdaConvModel, contents: Sequence[torch.Tensor],
                 styles: Sequence[torch.Tensor | StyleCode]) -> dict:
    """Per adaptive layer (coarse to fine): departure from the base and its style-dependent part.

    ``contents``: [3, H, W] images in [0, 1] (H, W multiples of 8); ``styles``: [3, H, W] images as the model
    reads them (``prepare_style``), or their style codes already made (the ``Stylizer``'s, so the kernels
    measured are the ones it stylised with). Returns ``{"departure": [4 floats], "style_dependence": [4 floats],
    "pairs": n}``, means over the (content, style) pairs. The cost grows as contents × styles², so callers measure
    a small fixed subset.
    """
    if not isinstance(model, AdaConvModel) or model.parametrization != "residual":
        raise ValueError("kernel usage is measured on residual AdaConv models only")
    if not contents or not styles:
        raise ValueError("need at least one content and one style")
    device = next(model.decoder.parameters()).device
    codes = [style if isinstance(style, StyleCode) else model.encode_style(style[None].to(device))
             for style in styles]
    layers = len(model.kernel_predictors)
    departure = [0.0] * layers
    dependence = [0.0] * layers
    weight = 1.0 / (len(contents) * len(codes))
    for content in contents:
        features = model.encoder.encode(content[None].to(device))
        for code in codes:  # this style's pass through the decoder gives every layer its input
            x = features
            for scale in range(layers):
                base = _base(scale, x, code)
                own = model.modulate(scale, x, code)
                size = _rms(base)
                departure[scale] += _rms(own - base) / size * weight
                # every style's kernels at this same input: the part of the departure that follows the style
                shifts = torch.stack([model.modulate(scale, x, other) - _base(scale, x, other) for other in codes])
                dependence[scale] += _rms(shifts - shifts.mean(0, keepdim=True)) / size * weight
                x = model.decoder.scales[scale](own)
    return {"departure": departure, "style_dependence": dependence, "pairs": len(contents) * len(codes)}


def _base(scale: int, features: torch.Tensor, code: StyleCode) -> torch.Tensor:
    """What the residual layer is before its predictors add anything: AdaIN first, then the identity."""
    return adain(features, code.mean, code.std) if scale == 0 else features
