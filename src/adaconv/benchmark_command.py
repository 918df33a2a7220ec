"""``adaconv benchmark``: how fast the models stylise on this machine, and how close to its peak they run.

For each model and size: the style encoding (timed apart, since an app encodes a style once), the median latency
of warm content passes with the style cached, throughput, peak memory, the FLOPs of one pass (torch's FLOP
counter) and the achieved GFLOP/s as a share of the device's peak. Training runs are paused while measuring.
"""

from __future__ import annotations

import json
import platform
import sys
from contextlib import nullcontext
from pathlib import Path

import torch

from .benchmarking import (
    PeakRSS,
    count_flops,
    cpu_name,
    cpu_peak_gflops,
    measured_peak_gflops,
    median_seconds,
    training_paused,
)
from .devices import pick_device
from .errors import AdaconvError
from .imageio import write_atomically
from .models import MODEL_KINDS, StyleCode, build_model
from .preprocessing import prepare_style
from .weights import model_from_weights, shipped_weights_path

SCHEMA = "adaconv-benchmark"
STYLE_SIDE = 512


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise AdaconvError(f"--sizes {text}: expected comma-separated whole numbers, e.g. 256,512") from None
    if not sizes or min(sizes) < 16:
        raise AdaconvError(f"--sizes {text}: every size must be at least 16")
    return sorted(set(sizes))  # ascending, so each size's memory peak is its own, not a larger one's


def load_model(kind: str, weights: str | None):
    """The shipped (or given) weights when there are some; otherwise a fresh model — speed does not
    depend on weight values, and the output says which it was."""
    if weights:
        model, _ = model_from_weights(weights, expected_kind=kind)
        return model, f"file {Path(weights).name}"
    path = shipped_weights_path(kind)
    if path.exists():
        model, info = model_from_weights(path, expected_kind=kind)
        return model, f"shipped ({info['provenance'].get('iterations', '?')} iterations)"
    torch.manual_seed(0)
    return build_model(kind), "untrained (no shipped weights; speed does not depend on them)"


def precision_context(precision: str, device: torch.device):
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _expand(code: StyleCode, batch: int) -> StyleCode:
    return StyleCode(*(None if v is None else v.expand(batch, *v.shape[1:]) for v in code._values()))


def benchmark_model(kind: str, model, sizes: list[int], *, device: torch.device, batch: int, precision: str,
                    repeats: int, warmup: int, peaks: dict, progress) -> list[dict]:
    model = model.to(device, memory_format=torch.channels_last).eval()
    generator = torch.Generator().manual_seed(0)
    style = prepare_style(torch.rand(3, STYLE_SIDE, STYLE_SIDE, generator=generator), kind)[None]
    style = style.to(device).contiguous(memory_format=torch.channels_last)
    autocast = precision_context(precision, device)

    @torch.inference_mode()
    def encode_style():
        with autocast:
            code = model.encode_style(style)
        _synchronise(device)
        return code

    style_seconds, _ = median_seconds(encode_style, repeats, warmup=warmup)
    code = _expand(encode_style(), batch)
    rows = []
    for size in sizes:
        content = torch.rand(batch, 3, size, size, generator=generator).to(device)
        content = content.contiguous(memory_format=torch.channels_last)

        @torch.inference_mode()
        def stylise(content=content):
            with autocast:
                output = model.decode(model.encoder.encode(content), code)
            _synchronise(device)
            return output

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        with PeakRSS() as memory:
            seconds, times = median_seconds(stylise, repeats, warmup=warmup)
        peak_memory = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else memory.peak
        with torch.inference_mode():
            flops = count_flops(stylise)
        achieved = flops / seconds / 1e9
        row = {"model": kind, "backend": f"torch {precision}", "size": size, "batch": batch,
               "style_encoding_s": round(style_seconds, 4),
               "latency_s": round(seconds, 4), "latency_runs_s": [round(t, 4) for t in times],
               "throughput_img_s": round(batch / seconds, 3), "flop": flops, "gflop": round(flops / 1e9, 2),
               "gflops_per_s": round(achieved, 1), "peak_memory_mb": round(peak_memory / 2 ** 20, 1),
               "memory_kind": "max allocated (CUDA)" if device.type == "cuda" else "peak RSS of the process"}
        for name, value in peaks.items():
            if isinstance(value, (int, float)) and value > 0:
                row[f"share_of_{name}_peak"] = round(achieved / value, 3)
        rows.append(row)
        progress(row)
    return rows


