"""Shared fixtures: real images from ../shared/data, small sizes, weights files saved from fresh models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data").resolve()
EXAMPLES = ROOT / "src" / "adaconv" / "assets" / "examples"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"test data missing: {path} (the shared data folder must sit beside the checkout)")
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return _need(DATA)


@pytest.fixture(scope="session")
def content_path() -> Path:
    return _need(EXAMPLES / "content" / "city0.jpg")


@pytest.fixture(scope="session")
def style_path() -> Path:
    return _need(EXAMPLES / "style" / "hokusai_big_wave.jpg")


@pytest.fixture(scope="session")
def encoder():
    from adaconv.encoder import shared_encoder

    return shared_encoder()


@pytest.fixture(scope="session")
def adain_weights(tmp_path_factory) -> Path:
    """A weights file of a freshly initialised AdaIN (no trained weights are needed to test the plumbing)."""
    from adaconv.models import build_model
    from adaconv.weights import save_weights

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "adain.safetensors"
    save_weights(build_model("adain"), path, provenance={"test": True})
    return path


@pytest.fixture(scope="session")
def adaconv_weights(tmp_path_factory) -> Path:
    from adaconv.models import build_model
    from adaconv.weights import save_weights

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "adaconv.safetensors"
    save_weights(build_model("adaconv", parametrization="paper"), path, dtype=torch.float16)
    return path


@pytest.fixture(scope="session")
def stylizers(adain_weights, adaconv_weights):
    """One Stylizer per model on the fresh weights files, shared by the tests of the controls and of tiling."""
    from adaconv import Stylizer

    return {"adain": Stylizer.from_weights(adain_weights, device="cpu"),
            "adaconv": Stylizer.from_weights(adaconv_weights, device="cpu")}
