"""ONNX export: a model as two graphs, so a style is encoded once and a video or an app reuses it.

- ``style.onnx``: style image [1, 3, H, W] in [0, 1], any size (512 on the short side is the default reading)
  -> the style code: ``mean``, ``std`` ([1, 512, 1, 1], the relu4_1 statistics) and, for AdaConv,
  ``descriptor`` ([1, 512, 3, 3], from which the content graph predicts the per-scale kernels). AdaConv's graph
  takes a second input, ``style_square``: the same image resized whole to 256 × 256 for its style encoder.
- ``content.onnx``: content [1, 3, H, W] in [0, 1] (H and W dynamic, multiples of 8: pad by reflection and crop
  after) and the style code -> the stylised image in [0, 1].

The code is what the Python API blends: α is a blend with the content's own code (the style graph run on the
content), style interpolation a blend of several codes.
Variants: ``fp16`` (weights and arithmetic in half precision, fp32 inputs/outputs) and ``int8`` (onnxruntime's
static QDQ quantisation of the content graph, calibrated on the shipped example images). Their error against the
fp32 graphs on the example images is measured at export and recorded in ``adaconv-onnx.json``.
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import AdaconvError
from .imageio import write_atomically
from .kernel_prediction import STYLE_IMAGE_SIZE
from .models import StyleCode, StyleTransferModel
from .preprocessing import DEFAULT_STYLE_SIZE, MULTIPLE

OPSET = 18
MANIFEST = "adaconv-onnx.json"
VARIANTS = ("fp32", "fp16", "int8")
INT8_FLOAT_ENCODER_CONVS = 5
# Kept in fp32 by the fp16 converter: Resize (its scales input) and, by node name, every Cast (AdaConv's
# statistics cast pixel counts to float; in fp16 they would mismatch their fp32 consumers). Blocking "Cast" as an
# op type instead sends onnxconverter-common 1.16 into an endless loop: the casts it inserts are Casts too.
FP16_BLOCKED_OPS = ["Resize"]


class StyleGraph(nn.Module):
    def __init__(self, model: StyleTransferModel):
        super().__init__()
        self.model = model

    def forward(self, style: torch.Tensor, style_square: torch.Tensor | None = None):
        if style_square is None:
            code = self.model.encode_style(style)
        else:  # AdaConv: what encode_style does, with the 256x256 resize left to the caller (PIL's, not ONNX's)
            code = self.model.style_code_from_features(self.model.encoder.encode(style_square),
                                                       statistics_features=self.model.encoder.encode(style))
        if code.descriptor is None:
            return code.mean, code.std
        return code.mean, code.std, code.descriptor


class ContentGraph(nn.Module):
    def __init__(self, model: StyleTransferModel):
        super().__init__()
        self.model = model

    def forward(self, content: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, descriptor=None):
        features = self.model.encoder.encode(content)
        return self.model.decode(features, StyleCode(mean, std, descriptor)).clamp(0, 1)


def code_names(kind: str) -> list[str]:
    return ["mean", "std", "descriptor"] if kind == "adaconv" else ["mean", "std"]


def style_inputs(kind: str) -> list[str]:
    return ["style", "style_square"] if kind == "adaconv" else ["style"]


def style_feed(style: torch.Tensor, kind: str) -> dict[str, np.ndarray]:
    """A style image [3, H, W] as read (short side 512 by default) -> the style graph's inputs."""
    from .preprocessing import resize

    feed = {"style": style[None].numpy()}
    if kind == "adaconv":
        feed["style_square"] = resize(style, STYLE_IMAGE_SIZE, STYLE_IMAGE_SIZE)[None].numpy()
    return feed


def graph_file(name: str, variant: str) -> str:
    return f"{name}.onnx" if variant == "fp32" else f"{name}.{variant}.onnx"


def _export(module: nn.Module, inputs: tuple, path: Path, input_names: list[str], output_names: list[str],
            dynamic: dict, opset: int) -> None:
    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as scratch:
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        partial = Path(scratch) / path.name
        torch.onnx.export(module, inputs, partial, input_names=input_names, output_names=output_names,
                          dynamic_shapes=dynamic, dynamo=True, opset_version=opset, external_data=False,
                          verbose=False)
        write_atomically(path, lambda f: f.write(partial.read_bytes()))


