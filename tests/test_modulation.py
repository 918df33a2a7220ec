import torch

from adaconv.modulation import (
    _channels_first,
    adain,
    adaptive_conv,
    adaptive_conv_of_normalized,
    identity_kernels,
    instance_normalize,
    mean_std,
    normalize_with_statistics,
)


def test_mean_std_by_hand():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2)
    mean, std = mean_std(x)
    assert mean.item() == 2.5
    assert torch.allclose(std, torch.tensor(1.25 + 1e-5).sqrt().view(1, 1, 1, 1))  # population variance 1.25


def test_mean_std_of_constant_channel_is_finite_with_finite_gradient():
    x = torch.ones(1, 2, 4, 4, requires_grad=True)
    _, std = mean_std(x)
    std.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_adain_gives_the_style_statistics():
    torch.manual_seed(0)
    content = torch.randn(2, 8, 12, 10) * 3 + 1
    style_mean, style_std = torch.randn(2, 8, 1, 1), torch.rand(2, 8, 1, 1) + 0.5
    mean, std = mean_std(adain(content, style_mean, style_std))
    assert torch.allclose(mean, style_mean, atol=1e-5)
    assert torch.allclose(std, style_std, atol=1e-3)


def test_adain_equals_a_1x1_adaptive_convolution():
    """AdaIN is AdaConv with a 1x1 depthwise kernel σ_s, bias μ_s and an identity pointwise kernel (SPEC §3)."""
    torch.manual_seed(1)
    batch, channels = 3, 16
    content = torch.randn(batch, channels, 9, 11) * 2 - 0.5
    style_mean, style_std = torch.randn(batch, channels, 1, 1), torch.rand(batch, channels, 1, 1) + 0.1
    spatial = style_std.view(batch, channels, 1, 1, 1)
    pointwise = identity_kernels(channels, channels, 1).expand(batch, -1, -1, -1, -1)
    result = adaptive_conv(instance_normalize(content), spatial, pointwise, style_mean.view(batch, channels),
                           groups=channels)
    assert torch.allclose(result, adain(content, style_mean, style_std), atol=1e-5)


