"""`adaconv info`: what this install runs, and how each weights file was trained.

`export-weights` writes a run's provenance into the file it exports (iterations, images, crop sizes, recipe,
held-out score, the weights it was warm-started from, date). That is the answer to "which weights made this
picture, and how were they made"; this command prints it for people, or whole with ``--json`` for scripts. It reads
the metadata and the tensors' shapes only, so it is instant even for AdaConv's 81 MB file.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

from . import __version__
from .devices import mps_available
from .errors import WeightsError
from .inference import DEFAULT_MODEL
from .losses import IDENTITY_PIXEL_WEIGHT
from .models import MODEL_KINDS
from .training import PHASE_DEFAULTS
from .weights import SCALE_SUFFIX, inspect_weights, shipped_weights_path


def weights_summary(path: str | os.PathLike) -> dict:
    """A weights file's model, size, parameter count, hyper-parameters and training provenance."""
    shapes, metadata = inspect_weights(path)
    try:
        decoded = {key: json.loads(metadata.get(key, default))
                   for key, default in (("hyperparameters", "{}"), ("provenance", "{}"), ("int8_tensors", "[]"))}
    except ValueError as error:
        raise WeightsError(f"{path}: damaged metadata in the weights file ({error})") from None
    return {"path": str(path), "model": metadata["model"], "bytes": Path(path).stat().st_size,
            "parameters": sum(math.prod(shape) for name, shape in shapes.items() if not name.endswith(SCALE_SUFFIX)),
            "format_version": metadata.get("format_version"),
            "encoder_normalization": metadata.get("encoder_normalization"), **decoded}


def runtime_summary() -> dict:
    """Versions and the devices torch sees (`--device auto` takes CUDA, then MPS, then the CPU)."""
    try:
        import onnxruntime
        onnx_runtime = onnxruntime.__version__
    except ImportError:
        onnx_runtime = None
    return {"adaconv": __version__, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(), "mps": mps_available(),
            "onnxruntime": onnx_runtime, "default_model": DEFAULT_MODEL}


def describe_weights(summary: dict, label: str) -> list[str]:
    """The summary as indented ``field  value`` lines under ``label: path``."""
    provenance = summary["provenance"]
    size = f"{summary['bytes'] / 1e6:.1f} MB, {provenance.get('dtype', 'dtype not recorded')}"
    if summary["int8_tensors"]:
        size += f" ({', '.join(summary['int8_tensors'])} in 8-bit rows)"
    rows = [("file", f"{size}, {summary['parameters'] / 1e6:.1f} M parameters besides the VGG-19 encoder")]
    if summary["hyperparameters"]:
        rows.append(("model", ", ".join(f"{key} {value}" for key, value in sorted(summary["hyperparameters"].items()))))
    if not provenance:
        rows.append(("trained", "no provenance recorded (not written by `adaconv export-weights`)"))
    else:
        try:
            rows += _training_rows(provenance)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise WeightsError(f"{summary['path']}: provenance in the metadata is not as export-weights writes it "
                               f"({type(error).__name__}: {error})") from None
    width = max(len(field) for field, _ in rows)
    return [f"{label}: {summary['path']}"] + [f"  {field:<{width}}  {value}" for field, value in rows]


