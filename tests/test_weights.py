import json

import pytest
import torch
from safetensors.torch import save_file

from adaconv.errors import WeightsError
from adaconv.imageio import to_tensor
from adaconv.models import build_model
from adaconv.preprocessing import resize
from adaconv.weights import (
    SCALE_SUFFIX,
    inspect_weights,
    int8_candidates,
    model_from_weights,
    read_weights,
    save_weights,
)


def test_round_trip_is_bit_exact(tmp_path):
    torch.manual_seed(0)
    model = build_model("adain")
    path = tmp_path / "w.safetensors"
    save_weights(model, path, provenance={"iterations": 12})
    loaded, info = model_from_weights(path)
    assert info["provenance"]["iterations"] == 12
    original, restored = model.trainable_state_dict(), loaded.trainable_state_dict()
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[k], restored[k]) for k in original)


def test_metadata_records_the_model(adaconv_weights):
    _, metadata = read_weights(adaconv_weights)
    assert metadata["model"] == "adaconv"
    assert '"parametrization": "paper"' in metadata["hyperparameters"]
    assert metadata["encoder_normalization"].startswith("vgg19-")


def test_truncated_file_is_refused_in_one_line(adain_weights, tmp_path):
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(adain_weights.read_bytes()[: adain_weights.stat().st_size // 2])
    with pytest.raises(WeightsError) as error:
        model_from_weights(damaged)
    assert "damaged" in str(error.value) and "\n" not in str(error.value)


def test_foreign_safetensors_file_is_refused(tmp_path):
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(foreign))
    with pytest.raises(WeightsError, match="not an adaconv weights file"):
        model_from_weights(foreign)


def test_wrong_model_is_refused(adain_weights):
    with pytest.raises(WeightsError, match="holds adain weights"):
        model_from_weights(adain_weights, expected_kind="adaconv")


def test_missing_and_non_file_paths(tmp_path):
    with pytest.raises(WeightsError, match="no such weights file"):
        read_weights(tmp_path / "nope.safetensors")
    with pytest.raises(WeightsError, match="is a directory"):
        read_weights(tmp_path)
    text = tmp_path / "notes.safetensors"
    text.write_text("hello")
    with pytest.raises(WeightsError):
        read_weights(text)


def test_inspect_gives_the_stored_shapes_and_refuses_what_reading_refuses(adain_weights, tmp_path):
    shapes, metadata = inspect_weights(adain_weights)
    tensors, full_metadata = read_weights(adain_weights)
    assert shapes == {name: tuple(tensor.shape) for name, tensor in tensors.items()} and metadata == full_metadata
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(adain_weights.read_bytes()[:100])
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(foreign))
    for path, problem in ((damaged, "damaged"), (foreign, "not an adaconv weights file"), (tmp_path, "directory")):
        with pytest.raises(WeightsError, match=problem):
            inspect_weights(path)


def test_fp16_file_loads_into_fp32_model(adaconv_weights):
    model, _ = model_from_weights(adaconv_weights)
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.fixture(scope="module")
def paper_adaconv():
    """AdaConv in the paper's form, whose kernels come from the fully connected layer alone."""
    torch.manual_seed(1)
    return build_model("adaconv", parametrization="paper").eval()


def test_int8_stores_only_adaconvs_fully_connected_layer_and_fits_the_size_limit(paper_adaconv, tmp_path):
    assert int8_candidates(paper_adaconv) == ["style_encoder.fc.weight"]
    assert int8_candidates(build_model("adain")) == [] and int8_candidates(paper_adaconv, "off") == []
    fp16, int8 = tmp_path / "fp16.safetensors", tmp_path / "int8.safetensors"
    save_weights(paper_adaconv, fp16, dtype=torch.float16)
    save_weights(paper_adaconv, int8, dtype=torch.float16, int8=int8_candidates(paper_adaconv))
    assert fp16.stat().st_size > 110e6 and int8.stat().st_size < 85e6  # the package's limit is 95 MB a file
    _, metadata = read_weights(int8)
    assert metadata["format_version"] == "2" and json.loads(metadata["int8_tensors"]) == ["style_encoder.fc.weight"]
    loaded, _ = model_from_weights(int8)
    original, restored = paper_adaconv.trainable_state_dict(), loaded.trainable_state_dict()
    assert set(restored) == set(original)
    weight, back = original["style_encoder.fc.weight"], restored["style_encoder.fc.weight"]
    step = weight.abs().amax(dim=1, keepdim=True) / 127
    assert back.dtype == torch.float32 and ((weight - back).abs() <= step / 2 + 1e-7).all()
    assert (weight - back).abs().max() > 0  # really stored in 8 bits
    bias = original["style_encoder.fc.bias"]
    assert torch.equal(restored["style_encoder.fc.bias"], bias.half().float())


def test_int8_style_descriptor_is_within_a_percent_of_full_precision(paper_adaconv, tmp_path, data_dir):
    """The FC layer's output (the style descriptor W the kernels are predicted from), real paintings."""
    path = tmp_path / "int8.safetensors"
    save_weights(paper_adaconv, path, int8=int8_candidates(paper_adaconv))
    loaded, _ = model_from_weights(path)
    styles = torch.stack([resize(to_tensor(p), 256, 256) for p in sorted((data_dir / "bench" / "style")
                                                                                   .iterdir())[:4]])
    with torch.inference_mode():
        reference, quantised = paper_adaconv.encode_style(styles), loaded.encode_style(styles)
    error = (reference.descriptor - quantised.descriptor).norm() / reference.descriptor.norm()
    assert 0 < error < 0.01, error
    assert torch.equal(reference.mean, quantised.mean)


def test_int8_file_without_its_scales_is_refused(paper_adaconv, tmp_path):
    from safetensors.torch import load_file

    path = tmp_path / "int8.safetensors"
    save_weights(paper_adaconv, path, int8=int8_candidates(paper_adaconv))
    _, metadata = read_weights(path)
    tensors = load_file(str(path))
    del tensors["style_encoder.fc.weight" + SCALE_SUFFIX]
    broken = tmp_path / "broken.safetensors"
    save_file(tensors, str(broken), metadata=metadata)
    with pytest.raises(WeightsError, match="listed as 8-bit"):
        model_from_weights(broken)