def test_batched_adaptive_conv_equals_one_grouped_convolution_over_the_folded_batch():
    """Reference: the batch folded into the groups, [1, B·C, H, W] with B·groups groups, in one call."""
    torch.manual_seed(2)
    batch, channels, groups = 3, 8, 4
    x = torch.randn(batch, channels, 10, 7).contiguous(memory_format=torch.channels_last)
    spatial = torch.randn(batch, channels, channels // groups, 3, 3)
    pointwise = torch.randn(batch, channels, channels // groups, 1, 1)
    bias = torch.randn(batch, channels)
    batched = adaptive_conv(x, spatial, pointwise, bias, groups)
    folded = torch.nn.functional.pad(x.reshape(1, batch * channels, 10, 7), (1, 1, 1, 1), mode="reflect")
    folded = torch.nn.functional.conv2d(folded, spatial.reshape(batch * channels, -1, 3, 3), groups=batch * groups)
    folded = torch.nn.functional.conv2d(folded, pointwise.reshape(batch * channels, -1, 1, 1), groups=batch * groups)
    reference = folded.reshape(batch, channels, 10, 7) + bias.view(batch, channels, 1, 1)
    assert torch.allclose(batched, reference, atol=1e-5)
    assert batched.is_contiguous(memory_format=torch.channels_last)  # the next decoder layer's layout


def test_identity_kernels_are_the_identity():
    x = torch.randn(2, 8, 5, 5)
    for groups in (8, 4, 1):
        for size in (1, 3):
            kernel = identity_kernels(8, groups, size).expand(2, -1, -1, -1, -1)
            out = adaptive_conv(x, kernel, None, torch.zeros(2, 8), groups)
            assert torch.allclose(out, x)


def test_single_image_fast_path_matches_the_general_statistics():
    """Inference on one image takes a fused kernel; it must agree with var_mean."""
    torch.manual_seed(4)
    x = (torch.randn(1, 32, 40, 24) * 3 + 2).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        fast_normalized, fast_mean, fast_std = normalize_with_statistics(x)
    var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, unbiased=False)
    assert torch.allclose(fast_mean, mean, atol=1e-5)
    assert torch.allclose(fast_std, (var + 1e-5).sqrt(), rtol=1e-4)
    assert torch.allclose(fast_normalized, (x - mean) / (var + 1e-5).sqrt(), atol=1e-4)
    slow = instance_normalize(x.requires_grad_())  # with a gradient: the general path
    assert torch.allclose(slow.detach(), fast_normalized, atol=1e-4)


def test_mean_std_matches_var_mean_in_value_and_gradient():
    """mean_std takes its statistics from the batch-norm kernel and has a hand-written backward: both must be
    var_mean's, per sample, on channels_last batches, in float64 (gradcheck) and for bf16 features (fp32 out)."""
    torch.manual_seed(5)

    def reference(x):
        var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, unbiased=False)
        return mean, (var + 1e-5).sqrt()

    x = (torch.randn(3, 16, 20, 12, dtype=torch.float64).relu() * 3 + 1).contiguous(memory_format=torch.channels_last)
    for ours, theirs in zip(mean_std(x), reference(x)):
        assert torch.allclose(ours, theirs, rtol=1e-9, atol=1e-12)
    small = torch.randn(2, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(mean_std, (small,))
    assert torch.autograd.gradcheck(lambda t: mean_std(t)[1], (small,))  # σ alone: the mean's gradient is None
    weights = torch.randn(2, 16, 1, 1, dtype=torch.float64)
    grads = []
    for function in (mean_std, reference):
        leaf = x[:2].detach().requires_grad_()
        mean, std = function(leaf)
        (mean * weights + std * weights.flip(1) ** 2).sum().backward()
        grads.append(leaf.grad)
    assert torch.allclose(*grads, rtol=1e-9, atol=1e-12)
    assert grads[0].is_contiguous(memory_format=torch.channels_last)

    features = x.float().bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mean, std = mean_std(features)
    assert mean.dtype == std.dtype == torch.float32
    for ours, theirs in zip((mean, std), reference(features.detach().double())):
        assert torch.allclose(ours.double(), theirs, rtol=1e-5)  # fp32 statistics of the bf16 values
    std.sum().backward()
    assert features.grad.dtype == torch.bfloat16 and torch.isfinite(features.grad).all()


def test_training_form_of_the_adaptive_layer_equals_the_per_sample_one_in_value_and_gradient():
    """adaptive_conv_of_normalized (fp32, NCHW, folded batch, pointwise as a matrix product) must be
    adaptive_conv of the normalised features, for every kind of grouping, in float64 and under gradcheck."""
    torch.manual_seed(6)
    batch = 3
    cases = [(8, 8, True, torch.channels_last), (8, 4, True, torch.channels_last),
             (8, 2, False, torch.contiguous_format), (6, 1, True, torch.contiguous_format)]
    for channels, groups, with_pointwise, layout in cases:
        features = (torch.randn(batch, channels, 7, 9, dtype=torch.float64).relu() * 2 + 0.3)
        features = features.contiguous(memory_format=layout)
        per_group = channels // groups
        spatial = torch.randn(batch, channels, per_group, 3, 3, dtype=torch.float64)
        pointwise = torch.randn(batch, channels, per_group, 1, 1, dtype=torch.float64) if with_pointwise else None
        bias = torch.randn(batch, channels, dtype=torch.float64)
        weights = torch.randn(batch, channels, 7, 9, dtype=torch.float64)
        results = []
        for form in ("per sample", "training"):
            leaves = [t.detach().clone().requires_grad_() if t is not None else None
                      for t in (features, spatial, pointwise, bias)]
            x, k, p, b = leaves
            mean, std = mean_std(x)
            if form == "per sample":
                out = adaptive_conv((x - mean) / std, k, p, b, groups)
            else:
                out = adaptive_conv_of_normalized(x, mean, std, k, p, b, groups)
            (out * weights).sum().backward()
            results.append((out.detach(), [t.grad for t in leaves if t is not None]))
            assert out.dtype == torch.float64 and out.is_contiguous(memory_format=layout)
        (reference, reference_grads), (ours, our_grads) = results
        assert torch.allclose(ours, reference, rtol=1e-10, atol=1e-12)
        for mine, theirs in zip(our_grads, reference_grads):
            assert torch.allclose(mine, theirs, rtol=1e-10, atol=1e-12)
    inputs = [torch.randn(2, 4, 5, 6, dtype=torch.float64).contiguous(memory_format=torch.channels_last),
              torch.randn(2, 4, 1, 1, dtype=torch.float64), torch.rand(2, 4, 1, 1, dtype=torch.float64) + 0.5,
              torch.randn(2, 4, 2, 3, 3, dtype=torch.float64), torch.randn(2, 4, 2, 1, 1, dtype=torch.float64),
              torch.randn(2, 4, dtype=torch.float64)]
    assert torch.autograd.gradcheck(lambda *a: adaptive_conv_of_normalized(*a, 2),
                                    [t.requires_grad_() for t in inputs])


def test_training_form_under_bf16_autocast_computes_in_fp32_and_hands_back_bf16_channels_last():
    torch.manual_seed(7)
    features = torch.randn(2, 8, 12, 10).relu().bfloat16().contiguous(memory_format=torch.channels_last)
    features.requires_grad_()
    spatial = torch.randn(2, 8, 2, 3, 3, requires_grad=True)
    pointwise = torch.randn(2, 8, 2, 1, 1, requires_grad=True)
    bias = torch.randn(2, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mean, std = mean_std(features)
        out = adaptive_conv_of_normalized(features, mean, std, spatial, pointwise, bias, 4)
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=torch.channels_last)
    exact = adaptive_conv(*[t.detach().double() for t in ((features - mean) / std, spatial, pointwise, bias)], 4)
    assert torch.allclose(out.double(), exact, rtol=1e-2, atol=1e-2)  # fp32 inside, one bf16 rounding at the end
    out.float().square().sum().backward()
    assert features.grad.dtype == torch.bfloat16 and features.grad.is_contiguous(memory_format=torch.channels_last)
    assert all(torch.isfinite(t.grad).all() for t in (features, spatial, pointwise, bias))


def test_channels_first_transposes_exactly():
    torch.manual_seed(8)
    for dtype in (torch.float32, torch.bfloat16, torch.float64):
        x = (torch.randn(3, 5, 4, 6) * 1e3).to(dtype).contiguous(memory_format=torch.channels_last)
        y = _channels_first(x)
        assert y.is_contiguous() and y.dtype == dtype and torch.equal(y, x)
