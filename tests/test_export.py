"""ONNX export: parity with PyTorch on real images, dynamic sizes, fp16/int8 variants, the runner without PyTorch."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from adaconv import Stylizer
from adaconv.cli import main
from adaconv.export import export_onnx, style_feed
from adaconv.imageio import to_tensor
from adaconv.models import build_model
from adaconv.onnx_runner import OnnxStylizer
from adaconv.preprocessing import center_crop, prepare_style, resize, resize_short_side
from adaconv.weights import load_trainable_tensors, model_from_weights, read_weights, save_weights


@pytest.fixture(scope="module")
def adain_export(tmp_path_factory):
    """The shipped (trained) AdaIN exported once with every variant: trained weights make the
    quantisation error meaningful."""
    folder = tmp_path_factory.mktemp("onnx") / "adain"
    export_onnx(Stylizer.from_pretrained("adain", device="cpu").model, folder, variants=("fp32", "fp16", "int8"),
                progress=lambda text: None)
    return folder


@pytest.fixture(scope="module")
def residual_adaconv_weights(tmp_path_factory):
    """A residual AdaConv whose outputs depend on everything in the style code: the shipped AdaIN's decoder and
    kernel predictors drawn at random (std 0.02), so a wrong statistic, descriptor or α shows in the pixels."""
    torch.manual_seed(0)
    model = build_model("adaconv")
    tensors, _ = read_weights(Stylizer.from_pretrained("adain", device="cpu").info["path"])
    load_trainable_tensors(model, tensors, source="adain", prefixes=("decoder.",))
    with torch.no_grad():
        for parameter in model.kernel_predictors.parameters():
            parameter.normal_(0, 0.02)
    path = tmp_path_factory.mktemp("weights") / "residual_adaconv.safetensors"
    save_weights(model, path)
    return path


@pytest.fixture(scope="module")
def adaconv_export(tmp_path_factory, residual_adaconv_weights):
    folder = tmp_path_factory.mktemp("onnx") / "adaconv"
    model, _ = model_from_weights(residual_adaconv_weights)
    export_onnx(model, folder, variants=("fp32", "fp16"), progress=lambda text: None)
    return folder, model


def bench_pair(data_dir, height, width, kind):
    content = resize(to_tensor(data_dir / "bench" / "content" / "03.png"), height, width)[None]
    style = prepare_style(to_tensor(data_dir / "bench" / "style" / "07.png"), kind, 128)
    return content, style[None]


@pytest.mark.parametrize("height, width", [(96, 128), (136, 72)])
def test_adain_graphs_match_pytorch(adain_export, data_dir, height, width):
    model = Stylizer.from_pretrained("adain", device="cpu").model
    runner = OnnxStylizer(adain_export)
    content, style = bench_pair(data_dir, height, width, "adain")
    with torch.inference_mode():
        code = model.encode_style(style)
        expected = model.decode(model.encoder.encode(content), code).clamp(0, 1).numpy()
    onnx_code = runner.style_session.run(None, {"style": style.numpy()})
    assert np.abs(onnx_code[1] - code.std.numpy()).max() < 1e-3
    result = runner.content_session.run(None, {"content": content.numpy(), "mean": onnx_code[0],
                                               "std": onnx_code[1]})[0]
    assert result.shape == (1, 3, height, width)
    assert np.abs(result - expected).max() < 1e-3


def test_adaconv_graphs_match_pytorch(adaconv_export, data_dir):
    folder, model = adaconv_export
    runner = OnnxStylizer(folder)
    assert runner.code_names == ["mean", "std", "descriptor"]
    for height, width in [(64, 96), (120, 80)]:
        content, style = bench_pair(data_dir, height, width, "adaconv")
        with torch.inference_mode():
            code = model.encode_style(style)
            expected = model.decode(model.encoder.encode(content), code).clamp(0, 1).numpy()
        onnx_code = dict(zip(runner.code_names, runner.style_session.run(None, style_feed(style[0], "adaconv"))))
        result = runner.content_session.run(None, {"content": content.numpy(), **onnx_code})[0]
        assert np.abs(result - expected).max() < 1e-3


def test_adaconv_fp16_graphs_run_and_stay_close(adaconv_export, data_dir):
    """AdaConv's statistics cast pixel counts to float inside the graph; the fp16 variant keeps those casts in fp32
    and must still load and match PyTorch."""
    folder, model = adaconv_export
    manifest = json.loads((folder / "adaconv-onnx.json").read_text())
    assert manifest["variants"]["fp16"]["error_vs_fp32"]
    runner = OnnxStylizer(folder, variant="fp16")
    content, style = bench_pair(data_dir, 96, 128, "adaconv")
    with torch.inference_mode():
        expected = model.decode(model.encoder.encode(content), model.encode_style(style)).clamp(0, 1).numpy()
    code = dict(zip(runner.code_names, runner.style_session.run(None, style_feed(style[0], "adaconv"))))
    result = runner.content_session.run(None, {"content": content.numpy(), **code})[0]
    assert result.shape == expected.shape and np.abs(result - expected).mean() < 1 / 255


def test_variants_stay_close_to_pytorch(adain_export, data_dir):
    manifest = json.loads((adain_export / "adaconv-onnx.json").read_text())
    assert set(manifest["variants"]) == {"fp32", "fp16", "int8"}
    model = Stylizer.from_pretrained("adain", device="cpu").model
    errors = {"fp16": [], "int8": []}
    for name in ("01.png", "11.png"):  # bench photos: not among the examples the int8 graph was calibrated on
        content = center_crop(resize_short_side(to_tensor(data_dir / "bench" / "content" / name), 192), 192, 192)
        style = resize_short_side(to_tensor(data_dir / "bench" / "style" / "20.png"), 256)
        with torch.inference_mode():
            expected = model.decode(model.encoder.encode(content[None]), model.encode_style(style[None]))
            expected = expected.clamp(0, 1).numpy()
        for variant in errors:
            runner = OnnxStylizer(adain_export, variant=variant)
            code = dict(zip(runner.code_names, runner.style_session.run(None, {"style": style[None].numpy()})))
            result = runner.content_session.run(None, {"content": content[None].numpy(), **code})[0]
            errors[variant].append(np.abs(result - expected).mean())
    assert np.mean(errors["fp16"]) < 1 / 255
    assert np.mean(errors["int8"]) < 4 / 255


def test_runner_matches_the_pytorch_stylizer_on_a_real_photo(adain_export, content_path, style_path):
    expected = np.asarray(Stylizer.from_pretrained("adain", device="cpu").stylize(content_path, style_path,
                                                                                  content_size=160), dtype=float)
    result = np.asarray(OnnxStylizer(adain_export).stylize(content_path, style_path, content_size=160), dtype=float)
    assert result.shape == expected.shape
    assert np.abs(result - expected).mean() < 1.0  # 8-bit levels; style resizing is Pillow's here, torch's there


def test_adaconv_runner_matches_the_pytorch_stylizer_with_alpha(adaconv_export, residual_adaconv_weights,
                                                                  content_path, style_path):
    """The whole path: the style read at short side 512 plus its 256x256 square, α against the content's code."""
    folder, _ = adaconv_export
    options = dict(content_size=128, style_size=192, alpha=0.6)
    stylizer = Stylizer.from_weights(residual_adaconv_weights, device="cpu")
    expected = np.asarray(stylizer.stylize(content_path, style_path, **options), dtype=float)
    result = np.asarray(OnnxStylizer(folder).stylize(content_path, style_path, **options), dtype=float)
    assert result.shape == expected.shape
    assert np.abs(result - expected).mean() < 0.1  # 8-bit levels: both resize in float with the same filter


