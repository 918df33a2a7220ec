"""``adaconv app``: the public web demo, a thin Gradio shell over :meth:`Stylizer.stylize`.

One process holds one model (loaded once; its style-code cache serves every visitor). Requests wait in Gradio's
queue and run a few at a time (one worker per two cores by default), so a crowd slows the page down instead of
exhausting memory. Every image arrives as an upload that Gradio has already stored in its own cache and hands over
as a PIL image: no text a visitor types is ever used as a path. The checks a public server needs are here, before
any pixel is decoded: an upload size cap (Gradio's ``max_file_size``) and a pixel budget read from the image
header, refused with one line. Uploads and results live in a temporary folder of this process, swept by Gradio's
``delete_cache`` and removed at exit.

The same function is the HTTP API endpoint ``/stylize`` (see the README for a ``gradio_client`` call).

Imported by the CLI only; the library never imports it, and it needs the optional ``app`` extra (Gradio).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import torch
from PIL import Image

from .errors import AdaconvError
from .imageio import pil_to_tensor, to_srgb
from .inference import EncodedContent, Stylizer

EXAMPLES = Path(__file__).resolve().parent / "assets" / "examples"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
COLOR_MODES = ("none", "histogram", "luminance")
MAX_PIXELS = 2048 * 2048          # ~4.2 MP: a few seconds per request on a laptop CPU, ~1 GB of activations
MAX_UPLOAD_MB = 20
MAX_QUEUE = 64
CACHE_SWEEP = (300, 900)          # every 5 minutes, delete uploads and results older than 15 minutes
CONTENT_CACHE_MB = 512            # the last photos' encoder features: ~56 bytes a pixel, ~230 MB at MAX_PIXELS
# Per-scale mixing with two styles: which style each of AdaConv's four decoder scales takes, coarse to fine.
# "1111" and "2222" are the plain styles, so they are not offered.
PER_SCALE_PATTERNS = tuple("".join(p) for p in product("12", repeat=4) if len(set(p)) == 2)


@dataclass(frozen=True)
class AppConfig:
    """What an ``adaconv app`` server allows; every field has a CLI option of the same name."""

    max_pixels: int = MAX_PIXELS
    max_upload_mb: int = MAX_UPLOAD_MB
    max_queue: int = MAX_QUEUE
    concurrency: int = 0          # 0: one worker per two cores
    content_cache_mb: int = CONTENT_CACHE_MB  # 0: encode every photo anew

    def workers(self) -> int:
        return self.concurrency or default_concurrency()


def default_concurrency() -> int:
    """One stylisation per two cores: each already runs on several threads, and more at once only adds memory."""
    return max(1, (os.cpu_count() or 1) // 2)


def megapixels(pixels: int) -> str:
    value = pixels / 1e6
    return f"{value:.0f} MP" if value >= 10 else f"{value:.2g} MP" if value >= 0.1 else f"{pixels:,} pixels"


def check_pixels(size: tuple[int, int], role: str, max_pixels: int) -> None:
    """Refuse an image above the pixel budget, with its size and the limit in one line."""
    width, height = size
    if width * height > max_pixels:
        raise AdaconvError(f"{role} is {width}x{height} = {megapixels(width * height)}; "
                           f"the limit is {megapixels(max_pixels)}")


def example_images(kind: str) -> list[Path]:
    """The shipped public-domain examples ("content" or "style"), in name order."""
    return sorted(p for p in (EXAMPLES / kind).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


class ContentCache:
    """The encoder features of the last few photos, so that a visitor trying painting after painting on one photo
    pays for the encoder (about half of a stylisation) once.

    Keyed by a digest of the pixels (never by a name a visitor chose), least recently used first out, bounded in
    bytes. The workers share it: a lock guards the bookkeeping, not the encoding, so two workers given the same new
    photo at once may both encode it (and one copy is kept).
    """

    def __init__(self, stylizer: Stylizer, budget_mb: int = CONTENT_CACHE_MB):
        self.stylizer = stylizer
        self.budget = budget_mb * 2**20
        self.entries: OrderedDict[bytes, tuple[EncodedContent, int]] = OrderedDict()
        self.lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def bytes(self) -> int:
        return sum(size for _, size in self.entries.values())

    def encode(self, image: Image.Image) -> tuple[EncodedContent, bool]:
        """The photo's encoding, and whether it was already here."""
        digest = hashlib.blake2b(f"{image.mode} {image.size}".encode(), digest_size=20)
        digest.update(image.tobytes())
        key = digest.digest()
        with self.lock:
            if key in self.entries:
                self.entries.move_to_end(key)
                return self.entries[key][0], True
        encoded = self.stylizer.encode_content(pil_to_tensor(image, name="content"), tile="off", progress=False)
        size = sum(t.nbytes for t in (encoded.image, encoded.batch, encoded.features))
        if size <= self.budget:
            with self.lock:
                self.entries[key] = (encoded, size)
                while self.bytes > self.budget:
                    self.entries.popitem(last=False)
        return encoded, False


