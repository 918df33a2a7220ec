import pytest
import torch

from adaconv.decoder import SCALE_CHANNELS
from adaconv.kernel_prediction import GROUPS
from adaconv.models import AdaConvModel, blend_style_codes, build_model
from adaconv.modulation import adain, mean_std
from adaconv.preprocessing import resize


def conv_params(cin, cout, k):
    return cin * cout * k * k + cout


DECODER_PARAMS = sum(conv_params(a, b, 3) for a, b in [
    (512, 256), (256, 256), (256, 256), (256, 256), (256, 128), (128, 128), (128, 64), (64, 64), (64, 3)])


def test_adain_parameter_count_matches_the_spec():
    assert sum(p.numel() for p in build_model("adain").trainable_parameters()) == DECODER_PARAMS


def test_adaconv_parameter_count_matches_the_spec():
    style_encoder = 3 * conv_params(512, 512, 3) + (512 * 4 * 4) * (512 * 3 * 3) + 512 * 3 * 3
    predictors = 0
    for channels, groups in zip(SCALE_CHANNELS, GROUPS):
        per_group = channels // groups
        predictors += conv_params(512, channels * per_group, 3)   # spatial kernels
        predictors += conv_params(512, channels * per_group, 1)   # pointwise kernels
        predictors += conv_params(512, channels, 1)               # biases
    model = build_model("adaconv")
    assert sum(p.numel() for p in model.trainable_parameters()) == DECODER_PARAMS + style_encoder + predictors


def test_output_shapes():
    torch.manual_seed(0)
    content, style = torch.rand(1, 3, 256, 256), torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        assert build_model("adain")(content, style).shape == (1, 3, 256, 256)
        assert build_model("adaconv")(content, style).shape == (1, 3, 256, 256)
        wide = torch.rand(2, 3, 64, 120)
        assert build_model("adaconv", parametrization="paper")(wide, torch.rand(2, 3, 256, 256)).shape == wide.shape


@pytest.mark.parametrize("kind,extra", [("adain", {}), ("adaconv", {"parametrization": "paper"})])
def test_gradients_reach_every_trainable_parameter_and_not_vgg(kind, extra):
    torch.manual_seed(0)
    model = build_model(kind, **extra)
    size = 256 if kind == "adaconv" else 64
    output = model(torch.rand(2, 3, 64, 64), torch.rand(2, 3, size, size))
    output.square().mean().backward()
    for name, parameter in model.named_parameters():
        if name.startswith("encoder."):
            assert parameter.grad is None, name
        else:
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def adain_and_untrained_residual_adaconv(seed: int):
    """An AdaIN model and a residual AdaConv sharing its decoder (predictors at their zero initialisation)."""
    torch.manual_seed(seed)
    adain_model = build_model("adain")
    adaconv_model = build_model("adaconv", parametrization="residual")
    adaconv_model.decoder.load_state_dict(adain_model.decoder.state_dict())
    return adain_model, adaconv_model


def test_residual_adaconv_starts_as_the_adain_model():
    """With the decoder of an AdaIN model and zero-initialised predictors, AdaConv is that AdaIN model."""
    adain_model, adaconv_model = adain_and_untrained_residual_adaconv(3)
    content, style = torch.rand(2, 3, 64, 96), torch.rand(2, 3, 256, 256)
    with torch.no_grad():
        content_features = adain_model.encoder.encode(content)
        style_features = adain_model.encoder.encode(style)
        expected = adain_model.decoder(adain(content_features, *mean_std(style_features)))
        actual = adaconv_model.decode(content_features, adaconv_model.style_code_from_features(style_features))
    assert torch.allclose(actual, expected, atol=1e-4)


