import numpy as np
import pytest
import torch
from PIL import Image

from adaconv import Stylizer
from adaconv.devices import bf16_is_fast
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


@pytest.mark.parametrize("kind", ["adain", "adaconv"])
def test_shipped_weights_are_trained_and_stylise(kind, content_path, style_path):
    """Both models ship with real, trained weights that carry their provenance."""
    stylizer = Stylizer.from_pretrained(kind, device="cpu")
    provenance = stylizer.info["provenance"]
    # AdaConv's campaign warm-starts from the trained AdaIN, whose decoder it shares, so it counts fewer steps
    minimum = {"adain": 1000, "adaconv": 500}[kind]
    assert provenance["iterations"] >= minimum and provenance["images_seen"] >= 8 * minimum
    if kind == "adaconv":  # its lineage (one warm start after another) goes back to a trained AdaIN
        ancestors, init = [], provenance["init"]
        while init:
            ancestors.append(init["model"])
            init = init["provenance"].get("init")
        assert "adain" in ancestors, ancestors
    assert "validation" in provenance and provenance["validation"]["loss"] > 0
    content = resize(to_tensor(content_path), 64, 96)
    output = stylizer.stylize_tensor(content, style_path, style_size=128)
    assert output.shape == content.shape
    assert output.std() > 0.05                        # a picture, not a flat colour
    assert (output - content).abs().mean() > 0.02    # and not the photo handed back


# -- creative controls ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def control_content(content_path):
    from adaconv.preprocessing import center_crop, resize_short_side

    return center_crop(resize_short_side(to_tensor(content_path), 96), 96, 128)


@pytest.mark.parametrize("kind", ["adain", "adaconv"])
def test_alpha_zero_equals_the_content_as_its_own_style(stylizers, control_content, style_path, kind):
    stylizer = stylizers[kind]
    zero = stylizer.stylize_tensor(control_content, style_path, alpha=0.0)
    # read as a style the way α reads the content: AdaIN at the content's own size, AdaConv whole at 256²
    own = stylizer.stylize_tensor(control_content, control_content, style_size=96 if kind == "adain" else None)
    assert (zero - own).abs().max() < 1e-4


@pytest.mark.parametrize("kind", ["adain", "adaconv"])
def test_weights_one_zero_equal_the_single_style(stylizers, control_content, style_path, content_path, kind):
    stylizer = stylizers[kind]
    single = stylizer.stylize_tensor(control_content, style_path)
    blended = stylizer.stylize_tensor(control_content, [style_path, content_path], style_weights=[1.0, 0.0])
    assert (single - blended).abs().max() < 1e-5


@pytest.mark.parametrize("kind", ["adain", "adaconv"])
def test_mask_of_all_ones_equals_the_unmasked_run(stylizers, control_content, style_path, kind):
    stylizer = stylizers[kind]
    plain = stylizer.stylize_tensor(control_content, style_path)
    masked = stylizer.stylize_tensor(control_content, [style_path], mask=torch.ones(3, 50, 70))
    assert (plain - masked).abs().max() < 1e-5


def test_two_region_mask_paints_each_half_with_its_style(stylizers, control_content, style_path,
                                                         data_dir):
    stylizer = stylizers["adain"]
    other = data_dir / "bench" / "style" / "30.png"
    label = torch.zeros(3, 96, 128)
    label[:, :, 64:] = 1.0
    both = stylizer.stylize_tensor(control_content, [style_path, other], mask=label)
    left = stylizer.stylize_tensor(control_content, style_path)
    right = stylizer.stylize_tensor(control_content, other)
    assert (both[..., :16] - left[..., :16]).abs().mean() < (both[..., :16] - right[..., :16]).abs().mean()
    assert (both[..., -16:] - right[..., -16:]).abs().mean() < (both[..., -16:] - left[..., -16:]).abs().mean()


def test_per_scale_mixing(stylizers, control_content, style_path, data_dir):
    adaconv = stylizers["adaconv"]
    same = adaconv.stylize_tensor(control_content, [], style_per_scale=[style_path] * 4)
    assert (same - adaconv.stylize_tensor(control_content, style_path)).abs().max() < 1e-5
    other = data_dir / "bench" / "style" / "30.png"
    mixed = adaconv.stylize_tensor(control_content, [], style_per_scale=[style_path, style_path, other, other])
    assert (mixed - same).abs().mean() > 1e-4
    with pytest.raises(AdaconvError, match="adaconv model"):
        stylizers["adain"].stylize_tensor(control_content, [], style_per_scale=[style_path] * 4)


def test_luminance_preservation_keeps_the_chroma_in_the_api(stylizers, control_content, style_path):
    from adaconv.color_control import rgb_to_ycbcr

    trained = Stylizer.from_pretrained("adain", device="cpu")  # a trained decoder: few clipped pixels
    out = trained.stylize_tensor(control_content, style_path, preserve_color="luminance")
    inside = (out > 0.02) & (out < 0.98)  # where nothing was clipped
    chroma_gap = (rgb_to_ycbcr(out.double())[1:] - rgb_to_ycbcr(control_content.double())[1:]).abs()
    assert chroma_gap[:, inside.all(0)].max() < 1e-5
    with pytest.raises(AdaconvError, match="preserve_color"):
        stylizers["adain"].stylize_tensor(control_content, style_path, preserve_color="sepia")