def _training_rows(provenance: dict) -> list[tuple[str, str]]:
    total = provenance.get("total_iterations", provenance.get("iterations"))
    images = provenance.get("total_images_seen", provenance.get("images_seen"))
    by_crop = ", ".join(f"{crop}²: {count:,}" for crop, count in provenance.get("iterations_by_crop", {}).items())
    trained = "not recorded" if total is None else (f"{total:,} iterations" + (f" ({by_crop})" if by_crop else "")
                                                   + (f", {images:,} images" if images is not None else ""))
    rows = [("trained", trained)]
    chain = _warm_start_chain(provenance.get("init"))
    if chain:
        rows.append(("this run", f"{provenance.get('iterations', 0):,} iterations in "
                                 f"{_duration(provenance.get('train_seconds', 0))}, warm-started from {chain}"))
    recipe = [f"batch {provenance['batch_size']}" if "batch_size" in provenance else None,
              f"crop {provenance['crop_size']}²" if "crop_size" in provenance else None,
              f"λ {provenance['style_weight']:g}" if "style_weight" in provenance else None,
              f"content weight {provenance['content_weight']:g}" if provenance.get("content_weight", 1) != 1 else None,
              _identity(provenance) if provenance.get("identity_weight") else None,
              f"lr {provenance['lr']:g} (decay {provenance.get('lr_decay', 0):g})" if "lr" in provenance else None,
              (f"style encoder at {provenance['style_encoder_lr_scale']:g} of the lr"
               if provenance.get("style_encoder_lr_scale", 1) != 1 else None)]
    rows.append(("recipe", ", ".join(item for item in recipe if item) or "not recorded"))
    phases = provenance.get("phases") or []
    if len(phases) > 1:
        rows.append(("phases", "; ".join(_phase(phase) for phase in phases)))
    if "weights" in provenance:
        rows.append(("weights", provenance["weights"]))
    validation = provenance.get("validation")
    if validation:
        pairs = " × ".join(str(n) for n in validation.get("pairs", [])) or "the"
        rows.append(("held-out", f"loss {validation['loss']:.2f} (content {validation['content_loss']:.3f}, "
                                 f"style {validation['style_loss']:.3f}) on {pairs} held-out pairs at "
                                 f"{validation.get('crop_size', '?')}², iteration {validation['iteration']:,}"))
    if "content_data" in provenance:
        rows.append(("data", f"photos {provenance['content_data']}, paintings {provenance.get('style_data')}"))
    if "exported" in provenance:
        rows.append(("exported", provenance["exported"]))
    return rows


def _phase(phase: dict) -> str:
    recipe = PHASE_DEFAULTS | phase
    content_weight = f", content weight {recipe['content_weight']:g}" if recipe["content_weight"] != 1 else ""
    identity_weight = f", {_identity(recipe)}" if recipe["identity_weight"] else ""
    return (f"from {phase['from_iteration']:,}: crop {phase['crop_size']}², batch {phase['batch_size']}, "
            f"λ {recipe['style_weight']:g}{content_weight}{identity_weight}")


def _identity(recipe: dict) -> str:
    """The identity loss's weight, and its pixel term's where it is not SANet's 50."""
    pixels = recipe.get("identity_pixel_weight", IDENTITY_PIXEL_WEIGHT)
    return f"identity weight {recipe['identity_weight']:g}" + (
        f" (pixel term × {pixels:g})" if pixels != IDENTITY_PIXEL_WEIGHT else "")


def _warm_start_chain(init: dict | None) -> str:
    """``adain weights of 2026-12-02 (7,200 iterations) ← ...``: each file a run started from, newest first."""
    links = []
    while init:
        earlier = init.get("provenance") or {}
        links.append(f"{init.get('model', '?')} weights of {earlier.get('exported', 'unknown date')} "
                     f"({earlier.get('iterations', 0):,} iterations)")
        init = earlier.get("init")
    return " ← ".join(links)


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def info_command(args) -> dict:
    """Describe ``args.weights`` (default: the shipped weights of every model); returns what it printed."""
    runtime = runtime_summary()
    paths = [Path(path) for path in args.weights] or [shipped_weights_path(kind) for kind in MODEL_KINDS
                                                       if shipped_weights_path(kind).exists()]
    summaries = [weights_summary(path) for path in paths]
    if args.json:
        report = {**runtime, "weights": summaries}
        print(json.dumps(report, indent=2))
        return report
    devices = ", ".join(["cpu"] + [name for name in ("cuda", "mps") if runtime[name]])
    lines = [f"adaconv {runtime['adaconv']}, torch {runtime['torch']} ({devices}; {runtime['threads']} threads), "
             f"onnxruntime {runtime['onnxruntime'] or 'not installed'}"]
    shipped = not args.weights
    for summary in summaries:  # every file described before anything is printed: a bad one prints one line only
        label = summary["model"] + (" (default model)" if shipped and summary["model"] == DEFAULT_MODEL else "")
        lines += ["", *describe_weights(summary, label)]
    print("\n".join(lines))
    return {**runtime, "weights": summaries}