def test_adaconv_reads_a_style_as_adain_does():
    """Any style size: the statistics come from the image as given (so an untrained residual AdaConv stylises
    exactly as its AdaIN, strokes included), the descriptor from the whole image resized to 256x256."""
    adain_model, adaconv_model = adain_and_untrained_residual_adaconv(4)
    content, style = torch.rand(1, 3, 64, 80), torch.rand(1, 3, 96, 144)
    with torch.no_grad():
        code = adaconv_model.encode_style(style)
        square = adaconv_model.encode_style(resize(style, 256, 256))
        assert torch.equal(code.descriptor, square.descriptor)
        assert not torch.allclose(code.std, square.std)  # the statistics are those of the 96x144 image
        expected = adain_model(content, style)
        assert torch.allclose(adaconv_model(content, style), expected, atol=1e-4)
        # α = 0 is the content's own statistics for both models
        assert torch.allclose(adaconv_model(content, style, alpha=0.0), adain_model(content, style, alpha=0.0),
                              atol=1e-4)


def test_adaconv_reads_a_content_as_its_own_style_at_any_size():
    """The identity loss's style code: the content's own statistics and the descriptor of it at 256x256, whether
    the content must be resized for the descriptor or (training crops) already is 256x256 and reuses its features."""
    model = build_model("adaconv")
    for size in ((64, 80), (256, 256)):
        content = torch.rand(1, 3, *size)
        with torch.no_grad():
            features = model.encoder.encode(content)
            code = model.own_style_code(content, features)
            square = model.encoder.encode(resize(content, 256, 256))
            expected = model.style_code_from_features(square, statistics_features=features)
        for name in ("descriptor", "mean", "std"):
            assert torch.allclose(getattr(code, name), getattr(expected, name), atol=1e-5), (size, name)


def test_blending_one_style_with_weight_one_gives_that_style():
    model = build_model("adaconv")
    with torch.no_grad():
        a = model.encode_style(torch.rand(1, 3, 256, 256))
        b = model.encode_style(torch.rand(1, 3, 256, 256))
    blended = blend_style_codes([a, b], [1.0, 0.0])
    assert torch.equal(blended.descriptor, a.descriptor) and torch.equal(blended.std, a.std)


def test_alpha_zero_reconstructs_through_the_content_statistics():
    """AdaIN with α = 0 decodes the content features unchanged (AdaIN with its own statistics)."""
    torch.manual_seed(0)
    model = build_model("adain")
    content = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = model.decoder(model.encoder.encode(content))
        actual = model(content, torch.rand(1, 3, 64, 64), alpha=0.0)
    assert torch.allclose(actual, expected, atol=1e-4)


def test_unknown_model_and_parametrization_are_refused():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("gatys")
    with pytest.raises(ValueError, match="parametrization"):
        AdaConvModel(parametrization="other")


def test_style_encoder_fully_connected_layer_runs_in_fp32_under_bf16_autocast():
    """The layer is exempt from autocast (faster in fp32 on the CPU, docs/benchmarks.md): under autocast the
    descriptor is fp32 and agrees with the fp32 model to the bf16 rounding of the convolutions before it."""
    from adaconv.kernel_prediction import StyleEncoder

    torch.manual_seed(6)
    encoder = StyleEncoder()
    features = torch.rand(2, 512, 32, 32)
    with torch.no_grad():
        exact = encoder(features)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = encoder(features)
    assert mixed.dtype == torch.float32 and mixed.shape == (2, 512, 3, 3)
    assert torch.allclose(mixed, exact, atol=0.02 * exact.abs().max().item())


def test_adaconv_trains_through_the_same_function_it_stylises_with():
    """With gradients on, the adaptive layers take the training form (fp32, folded batch); without, the per-sample
    form that inference and ONNX use. The decoded pictures must agree, for a batch, with trained-like kernels."""
    torch.manual_seed(11)
    model = build_model("adaconv").to(memory_format=torch.channels_last)
    for predictor in model.kernel_predictors:
        for conv in (predictor.spatial, predictor.pointwise, predictor.bias):
            torch.nn.init.normal_(conv.weight, std=1e-2)
    content = torch.rand(3, 3, 64, 48).contiguous(memory_format=torch.channels_last)
    style = torch.rand(3, 3, 256, 256).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        features, code = model.encoder.encode(content), model.encode_style(style)
        inferred = model.decode(features, code)
    trained = model.decode(features, code)  # gradients on: the kernel predictors' weights require them
    assert trained.requires_grad
    assert torch.allclose(trained.detach(), inferred, atol=1e-4, rtol=1e-4)
    trained.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.kernel_predictors.parameters())
