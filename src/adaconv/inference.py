"""The user-facing API: ``Stylizer`` owns a model and all pre- and post-processing.

    from adaconv import Stylizer
    stylizer = Stylizer.from_pretrained("adain")          # or Stylizer.from_weights("my.safetensors")
    image = stylizer.stylize("photo.jpg", "painting.jpg", alpha=0.8)
    image.save("out.png")

The command line, the web app and the video path are thin shells over this one call, so a control
added here appears everywhere. Style codes are cached per style image, so stylising many contents
with one style encodes the style once; ``encode_content`` does the same for one content in many styles.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .color_control import check_mode as check_color_mode
from .color_control import keep_content_chroma, match_color_statistics
from .devices import bf16_is_fast, pick_device
from .errors import AdaconvError, WeightsError
from .imageio import tensor_to_pil, to_tensor
from .kernel_prediction import STYLE_IMAGE_SIZE
from .models import MODEL_KINDS, StyleCode, StyleTransferModel, blend_style_codes
from .preprocessing import pad_to_multiple, prepare_style, resize, resize_long_side
from .spatial_control import load_masks
from .tiling import TILE_SIZE, check_tile_size, decode_tiled, encode_tiled, passes, tile_grid
from .weights import model_from_weights, shipped_weights_path

DEFAULT_MODEL = "adaconv"  # since v0.3 met the campaign's bar on the full benchmark (MODEL_CARD.md, training.md)
# Caps on the content's long side when no --content-size is given. Untiled, memory grows with the image
# (AdaConv's last decoder scale alone holds 64 channels at full size: ~1 GB per activation at 2048²), so
# tile="off" keeps the old 2048 cap. Tiled, only the relu4_1 map and the output are whole-image tensors
# (~3 GB at 8K), so the cap covers 8K (7680x4320, 8192x4320).
MAX_CONTENT_SIDE = 2048
MAX_TILED_CONTENT_SIDE = 8192
TILE_ABOVE_PIXELS = 2048 * 2048  # tile="auto" tiles contents larger than this; smaller ones run in one piece
TILE_MODES = ("auto", "on", "off")
STYLE_CACHE_SIZE = 32


class ContentResized(UserWarning):
    """The content was larger than the default cap and was processed at a smaller size."""


@dataclass(eq=False, repr=False)  # tensors and a model: identity comparison, a short repr
class EncodedContent:
    """A content image encoded once (``Stylizer.encode_content``), to be stylised with many styles.

    The encoder's pass is about half of a stylisation's arithmetic (VGG up to relu4_1 and a decoder of the same
    size), so one photo in many styles — a grid of paintings, ``adaconv evaluate`` — costs about half as much
    when its features are kept. Tied to the Stylizer that made it (its model's encoder and, for α < 1, its own
    style code).
    """

    image: torch.Tensor           # [3, H, W] in [0, 1] as given (colour preservation reads it)
    batch: torch.Tensor           # [1, 3, H', W'] padded to a multiple of 8, on the model's device
    features: torch.Tensor        # relu4_1 of ``batch``, whole-image
    grid: list | None             # the tiles when it was encoded in tiles, else None
    model: StyleTransferModel     # whose encoder made it
    own_code: StyleCode | None = None  # the content read as a style (α < 1), made on first use

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the content, before padding."""
        return tuple(self.image.shape[-2:])

    def __repr__(self) -> str:
        tiles = f", {len(self.grid)} tiles" if self.grid else ""
        return f"EncodedContent({self.size[1]}x{self.size[0]}, {self.model.kind}{tiles})"


PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def precision_context(precision: str, device: torch.device):
    """Autocast to ``precision`` on ``device`` (nothing for fp32)."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=PRECISIONS[precision])


def resolve_precision(precision: str, device: torch.device) -> str:
    """``precision`` checked against ``device``; "auto" is bf16 where it is native (CUDA, AVX512-BF16, AMX)."""
    if precision == "auto":
        return "bf16" if bf16_is_fast(device) else "fp32"
    if precision not in PRECISIONS:
        raise AdaconvError(f"precision must be auto or one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise AdaconvError("precision fp16 needs a CUDA device (use bf16 or fp32 on the CPU)")
    return precision


class Stylizer:
    """A model ready to stylise: device placement, image sizing, style caching, α and style blending.

    ``precision``: "fp32" (default), autocast to "bf16" (CPU, CUDA) or "fp16" (CUDA), or "auto" (bf16 where it
    is native: CUDA, AVX512-BF16, AMX). On a CPU with AMX, bf16 stylises a 512² photo ~3x faster than fp32
    (docs/benchmarks.md) with a mean pixel difference under 1%; on a CPU without native bf16 it is slower.
    """

    def __init__(self, model: StyleTransferModel, *, device: str | torch.device = "auto", info: dict | None = None,
                 precision: str = "fp32"):
        self.device = pick_device(device) if isinstance(device, str) else device
        self.precision = resolve_precision(precision, self.device)
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()
        self.info = info or {"model": model.kind}
        self._style_cache: OrderedDict = OrderedDict()
        self._style_cache_lock = threading.Lock()  # one Stylizer may serve several threads (the web app)

    @property
    def kind(self) -> str:
        return self.model.kind

    @classmethod
    def from_pretrained(cls, name: str = DEFAULT_MODEL, *, device: str = "auto", precision: str = "fp32") -> Stylizer:
        """The weights shipped inside the package for ``name`` ("adain" or "adaconv")."""
        if name not in MODEL_KINDS:
            raise AdaconvError(f"unknown model {name!r}: choose one of {', '.join(MODEL_KINDS)}")
        path = shipped_weights_path(name)
        if not path.exists():
            raise WeightsError(f"no trained {name} weights are shipped with this version of adaconv; "
                               f"pass --weights FILE (a file from 'adaconv export-weights')")
        return cls.from_weights(path, model=name, device=device, precision=precision)

    @classmethod
    def from_weights(cls, path: str | os.PathLike, *, model: str | None = None, device: str = "auto",
                     precision: str = "fp32") -> Stylizer:
        """Any weights file in the package's format; ``model`` (if given) must match the file."""
        network, info = model_from_weights(path, expected_kind=model)
        return cls(network, device=device, info=info, precision=precision)

    def autocast(self):
        """The context the model runs in at this Stylizer's precision (for code that calls ``model`` itself)."""
        return precision_context(self.precision, self.device)

    # -- styles ----------------------------------------------------------------------------------
    @staticmethod
    def _cache_key(style, style_size: int | None):
        if isinstance(style, (str, os.PathLike)):
            path = Path(style)
            try:
                stat = path.stat()
            except OSError:
                return None  # reading will report the problem
            return ("path", str(path.resolve()), stat.st_mtime_ns, stat.st_size, style_size)
        if isinstance(style, Image.Image):
            data = style.tobytes() + repr((style.mode, style.size)).encode()
        elif isinstance(style, np.ndarray):
            data = np.ascontiguousarray(style).tobytes() + repr((style.dtype, style.shape)).encode()
        elif isinstance(style, torch.Tensor):
            data = style.detach().cpu().contiguous().numpy().tobytes() + repr(tuple(style.shape)).encode()
        else:
            return None
        return ("data", hashlib.sha1(data).hexdigest(), style_size)

    @torch.inference_mode()
    def encode_style(self, style, *, style_size: int | None = None) -> StyleCode:
        """A style image (path, PIL image, array or tensor) -> the model's style code, cached."""
        key = self._cache_key(style, style_size)
        if key is not None:
            with self._style_cache_lock:
                code = self._style_cache.get(key)
                if code is not None:
                    self._style_cache.move_to_end(key)
                    return code
        original = to_tensor(style)
        batch = prepare_style(original, self.kind, style_size)[None].to(self.device, memory_format=torch.channels_last)
        with self.autocast():
            if self.kind == "adaconv":
                square = resize(original, STYLE_IMAGE_SIZE, STYLE_IMAGE_SIZE)[None].to(self.device)
                code = self.model.encode_style(batch, square.contiguous(memory_format=torch.channels_last))
            else:
                code = self.model.encode_style(batch)
        if key is not None:
            with self._style_cache_lock:
                self._style_cache[key] = code
                while len(self._style_cache) > STYLE_CACHE_SIZE:
                    self._style_cache.popitem(last=False)
        return code

    # -- contents --------------------------------------------------------------------------------
    def encode_content(self, content, *, content_size: int | None = None, tile: str = "auto",
                       tile_size: int = TILE_SIZE, progress: bool | None = None) -> EncodedContent:
        """Encode a content once for many styles: pass the result to ``stylize`` or ``stylize_tensor`` in place
        of the content. ``content``, ``content_size``, ``tile``, ``tile_size``: as in ``stylize`` (the content
        is sized and tiled here, once)."""
        check_tile_mode(tile)
        tile_size = check_tile_size(tile_size)
        encoded, bar = self._encode(self._sized_content(content, content_size, tile), tile, tile_size, progress)
        if bar is not None:
            bar.close()
        return encoded

    @torch.inference_mode()
    def _encode(self, content: torch.Tensor, tile: str, tile_size: int, progress: bool | None,
                passes_after: int = 0) -> tuple[EncodedContent, tqdm | None]:
        """The content's features; in tiles, with a progress bar sized for ``passes_after`` more passes."""
        batch, (height, width) = pad_to_multiple(content[None].to(self.device))
        batch = batch.contiguous(memory_format=torch.channels_last)
        grid, bar = None, None
        if tile == "on" or (tile == "auto" and height * width > TILE_ABOVE_PIXELS):
            grid = tile_grid(*batch.shape[-2:], tile_size)
            grid = grid if len(grid) > 1 else None  # one tile is the untiled run
        with self.autocast():
            if grid is None:
                features = self.model.encoder.encode(batch)
            else:
                bar = _tile_bar(len(grid) * (1 + passes_after), progress)
                features = encode_tiled(self.model.encoder, batch, grid, bar.update)
        return EncodedContent(content, batch, features, grid, self.model), bar

    def _sized_content(self, content, content_size: int | None, tile: str) -> torch.Tensor:
        """Any content ``stylize`` takes -> [3, H, W] at the size it is processed at (default caps, warned)."""
        image = to_tensor(content)
        cap = MAX_CONTENT_SIDE if tile == "off" else MAX_TILED_CONTENT_SIDE
        if content_size is not None:
            image = resize_long_side(image, content_size)
        elif max(image.shape[-2:]) > cap:
            height, width = image.shape[-2:]
            image = resize_long_side(image, cap)
            hint = " or --tile auto" if tile == "off" else ""
            warnings.warn(ContentResized(
                f"content is {width}x{height}; processed at {image.shape[-1]}x{image.shape[-2]} "
                f"(long side {cap}); pass --content-size{hint} to choose another size"), stacklevel=3)
        if min(image.shape[-2:]) < 16:
            raise AdaconvError(f"content image is too small ({image.shape[-1]}x{image.shape[-2]}); "
                               "it needs at least 16 pixels on each side")
        return image

    # -- stylising -------------------------------------------------------------------------------
    @torch.inference_mode()
    def stylize_tensor(self, content: torch.Tensor | EncodedContent, style, *, alpha: float = 1.0,
                       style_weights: Sequence[float] | None = None, style_size: int | None = None,
                       preserve_color: str | None = None, mask=None, style_per_scale=None, tile: str = "auto",
                       tile_size: int = TILE_SIZE, progress: bool | None = None) -> torch.Tensor:
        """Content [3, H, W] in [0, 1] (or ``encode_content``'s result) -> stylised [3, H, W] in [0, 1], at the
        content's size.

        ``mask``: one label image or one mask per style (spatial control: style k paints region k).
        ``style_per_scale``: four styles, coarse to fine, one per AdaConv decoder scale (per-scale mixing).
        ``tile``: "auto" (tile above ``TILE_ABOVE_PIXELS``), "on" or "off"; ``tile_size`` in pixels (an encoded
        content keeps the tiling it was encoded with).
        ``progress``: a progress bar over the tiles (default: when stderr is a terminal).
        """
        if not 0.0 <= alpha <= 1.0:
            raise AdaconvError(f"alpha must be in [0, 1], got {alpha}")
        check_color_mode(preserve_color)
        check_tile_mode(tile)
        tile_size = check_tile_size(tile_size)
        styles = list(style) if isinstance(style, (list, tuple)) else [style]
        if not styles and style_per_scale is None:
            raise AdaconvError("no style image given")
        if isinstance(content, EncodedContent):
            if content.model is not self.model:
                raise AdaconvError("this content was encoded by another Stylizer; encode it with this one")
            encoded = content
            bar = _tile_bar(len(encoded.grid) * (passes(self.model) - 1), progress) if encoded.grid else None
        else:
            encoded, bar = self._encode(content, tile, tile_size, progress, passes_after=passes(self.model) - 1)
        content, batch, features, grid = encoded.image, encoded.batch, encoded.features, encoded.grid
        height, width = encoded.size

        def encode(image):
            if preserve_color == "histogram":
                return self.encode_style(match_color_statistics(to_tensor(image), content), style_size=style_size)
            return self.encode_style(image, style_size=style_size)

        def decode(style_codes, masks=None) -> torch.Tensor:
            with self.autocast():
                if grid is not None:
                    return decode_tiled(self.model, features, style_codes, grid, masks=masks, advance=bar.update)
                if masks is not None:
                    return self.model.decode_regions(features, style_codes, masks)
                return self.model.decode(features, style_codes)

        def with_alpha(code: StyleCode) -> StyleCode:
            if alpha == 1.0:
                return code
            if encoded.own_code is None:
                with self.autocast():
                    encoded.own_code = self.model.own_style_code(batch, features)
            return blend_style_codes([encoded.own_code, code], [1.0 - alpha, alpha])

        if style_per_scale is not None:
            if self.kind != "adaconv":
                raise AdaconvError("per-scale style mixing needs the adaconv model (AdaIN has one style layer)")
            if len(style_per_scale) != 4:
                raise AdaconvError(f"--style-per-scale needs 4 styles (coarse to fine), got {len(style_per_scale)}")
            output = decode([with_alpha(encode(s)) for s in style_per_scale])
        elif mask is not None:
            codes = [with_alpha(encode(s)) for s in styles]
            masks = load_masks(mask, len(codes), height, width)  # the content's own size, then padded like it
            pad_h, pad_w = batch.shape[-2] - height, batch.shape[-1] - width
            masks = torch.nn.functional.pad(masks[None], (0, pad_w, 0, pad_h), mode="replicate")[0]
            output = decode(codes, masks)
        else:
            codes = [encode(s) for s in styles]
            if style_weights is None:
                style_weights = [1.0] * len(codes)
            if len(style_weights) != len(codes):
                raise AdaconvError(f"{len(style_weights)} style weights for {len(codes)} styles")
            if any(w < 0 for w in style_weights) or sum(style_weights) <= 0:
                raise AdaconvError("style weights must be non-negative and not all zero")
            code = codes[0] if len(codes) == 1 else blend_style_codes(codes, style_weights)
            output = decode(with_alpha(code))
        if bar is not None:
            bar.close()
        output = output[0, :, :height, :width].float()
        if preserve_color == "luminance":
            output = keep_content_chroma(output, content.to(output.device).float())
        return output.clamp(0, 1).cpu()

    def stylize(self, content, style, *, alpha: float = 1.0, style_weights: Sequence[float] | None = None,
                content_size: int | None = None, style_size: int | None = None, preserve_color: str | None = None,
                mask=None, style_per_scale=None, tile: str = "auto", tile_size: int = TILE_SIZE,
                progress: bool | None = None) -> Image.Image:
        """Stylise ``content`` with ``style`` (one image or a list to blend); returns a PIL RGB image.

        Args:
            content, style: paths, PIL images, HxWx3 arrays or [3, H, W] tensors in [0, 1]; the content may
                also be ``encode_content``'s result (one photo in many styles, encoded once).
            alpha: content-style trade-off, 0 (content) to 1 (full style).
            style_weights: blend weights when several styles are given (default: equal).
            content_size: long side to process the content at (default: its own size, capped at 8192, or at
                2048 with ``tile="off"``).
            style_size: scale at which the style is read (the size of brush strokes).
            preserve_color: None, "histogram" (style recoloured to the content's palette first) or "luminance"
                (the output's luminance with the content's chroma).
            mask: spatial control, one label image or one mask per style: style k paints region k.
            style_per_scale: AdaConv only: four styles (paths or images), coarse to fine, one per decoder scale.
            tile: "auto" (default: overlapping tiles for contents above 2048x2048 pixels), "on" or "off". Tiling
                computes every normalisation statistic over the whole image, so it leaves no seams.
            tile_size: tile side in pixels (default 1024; at least 256).
            progress: a progress bar over the tiles on stderr (default: when stderr is a terminal).
        """
        check_tile_mode(tile)
        if isinstance(content, EncodedContent):
            if content_size is not None:
                raise AdaconvError("content_size applies when a content is encoded: pass it to encode_content")
            image = content
        else:
            image = self._sized_content(content, content_size, tile)
        return tensor_to_pil(self.stylize_tensor(image, style, alpha=alpha, style_weights=style_weights,
                                                 style_size=style_size, preserve_color=preserve_color, mask=mask,
                                                 style_per_scale=style_per_scale, tile=tile, tile_size=tile_size,
                                                 progress=progress))


def _tile_bar(total: int, progress: bool | None) -> tqdm:
    show = sys.stderr.isatty() if progress is None else progress
    return tqdm(total=total, disable=not show, desc="tiles", unit="tile", leave=False)


def check_tile_mode(tile: str) -> None:
    if tile not in TILE_MODES:
        raise AdaconvError(f"tile must be one of {', '.join(TILE_MODES)}, got {tile!r}")
