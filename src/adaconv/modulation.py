"""Feature modulation: adaptive convolution (AdaConv, SPEC §3) and its 1x1 special case, AdaIN (SPEC §2).

Pure tensor functions. AdaIN(x, y) = σ_y · (x − μ_x) / σ_x + μ_y is an adaptive convolution of the
instance-normalised x with a 1x1 depthwise kernel σ_y, an identity pointwise kernel and a bias μ_y;
``tests/test_modulation.py`` checks that identity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-5


def _single_image_fast_path(features: torch.Tensor) -> bool:
    """One image and no gradient (inference): batch-norm statistics are instance statistics, and PyTorch's
    fused batch-norm kernel is ~6x faster than var_mean on channels_last tensors on the CPU."""
    return features.shape[0] == 1 and not (torch.is_grad_enabled() and features.requires_grad)


def normalize_with_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(instance-normalised features, mean, σ), the statistics as in :func:`mean_std`."""
    if _single_image_fast_path(features):
        channels = features.shape[1]
        normalized, mean, inverse_std = torch.native_batch_norm(
            features.float(), None, None, None, None, True, 0.0, EPS)
        return normalized, mean.view(1, channels, 1, 1), (1.0 / inverse_std).view(1, channels, 1, 1)
    mean, std = mean_std(features)
    return (features - mean) / std, mean, std


def mean_std(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and σ = sqrt(var + 1e-5) (population variance), shapes [B, C, 1, 1].

    sqrt(var + eps), never std + eps: the latter has an infinite gradient on constant channels (SPEC §5).
    Computed in fp32 even under bf16 autocast: statistics of many elements need the precision.
    """
    return _ChannelStatistics.apply(features)


class _ChannelStatistics(torch.autograd.Function):
    """:func:`mean_std` from PyTorch's batch-norm kernel, one image at a time, with a one-pass backward.

    Why not ``torch.var_mean(features, dim=(2, 3))``: over the spatial dimensions of a channels_last tensor it is
    5-10x slower on the CPU, and its autograd backward is several passes over the activation. In an AdaConv training
    step (nine statistics of activations up to 8x64x256x256) that was ~9% of the step on an AMX CPU
    (docs/benchmarks.md). The batch-norm kernel sums in fp32 without compensation: σ within ~1e-4 relative of a
    float64 reference on 65,536 elements, far below the bf16 rounding of the features it is taken of.
    """

    @staticmethod
    def forward(ctx, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, channels = features.shape[:2]
        weight = bias = None
        if features.dtype in (torch.bfloat16, torch.float16):  # fp32 weights: the kernel returns fp32 statistics
            weight = torch.ones(channels, device=features.device)
            bias = torch.zeros(channels, device=features.device)
        with torch.autocast(features.device.type, enabled=False):
            statistics = [torch.native_batch_norm(features[i:i + 1], weight, bias, None, None, True, 0.0, EPS)[1:]
                          for i in range(batch)]
        mean = torch.stack([mean for mean, _ in statistics]).view(batch, channels, 1, 1)
        std = torch.stack([inverse for _, inverse in statistics]).view(batch, channels, 1, 1).reciprocal()
        ctx.save_for_backward(features, mean, std)
        return mean, std

    @staticmethod
    def backward(ctx, grad_mean: torch.Tensor | None, grad_std: torch.Tensor | None) -> torch.Tensor:
        # μ = Σx / n and σ = sqrt(Σ(x − μ)² / n + ε), so ∂μ/∂x = 1/n and ∂σ/∂x = (x − μ) / (nσ): the gradient is
        # one affine map per sample and channel, a·x + b, applied in a single pass
        features, mean, std = ctx.saved_tensors
        count = features.shape[2] * features.shape[3]
        scale = grad_std / (count * std) if grad_std is not None else torch.zeros_like(std)
        shift = (grad_mean / count if grad_mean is not None else torch.zeros_like(mean)) - scale * mean
        return torch.addcmul(shift, features, scale).to(features.dtype)


def instance_normalize(features: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit σ per sample and channel."""
    return normalize_with_statistics(features)[0]


def adain(content: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor) -> torch.Tensor:
    """Adaptive instance normalisation: the content's channel statistics replaced by the style's."""
    mean, std = mean_std(content)
    scale = style_std / std
    return content * scale + (style_mean - mean * scale)


def adaptive_conv(features: torch.Tensor, spatial_kernels: torch.Tensor,
                  pointwise_kernels: torch.Tensor | None, biases: torch.Tensor, groups: int) -> torch.Tensor:
    """Per-sample grouped convolution with predicted kernels (the AdaConv layer without its normalisation).

    Args:
        features: [B, C, H, W], usually instance-normalised.
        spatial_kernels: [B, C, C/groups, k, k] depthwise-separable spatial kernels (k odd; reflection padding).
        pointwise_kernels: [B, C, C/groups, 1, 1] or None for no channel mixing.
        biases: [B, C].
        groups: channel groups per sample.

    One grouped convolution per sample. Folding the batch into the groups (one [1, B·C, H, W] call) reads
    better but is slower on channels_last tensors, the layout everything here runs in: the fold and its
    inverse are layout-changing copies of the whole activation, forward and backward, and the result leaves
    channels_last for the next layer. Measured on the training step (batch 4–8, bf16): the decoder's forward
    and backward 6–12% faster this way (docs/benchmarks.md).
    """
    batch, channels = features.shape[:2]
    size = spatial_kernels.shape[-1]
    outputs = []
    for index in range(batch):
        x = features[index:index + 1]
        if size > 1:
            x = F.pad(x, (size // 2,) * 4, mode="reflect")
        x = F.conv2d(x, spatial_kernels[index], groups=groups)
        if pointwise_kernels is not None:
            x = F.conv2d(x, pointwise_kernels[index], groups=groups)
        outputs.append(x)
    x = outputs[0] if batch == 1 else torch.cat(outputs)
    return x + biases.reshape(batch, channels, 1, 1)


def identity_kernels(channels: int, groups: int, size: int, *, dtype=None, device=None) -> torch.Tensor:
    """The grouped kernel [C, C/groups, size, size] for which a grouped convolution is the identity."""
    per_group = channels // groups
    kernel = torch.zeros(channels, per_group, size, size, dtype=dtype, device=device)
    index = torch.arange(channels, device=device)
    kernel[index, index % per_group, size // 2, size // 2] = 1.0
    return kernel