def per_scale_label(pattern: str) -> str:
    return " · ".join(pattern) + "  (coarse → fine)"


def stylize_request(stylizer: Stylizer, content: Image.Image | None, style: Image.Image | None, alpha: float,
                    preserve_color: str, second_style: Image.Image | None, second_weight: float,
                    per_scale: str, *, max_pixels: int,
                    contents: ContentCache | None = None) -> tuple[Image.Image, str]:
    """One request: the form's values -> (the stylised image, a line saying what was done and how long it took).

    ``contents``: where the photos' encodings are kept between requests (none: encoded every time).
    Bad input raises :class:`AdaconvError` with one line; the Gradio handler shows it as ``gr.Error``.
    """
    if content is None:
        raise AdaconvError("upload a content image (or pick one of the examples)")
    if style is None:
        raise AdaconvError("pick a style from the gallery or upload one")
    if preserve_color not in COLOR_MODES:
        raise AdaconvError(f"colour preservation must be one of {', '.join(COLOR_MODES)}, got {preserve_color!r}")
    if not 0.0 <= second_weight <= 1.0:
        raise AdaconvError(f"the second style's weight must be in [0, 1], got {second_weight}")
    per_scale = per_scale or "off"
    if per_scale != "off" and per_scale not in PER_SCALE_PATTERNS:
        raise AdaconvError(f"per-scale mixing {per_scale!r}: expected off or four of 1/2 using both, e.g. 1122")
    for image, role in ((content, "content"), (style, "style"), (second_style, "second style")):
        if image is not None:
            check_pixels(image.size, role, max_pixels)
    first = pil_to_tensor(to_srgb(style), name="style")
    second = pil_to_tensor(to_srgb(second_style), name="second style") if second_style is not None else None
    options = {"alpha": float(alpha), "preserve_color": None if preserve_color == "none" else preserve_color}
    details = [f"α {alpha:g}"] + ([f"{preserve_color} colour"] if preserve_color != "none" else [])
    if per_scale != "off":
        if stylizer.kind != "adaconv":
            raise AdaconvError(f"per-scale mixing needs the adaconv model; this server runs {stylizer.kind}")
        if second is None:
            raise AdaconvError("per-scale mixing takes two styles: add a second style")
        options["style_per_scale"] = [first if digit == "1" else second for digit in per_scale]
        styles = []
        details.append(f"per-scale {per_scale}")
    elif second is not None and second_weight > 0:
        styles = [first, second]
        options["style_weights"] = [1.0 - second_weight, second_weight]
        details.append(f"styles blended {1 - second_weight:.0%}/{second_weight:.0%}")
    else:
        styles = [first]
    started = time.perf_counter()
    if contents is None:
        pixels = pil_to_tensor(to_srgb(content), name="content")
    else:
        pixels, reused = contents.encode(to_srgb(content))
        if reused:
            details.append("photo already encoded")
    result = stylizer.stylize(pixels, styles, tile="off", progress=False, **options)
    seconds = time.perf_counter() - started
    return result, f"{result.width}x{result.height} in {seconds:.2f} s ({stylizer.kind}; {', '.join(details)})"