def test_cli_backend_and_standalone_runner_without_torch(tmp_path, adain_export, content_path, style_path):
    out = tmp_path / "cli.png"
    assert main(["stylize", str(content_path), "--style", str(style_path), "-o", str(out), "--backend",
                 "onnxruntime", "--onnx", str(adain_export), "--content-size", "128", "--quiet"]) == 0
    assert Image.open(out).size[0] == 128
    # the runner as a copied script on a machine without PyTorch: importing torch is made impossible
    standalone = tmp_path / "onnx_runner.py"
    standalone.write_text(open(sys.modules["adaconv.onnx_runner"].__file__).read())
    script = ("import sys, runpy; sys.modules['torch'] = None; sys.argv = sys.argv[1:]; "
              "runpy.run_path(sys.argv[0], run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", script, str(standalone), str(adain_export), str(content_path),
                             str(style_path), str(tmp_path / "alone.png"), "--content-size", "128", "--alpha", "0.7"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "alone.png").size[0] == 128


def test_bad_onnx_folder_is_one_line(tmp_path, content_path, style_path, capsys):
    assert main(["stylize", str(content_path), "--style", str(style_path), "-o", str(tmp_path / "x.png"),
                 "--backend", "onnxruntime", "--onnx", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert "not an exported adaconv folder" in error and "\n" not in error
    assert not (tmp_path / "x.png").exists()
