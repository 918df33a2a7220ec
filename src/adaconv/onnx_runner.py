"""Stylise with the exported ONNX graphs through onnxruntime: numpy, Pillow and onnxruntime only, no PyTorch.

This file imports nothing else from adaconv, so it can be copied next to an exported folder and run on a device
without PyTorch:

    pip install onnxruntime numpy pillow
    python onnx_runner.py EXPORT_DIR photo.jpg painting.jpg out.png [--alpha 0.8] [--variant fp16|int8]

Inside adaconv it is the ``--backend onnxruntime`` of ``adaconv stylize``. Sizing follows the PyTorch path:
contents are reflect-padded to multiples of 8 and cropped back; the style is read at short side 512 (or
``style_size``), and AdaConv's style encoder also gets it resized whole to 256 × 256; α blends the style code
with the content's own (the style graph run on the content), several styles blend their codes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

MANIFEST = "adaconv-onnx.json"


class OnnxRunnerError(ValueError):
    """A problem with the exported folder or the arguments, phrased for one line of output."""


def _rgb(image) -> Image.Image:
    if isinstance(image, (str, Path)):
        try:
            with Image.open(image) as opened:
                image = ImageOps.exif_transpose(opened)
                image.load()
        except (OSError, ValueError) as error:
            raise OnnxRunnerError(f"{image}: cannot read image ({error})") from None
    elif isinstance(image, np.ndarray):
        array = image if image.dtype == np.uint8 else (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
        image = Image.fromarray(array)
    return image.convert("RGB")


def _array(image: Image.Image) -> np.ndarray:
    """PIL RGB -> float32 [1, 3, H, W] in [0, 1]."""
    return np.ascontiguousarray(np.asarray(image, dtype=np.float32).transpose(2, 0, 1)[None] / 255.0)


def _resize(array: np.ndarray, width: int, height: int) -> np.ndarray:
    """[1, 3, H, W] float32 -> [1, 3, height, width]: Pillow's bilinear filter (antialiased when shrinking) on
    float channels, as the PyTorch path resizes. In 8 bits the ±1-level rounding moved AdaConv's style
    descriptor by up to ~25% (it sums 8,192 features) and its outputs by ~1.5 levels."""
    if array.shape[-2:] == (height, width):
        return array
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(array[0, c])).resize(
        (width, height), Image.Resampling.BILINEAR)) for c in range(array.shape[1])]
    return np.clip(np.stack(channels)[None], 0, 1).astype(np.float32)


def _short_side(array: np.ndarray, size: int) -> np.ndarray:
    height, width = array.shape[-2:]
    factor = size / min(height, width)
    return _resize(array, max(1, round(width * factor)), max(1, round(height * factor)))


def _long_side(array: np.ndarray, size: int) -> np.ndarray:
    height, width = array.shape[-2:]
    factor = size / max(height, width)
    return _resize(array, max(1, round(width * factor)), max(1, round(height * factor)))


class OnnxStylizer:
    """The two exported graphs of one model, ready to stylise."""

    def __init__(self, folder: str | Path, *, variant: str = "fp32", threads: int | None = None):
        import onnxruntime

        self.folder = Path(folder)
        try:
            self.manifest = json.loads((self.folder / MANIFEST).read_text())
        except (OSError, ValueError):
            raise OnnxRunnerError(f"{self.folder}: not an exported adaconv folder (no readable {MANIFEST})") from None
        if variant not in self.manifest["variants"]:
            raise OnnxRunnerError(f"{self.folder}: no {variant} variant (exported: "
                                  f"{', '.join(self.manifest['variants'])})")
        files = self.manifest["variants"][variant]
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        self.style_session = onnxruntime.InferenceSession(str(self.folder / files["style"]), options,
                                                          providers=providers)
        self.content_session = onnxruntime.InferenceSession(str(self.folder / files["content"]), options,
                                                            providers=providers)
        self.kind = self.manifest["model"]
        self.variant = variant
        self.code_names = [o.name for o in self.style_session.get_outputs()]
        self.multiple = int(self.manifest.get("multiple_of", 8))
        self._codes: dict = {}
        self.info = {"model": self.kind, "path": str(self.folder), "backend": f"onnxruntime ({variant})"}

    def _style_feed(self, image: np.ndarray, style_size: int | None, *, as_is: bool = False) -> dict:
        """The style graph's inputs for ``image`` ([1, 3, H, W]) read at short side ``style_size`` (or the
        default; ``as_is``: at its own size, for the content's own code)."""
        square = self.manifest.get("style_square_input")
        if self.kind == "adaconv" and square is None:  # folders exported before session 9: one 256x256 input
            side = self.manifest["style_input"]["size"][0]
            return {"style": _resize(image, side, side)}
        feed = {"style": image if as_is else
                _short_side(image, style_size or self.manifest["style_input"]["short_side"])}
        if square is not None:
            feed["style_square"] = _resize(image, *square["size"])
        return feed

    def encode_style(self, style, *, style_size: int | None = None) -> dict[str, np.ndarray]:
        """A style image (path, PIL image or HxWx3 array) -> its code; codes of files are cached."""
        key = None
        if isinstance(style, (str, Path)) and Path(style).is_file():
            stat = Path(style).stat()
            key = (str(Path(style).resolve()), stat.st_mtime_ns, stat.st_size, style_size)
            if key in self._codes:
                return self._codes[key]
        feed = self._style_feed(_array(_rgb(style)), style_size)
        code = dict(zip(self.code_names, self.style_session.run(None, feed)))
        if key is not None:
            self._codes[key] = code
        return code

    @staticmethod
    def blend(codes: list[dict[str, np.ndarray]], weights) -> dict[str, np.ndarray]:
        total = float(sum(weights))
        if total <= 0 or any(w < 0 for w in weights):
            raise OnnxRunnerError("style weights must be non-negative and not all zero")
        return {name: sum(w / total * code[name] for w, code in zip(weights, codes)) for name in codes[0]}

    def stylize(self, content, style, *, alpha: float = 1.0, style_weights=None, content_size: int | None = None,
                style_size: int | None = None) -> Image.Image:
        if not 0.0 <= alpha <= 1.0:
            raise OnnxRunnerError(f"alpha must be in [0, 1], got {alpha}")
        image = _array(_rgb(content))
        if content_size is not None:
            image = _long_side(image, content_size)
        styles = list(style) if isinstance(style, (list, tuple)) else [style]
        codes = [self.encode_style(s, style_size=style_size) for s in styles]
        weights = style_weights if style_weights is not None else [1.0] * len(codes)
        if len(weights) != len(codes):
            raise OnnxRunnerError(f"{len(weights)} style weights for {len(codes)} styles")
        code = codes[0] if len(codes) == 1 else self.blend(codes, weights)
        if alpha != 1.0:
            own = dict(zip(self.code_names, self.style_session.run(None, self._style_feed(image, None, as_is=True))))
            code = self.blend([own, code], [1.0 - alpha, alpha])
        return self.stylize_array(image, code)

    def stylize_array(self, content: np.ndarray, code: dict[str, np.ndarray]) -> Image.Image:
        """Content [1, 3, H, W] float32 in [0, 1] and a style code -> PIL image of the same size."""
        height, width = content.shape[-2:]
        pad_h, pad_w = (-height) % self.multiple, (-width) % self.multiple
        if pad_h or pad_w:
            mode = "reflect" if pad_h < height and pad_w < width else "edge"
            content = np.pad(content, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), mode=mode)
        output = self.content_session.run(None, {"content": content, **code})[0][0, :, :height, :width]
        return Image.fromarray((np.clip(output, 0, 1).transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Stylise with exported adaconv ONNX graphs (no PyTorch).")
    parser.add_argument("folder", help="folder written by `adaconv export onnx`")
    parser.add_argument("content")
    parser.add_argument("style", nargs="+")
    parser.add_argument("output", help="output image (.png, .jpg, .webp)")
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--variant", default="fp32", choices=("fp32", "fp16", "int8"))
    parser.add_argument("--content-size", type=int)
    args = parser.parse_args(argv)
    try:
        result = OnnxStylizer(args.folder, variant=args.variant).stylize(args.content, args.style, alpha=args.alpha,
                                                                         content_size=args.content_size)
        partial = Path(args.output).with_name(f".{Path(args.output).name}.partial{Path(args.output).suffix}")
        result.save(partial)
        partial.replace(args.output)
    except (OnnxRunnerError, OSError) as error:
        print(f"onnx_runner: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
