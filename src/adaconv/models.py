"""The two style-transfer networks: AdaIN (SPEC §2) and AdaConv (SPEC §3).

Models are plain ``nn.Module``s: they know nothing about files, losses or command lines.
Both split into ``encode_style`` (style image -> :class:`StyleCode`) and ``decode``
(content features + style code -> image), so a style is encoded once and reused, and the
test-time controls (α, interpolation, per-scale mixing) are operations on style codes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import torch
from torch import nn

from .decoder import SCALE_CHANNELS, Decoder
from .encoder import VGGEncoder, shared_encoder
from .kernel_prediction import GROUPS, STYLE_IMAGE_SIZE, KernelPredictor, StyleEncoder
from .modulation import (
    adain,
    adaptive_conv,
    adaptive_conv_of_normalized,
    identity_kernels,
    mean_std,
    normalize_with_statistics,
    wants_gradients,
)
from .preprocessing import resize

MODEL_KINDS = ("adain", "adaconv")

# (layer index, features [B, C, H, W]) -> (mean, σ) [B, C, 1, 1] to normalise those features with. Layer 0 is
# relu4_1 (AdaIN) or the first adaptive layer (AdaConv); AdaConv's scales 1-3 follow. Video smooths these over
# frames; the default (None) is the features' own statistics.
ContentStatistics = Callable[[int, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
PARAMETRIZATIONS = ("residual", "paper")


@dataclass
class StyleCode:
    """What a model keeps of a style image.

    mean, std: channel statistics of its relu4_1 features, [B, 512, 1, 1] (AdaIN; AdaConv's
        residual form uses them at the first scale).
    descriptor: AdaConv's global style descriptor W, [B, 512, 3, 3]; None for AdaIN.
    """

    mean: torch.Tensor
    std: torch.Tensor
    descriptor: torch.Tensor | None = None

    def detach(self) -> StyleCode:
        return StyleCode(*(None if v is None else v.detach() for v in self._values()))

    def _values(self):
        return [getattr(self, f.name) for f in fields(self)]


def blend_style_codes(codes: Sequence[StyleCode], weights: Sequence[float]) -> StyleCode:
    """Convex combination of style codes (style interpolation, and α against the content's own code).

    For AdaIN, blending (μ, σ) with weights (1 − α, α) against the content's own statistics equals the
    paper's feature interpolation (1 − α)·f(c) + α·AdaIN(f(c), f(s)), because both are affine in the
    normalised content.
    """
    if len(codes) != len(weights) or not codes:
        raise ValueError("need one weight per style code")
    total = float(sum(weights))
    if total <= 0:
        raise ValueError("style weights must sum to a positive number")
    weights = [w / total for w in weights]
    blended = []
    for name in ("mean", "std", "descriptor"):
        values = [getattr(code, name) for code in codes]
        if any(v is None for v in values):
            blended.append(None)
        else:
            blended.append(sum(w * v for w, v in zip(weights, values)))
    return StyleCode(*blended)


class StyleTransferModel(nn.Module):
    """What both models share: the frozen encoder and the trainable decoder."""

    kind: str

    def __init__(self, encoder: VGGEncoder | None = None):
        super().__init__()
        self.encoder = encoder if encoder is not None else shared_encoder()
        self.decoder = Decoder()

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Everything but the frozen encoder: what a weights file holds."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("encoder.")}

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if not name.startswith("encoder.")]

    def hyperparameters(self) -> dict:
        return {}

    def forward(self, content: torch.Tensor, style: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        """Images in [0, 1] -> stylised image (unclamped). ``style`` is prepared as the model expects."""
        content_features = self.encoder.encode(content)
        code = self.encode_style(style)
        if alpha != 1.0:
            code = blend_style_codes([self.own_style_code(content, content_features), code], [1 - alpha, alpha])
        return self.decode(content_features, code)


class AdaINModel(StyleTransferModel):
    """Huang & Belongie 2017: decoder(AdaIN(f(c), f(s)))."""

    kind = "adain"
    normalized_scales = 1  # decoder scales whose input is normalised by its own statistics (relu4_1 only)

    def encode_style(self, style: torch.Tensor) -> StyleCode:
        return self.style_code_from_features(self.encoder.encode(style))

    @staticmethod
    def style_code_from_features(relu4_1: torch.Tensor) -> StyleCode:
        mean, std = mean_std(relu4_1)
        return StyleCode(mean, std)

    def own_style_code(self, content: torch.Tensor, content_features: torch.Tensor) -> StyleCode:
        """The content's own statistics: AdaIN with them is the identity (α = 0)."""
        return self.style_code_from_features(content_features)

    def decode(self, content_features: torch.Tensor, style: StyleCode,
               statistics: ContentStatistics | None = None) -> torch.Tensor:
        """``statistics``: where the content's channel statistics come from (default: the features' own)."""
        if statistics is None:
            return self.decoder(adain(content_features, style.mean, style.std))
        mean, std = statistics(0, content_features)
        return self.decoder((content_features - mean) / std * style.std + style.mean)

    def decode_regions(self, content_features: torch.Tensor, codes: Sequence[StyleCode],
                       masks: torch.Tensor, statistics: ContentStatistics | None = None) -> torch.Tensor:
        """Spatial control: region k of ``masks`` ([N, H, W], summing to 1) painted with ``codes[k]``."""
        from .spatial_control import at_resolution

        weights = at_resolution(masks.to(content_features.device), *content_features.shape[-2:])
        if statistics is None:
            target = sum(w[0] * adain(content_features, c.mean, c.std) for w, c in zip(weights, codes))
        else:
            mean, std = statistics(0, content_features)
            normalized = (content_features - mean) / std
            target = sum(w[0] * (normalized * c.std + c.mean) for w, c in zip(weights, codes))
        return self.decoder(target)


class AdaConvModel(StyleTransferModel):
    """Chandran et al. 2021: a style encoder, four kernel predictors and an AdaConv layer per decoder scale.

    ``parametrization="paper"`` is the paper's layer: predicted kernels applied to the instance-normalised
    features. ``"residual"`` (ours, the default) adds the predicted kernels to a base that makes the layer
    AdaIN at the first scale (1x1 kernel σ_s, bias μ_s) and the identity at the others (σ_x, μ_x of the
    layer's own input), and starts the predictors at zero, so an untrained AdaConv equals the AdaIN model
    whose decoder it was given and training begins from there rather than from noise.
    """

    kind = "adaconv"
    normalized_scales = len(SCALE_CHANNELS)  # every adaptive layer instance-normalises its input

    def __init__(self, encoder: VGGEncoder | None = None, parametrization: str = "residual"):
        super().__init__(encoder)
        if parametrization not in PARAMETRIZATIONS:
            raise ValueError(f"parametrization must be one of {PARAMETRIZATIONS}, got {parametrization!r}")
        self.parametrization = parametrization
        residual = parametrization == "residual"
        self.style_encoder = StyleEncoder()
        self.kernel_predictors = nn.ModuleList(
            KernelPredictor(c, g, zero_init=residual) for c, g in zip(SCALE_CHANNELS, GROUPS))
        for c, g in zip(SCALE_CHANNELS, GROUPS):
            self.register_buffer(f"identity_spatial_{c}", identity_kernels(c, g, 3), persistent=False)
            self.register_buffer(f"identity_pointwise_{c}", identity_kernels(c, g, 1), persistent=False)

    def hyperparameters(self) -> dict:
        return {"parametrization": self.parametrization}

    def encode_style(self, style: torch.Tensor, square: torch.Tensor | None = None) -> StyleCode:
        """``style``: [B, 3, H, W] at the scale its strokes should have in the output (as AdaIN reads it);
        ``square``: the same painting resized whole to 256x256 (default: ``style`` resized; pass it when the
        original is at hand, so a small painting is not enlarged and shrunk again).

        The descriptor W comes from the square (the style encoder's fixed input, SPEC §3); the channel
        statistics (the residual form's AdaIN base) from ``style``, so a 512-pixel output gets the strokes AdaIN
        gives it. Reading them from the 256x256 image instead halves the strokes of a 512-pixel output and
        cost ~20% in style distance (docs/training.md, session 9).
        """
        features = self.encoder.encode(style)
        if square is None and style.shape[-2:] == (STYLE_IMAGE_SIZE, STYLE_IMAGE_SIZE):
            return self.style_code_from_features(features)
        if square is None:
            square = resize(style, STYLE_IMAGE_SIZE, STYLE_IMAGE_SIZE)
        return self.style_code_from_features(self.encoder.encode(square), statistics_features=features)

    def style_code_from_features(self, relu4_1: torch.Tensor,
                                 statistics_features: torch.Tensor | None = None) -> StyleCode:
        """``relu4_1`` of the 256x256 style -> W; the statistics from ``statistics_features`` if given."""
        mean, std = mean_std(relu4_1 if statistics_features is None else statistics_features)
        return StyleCode(mean, std, self.style_encoder(relu4_1))

    def own_style_code(self, content: torch.Tensor, content_features: torch.Tensor) -> StyleCode:
        """The content read as a style: its own statistics (as AdaIN's α = 0) and W of it resized to 256x256.
        A 256x256 content (the training crops) is its own square: its features are reused, not encoded again."""
        if content.shape[-2:] == (STYLE_IMAGE_SIZE, STYLE_IMAGE_SIZE):
            return self.style_code_from_features(content_features)
        descriptor_features = self.encoder.encode(resize(content, STYLE_IMAGE_SIZE, STYLE_IMAGE_SIZE))
        return self.style_code_from_features(descriptor_features, statistics_features=content_features)

    def modulate(self, scale: int, features: torch.Tensor, style: StyleCode,
                 statistics: ContentStatistics | None = None) -> torch.Tensor:
        """The AdaConv layer at the start of decoder scale ``scale``."""
        predictor = self.kernel_predictors[scale]
        spatial, pointwise, bias = predictor(style.descriptor)
        training = wants_gradients(features, spatial, pointwise, bias)
        normalized = None  # training normalises inside adaptive_conv_of_normalized
        if statistics is not None:
            own_mean, own_std = statistics(scale, features)
            if not training:
                normalized = (features - own_mean) / own_std
        elif training:
            own_mean, own_std = mean_std(features)
        else:
            normalized, own_mean, own_std = normalize_with_statistics(features)
        if self.parametrization == "residual":
            channels = predictor.channels
            if scale == 0:
                base_mean, base_std = style.mean, style.std
            else:
                base_mean, base_std = own_mean, own_std
            identity_spatial = getattr(self, f"identity_spatial_{channels}")
            spatial = spatial + identity_spatial * base_std.view(-1, channels, 1, 1, 1)
            pointwise = pointwise + getattr(self, f"identity_pointwise_{channels}")
            bias = bias + base_mean.view(-1, channels)
        if normalized is None:
            return adaptive_conv_of_normalized(features, own_mean, own_std, spatial, pointwise, bias, predictor.groups)
        return adaptive_conv(normalized, spatial, pointwise, bias, predictor.groups)

    def decode(self, content_features: torch.Tensor, style: StyleCode | Sequence[StyleCode],
               statistics: ContentStatistics | None = None) -> torch.Tensor:
        """``style``: one code, or four (one per scale, coarse to fine) for per-scale style mixing.
        ``statistics``: where each adaptive layer's normalisation statistics come from (default: its input's)."""
        return self.decoder(content_features, self._adaptive_layers(style, statistics))

    def decode_regions(self, content_features: torch.Tensor, codes: Sequence[StyleCode],
                       masks: torch.Tensor, statistics: ContentStatistics | None = None) -> torch.Tensor:
        """Spatial control: at every adaptive layer, region k of ``masks`` ([N, H, W], summing to 1) gets the
        layer as ``codes[k]``'s predicted kernels make it."""
        return self.decoder(content_features, self._adaptive_layers(codes, statistics, masks))

    def decoder_input(self, content_features: torch.Tensor, style: StyleCode | Sequence[StyleCode], scale: int,
                      statistics: ContentStatistics | None = None, masks: torch.Tensor | None = None) -> torch.Tensor:
        """The features entering decoder scale ``scale``, before its adaptive layer normalises them. Tiled
        inference measures their statistics over the whole image, one scale after the other."""
        layers = self._adaptive_layers(style, statistics, masks)
        x = content_features
        for index in range(scale):
            x = self.decoder.scales[index](layers(index, x))
        return x

    def _adaptive_layers(self, style: StyleCode | Sequence[StyleCode], statistics: ContentStatistics | None,
                         masks: torch.Tensor | None = None) -> Callable[[int, torch.Tensor], torch.Tensor]:
        """``modulate(scale, x)`` for the decoder: one code, four per-scale codes, or region codes with masks."""
        if masks is not None:
            from .spatial_control import at_resolution

            def regions(scale: int, x: torch.Tensor) -> torch.Tensor:
                weights = at_resolution(masks.to(x.device), *x.shape[-2:])
                return sum(w[0] * self.modulate(scale, x, code, statistics) for w, code in zip(weights, style))

            return regions
        per_scale = [style] * len(SCALE_CHANNELS) if isinstance(style, StyleCode) else list(style)
        if len(per_scale) != len(SCALE_CHANNELS):
            raise ValueError(f"per-scale mixing needs {len(SCALE_CHANNELS)} style codes, got {len(per_scale)}")
        return lambda scale, x: self.modulate(scale, x, per_scale[scale], statistics)


def build_model(kind: str, encoder: VGGEncoder | None = None, **hyperparameters) -> StyleTransferModel:
    """The one constructor for every model kind (``"adain"`` or ``"adaconv"``)."""
    if kind == "adain":
        if hyperparameters:
            raise ValueError(f"AdaIN takes no hyper-parameters, got {sorted(hyperparameters)}")
        return AdaINModel(encoder)
    if kind == "adaconv":
        return AdaConvModel(encoder, **hyperparameters)
    raise ValueError(f"unknown model {kind!r}: choose one of {', '.join(MODEL_KINDS)}")
