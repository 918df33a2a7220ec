"""Training losses of both papers, in normalised VGG feature space (SPEC §2-3).

Every ‖·‖² is a mean over elements (as the original code's MSE); L = L_content + λ·L_style, λ = 10. An optional
identity term (Park & Lee, SANet, CVPR 2019) is not part of either paper's recipe; `adaconv train --identity-weight`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .modulation import mean_std

FeatureStatistics = list[tuple[torch.Tensor, torch.Tensor]]


def feature_statistics(features: Sequence[torch.Tensor]) -> FeatureStatistics:
    """(μ, σ) per tap: all the style loss needs of the style image."""
    return [mean_std(f) for f in features]


def content_loss(output_relu4_1: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """‖f(g(t)) − t‖² at relu4_1; the target is the AdaIN output t (AdaIN) or the content features (AdaConv)."""
    return F.mse_loss(output_relu4_1, target)


def style_loss(output_features: Sequence[torch.Tensor], style_statistics: FeatureStatistics) -> torch.Tensor:
    """Σ over relu1_1..relu4_1 of ‖μ(f(out)) − μ(f(s))‖² + ‖σ(f(out)) − σ(f(s))‖²."""
    total = output_features[0].new_zeros(())
    for features, (style_mean, style_std) in zip(output_features, style_statistics):
        mean, std = mean_std(features)
        total = total + F.mse_loss(mean, style_mean) + F.mse_loss(std, style_std)
    return total


# SANet's weights of its two identity terms as its paper gives them (λ_identity1 = 50 on pixels, λ_identity2 = 1 on
# features); with images in [0, 1] a pixel MSE is ~0.01, which unweighted would vanish beside the feature terms
IDENTITY_PIXEL_WEIGHT = 50.0


def identity_loss(reconstruction: torch.Tensor, reconstruction_features: Sequence[torch.Tensor],
                  content: torch.Tensor, content_features: Sequence[torch.Tensor],
                  pixel_weight: float = IDENTITY_PIXEL_WEIGHT) -> torch.Tensor:
    """50·‖I_cc − I_c‖² + Σ over relu1_1..relu4_1 of ‖f(I_cc) − f(I_c)‖²: I_cc is the content stylised with itself,
    which should give the content back. It asks the decoder to invert natural features exactly, a pull toward
    the photo's structure that the content loss (against the AdaIN target, not the photo) does not give.
    ``pixel_weight`` replaces the 50: a pixel MSE is what usually softens a decoder's output (it rewards the mean
    of plausible images), so 0 keeps only the feature terms."""
    total = pixel_weight * F.mse_loss(reconstruction, content)
    for output, target in zip(reconstruction_features, content_features, strict=True):
        total = total + F.mse_loss(output, target)
    return total
