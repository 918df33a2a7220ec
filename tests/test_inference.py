import numpy as np
import pytest
import torch
from PIL import Image

from adaconv import Stylizer
from adaconv.errors import AdaconvError, WeightsError
from adaconv.imageio import to_tensor
from adaconv.preprocessing import resize


@pytest.fixture(scope="module")
def stylizer(adain_weights):
    return Stylizer.from_weights(adain_weights, device="cpu")


@pytest.fixture(scope="module")
def small_content(content_path):
    return resize(to_tensor(content_path), 60, 103)


def test_output_has_the_content_size_for_odd_sizes(stylizer, style_path):
    content = torch.rand(3, 75, 129)
    image = stylizer.stylize(content, style_path, style_size=64)
    assert image.size == (129, 75) and image.mode == "RGB"


def test_adaconv_output_size_300x517(adaconv_weights, style_path):
    stylizer = Stylizer.from_weights(adaconv_weights, device="cpu")
    out = stylizer.stylize_tensor(torch.rand(3, 300, 517), style_path)
    assert out.shape == (3, 300, 517)


def test_inputs_of_every_kind_agree(stylizer, content_path, style_path, small_content):
    as_pil = Image.fromarray((small_content.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    a = stylizer.stylize(as_pil, style_path, style_size=64)
    b = stylizer.stylize(np.asarray(as_pil), style_path, style_size=64)
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_style_codes_are_cached(stylizer, style_path):
    first = stylizer.encode_style(style_path, style_size=64)
    assert stylizer.encode_style(style_path, style_size=64) is first
    assert stylizer.encode_style(style_path, style_size=96) is not first


def test_single_style_with_weights_equals_that_style(stylizer, style_path, content_path, small_content):
    other = to_tensor(content_path)
    plain = stylizer.stylize_tensor(small_content, style_path, style_size=64)
    weighted = stylizer.stylize_tensor(small_content, [style_path, other], style_weights=[1.0, 0.0], style_size=64)
    assert torch.allclose(plain, weighted, atol=1e-6)


def test_bad_arguments(stylizer, style_path, small_content):
    with pytest.raises(AdaconvError, match="alpha"):
        stylizer.stylize(small_content, style_path, alpha=1.5)
    with pytest.raises(AdaconvError, match="too small"):
        stylizer.stylize(torch.rand(3, 8, 8), style_path)
    with pytest.raises(AdaconvError, match="style weights"):
        stylizer.stylize(small_content, [style_path, style_path], style_weights=[1.0])


def test_missing_shipped_weights_are_reported(monkeypatch, tmp_path):
    import adaconv.inference as inference

    monkeypatch.setattr(inference, "shipped_weights_path", lambda kind: tmp_path / f"{kind}.safetensors")
    with pytest.raises(WeightsError, match="no trained adaconv weights are shipped"):
        Stylizer.from_pretrained("adaconv")


def test_shipped_adain_weights_are_trained_and_stylise(content_path, style_path):
    """The default model ships with real, trained weights that carry their provenance."""
    from adaconv.inference import DEFAULT_MODEL

    stylizer = Stylizer.from_pretrained(DEFAULT_MODEL, device="cpu")
    provenance = stylizer.info["provenance"]
    assert provenance["iterations"] >= 1000 and provenance["images_seen"] >= 8000
    assert "validation" in provenance and provenance["validation"]["loss"] > 0
    content = resize(to_tensor(content_path), 64, 96)
    output = stylizer.stylize_tensor(content, style_path, style_size=128)
    assert output.shape == content.shape
    assert output.std() > 0.05                        # a picture, not a flat colour
    assert (output - content).abs().mean() > 0.02    # and not the photo handed back
