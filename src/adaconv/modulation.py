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
        batch, channels = features.shape[:2]
        count = features.shape[2] * features.shape[3]
        scale = grad_std / (count * std) if grad_std is not None else torch.zeros_like(std)
        offset = grad_mean / count if grad_mean is not None else torch.zeros_like(mean)
        if features.device.type != "cpu":
            return torch.addcmul(offset - scale * mean, features, scale).to(features.dtype)
        # on the CPU, as batch norm's inference transform, scale·(x − μ)/sqrt(1 + 0) + offset, per image: it reads
        # bf16 features with fp32 parameters and writes the bf16 gradient in one pass, where addcmul would cast
        # the features to an fp32 copy first and make an fp32 result to cast down (5 ms vs 28 for 8x64x256²)
        grad = torch.empty_like(features)
        unit = torch.ones(channels, dtype=scale.dtype, device=scale.device)
        unused = torch.empty(0, dtype=scale.dtype, device=scale.device)
        for i in range(batch):
            torch.ops.aten.native_batch_norm.out(
                features[i:i + 1], scale[i].view(channels), offset[i].view(channels), mean[i].view(channels), unit,
                False, 0.0, 0.0, out=grad[i:i + 1], save_mean=unused, save_invstd=unused)
        return grad


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

    One grouped convolution per sample, in the features' layout and dtype: the form for inference (one image, no
    gradient), where it is as fast as any and what ONNX export traces. Training takes
    :func:`adaptive_conv_of_normalized`, whose backward is several times faster.
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


def wants_gradients(*tensors: torch.Tensor | None) -> bool:
    """Training: a gradient is being taken of one of ``tensors`` (the features or the predicted kernels)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def adaptive_conv_of_normalized(features: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                                spatial_kernels: torch.Tensor, pointwise_kernels: torch.Tensor | None,
                                biases: torch.Tensor, groups: int) -> torch.Tensor:
    """``adaptive_conv((features − mean) / std, ...)`` laid out for training: fp32, NCHW, the batch folded into the
    groups, the pointwise kernels as one batched matrix product.

    Why not the per-sample loop of :func:`adaptive_conv`: oneDNN's backward of a grouped convolution with few
    channels per group is slow in bf16 and on channels_last tensors (the 256-channel layer, 2 channels per group:
    ~580 ms per batch of 8 at 64x64 against ~90 ms for this form; docs/benchmarks.md). Here the four AdaConv layers
    of a training step run in fp32, which is also the more precise; the result comes back in the features' layout
    and the autocast dtype, ready for the next decoder convolution.
    """
    batch, channels, height, width = features.shape
    per_group = channels // groups
    size = spatial_kernels.shape[-1]
    device = features.device.type
    out_dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else features.dtype
    channels_last = _is_channels_last(features)
    compute = torch.promote_types(features.dtype, torch.float32)  # fp32, or float64 for gradcheck
    with torch.autocast(device, enabled=False):
        x = _Normalization.apply(features, mean, std)
        if size > 1:
            x = F.pad(x, (size // 2,) * 4, mode="reflect")
        kernels = spatial_kernels.to(compute).reshape(batch * channels, per_group, size, size)
        x = F.conv2d(x.view(1, batch * channels, *x.shape[-2:]), kernels, groups=batch * groups)
        x = x.view(batch, channels, height, width)
        bias = biases.to(compute).view(batch, channels, 1, 1)
        if pointwise_kernels is None:
            x = x + bias
        elif per_group == 1:  # one channel per group: the pointwise kernel is a per-channel scale
            x = torch.addcmul(bias, x, pointwise_kernels.to(compute).view(batch, channels, 1, 1))
        else:
            x = torch.baddbmm(bias.reshape(batch * groups, per_group, 1),
                              pointwise_kernels.to(compute).reshape(batch * groups, per_group, per_group),
                              x.reshape(batch * groups, per_group, height * width))
            x = x.view(batch, channels, height, width)
    if channels_last:
        return _ToChannelsLast.apply(x, out_dtype)
    return x.to(out_dtype)


def _is_channels_last(x: torch.Tensor) -> bool:
    """Laid out channels_last (and not also contiguous, as tensors with one pixel or one channel are)."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _channels_first(x: torch.Tensor) -> torch.Tensor:
    """A channels_last [B, C, H, W] tensor as a contiguous (NCHW) one with the same values.

    As a batched product with the identity, [C, C] x [C, H·W] per image, which is exact (one term of each sum is
    the value, the others are zeros) and on the CPU 3-6x faster than ``.contiguous()``: PyTorch's copy into this
    layout is a strided gather, the matrix product a blocked transpose (8x64x256x256: 63 ms vs 12 in bf16).
    """
    if x.is_contiguous() or x.dim() != 4 or x.device.type != "cpu":  # a GPU's own copy is fast
        return x.contiguous()
    batch, channels, height, width = x.shape
    rows = x.permute(0, 2, 3, 1).reshape(batch, height * width, channels)
    identity = torch.eye(channels, dtype=x.dtype, device=x.device).expand(batch, channels, channels)
    return torch.bmm(identity, rows.transpose(1, 2)).view(batch, channels, height, width)


