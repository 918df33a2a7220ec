"""``adaconv evaluate``: stylise a benchmark (or take another tool's outputs) and score it; compare scored runs.

A run folder holds ``images/<content stem>__<style stem>.png`` (skipped when present, so an interrupted run
continues), ``probe/`` (the contents stylised with the structure probe), ``run.json`` (what made the images: a
resumed run with another model, weights file or size is refused rather than mixed in), ``evaluation.json``,
``evaluation.md`` and ``contact_sheet.png``. ``--size`` is the short side of the content given to the model;
scoring always happens at the fixed measuring size of ``evaluation.py``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
import time
from datetime import date
from pathlib import Path

import torch

from .comparison import PROBE_METRIC, at_equal_content, format_difference, paired_differences
from .contact_sheet import contact_sheet
from .errors import AdaconvError, ImageError
from .evaluation import METRICS, describe, measuring_setup, score, summarize
from .imageio import list_images, save_image, to_tensor, write_atomically
from .kernel_usage import kernel_usage
from .preprocessing import center_crop, resize_short_side
from .progress import progress_bar
from .structure_probe import EDGE_THRESHOLD, probe_image, probe_statistics, probe_tensor

SCHEMA = "adaconv-evaluation"
SCHEMA_VERSION = 1
DEFAULT_BENCH = Path("../shared/data/bench")
SHEET_CONTENTS, SHEET_STYLES = 4, 6
PROBE_NAME = "structure_probe"
KERNEL_USAGE_SIZE = 256  # contents' side for the kernel-usage diagnostic (a ratio: little depends on the size)
# ... and at most this many contents x styles, spread over the run's: its cost grows as contents x styles², so on
# the full 20 x 40 it would take ~2 hours of these two cores; the campaign's 5 x 8 runs measure all of theirs
KERNEL_USAGE_GRID = (5, 8)
REQUIRED_METRICS = ("content_error", "style_distance")  # the axes of the trade-off every comparison reads
LABELS = {"content_error": "content error ↓", "style_distance": "style distance ↓", "gram_distance": "Gram distance ↓",
          "ssim": "luminance SSIM ↑", "coarse_ssim": "coarse SSIM (¼ scale) ↑",
          "color_distance": "colour-histogram distance ↓"}


def pair_name(content: Path, style: Path) -> str:
    return f"{content.stem}__{style.stem}.png"


def select_pairs(contents: list[Path], styles: list[Path], limit: int | None) -> list[tuple[Path, Path]]:
    """All content × style pairs, or ``limit`` of them spread evenly over the grid (deterministic)."""
    pairs = [(c, s) for s in styles for c in contents]
    if limit is None or limit >= len(pairs):
        return pairs
    # walk the grid along its diagonals: the first N pairs then cover min(N, C) contents and min(N, S) styles
    count = len(contents)
    order = sorted(range(len(pairs)), key=lambda i: ((i % count - i // count) % count, i // count))
    chosen = sorted(order[:limit])
    return [pairs[i] for i in chosen]


def evenly_spaced(items: list, count: int | None) -> list:
    """``count`` items spread evenly over ``items`` (first and last included), or all of them."""
    if count is None or count >= len(items):
        return list(items)
    if count == 1:
        return [items[0]]
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]


def parse_grid(text: str | None) -> tuple[int, int] | tuple[None, None]:
    if text is None:
        return None, None
    try:
        rows, columns = (int(n) for n in text.lower().split("x"))
    except ValueError:
        raise AdaconvError(f"--grid {text}: expected CONTENTSxSTYLES, e.g. 5x8") from None
    if rows < 1 or columns < 1:
        raise AdaconvError(f"--grid {text}: both counts must be positive")
    return rows, columns


def _folder(path: str | None, default: Path, what: str) -> Path:
    folder = Path(path) if path else default
    if not folder.is_dir():
        hint = "" if path else f" (the default, relative to the current folder; pass --{what} DIR)"
        raise AdaconvError(f"{folder}: {what} folder not found{hint}")
    images = list_images(folder)
    if not images:
        raise AdaconvError(f"{folder}: holds no images")
    return folder


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _stylizer(args):
    from .inference import Stylizer

    if args.weights:
        return Stylizer.from_weights(args.weights, model=args.model, device=args.device)
    return Stylizer.from_pretrained(args.model or "adain", device=args.device)


def evaluate_command(args) -> int:
    if args.compare:
        return compare_command(args)
    if args.outputs and (args.model or args.weights or args.alpha != 1.0):
        raise AdaconvError("--outputs scores existing images; it takes no --model, --weights or --alpha")
    content_dir = _folder(args.content, DEFAULT_BENCH / "content", "content")
    style_dir = _folder(args.style, DEFAULT_BENCH / "style", "style")
    rows, columns = parse_grid(args.grid)
    contents = evenly_spaced(list_images(content_dir), rows)
    styles = evenly_spaced(list_images(style_dir), columns)
    pairs = select_pairs(contents, styles, args.limit)
    contents = [c for c in contents if any(c == pc for pc, _ in pairs)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    show = not args.quiet
    started = time.perf_counter()

    if args.outputs:
        images = Path(args.outputs)
        if not images.is_dir():
            raise AdaconvError(f"{images}: outputs folder not found")
        missing = [pair_name(c, s) for c, s in pairs if not (images / pair_name(c, s)).exists()]
        if missing:
            raise AdaconvError(f"{images}: {len(missing)} of {len(pairs)} outputs missing (first: {missing[0]})")
        source = {"outputs": str(images)}
        stylizer = None
    else:
        stylizer = _stylizer(args)
        # styles are the outer loop (each encoded once, by the Stylizer's cache); each content is encoded once
        # too and kept (~20 MB each at 512 px): the encoder is about half of a stylisation's work
        encoded = functools.cache(lambda path: stylizer.encode_content(resize_short_side(to_tensor(path), args.size)))
        images = out / "images"
        images.mkdir(exist_ok=True)
        source = _model_description(stylizer, args)
        if args.style_size is not None:
            source["style_size"] = args.style_size
        if args.alpha != 1.0:
            source["alpha"] = args.alpha
        _claim_run_folder(out, source, args.size)
        todo = [(c, s) for c, s in pairs if not (images / pair_name(c, s)).exists()]
        for content, style in progress_bar(todo, desc="stylize", unit="pair", enabled=show):
            save_image(stylizer.stylize(encoded(content), style, alpha=args.alpha, style_size=args.style_size),
                       images / pair_name(content, style))
    seconds = {"stylize": time.perf_counter() - started}

    phase = time.perf_counter()
    records = _score_pairs(pairs, images, show)
    seconds["score"] = time.perf_counter() - phase
    phase = time.perf_counter()
    probe = _structure_probe(stylizer, encoded, contents, out, args.alpha, show) if stylizer is not None else None
    seconds["probe"] = time.perf_counter() - phase
    kernels = None
    if args.kernel_usage:
        phase = time.perf_counter()
        kernels = _kernel_usage(stylizer, contents, [s for s in styles if any(s == ps for _, ps in pairs)],
                                args.style_size)
        seconds["kernels"] = time.perf_counter() - phase
    report = {
        "schema": SCHEMA, "version": SCHEMA_VERSION, "date": date.today().isoformat(),
        "source": source, "size": None if args.outputs else args.size,
        "content_dir": str(content_dir), "style_dir": str(style_dir), "grid": args.grid, "limit": args.limit,
        "measure": measuring_setup(),
        "pairs": records, "count": len(records), "summary": summarize(records),
        "structure_probe": probe,
        "kernel_usage": kernels,
        "seconds": {key: round(value, 1) for key, value in
                    (seconds | {"total": time.perf_counter() - started}).items()},
    }
    label = args.label or source.get("weights_name") or source.get("outputs", "run")
    if not args.label and "alpha" in source:
        label = f"{label} α {source['alpha']:g}"
    report["label"] = str(label)
    write_atomically(out / "evaluation.json", lambda f: f.write(json.dumps(report, indent=1).encode()))
    markdown = summary_markdown([report])
    write_atomically(out / "evaluation.md", lambda f: f.write(markdown.encode()))
    sheet = _sheet(pairs, images, contents, styles)
    write_atomically(out / "contact_sheet.png", lambda f: sheet.save(f, format="PNG"))
    print(markdown)
    return 0


def _model_description(stylizer, args) -> dict:
    info = stylizer.info
    description = {"model": stylizer.kind, "device": str(stylizer.device)}
    path = info.get("path")
    if path:
        description.update(weights=str(path), weights_name=Path(path).name, weights_sha256=_file_digest(Path(path)))
    provenance = info.get("provenance") or {}
    for key in ("iterations", "images_seen", "crop_size", "train_seconds", "exported", "dtype"):
        if key in provenance:
            description[key] = provenance[key]
    return description


def _claim_run_folder(out: Path, source: dict, size: int) -> None:
    """Record what makes the images; refuse to resume a folder whose images another model or size made."""
    identity = {"model": source["model"], "weights_sha256": source.get("weights_sha256"), "size": size}
    for key in ("style_size", "alpha"):  # only when given, so folders made before the options still resume
        if source.get(key) is not None:
            identity[key] = source[key]
    path = out / "run.json"
    if path.exists():
        try:
            previous = json.loads(path.read_text())
        except (OSError, ValueError):
            previous = None
        if previous != identity:
            raise AdaconvError(f"{out}: holds images made with other settings ({path.name}: {previous}); "
                               "choose a new --out folder")
        return
    write_atomically(path, lambda f: f.write(json.dumps(identity).encode()))


def _score_pairs(pairs, images: Path, show: bool) -> list[dict]:
    """Score every pair; each content and style is measured once."""
    measured_contents: dict[Path, object] = {}
    measured_styles: dict[Path, object] = {}
    records = []
    for content, style in progress_bar(pairs, desc="score", unit="pair", enabled=show):
        if content not in measured_contents:
            measured_contents[content] = describe(to_tensor(content))
        if style not in measured_styles:
            measured_styles[style] = describe(to_tensor(style))
        output = images / pair_name(content, style)
        try:
            image = to_tensor(output)
        except ImageError as error:
            raise AdaconvError(f"{output}: cannot be scored ({error})") from None
        metrics = score(image, measured_contents[content], measured_styles[style])
        records.append({"content": content.name, "style": style.name, "output": output.name,
                        **{k: round(v, 6) for k, v in metrics.items()}})
    return records


def _structure_probe(stylizer, encoded, contents: list[Path], out: Path, alpha: float, show: bool) -> dict:
    """Stylise every content with the probe style (at the run's alpha) and measure how much of its structure
    arrives. ``encoded``: a content's path -> its ``EncodedContent`` at the run's size."""
    folder = out / "probe"
    folder.mkdir(exist_ok=True)
    probe = probe_image()
    reference = probe_tensor()
    save_image(probe, folder / f"{PROBE_NAME}.png")
    outputs, originals = [], []
    for content in progress_bar(contents, desc="probe", unit="img", enabled=show):
        target = folder / f"{content.stem}__{PROBE_NAME}.png"
        if not target.exists():
            save_image(stylizer.stylize(encoded(content), probe, alpha=alpha), target)
        outputs.append(probe_statistics(to_tensor(target), reference))
        originals.append(probe_statistics(to_tensor(content), reference))

    def mean(rows: list[dict]) -> dict:
        return {k: round(sum(r[k] for r in rows) / len(rows), 6) for k in rows[0]}

    return {"probe": {k: round(v, 6) for k, v in probe_statistics(reference, reference).items()},
            "contents": mean(originals), "outputs": mean(outputs), "edge_threshold": EDGE_THRESHOLD,
            "count": len(outputs)}


def _kernel_usage(stylizer, contents: list[Path], styles: list[Path], style_size: int | None) -> dict | None:
    """Residual AdaConv only: how far its predicted kernels move each adaptive layer from AdaIN / the identity,
    and how much of that depends on the style (kernel_usage.py), on the contents' centre 256x256, with the style
    codes the run stylised with; on at most ``KERNEL_USAGE_GRID`` of the run's contents x styles."""
    model = getattr(stylizer, "model", None)
    if getattr(model, "parametrization", None) != "residual":
        return None
    side = KERNEL_USAGE_SIZE
    contents = evenly_spaced(contents, KERNEL_USAGE_GRID[0])
    styles = evenly_spaced(styles, KERNEL_USAGE_GRID[1])
    images = [center_crop(resize_short_side(to_tensor(c), side), side, side) for c in contents]
    usage = kernel_usage(model, images, [stylizer.encode_style(s, style_size=style_size) for s in styles])
    return {"departure": [round(v, 6) for v in usage["departure"]],
            "style_dependence": [round(v, 6) for v in usage["style_dependence"]],
            "pairs": usage["pairs"], "contents": len(contents), "styles": len(styles), "size": side}


def _sheet(pairs, images: Path, contents: list[Path], styles: list[Path]):
    """A fixed subset: the first contents (rows) × evenly spaced styles (columns) among the scored pairs."""
    scored = {(c, s) for c, s in pairs}
    rows = [c for c in contents if any((c, s) in scored for s in styles)][:SHEET_CONTENTS]
    used = [s for s in styles if any((c, s) in scored for c in rows)]
    if len(used) > SHEET_STYLES:
        used = [used[round(i * (len(used) - 1) / (SHEET_STYLES - 1))] for i in range(SHEET_STYLES)]
    columns = used
    blank = torch.ones(3, 8, 8)
    cells = [[to_tensor(images / pair_name(c, s)) if (c, s) in scored else blank for s in columns] for c in rows]
    return contact_sheet(cells, column_headers=[to_tensor(s) for s in columns],
                         row_headers=[to_tensor(c) for c in rows], cell=160)


def summary_markdown(reports: list[dict]) -> str:
    """A table with one column per run: the mean of every metric, pairs counted, and the probe."""
    header = "| metric | " + " | ".join(r.get("label", "run") for r in reports) + " |"
    lines = [header, "|---|" + "---|" * len(reports)]
    for metric in METRICS:
        if all(metric not in r["summary"] for r in reports):
            continue
        cells = [f"{r['summary'][metric]['mean']:.4f}" if metric in r["summary"] else "–" for r in reports]
        lines.append(f"| {LABELS[metric]} (mean) | " + " | ".join(cells) + " |")
    lines.append("| pairs | " + " | ".join(str(r["count"]) for r in reports) + " |")
    for key in ("sharp_edge_density", "orientation_match"):
        cells = [f"{r['structure_probe']['outputs'][key]:.4f}" if r.get("structure_probe") else "–" for r in reports]
        lines.append(f"| probe: {key.replace('_', ' ')} ↑ | " + " | ".join(cells) + " |")
    if any(r.get("kernel_usage") for r in reports):
        for key, label in (("departure", "kernels: departure from AdaIN"),
                           ("style_dependence", "kernels: style-dependent part")):
            cells = [" / ".join(f"{v:.3f}" for v in r["kernel_usage"][key]) if r.get("kernel_usage") else "–"
                     for r in reports]
            lines.append(f"| {label} (layers 1–4) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _load_report(path: str) -> dict:
    try:
        report = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise AdaconvError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise AdaconvError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(report, dict) or report.get("schema") != SCHEMA:
        raise AdaconvError(f"{path}: not an adaconv evaluation (no '{SCHEMA}' schema)")
    try:
        # the trade-off's two axes always; any other metric the report has, on every pair (older reports lack the
        # metrics added since, and are compared on the rest)
        summary = report["summary"]
        for metric in [m for m in METRICS if m in REQUIRED_METRICS or m in summary]:
            float(summary[metric]["mean"])
            for pair in report["pairs"]:
                float(pair[metric])
        int(report["count"])
    except (KeyError, TypeError, ValueError) as error:
        raise AdaconvError(f"{path}: incomplete evaluation (missing or bad {error})") from None
    return report


def compare_command(args) -> int:
    reports = [_load_report(p) for p in args.compare]
    for path, report in zip(args.compare, reports):
        report.setdefault("label", Path(path).parent.name or path)
        missing = [m for m in METRICS if m not in report["summary"]]
        if missing:
            print(f"note: {path} has no {', '.join(missing)} (scored before it was added; running its evaluate "
                  "command again re-scores its images)", file=sys.stderr)
    if any(_measured_differently(reports[0].get("measure") or {}, r.get("measure") or {}) for r in reports[1:]):
        print("note: these reports were measured differently (see their 'measure'); the numbers may not compare",
              file=sys.stderr)
    interpolated = equal_content_runs(reports)
    markdown = summary_markdown(reports + interpolated)
    paired = paired_markdown(reports[0], reports[1:] + interpolated)
    if paired:
        markdown += "\n" + paired
    print(markdown)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_atomically(out / "comparison.md", lambda f: f.write(markdown.encode()))
        figure = scatter_plot(reports + interpolated)
        write_atomically(out / "comparison.png", lambda f: figure.savefig(f, format="png", dpi=120))
        print(f"wrote {out / 'comparison.md'} and {out / 'comparison.png'}", file=sys.stderr)
    return 0


def _measured_differently(first: dict, second: dict) -> bool:
    """Whether a setting both measuring setups name differs (a setting added since, e.g. for a new metric, and the
    list of metrics do not count: the metrics both reports have were measured alike)."""
    return any(first[key] != second[key] for key in first.keys() & second.keys() if key != "metrics")


def equal_content_runs(reports: list[dict]) -> list[dict]:
    """Each other model's trade-off curve (runs at several --alpha) read at the first run's content error."""
    baseline = reports[0]
    target = baseline["summary"]["content_error"]["mean"]
    baseline_source = baseline.get("source") or {}
    runs = []
    for curve in trade_off_curves(reports):
        if baseline in curve or (curve[0]["source"].get("weights_sha256") == baseline_source.get("weights_sha256")
                                 and curve[0]["source"]["model"] == baseline_source.get("model")):
            continue  # the baseline's own weights
        run = at_equal_content(curve, target)
        if run is None:
            alphas = ", ".join(str(r["source"].get("alpha", 1.0)) for r in curve)
            print(f"note: {curve[0]['label']}: its runs at α {alphas} do not bracket {baseline['label']}'s "
                  f"content error {target:.4f}; not interpolated", file=sys.stderr)
        else:
            runs.append(run)
    return runs


def paired_markdown(baseline: dict, reports: list[dict]) -> str:
    """Every run against the first, pair by pair (see comparison.py); empty when no run shares its pairs."""
    columns = [(r, d) for r in reports if (d := paired_differences(baseline, r)) is not None]
    if not columns:
        return ""
    lines = [f"Paired against {baseline['label']}: relative change (mean difference ± one standard error over the "
             "shared pairs), and the share of pairs where the run is worse.", "",
             "| metric | " + " | ".join(f"{r['label']} ({d['pairs']} pairs)" for r, d in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for metric in (*METRICS, PROBE_METRIC):
        if all(metric not in d for _, d in columns):
            continue
        label = LABELS.get(metric, "probe: sharp edge density ↑")
        cells = [format_difference(d[metric]) if metric in d else "–" for _, d in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def scatter_plot(reports: list[dict]):
    """Content error vs style distance. Left: each pair faint and each run's mean large, to show the spread; right:
    the means alone, zoomed (the runs differ far less than the pairs do), with the means of one model's runs at
    several --alpha joined into its trade-off curve and runs read off a curve as hollow marks."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    legend_rows = (len(reports) + 1) // 2
    figure, (spread, means) = plt.subplots(1, 2, figsize=(11, 4.8 + 0.22 * legend_rows))
    for index, report in enumerate(reports):
        colour = f"C{index}"
        mean = report["summary"]
        point = ([mean["content_error"]["mean"]], [mean["style_distance"]["mean"]])
        if "interpolated_between" in report.get("source", {}):  # read off a curve: a hollow mark, no pairs of its own
            for axes in (spread, means):
                axes.scatter(*point, s=120, facecolor="none", edgecolor=colour, linewidth=2, label=report["label"],
                             zorder=3)
            continue
        pairs = report["pairs"]
        spread.scatter([p["content_error"] for p in pairs], [p["style_distance"] for p in pairs],
                       s=6, alpha=0.25, color=colour)
        for axes in (spread, means):
            axes.scatter(*point, s=120, color=colour, edgecolor="black",
                         label=f"{report['label']} ({report['count']} pairs)", zorder=3)
    for curve in trade_off_curves(reports):
        for axes in (spread, means):
            axes.plot([r["summary"]["content_error"]["mean"] for r in curve],
                      [r["summary"]["style_distance"]["mean"] for r in curve], color="grey", linewidth=1, zorder=2)
    for axes in (spread, means):
        axes.set_xlabel("content error (relu4_1, relative) ↓")
        axes.set_ylabel("style distance (mean/std, relative) ↓")
    spread.set_title("every pair (faint) and each run's mean")
    means.set_title("the means: lower-left is better")
    means.margins(0.15)
    # below both panels, where it hides no point
    figure.legend(*means.get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.22 * legend_rows / figure.get_figheight() + 0.02, 1, 1))
    return figure


def trade_off_curves(reports: list[dict]) -> list[list[dict]]:
    """Runs of the same weights, size and style size at two or more alphas, each group sorted by alpha."""
    groups: dict[tuple, list[dict]] = {}
    for report in reports:
        source = report.get("source") or {}
        if "model" not in source:
            continue  # --outputs runs: no alpha to vary
        key = (source["model"], source.get("weights_sha256"), report.get("size"), source.get("style_size"))
        groups.setdefault(key, []).append(report)
    curves = []
    for group in groups.values():
        by_alpha = {r["source"].get("alpha", 1.0): r for r in group}
        if len(by_alpha) > 1:
            curves.append([by_alpha[a] for a in sorted(by_alpha)])
    return curves