# -- large images: tiling -----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["adain", "adaconv"])
def test_tiled_and_untiled_1024_outputs_agree(stylizers, data_dir, style_path, kind):
    """Tiles normalised with whole-image statistics leave no seams: 4 tiles of 640 px against one pass."""
    content = resize(to_tensor(data_dir / "bench" / "content" / "04.png"), 1024, 1024)
    stylizer = stylizers[kind]
    whole = stylizer.stylize_tensor(content, style_path, tile="off")
    tiled = stylizer.stylize_tensor(content, style_path, tile="on", tile_size=640)
    assert (whole - tiled).abs().mean() < 1 / 255
    assert (whole - tiled).abs().max() < 1e-3  # in fact equal to float precision: the blend is a partition of unity


# -- one content in many styles: encode_content ----------------------------------------------------------------

@pytest.mark.parametrize("kind", ["adain", "adaconv"])
def test_an_encoded_content_stylises_exactly_as_the_content(stylizers, control_content, style_path, data_dir, kind):
    stylizer = stylizers[kind]
    encoded = stylizer.encode_content(control_content)
    assert encoded.size == (96, 128) and encoded.features.shape[-2:] == (12, 16)
    assert repr(encoded) == f"EncodedContent(128x96, {kind})"  # not the tensors and the model
    other = data_dir / "bench" / "style" / "30.png"
    for style in (style_path, other):  # the same features serve every style
        for options in ({}, {"alpha": 0.6}, {"preserve_color": "luminance"}, {"preserve_color": "histogram"}):
            assert torch.equal(stylizer.stylize_tensor(encoded, style, **options),
                               stylizer.stylize_tensor(control_content, style, **options)), options
    assert encoded.own_code is not None  # α < 1 read the content as a style once and kept it
    image = stylizer.stylize(encoded, other)
    assert image.size == (128, 96)
    assert np.array_equal(np.asarray(image), np.asarray(stylizer.stylize(control_content, other)))


def test_an_encoded_content_keeps_its_tiles_and_size(stylizers, data_dir, style_path):
    stylizer = stylizers["adain"]
    photo = data_dir / "bench" / "content" / "04.png"
    encoded = stylizer.encode_content(photo, content_size=300, tile="on", tile_size=256)
    assert encoded.grid is not None and len(encoded.grid) > 1 and max(encoded.size) == 300
    tiled = stylizer.stylize_tensor(encoded, style_path)
    assert torch.equal(tiled, stylizer.stylize_tensor(encoded.image, style_path, tile="on", tile_size=256))


def test_an_encoded_content_belongs_to_its_stylizer(stylizers, adain_weights, control_content, style_path):
    encoded = stylizers["adain"].encode_content(control_content)
    with pytest.raises(AdaconvError, match="another Stylizer"):
        Stylizer.from_weights(adain_weights, device="cpu").stylize(encoded, style_path)
    with pytest.raises(AdaconvError, match="content_size"):
        stylizers["adain"].stylize(encoded, style_path, content_size=64)


@pytest.mark.parametrize("kind", ["adain", "adaconv"])
def test_bf16_precision_gives_the_fp32_picture_within_bf16_rounding(kind, adain_weights, adaconv_weights,
                                                                     small_content, style_path):
    """Autocast to bf16 (the fast path on AMX CPUs) must paint the same picture: a mean difference well under 1%,
    for a plain style, α < 1 and a blend (the paths that call the model differently)."""
    weights = {"adain": adain_weights, "adaconv": adaconv_weights}[kind]
    full, half = (Stylizer.from_weights(weights, device="cpu", precision=p) for p in ("fp32", "bf16"))
    assert half.precision == "bf16" and full.precision == "fp32"
    for options in ({}, {"alpha": 0.6}):
        ours = half.stylize_tensor(small_content, style_path, style_size=64, **options)
        reference = full.stylize_tensor(small_content, style_path, style_size=64, **options)
        assert ours.dtype == torch.float32 and ours.shape == reference.shape
        difference = (ours - reference).abs()
        assert difference.mean() < 0.01 and difference.max() < 0.25, (options, difference.mean(), difference.max())
    assert not torch.equal(ours, reference)  # bf16 really ran
    automatic = Stylizer.from_weights(weights, device="cpu", precision="auto").precision
    assert automatic == ("bf16" if bf16_is_fast(torch.device("cpu")) else "fp32")
    with pytest.raises(AdaconvError, match="precision must be auto or one of"):
        Stylizer.from_weights(weights, device="cpu", precision="int4")
    with pytest.raises(AdaconvError, match="fp16 needs a CUDA device"):
        Stylizer.from_weights(weights, device="cpu", precision="fp16")