def example_batch(kind: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The shipped example photos (short side 256, multiple of 8) and paintings (the style graph's feeds)."""
    from .contact_sheet import example_images
    from .preprocessing import center_crop, prepare_style, resize_short_side

    contents, styles = example_images()
    contents = [center_crop(resize_short_side(c, 256), 256, 256)[None].numpy() for c in contents]
    styles = [style_feed(prepare_style(s, kind, 256), kind) for s in styles]
    return contents, styles


def export_onnx(model: StyleTransferModel, out_dir: str | Path, *, variants=("fp32",), opset: int = OPSET,
                source: dict | None = None, progress=print) -> dict:
    """Write the model's graphs (and the requested variants) into ``out_dir``; returns the manifest."""
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise AdaconvError(f"unknown ONNX variant(s) {', '.join(sorted(unknown))}: choose from {', '.join(VARIANTS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.float().eval()
    kind = model.kind
    style = (torch.rand(1, 3, 64, 80),)
    if kind == "adaconv":
        style += (torch.rand(1, 3, STYLE_IMAGE_SIZE, STYLE_IMAGE_SIZE),)
    content = torch.rand(1, 3, 64, 96)
    names = code_names(kind)
    with torch.no_grad():
        code = StyleGraph(model)(*style)
    height, width = torch.export.Dim("height", min=16), torch.export.Dim("width", min=16)
    style_dynamic = {"style": {2: height, 3: width}, **({"style_square": None} if kind == "adaconv" else {})}
    progress(f"exporting {kind} style graph")
    _export(StyleGraph(model), style, out / "style.onnx", style_inputs(kind), names, style_dynamic, opset)
    progress(f"exporting {kind} content graph")
    content_dynamic = {"content": {2: torch.export.Dim("height", min=16), 3: torch.export.Dim("width", min=16)},
                       **{n: None for n in names}}
    _export(ContentGraph(model), (content, *code), out / "content.onnx", ["content", *names], ["image"],
            content_dynamic, opset)
    manifest = {
        "format": "adaconv-onnx", "version": 1, "model": kind, "opset": opset, "exported": date.today().isoformat(),
        "source": source or {}, "multiple_of": MULTIPLE,
        "style_input": {"short_side": DEFAULT_STYLE_SIZE, "how": "short side resized, any size accepted"},
        **({"style_square_input": {"size": [STYLE_IMAGE_SIZE, STYLE_IMAGE_SIZE], "how": "whole image resized"}}
           if kind == "adaconv" else {}),
        "inputs": {"style": "float32 [1,3,H,W] RGB in [0,1]",
                   **({"style_square": "float32 [1,3,256,256] RGB in [0,1]: the style resized whole"}
                      if kind == "adaconv" else {}),
                   "content": "float32 [1,3,H,W] RGB in [0,1], H and W "
                   f"multiples of {MULTIPLE}", **{n: "float32 style code from style.onnx" for n in names}},
        "outputs": {"image": "float32 [1,3,H,W] RGB in [0,1]"},
        "variants": {"fp32": {"style": "style.onnx", "content": "content.onnx"}},
    }
    if "fp16" in variants:
        progress("converting to fp16")
        manifest["variants"]["fp16"] = _fp16_variant(out)
    if "int8" in variants:
        progress("quantising the content graph to int8")
        manifest["variants"]["int8"] = _int8_variant(out, kind)
    for variant, entry in manifest["variants"].items():
        if variant != "fp32":
            entry["error_vs_fp32"] = measure_variant_error(out, kind, entry)
    write_atomically(out / MANIFEST, lambda f: f.write(json.dumps(manifest, indent=1).encode()))
    return manifest


def _fp16_variant(out: Path) -> dict:
    import onnx
    from onnxconverter_common import float16

    entry = {}
    for name in ("style", "content"):
        graph = onnx.load(str(out / f"{name}.onnx"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the converter warns about values clipped to the fp16 range
            casts = [node.name for node in graph.graph.node if node.op_type == "Cast"]
            converted = float16.convert_float_to_float16(graph, keep_io_types=True, op_block_list=FP16_BLOCKED_OPS,
                                                         node_block_list=casts)
        path = out / graph_file(name, "fp16")
        write_atomically(path, lambda f, g=converted: f.write(g.SerializeToString()))
        entry[name] = path.name
    return entry


def _int8_variant(out: Path, kind: str) -> dict:
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    contents, styles = example_batch(kind)
    style_session = _session(out / "style.onnx")
    names = code_names(kind)
    feeds = []
    for content in contents:
        for style in styles[:2]:
            code = style_session.run(None, style)
            feeds.append({"content": content, **dict(zip(names, code))})

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._items = iter(feeds)

        def get_next(self):
            return next(self._items, None)

    path = out / graph_file("content", "int8")
    with tempfile.TemporaryDirectory() as scratch:
        partial = Path(scratch) / path.name
        quantize_static(str(out / "content.onnx"), str(partial), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv"], calibrate_method=CalibrationMethod.Percentile,
                        nodes_to_exclude=_int8_excluded(onnx.load(str(out / "content.onnx"))))
        write_atomically(path, lambda f: f.write(partial.read_bytes()))
    return {"style": "style.onnx", "content": path.name}


def _int8_excluded(graph) -> list[str]:
    """Convolutions kept in float: those with predicted (input) kernels, the encoder's first five (the widest
    activation ranges) and the last one, which writes the RGB output. Measured on held-out bench pairs with the
    trained AdaIN: keeping only 3 encoder convs in float gave 4.3/255 mean error, 5 gave 2.7/255 at 2.1x the
    fp32 graph's speed, the whole encoder 1.8/255 at 1.4x."""
    weights = {initializer.name for initializer in graph.graph.initializer}
    convs = [node for node in graph.graph.node if node.op_type == "Conv"]
    fixed = [node for node in convs if node.input[1] in weights]
    dynamic = [node.name for node in convs if node.input[1] not in weights]
    return dynamic + [node.name for node in fixed[:INT8_FLOAT_ENCODER_CONVS]] + [fixed[-1].name]


def _session(path: Path):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def measure_variant_error(out: Path, kind: str, entry: dict) -> dict:
    """Mean and max absolute difference to the fp32 graphs over the example photos × paintings (0-1 scale)."""
    contents, styles = example_batch(kind)
    names = code_names(kind)
    reference_style, reference_content = _session(out / "style.onnx"), _session(out / "content.onnx")
    variant_style, variant_content = _session(out / entry["style"]), _session(out / entry["content"])
    means, maxima = [], []
    for content in contents[:2]:
        for style in styles[:2]:
            reference = reference_content.run(None, {"content": content, **dict(
                zip(names, reference_style.run(None, style)))})[0]
            result = variant_content.run(None, {"content": content, **dict(
                zip(names, variant_style.run(None, style)))})[0]
            difference = np.abs(result.astype(np.float64) - reference)
            means.append(float(difference.mean()))
            maxima.append(float(difference.max()))
    return {"mean_abs": round(float(np.mean(means)), 6), "max_abs": round(max(maxima), 6),
            "images": f"{min(2, len(contents))} example photos x {min(2, len(styles))} paintings at 256 px"}