class _ToChannelsLast(torch.autograd.Function):
    """NCHW -> channels_last in ``dtype`` (a fast copy), with the gradient brought back by :func:`_channels_first`
    (autograd's own would copy it the slow way)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        ctx.input_dtype = x.dtype
        return x.to(dtype=dtype, memory_format=torch.channels_last)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _channels_first(grad).to(ctx.input_dtype), None


class _Normalization(torch.autograd.Function):
    """(features − mean) / std as a new fp32 NCHW tensor (float64 for float64 features), from any dtype and layout.

    Autograd's own version of the expression makes an fp32 tensor in the features' layout, a second for the
    division, and a layout copy for the folded convolution, and the same again backward; this writes the result
    once and takes the gradient in two passes (the per-channel sums, then one multiply into the features' dtype
    and layout).
    """

    @staticmethod
    def forward(ctx, features: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        compute = torch.promote_types(features.dtype, torch.float32)
        inverse = std.to(compute).reciprocal()
        normalized = torch.empty(features.shape, dtype=compute, device=features.device)
        torch.addcmul(-mean.to(compute) * inverse, _channels_first(features), inverse, out=normalized)
        ctx.save_for_backward(normalized, inverse)
        ctx.features_dtype, ctx.mean_dtype, ctx.std_dtype = features.dtype, mean.dtype, std.dtype
        ctx.channels_last = _is_channels_last(features)
        return normalized

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        # y = (x − μ) / σ: ∂/∂x = g / σ, ∂/∂μ = −Σ g / σ, ∂/∂σ = −Σ g·y / σ (sums over the image)
        normalized, inverse = ctx.saved_tensors
        grad_features = grad_mean = grad_std = None
        if ctx.needs_input_grad[0]:
            layout = torch.channels_last if ctx.channels_last else torch.contiguous_format
            grad_features = torch.empty(grad.shape, dtype=ctx.features_dtype, device=grad.device,
                                        memory_format=layout)
            torch.mul(grad, inverse, out=grad_features)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            grad_dot_normalized, grad_sum = _per_image_sums(grad, normalized)
            grad_mean = (-grad_sum.view_as(inverse) * inverse).to(ctx.mean_dtype)
            grad_std = (-grad_dot_normalized.view_as(inverse) * inverse).to(ctx.std_dtype)
        return grad_features, grad_mean, grad_std


def _per_image_sums(grad: torch.Tensor, normalized: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ grad·normalized, Σ grad) over each image's pixels, [B, C] each.

    On the CPU from batch norm's backward, one image at a time (its weight and bias gradients are exactly these
    sums when the saved mean is 0 and the inverse σ 1): one vectorised pass, 5x faster than the same dot products
    as a batched matrix product (10 ms vs 54 for 8x64x256²).
    """
    batch, channels = grad.shape[:2]
    if grad.device.type != "cpu":
        dot = torch.bmm(grad.reshape(batch * channels, 1, -1), normalized.reshape(batch * channels, -1, 1))
        return dot.view(batch, channels), grad.sum(dim=(2, 3))
    ones = torch.ones(channels, dtype=normalized.dtype, device=normalized.device)
    zeros = torch.zeros(channels, dtype=normalized.dtype, device=normalized.device)
    sums = [torch.ops.aten.native_batch_norm_backward(grad[i:i + 1], normalized[i:i + 1], ones, None, None, zeros,
                                                      ones, True, 0.0, [False, True, True])[1:] for i in range(batch)]
    return torch.stack([dot for dot, _ in sums]), torch.stack([total for _, total in sums])


def identity_kernels(channels: int, groups: int, size: int, *, dtype=None, device=None) -> torch.Tensor:
    """The grouped kernel [C, C/groups, size, size] for which a grouped convolution is the identity."""
    per_group = channels // groups
    kernel = torch.zeros(channels, per_group, size, size, dtype=dtype, device=device)
    index = torch.arange(channels, device=device)
    kernel[index, index % per_group, size // 2, size // 2] = 1.0
    return kernel