def build_app(stylizer: Stylizer, config: AppConfig = AppConfig()):
    """The Gradio Blocks of the demo, around one loaded ``stylizer`` (not launched)."""
    import gradio as gr

    def bounded_image(role: str, **options):
        """``gr.Image`` whose upload is checked against the pixel budget from its header, before it is decoded.

        Gradio stores the upload, then opens it; a small file can still hold a huge picture, so the size is read
        from the lazily opened file (Pillow reads only the header) and the visitor gets one line. The check wraps
        this one instance's ``preprocess``: a subclass would make Gradio write a stub file beside this module.
        """
        image = gr.Image(type="pil", image_mode=None, format="png", sources=["upload", "clipboard"], **options)
        gradio_preprocess = image.preprocess  # image_mode None: hands over the opened file without decoding it

        def preprocess(payload):
            try:
                if payload is not None and payload.path:
                    with Image.open(payload.path) as header:
                        check_pixels(header.size, role, config.max_pixels)
                opened = gradio_preprocess(payload)
                if opened is not None:
                    check_pixels(opened.size, role, config.max_pixels)
                return opened
            except AdaconvError as error:
                raise gr.Error(str(error), print_exception=False) from None
            except Image.DecompressionBombError:
                raise gr.Error(f"{role} is larger than {megapixels(2 * Image.MAX_IMAGE_PIXELS)}; the limit is "
                               f"{megapixels(config.max_pixels)}", print_exception=False) from None
            except (OSError, SyntaxError, ValueError):  # Pillow's ways of saying "not an image" or "damaged"
                raise gr.Error(f"{role}: not an image Pillow can read, or a damaged one",
                               print_exception=False) from None

        image.preprocess = preprocess
        return image

    contents = ContentCache(stylizer, config.content_cache_mb) if config.content_cache_mb else None  # 0: no digests

    def run(content, style, alpha, preserve_color, second_style, second_weight, per_scale):
        try:
            return stylize_request(stylizer, content, style, alpha, preserve_color, second_style, second_weight,
                                   per_scale, max_pixels=config.max_pixels, contents=contents)
        except AdaconvError as error:
            raise gr.Error(" ".join(str(error).split()), print_exception=False) from None
        except MemoryError:
            raise gr.Error("out of memory for this image; try a smaller one", print_exception=False) from None

    styles = example_images("style")
    adaconv = stylizer.kind == "adaconv"
    per_scale_info = ("which style each decoder scale takes, coarse structure to fine texture (needs a second style)"
                      if adaconv else f"needs the adaconv model; this server runs {stylizer.kind}")

    with gr.Blocks(title="adaconv: fast arbitrary style transfer", analytics_enabled=False,
                   delete_cache=CACHE_SWEEP) as demo:
        gr.Markdown(f"# adaconv: paint a photo in the style of a painting\n"
                    f"Model **{stylizer.kind}**. Images up to {megapixels(config.max_pixels)} and "
                    f"{config.max_upload_mb} MB; requests are queued and run {config.workers()} at a time.")
        with gr.Row():
            with gr.Column():
                content = bounded_image("content", label="Content", elem_id="content")
                gr.Examples([[str(p)] for p in example_images("content")], inputs=[content], label="Example photos")
            with gr.Column():
                style = bounded_image("style", label="Style", elem_id="style")
                gallery = gr.Gallery([(str(p), p.stem.replace("_", " ")) for p in styles], label="Pick a style",
                                     columns=4, rows=1, height=170, object_fit="cover", allow_preview=False,
                                     interactive=False, elem_id="style-gallery")
            with gr.Column():
                result = gr.Image(label="Result (PNG)", type="pil", format="png", interactive=False,
                                  buttons=["download"], elem_id="result")
                timing = gr.Textbox(label="Time taken", interactive=False, elem_id="timing")
        with gr.Row():
            alpha = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="Style strength α",
                              info="0: the photo; 1: full style", elem_id="alpha")
            preserve_color = gr.Radio(list(COLOR_MODES), value="none", label="Colour preservation",
                                      info="histogram: recolour the painting first; luminance: keep the photo's "
                                           "chroma", elem_id="preserve-color")
        with gr.Accordion("Two styles", open=False, elem_id="two-styles"):
            with gr.Row():
                second_style = bounded_image("second style", label="Second style (optional)",
                                             elem_id="second-style")
                with gr.Column():
                    second_weight = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Second style's weight",
                                              info="style interpolation: 0 first style only, 1 second only",
                                              elem_id="second-weight")
                    per_scale = gr.Dropdown([("off", "off")] + [(per_scale_label(p), p) for p in PER_SCALE_PATTERNS],
                                            value="off", label="Per-scale mixing (AdaConv)", info=per_scale_info,
                                            interactive=adaconv, elem_id="per-scale")
        button = gr.Button("Stylise", variant="primary", elem_id="run")

        def pick_style(event: gr.SelectData):
            return str(styles[event.index])  # an index into the shipped list, never a path from the visitor

        pick_style.__annotations__["event"] = gr.SelectData  # a real class (this module postpones annotations)

        gallery.select(pick_style, None, style, api_visibility="private")
        button.click(run, [content, style, alpha, preserve_color, second_style, second_weight, per_scale],
                     [result, timing], api_name="stylize",
                     api_description="Stylise a content image with a style (optionally a second one).")
    demo.queue(max_size=config.max_queue, default_concurrency_limit=config.workers())
    return demo


def serve(stylizer: Stylizer, *, host: str = "127.0.0.1", port: int = 7860, config: AppConfig = AppConfig(),
          announce=print) -> None:
    """Launch the demo and block until interrupted. Uploads and results go to a temporary folder of this process."""
    cache = tempfile.mkdtemp(prefix="adaconv-app-")
    atexit.register(shutil.rmtree, cache, ignore_errors=True)
    os.environ["GRADIO_TEMP_DIR"] = cache  # before Gradio is imported: some of its modules read it at import
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    demo = build_app(stylizer, config)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // config.workers()))  # workers share the cores
    announce(f"adaconv app: {stylizer.kind} on http://{host}:{port} (queue {config.max_queue}, "
             f"{config.workers()} at a time, images up to {megapixels(config.max_pixels)}; Ctrl-C stops)")
    try:
        demo.launch(server_name=host, server_port=port, share=False, inbrowser=False, show_error=False,
                    max_file_size=f"{config.max_upload_mb}mb", allowed_paths=[str(EXAMPLES)], ssr_mode=False,
                    mcp_server=False, pwa=False, enable_monitoring=False, footer_links=["api"], quiet=True)
    except OSError as error:  # e.g. the port is taken
        raise AdaconvError(f"cannot serve on {host}:{port} ({' '.join(str(error).split())})") from None