def benchmark_onnx(kind: str, model, sizes: list[int], *, variant: str, batch: int, repeats: int, warmup: int,
                   peaks: dict, progress) -> list[dict]:
    """The same measurements through onnxruntime on the exported graphs (FLOPs counted on the PyTorch model,
    which the graphs replicate operation for operation)."""
    import tempfile

    import numpy as np

    from .export import export_onnx
    from .onnx_runner import OnnxStylizer

    if batch != 1:
        raise AdaconvError("--backend onnxruntime measures batch 1 (the exported graphs take one image)")
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
            content = generator.random((1, 3, size, size), dtype=np.float32)
            with PeakRSS() as memory:
                seconds, times = median_seconds(lambda c=content: runner.content_session.run(
                    None, {"content": c, **code}), repeats, warmup=warmup)
            with torch.inference_mode():
                tensor = torch.from_numpy(content)
                style_code = StyleCode(*(torch.from_numpy(code[n]) for n in runner.code_names))
                flops = count_flops(lambda t=tensor, c=style_code: model.decode(model.encoder.encode(t), c))
            achieved = flops / seconds / 1e9
            row = {"model": kind, "backend": f"onnxruntime {variant}", "size": size, "batch": 1,
                   "style_encoding_s": round(style_seconds, 4), "latency_s": round(seconds, 4),
                   "latency_runs_s": [round(t, 4) for t in times], "throughput_img_s": round(1 / seconds, 3),
                   "flop": flops, "gflop": round(flops / 1e9, 2), "gflops_per_s": round(achieved, 1),
                   "peak_memory_mb": round(memory.peak / 2 ** 20, 1), "memory_kind": "peak RSS of the process"}
            for name, value in peaks.items():
                if isinstance(value, (int, float)) and value > 0:
                    row[f"share_of_{name}_peak"] = round(achieved / value, 3)
            rows.append(row)
            progress(row)
    return rows


def table(results: list[dict], peaks: dict) -> str:
    lines = ["| model | backend | size | batch | style encoding (s) | latency (s) | images/s | GFLOP | GFLOP/s | "
             "share of nominal peak | share of measured peak | peak memory (MiB) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        nominal = r.get("share_of_nominal_peak")
        measured = r.get("share_of_measured_peak")
        lines.append(
            f"| {r['model']} | {r['backend']} | {r['size']}² | {r['batch']} | {r['style_encoding_s']:.3f} | "
            f"{r['latency_s']:.3f} | "
            f"{r['throughput_img_s']:.2f} | {r['gflop']:.0f} | {r['gflops_per_s']:.0f} | "
            f"{'–' if nominal is None else f'{nominal:.0%}'} | {'–' if measured is None else f'{measured:.0%}'} | "
            f"{r['peak_memory_mb']:.0f} |")
    return "\n".join(lines)


def benchmark_command(args) -> int:
    sizes = parse_sizes(args.sizes)
    device = pick_device(args.device)
    if args.backend == "onnxruntime" and device.type != "cpu":
        raise AdaconvError("--backend onnxruntime is measured on the CPU (use --device cpu)")
    if args.precision == "fp16" and device.type != "cuda":
        raise AdaconvError("--precision fp16 needs a CUDA device (use bf16 or fp32 on the CPU)")
    if args.threads:
        torch.set_num_threads(args.threads)
    kinds = list(MODEL_KINDS) if args.model == "all" else [args.model]
    if args.weights and len(kinds) > 1:
        raise AdaconvError("--weights needs --model adain or --model adaconv")
    models = {kind: load_model(kind, args.weights) for kind in kinds}

    def progress(row: dict) -> None:
        if not args.quiet:
            print(f"  {row['model']} {row['size']}²: {row['latency_s']:.3f} s, {row['gflops_per_s']:.0f} GFLOP/s",
                  file=sys.stderr, flush=True)

    pause = nullcontext([]) if args.no_pause else training_paused()
    with pause as paused:
        peaks: dict = {}
        if device.type == "cpu":
            nominal, formula = cpu_peak_gflops()
            peaks = {"nominal": round(nominal, 1), "nominal_formula": formula,
                     "measured": round(measured_peak_gflops(), 1),
                     "measured_how": "best of a 2048² matmul and a channels_last 3×3 conv (FP32)"}
        results = []
        for kind, (model, weights_note) in models.items():
            if args.backend == "onnxruntime":
                rows = benchmark_onnx(kind, model, sizes, variant=args.onnx_variant, batch=args.batch,
                                      repeats=args.repeats, warmup=args.warmup, peaks=peaks, progress=progress)
            else:
                rows = benchmark_model(kind, model, sizes, device=device, batch=args.batch,
                                       precision=args.precision, repeats=args.repeats, warmup=args.warmup,
                                       peaks=peaks, progress=progress)
            for row in rows:
                row["weights"] = weights_note
            results += rows
    report = {
        "schema": SCHEMA, "version": 1,
        "machine": {"cpu": cpu_name(), "threads": torch.get_num_threads(), "device": str(device),
                    "torch": torch.__version__, "python": platform.python_version()},
        "precision": args.precision, "repeats": args.repeats, "warmup": args.warmup, "peaks_gflops": peaks,
        "paused_training_pids": list(paused), "results": results,
    }
    print(f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}, {args.precision}")
    if peaks:
        print(f"peak FP32: nominal {peaks['nominal']:.0f} GFLOP/s ({peaks['nominal_formula']}); "
              f"measured {peaks['measured']:.0f} GFLOP/s ({peaks['measured_how']})")
    print("paused training processes while measuring: " + (", ".join(map(str, paused)) if paused else "none found"))
    print(table(results, peaks))
    if args.json:
        write_atomically(Path(args.json), lambda f: f.write(json.dumps(report, indent=1).encode()))
    return 0
