import pytest
import torch
from safetensors.torch import save_file

from adaconv.errors import WeightsError
from adaconv.models import build_model
from adaconv.weights import model_from_weights, read_weights, save_weights


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


def test_fp16_file_loads_into_fp32_model(adaconv_weights):
    model, _ = model_from_weights(adaconv_weights)
    assert all(p.dtype == torch.float32 for p in model.parameters())
