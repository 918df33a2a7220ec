"""``adaconv benchmark``: how fast the models stylise on this machine, and how close to its peak they run.

For each model and size: the style encoding (timed apart, since an app encodes a style once), the median latency
of warm content passes with the style code cached, throughput, peak memory, the FLOPs of one pass (torch's FLOP
counter) and the achieved GFLOP/s as a share of the device's peak. Training runs are paused while measuring.

Sizes above ``TILE_ABOVE_PIXELS`` (4K, 8K) go through ``Stylizer.stylize_tensor`` as a user's run does: in tiles
with whole-image statistics (adaconv.tiling). Such a run takes minutes, so it is timed once per repeat with no
warm-up, and its FLOPs are counted on the first timed run (the counter's overhead is under 1% of such a run).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from . import allocator
from .benchmarking import (
    PeakRSS,
    count_flops,
    cpu_name,
    cpu_peak_gflops,
    measured_peak,
    median_seconds,
    physical_cores,
    synchronise,
    training_paused,
)
from .devices import pick_device
from .errors import AdaconvError
from .imageio import write_atomically
from .inference import PRECISIONS, TILE_ABOVE_PIXELS, Stylizer, precision_context
from .models import MODEL_KINDS, StyleCode, build_model
from .preprocessing import prepare_style
from .progress import progress_bar
from .weights import shipped_weights_path

SCHEMA = "adaconv-benchmark"
STYLE_SIDE = 512  # the random style image's side before the model's own style preparation


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """"512" (square) or "3840x2160" (width x height) entries -> (height, width), fewest pixels first."""
    sizes = set()
    try:
        for entry in (e.strip().lower() for e in text.split(",") if e.strip()):
            width, _, height = entry.partition("x")
            sizes.add((int(height or width), int(width)))
    except ValueError:
        raise AdaconvError(f"--sizes {text}: expected comma-separated sizes such as 256,512 or 3840x2160") from None
    if not sizes or min(min(s) for s in sizes) < 16:
        raise AdaconvError(f"--sizes {text}: every side must be at least 16")
    # ascending, so each size's memory peak is its own, not a larger one's
    return sorted(sizes, key=lambda s: (s[0] * s[1], s))


def size_label(row: dict) -> str:
    square = row["height"] == row["width"]
    label = f"{row['width']}²" if square else f"{row['width']}×{row['height']}"
    return label + (" (tiled)" if row.get("tiled") else "")


def load_stylizer(kind: str, weights: str | None, device: torch.device) -> tuple[Stylizer, str]:
    """The given or shipped weights when there are some; otherwise a freshly initialised model — speed does not
    depend on weight values — and a note saying which it was."""
    if weights:
        return Stylizer.from_weights(weights, model=kind, device=device), f"file {Path(weights).name}"
    if shipped_weights_path(kind).exists():
        stylizer = Stylizer.from_pretrained(kind, device=device)
        return stylizer, f"shipped ({stylizer.info['provenance'].get('iterations', '?')} iterations)"
    torch.manual_seed(0)
    return Stylizer(build_model(kind), device=device), "untrained (none shipped; speed does not depend on weights)"


def significant(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


def _expand(code: StyleCode, batch: int) -> StyleCode:
    return StyleCode(*(None if v is None else v.expand(batch, *v.shape[1:]) for v in code._values()))


def _row(kind: str, backend: str, size: tuple[int, int], batch: int, style_seconds: float, seconds: float,
         times: list[float], flops: int, peak_bytes: int, memory_kind: str, peaks: dict, tiled: bool = False) -> dict:
    achieved = flops / seconds / 1e9
    height, width = size
    row = {"model": kind, "backend": backend, "size": width if height == width else f"{width}x{height}",
           "width": width, "height": height, "tiled": tiled, "batch": batch,
           "style_encoding_s": significant(style_seconds), "latency_s": significant(seconds),
           "latency_runs_s": [significant(t) for t in times], "throughput_img_s": significant(batch / seconds),
           "flop": flops, "gflop": significant(flops / 1e9), "gflops_per_s": significant(achieved),
           "peak_memory_mb": significant(peak_bytes / 2 ** 20), "memory_kind": memory_kind}
    for name in ("nominal", "measured"):
        if peaks.get(name):
            row[f"share_of_{name}_peak"] = significant(achieved / peaks[name], 3)
    return row


def benchmark_torch(kind: str, stylizer: Stylizer, sizes: list[tuple[int, int]], *, batch: int, precision: str,
                    repeats: int, warmup: int, peaks: dict, progress, tile: str = "auto") -> list[dict]:
    """Style encoding, then encoder + decoder over a batch of contents with the style code cached — the work of
    ``Stylizer.stylize_tensor`` without the image conversions (and with a batch, which the models accept)."""
    model, device = stylizer.model, stylizer.device
    generator = torch.Generator().manual_seed(0)
    style = prepare_style(torch.rand(3, STYLE_SIDE, STYLE_SIDE, generator=generator), kind)[None]
    style = style.to(device).contiguous(memory_format=torch.channels_last)
    autocast = precision_context(precision, device)

    @torch.inference_mode()
    def encode_style():
        with autocast:
            code = model.encode_style(style)
        synchronise(device)
        return code

    style_seconds, _ = median_seconds(encode_style, repeats, warmup=warmup)
    code = _expand(encode_style(), batch)
    on_cuda = device.type == "cuda"
    rows = []
    for size in sizes:
        height, width = size
        tiled = tile == "on" or (tile == "auto" and height * width > TILE_ABOVE_PIXELS)
        progress.set_description(f"{kind} {width}x{height}" + (" tiled" if tiled else ""))
        if tiled and batch != 1:
            raise AdaconvError(f"--sizes {width}x{height} is measured in tiles, one image at a time: use --batch 1")
        content = torch.rand(batch, 3, height, width, generator=generator).to(device)
        content = content.contiguous(memory_format=torch.channels_last)

        @torch.inference_mode()
        def stylise(content=content):
            with autocast:
                output = model.decode(model.encoder.encode(content), code)
            synchronise(device)
            return output

        @torch.inference_mode()
        def stylise_tiled(content=content[0]):
            with autocast:  # the style code comes from the Stylizer's cache after the first call
                output = stylizer.stylize_tensor(content, style[0], tile="on", progress=False)
            synchronise(device)
            return output

        if on_cuda:
            torch.cuda.reset_peak_memory_stats(device)
        with PeakRSS() as memory:
            if tiled:
                stylizer.encode_style(style[0])  # cached, as an app would have it
                started = time.perf_counter()
                flops = count_flops(stylise_tiled)
                times = [time.perf_counter() - started]
                if repeats > 1:
                    times += median_seconds(stylise_tiled, repeats - 1, warmup=0)[1]
                seconds = statistics.median(times)
            else:
                # the first warm-up pass doubles as the FLOP count (the counter runs the same kernels); no warm-up
                # asked for means one extra, untimed pass to count
                flops = count_flops(stylise)
                seconds, times = median_seconds(stylise, repeats, warmup=max(warmup - 1, 0))
        peak = torch.cuda.max_memory_allocated(device) if on_cuda else memory.peak
        rows.append(_row(kind, f"torch {precision}", size, batch, style_seconds, seconds, times, flops, peak,
                         "max allocated (CUDA)" if on_cuda else "peak RSS of the process", peaks, tiled=tiled))
        progress.update()
    return rows


def benchmark_onnx(kind: str, stylizer: Stylizer, sizes: list[tuple[int, int]], *, variant: str, batch: int,
                   repeats: int, warmup: int, peaks: dict, progress) -> list[dict]:
    """The same measurements through onnxruntime on the exported graphs (FLOPs counted on the PyTorch model,
    which the graphs replicate operation for operation)."""
    import tempfile

    import numpy as np

    from .export import export_onnx
    from .onnx_runner import OnnxStylizer

    if batch != 1:
        raise AdaconvError("--backend onnxruntime measures batch 1 (the exported graphs take one image)")
    model = stylizer.model
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        export_onnx(model, folder, variants=["fp32"] + ([variant] if variant != "fp32" else []),
                    progress=lambda text: None)
        runner = OnnxStylizer(folder, variant=variant)
        generator = np.random.default_rng(0)
        style_side = STYLE_SIDE if kind == "adain" else 256
        style = generator.random((1, 3, style_side, style_side), dtype=np.float32)
        style_seconds, _ = median_seconds(lambda: runner.style_session.run(None, {"style": style}), repeats,
                                          warmup=warmup)
        code = dict(zip(runner.code_names, runner.style_session.run(None, {"style": style})))
        for size in sizes:
            height, width = size
            progress.set_description(f"{kind} {width}x{height} onnx")
            content = generator.random((1, 3, height, width), dtype=np.float32)
            with PeakRSS() as memory:
                seconds, times = median_seconds(lambda c=content: runner.content_session.run(
                    None, {"content": c, **code}), repeats, warmup=warmup)
            with torch.inference_mode():
                tensor = torch.from_numpy(content)
                style_code = StyleCode(*(torch.from_numpy(code[n]) for n in runner.code_names))
                flops = count_flops(lambda t=tensor, c=style_code: model.decode(model.encoder.encode(t), c))
            rows.append(_row(kind, f"onnxruntime {variant}", size, 1, style_seconds, seconds, times, flops,
                             memory.peak, "peak RSS of the process", peaks))
            progress.update()
    return rows


def table(results: list[dict]) -> str:
    def share(value):
        return "–" if value is None else f"{value:.0%}"

    lines = ["| model | backend | size | batch | style encoding (s) | latency (s) | images/s | GFLOP | GFLOP/s | "
             "share of nominal peak | share of measured peak | peak memory (MiB) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r['model']} | {r['backend']} | {size_label(r)} | {r['batch']} | {r['style_encoding_s']:.3f} | "
            f"{r['latency_s']:.3f} | {r['throughput_img_s']:.2f} | {r['gflop']:,.0f} | {r['gflops_per_s']:.0f} | "
            f"{share(r.get('share_of_nominal_peak'))} | {share(r.get('share_of_measured_peak'))} | "
            f"{r['peak_memory_mb']:,.0f} |")
    return "\n".join(lines)


def machine_info(device: torch.device) -> dict:
    info = {"cpu": cpu_name(), "cores": physical_cores(), "threads": torch.get_num_threads(),
            "logical_cpus": os.cpu_count(), "device": str(device), "torch": torch.__version__,
            "python": platform.python_version(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "allocator": allocator.in_use()}  # tcmalloc made CPU passes ~1.3x faster (allocator.py)
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def device_peaks(device: torch.device, precision: str) -> dict:
    """The yardsticks for "share of peak", both in the benchmark's precision: on a CPU the nominal figure from its
    flags and clock, and on any device the best rate measured."""
    dtype = PRECISIONS[precision]
    measured, how = measured_peak(dtype=dtype, device=device)
    peaks: dict = {"measured": significant(measured), "measured_how": f"{how} ({precision.upper()})"}
    if device.type == "cpu":
        nominal, formula = cpu_peak_gflops(precision)
        peaks.update(nominal=None if nominal is None else significant(nominal), nominal_formula=formula)
    return peaks


def benchmark_command(args) -> int:
    sizes = parse_sizes(args.sizes)
    device = pick_device(args.device)
    if args.backend == "onnxruntime" and device.type != "cpu":
        raise AdaconvError("--backend onnxruntime is measured on the CPU (use --device cpu)")
    if args.precision == "fp16" and device.type != "cuda":
        raise AdaconvError("--precision fp16 needs a CUDA device (use bf16 or fp32 on the CPU)")
    if args.backend == "onnxruntime" and args.precision != "fp32":
        raise AdaconvError("--precision applies to the torch backend; use --onnx-variant with onnxruntime")
    kinds = list(MODEL_KINDS) if args.model == "all" else [args.model]
    if args.weights and len(kinds) > 1:
        raise AdaconvError("--weights needs --model adain or --model adaconv")
    if args.threads:
        torch.set_num_threads(args.threads)
    say = (lambda text: print(text, file=sys.stderr, flush=True)) if not args.quiet else (lambda text: None)

    results, notes = [], {}
    with nullcontext([]) if args.no_pause else training_paused(announce=say) as paused:
        peaks = device_peaks(device, args.precision)
        with progress_bar(total=len(kinds) * len(sizes), unit="size", enabled=not args.quiet) as progress:
            for kind in kinds:  # one model in memory at a time, so its peak memory is its own
                stylizer, notes[kind] = load_stylizer(kind, args.weights, device)
                measure = benchmark_onnx if args.backend == "onnxruntime" else benchmark_torch
                options = ({"variant": args.onnx_variant} if args.backend == "onnxruntime"
                           else {"precision": args.precision, "tile": args.tile})
                rows = measure(kind, stylizer, sizes, batch=args.batch, repeats=args.repeats, warmup=args.warmup,
                               peaks=peaks, progress=progress, **options)
                for row in rows:
                    row["weights"] = notes[kind]
                results += rows
                del stylizer
    report = {"schema": SCHEMA, "version": 2, "machine": machine_info(device), "backend": args.backend,
              "precision": args.precision, "repeats": args.repeats, "warmup": args.warmup, "peaks_gflops": peaks,
              "paused_training_pids": list(paused), "weights": notes, "results": results}
    if args.json:
        write_atomically(Path(args.json), lambda f: f.write((json.dumps(report, indent=1) + "\n").encode()))
    machine = report["machine"]
    print(f"{machine['cpu']}, {machine['cores']} cores, {machine['threads']} threads, {device}, "
          f"torch {torch.__version__}, {args.backend} {args.precision}, {machine['allocator']} malloc")
    if "nominal_formula" in peaks:
        figure = f"{peaks['nominal']:.0f} GFLOP/s = " if peaks["nominal"] else ""
        print(f"nominal peak {figure}{peaks['nominal_formula']}")
    print(f"measured peak {peaks['measured']:.0f} GFLOP/s ({peaks['measured_how']})")
    print("training processes paused while measuring: " + (", ".join(map(str, paused)) if paused else
                                                           "none running" if not args.no_pause else "not looked for"))
    for kind, note in notes.items():
        print(f"{kind} weights: {note}")
    print(f"median of {args.repeats} warm runs; FLOPs by torch.utils.flop_counter; memory: "
          f"{results[0]['memory_kind'] if results else '-'}")
    print(table(results))
    return 0
