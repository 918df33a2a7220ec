"""``adaconv stylize``: one content to one file, or many contents (files, folders, globs) to a folder."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from .errors import AdaconvError, ImageError
from .imageio import (
    IMAGE_SUFFIXES,
    WRITABLE_FORMATS,
    allow_huge_images,
    check_output_path,
    list_images,
    read_content,
    save_image,
    tensor_to_pil,
)
from .inference import MAX_CONTENT_SIDE, Stylizer

EXIT_OK, EXIT_PARTIAL = 0, 1


def expand_contents(items: list[str]) -> tuple[list[tuple[Path, Path]], bool]:
    """Files, folders and globs -> (content path, its subfolder below the output folder) pairs; the flag says
    whether this is a batch (output is a folder). A folder's tree is kept below the output, so that ``a/x.jpg`` and
    ``b/x.jpg`` of one folder do not overwrite each other; files and globs go to the output folder itself."""
    paths: list[tuple[Path, Path]] = []
    batch = len(items) > 1
    for item in items:
        if item == "-":
            paths.append((Path("-"), Path()))
        elif any(ch in item for ch in "*?[") and not Path(item).exists():
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True)
                             if Path(m).suffix.lower() in IMAGE_SUFFIXES)
            if not matches:
                raise ImageError(f"{item}: no images match")
            paths += [(match, Path()) for match in matches]
            batch = True
        elif Path(item).is_dir():
            found = list_images(item)
            if not found:
                raise ImageError(f"{item}: folder holds no images")
            paths += [(path, path.parent.relative_to(item)) for path in found]
            batch = True
        else:
            paths.append((Path(item), Path()))  # a missing file is reported when it is read
    return paths, batch


def batch_targets(contents: list[tuple[Path, Path]], output: Path, styles: list[str]) -> list[tuple[Path, Path]]:
    """(content, output file) pairs of a batch: ``<subfolder>/<content stem>__<style stems>.png``.

    Contents that share a stem in one subfolder (``x.jpg`` and ``x.png``) use their whole name instead
    (``x.jpg__style.png``). Checked before any work: two different contents that would still be written to one file
    are refused (the second would silently replace the first); a content listed twice is stylised once."""
    style_stem = "+".join(Path(style).stem for style in styles)
    stems = Counter((subfolder, content.stem) for content, subfolder in dict.fromkeys(contents))
    owners: dict[Path, Path] = {}
    pairs = []
    for content, subfolder in contents:
        if str(content) == "-":
            raise AdaconvError("-: standard input can only be the one content of a run, not part of a batch")
        name = content.stem if stems[subfolder, content.stem] == 1 else content.name
        target = output / subfolder / f"{name}__{style_stem}.png"
        if target in owners:
            if owners[target].resolve() == content.resolve():
                continue
            raise AdaconvError(f"{owners[target]} and {content} would both be written to {target}; rename one")
        owners[target] = content
        pairs.append((content, target))
    return pairs


def parse_style_weights(text: str | None, count: int) -> list[float] | None:
    if text is None:
        return None
    try:
        weights = [float(w) for w in text.split(",")]
    except ValueError:
        raise AdaconvError(f"--style-weights {text}: expected comma-separated numbers") from None
    if len(weights) != count:
        raise AdaconvError(f"--style-weights gives {len(weights)} weights for {count} styles")
    return weights


def tiling_options(args, stylizer, batch: bool) -> dict:
    """--tile and --tile-size for the torch Stylizer; the tile progress bar only for a single content (a batch has
    its own bar)."""
    tile, tile_size = getattr(args, "tile", "auto"), getattr(args, "tile_size", 1024)
    if not isinstance(stylizer, Stylizer):
        if tile == "on":
            raise AdaconvError("--tile on needs the torch backend")
        return {}
    return {"tile": tile, "tile_size": tile_size, "progress": False if args.quiet or batch else None}


def load_stylizer(args) -> Stylizer:
    if getattr(args, "backend", "torch") == "onnxruntime":
        return load_onnx_stylizer(args)
    if args.onnx:
        raise AdaconvError("--onnx DIR needs --backend onnxruntime")
    precision = getattr(args, "precision", "fp32")
    if args.weights:
        return Stylizer.from_weights(args.weights, model=args.model, device=args.device, precision=precision)
    if args.model:
        return Stylizer.from_pretrained(args.model, device=args.device, precision=precision)
    return Stylizer.from_pretrained(device=args.device, precision=precision)


def load_onnx_stylizer(args):
    """The onnxruntime backend: the given exported folder, or the chosen weights exported once into a cache."""
    from .onnx_runner import MANIFEST, OnnxStylizer

    if args.device not in ("auto", "cpu"):
        raise AdaconvError("--backend onnxruntime runs on the CPU here; use --device cpu or auto")
    if getattr(args, "precision", "fp32") not in ("fp32", "auto"):  # auto: the best the backend has, fp32 graphs
        raise AdaconvError("--precision applies to the torch backend; use --onnx-variant with onnxruntime")
    folder = Path(args.onnx) if args.onnx else None
    if folder is None:
        from .export import export_onnx
        from .inference import DEFAULT_MODEL
        from .weights import inspect_weights, shipped_weights_path

        weights = Path(args.weights) if args.weights else shipped_weights_path(args.model or DEFAULT_MODEL)
        if not weights.exists():
            raise AdaconvError(f"{weights}: weights file not found")
        kind = args.model or inspect_weights(weights)[1]["model"]  # a given file names its model, not the default
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "adaconv" / "onnx"
        folder = cache / f"{kind}-{digest}-{args.onnx_variant}"
        if not (folder / MANIFEST).exists():
            stylizer = Stylizer.from_weights(weights, model=args.model, device="cpu")
            if not args.quiet:
                print(f"adaconv stylize: exporting {kind} to {folder} (once)", file=sys.stderr)
            variants = ["fp32"] + ([args.onnx_variant] if args.onnx_variant != "fp32" else [])
            export_onnx(stylizer.model, folder, variants=variants, progress=lambda text: None,
                        source={"path": str(weights)})
    stylizer = OnnxStylizer(folder, variant=args.onnx_variant)
    if args.model and stylizer.kind != args.model:
        raise AdaconvError(f"{folder}: holds {stylizer.kind} graphs, but --model {args.model} was asked for")
    return stylizer


def stylize_command(args) -> int:
    contents, batch = expand_contents(args.content)
    weights = parse_style_weights(args.style_weights, len(args.style))
    output = Path(args.output)
    if batch:
        if output.suffix.lower() in WRITABLE_FORMATS or str(output) == "-":
            raise AdaconvError(f"{output}: several contents need an output folder, not a file")
        if output.exists() and not output.is_dir():
            raise AdaconvError(f"{output}: exists and is not a folder")
        targets = batch_targets(contents, output, args.style)
    else:
        check_output_path(output)
        if str(output) == "-" and args.json:
            raise AdaconvError("-o - and --json would both write to standard output; choose one")
    for style in args.style:
        if style == "-":
            raise ImageError("--style -: styles are read from files (standard input can be the content)")
        if Path(style).is_dir():
            raise ImageError(f"{style}: is a directory, not a style image")
    if args.allow_huge:
        allow_huge_images()
    stylizer = load_stylizer(args)
    controls = {}
    if args.preserve_color or args.mask or args.style_per_scale:
        if getattr(args, "backend", "torch") != "torch":
            raise AdaconvError("--preserve-color, --mask and --style-per-scale need the torch backend")
        per_scale = args.style_per_scale.split(",") if args.style_per_scale else None
        controls = {"preserve_color": args.preserve_color, "mask": args.mask, "style_per_scale": per_scale}
    started = time.perf_counter()
    for style in args.style:  # read every style up front: a bad style fails before any output is written
        stylizer.encode_style(style, style_size=args.style_size)
    notes: list[str] = []
    results, failures, skipped = [], [], []

    def run_one(content: Path, target: Path) -> None:
        pixels, metadata = read_content(content)
        source = pixels if isinstance(stylizer, Stylizer) else tensor_to_pil(pixels)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            image = stylizer.stylize(source, args.style, alpha=args.alpha, style_weights=weights,
                                     content_size=args.content_size, style_size=args.style_size, **controls,
                                     **tiling_options(args, stylizer, batch))
        notes.extend(str(w.message) for w in caught)
        save_image(image, target, metadata=metadata)
        results.append({"content": str(content), "output": str(target), "size": list(image.size)})

    if not batch:
        run_one(contents[0][0], output)
    else:
        show = not args.quiet and sys.stderr.isatty()
        for content, target in tqdm(targets, disable=not show, desc="stylize", unit="img"):
            if args.skip_existing and target.exists():
                skipped.append(str(target))
                continue
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                run_one(content, target)
            except AdaconvError as error:
                failures.append({"content": str(content), "error": str(error)})
    if not args.quiet:
        for note in dict.fromkeys(notes):  # once each, however many contents it concerned
            print(f"adaconv stylize: note: {note}", file=sys.stderr)
        for failure in failures:
            print(f"adaconv stylize: failed: {failure['error']}", file=sys.stderr)
    if args.json:
        summary = {"model": stylizer.kind, "weights": stylizer.info.get("path"), "outputs": results,
                   "failed": failures, "skipped_existing": skipped, "seconds": round(time.perf_counter() - started, 3),
                   "max_content_side": MAX_CONTENT_SIDE}
        print(json.dumps(summary, indent=2))
    return EXIT_PARTIAL if failures else EXIT_OK
