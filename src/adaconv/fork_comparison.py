"""Two arms of a training run on the same batches: did a recipe change (a learning rate, a loss weight) pay?

A fork copies a run's checkpoint into a new folder and resumes it with one option changed; a resumed run draws
the same batches as the run it came from, so the two arms' logged losses at the same iteration are losses on the
same images, and their per-step differences carry far less noise than either curve (one batch differs from the
next far more than two recipes do on one batch). ``compare_arms`` pairs them from the first logged step where the
arms differ (a fork whose log was copied shares the rows before it) or after a given iteration, and sets the
held-out losses of both side by side at the iterations both validated. Losses on the training batches compare
fairly only at equal content loss: the content row says whether that holds.

A fork at another batch size draws other batches; ``by="images"`` compares it per image seen instead: unpaired
means over the logged windows in the range of images both arms have seen since the fork (with Welch's standard
error), and the held-out losses at the images-seen counts both validated.
"""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path

from .comparison import mean_difference
from .errors import AdaconvError

LOSSES = ("loss", "content_loss", "style_loss")
HELD_OUT = {"val.csv": "held-out, last weights", "val_average.csv": "held-out, weight average"}


def read_log(path: Path, key: str = "iteration") -> dict[int, dict[str, float]]:
    """A training CSV (log.csv, val.csv, val_average.csv) as ``key`` (iteration or images_seen) -> its losses."""
    try:
        with open(path, newline="") as file:
            rows = list(csv.DictReader(file))
        return {int(row[key]): {name: float(row[name]) for name in (*LOSSES, "iteration", "images_seen")}
                for row in rows}
    except FileNotFoundError:
        raise AdaconvError(f"{path}: not found (is {path.parent} a training run folder?)") from None
    except (KeyError, TypeError, ValueError) as error:
        raise AdaconvError(f"{path}: not a training log (missing or bad {error})") from None


def compare_arms(baseline: Path, arm: Path, since: int | None = None, by: str = "iteration") -> dict:
    """``arm`` − ``baseline`` on the training batches, per loss: both means, the difference's ``mean``,
    ``standard_error`` and ``relative`` size (to the baseline's mean) and, paired, ``lower`` (the steps where the
    arm's is lower); and both arms' held-out losses at the points both validated after the fork. ``since``: the
    fork's iteration (default: the first logged step where the arms differ); ``by``: "iteration" (the same
    batches, paired) or "images" (another batch size: per image seen, unpaired; needs ``since``)."""
    baseline, arm = Path(baseline), Path(arm)
    if by == "images":
        return _per_image(baseline, arm, since)
    first, second = read_log(baseline / "log.csv"), read_log(arm / "log.csv")
    shared = sorted(first.keys() & second.keys())
    if since is None:
        start = next((i for i in shared if first[i] != second[i]), None)
        steps = [i for i in shared if start is not None and i >= start]
    else:
        steps = [i for i in shared if i > since]
    if len(steps) < 2:
        raise AdaconvError(f"{baseline} and {arm}: fewer than two logged steps where both arms trained after they "
                           "parted (not a fork of one another yet, or --since too late?)")
    result: dict = {"paired": True, "first": steps[0], "last": steps[-1], "steps": len(steps), "training": {},
                    "differences": {}}
    for key in LOSSES:
        a, b = [first[i][key] for i in steps], [second[i][key] for i in steps]
        paired = mean_difference(a, b)
        differences = paired.pop("differences")
        result["training"][key] = {"baseline": statistics.fmean(a), "arm": statistics.fmean(b), **paired,
                                   "lower": sum(d < 0 for d in differences)}
        result["differences"][key] = list(zip(steps, differences))
    result["held_out"] = _held_out(baseline, arm, "iteration", steps[0] - 1)
    return result


def _per_image(baseline: Path, arm: Path, since: int | None) -> dict:
    if since is None:
        raise AdaconvError("comparing per image seen needs the fork's iteration (--since N)")
    by_iteration = read_log(baseline / "log.csv")
    if since not in by_iteration:
        raise AdaconvError(f"{baseline}: logged no iteration {since} (give a logged step as --since)")
    first, second = read_log(baseline / "log.csv", "images_seen"), read_log(arm / "log.csv", "images_seen")
    start, end = int(by_iteration[since]["images_seen"]), min(max(first), max(second))
    windows = [[row for images, row in log.items() if start < images <= end] for log in (first, second)]
    if min(len(w) for w in windows) < 2:
        raise AdaconvError(f"{baseline} and {arm}: fewer than two logged windows each in the images both have seen "
                           f"after iteration {since} ({start}..{end})")
    result: dict = {"paired": False, "first": start, "last": end, "steps": [len(w) for w in windows],
                    "training": {}, "windows": windows}
    for key in LOSSES:
        a, b = ([row[key] for row in w] for w in windows)
        base = statistics.fmean(a)
        difference = statistics.fmean(b) - base
        result["training"][key] = {
            "baseline": base, "arm": statistics.fmean(b), "mean": difference,
            "standard_error": math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b)),
            "relative": difference / base if base else None, "lower": None}
    result["held_out"] = _held_out(baseline, arm, "images_seen", start)
    return result


def _held_out(baseline: Path, arm: Path, key: str, after: int) -> dict[str, list]:
    """Both arms' held-out losses (last weights, weight average) at each ``key`` past ``after`` both validated."""
    held_out = {}
    for name, label in HELD_OUT.items():
        if (baseline / name).exists() and (arm / name).exists():
            a, b = read_log(baseline / name, key), read_log(arm / name, key)
            rows = [(at, a[at], b[at]) for at in sorted(a.keys() & b.keys()) if at > after]
            if rows:
                held_out[label] = rows
    return held_out


def comparison_markdown(result: dict, baseline: str, arm: str) -> str:
    if result["paired"]:
        intro = (f"{arm} against {baseline} on the same training batches: {result['steps']} logged steps from "
                 f"iteration {result['first']} to {result['last']} (mean of the arm − the baseline ± one standard "
                 "error; fair only at equal content loss).")
        unit = "iteration"
    else:
        intro = (f"{arm} against {baseline} per image seen, images {result['first']}..{result['last']}: unpaired "
                 f"means of {result['steps'][0]} and {result['steps'][1]} logged windows (other batches; the "
                 "difference ± Welch's standard error).")
        unit = "images seen"
    lines = [intro, "", "| training batches | baseline | arm | difference | arm lower on |", "|---|---|---|---|---|"]
    for key, row in result["training"].items():
        relative = "" if row["relative"] is None else f" ({row['relative'] * 100:+.2f}%)"
        difference = f"{row['mean']:+.4f} ± {row['standard_error']:.4f}{relative}".replace("-", "−")
        lower = "– (unpaired)" if row["lower"] is None else f"{row['lower']} of {result['steps']}"
        lines.append(f"| {key.replace('_', ' ')} | {row['baseline']:.4f} | {row['arm']:.4f} | {difference} | "
                     f"{lower} |")
    for label, rows in result["held_out"].items():
        lines += ["", f"| {label}, at {unit} | baseline loss (content / style) | arm loss (content / style) |",
                  "|---|---|---|"]
        for at, a, b in rows:
            lines.append(f"| {at} | {a['loss']:.3f} ({a['content_loss']:.3f} / {a['style_loss']:.3f}) | "
                         f"{b['loss']:.3f} ({b['content_loss']:.3f} / {b['style_loss']:.3f}) |")
    return "\n".join(lines) + "\n"


def comparison_plot(result: dict, baseline: str, arm: str):
    """Paired: the per-step differences (arm − baseline, % of the baseline's mean) of content and style loss with
    their running means. Per image seen: each arm's style loss per window against images seen."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 3.8))
    if result["paired"]:
        for index, key in enumerate(("content_loss", "style_loss")):
            base = result["training"][key]["baseline"]
            iterations = [i for i, _ in result["differences"][key]]
            relative = [100 * d / base for _, d in result["differences"][key]]
            running = [statistics.fmean(relative[: n + 1]) for n in range(len(relative))]
            axes.plot(iterations, relative, "o", markersize=3, alpha=0.5, color=f"C{index}")
            axes.plot(iterations, running, linewidth=2, color=f"C{index}",
                      label=f"{key.replace('_', ' ')} (running mean)")
        axes.axhline(0, color="grey", linewidth=0.8)
        axes.set_xlabel("iteration (the same batches in both arms)")
        axes.set_ylabel("arm − baseline, % of the baseline's mean")
    else:
        for index, (name, windows) in enumerate(zip((baseline, arm), result["windows"])):
            axes.plot([row["images_seen"] for row in windows], [row["style_loss"] for row in windows], "o-",
                      markersize=3, linewidth=0.8, color=f"C{index}", label=f"{name}: style loss")
        axes.set_xlabel("images seen (other batches in each arm)")
        axes.set_ylabel("style loss per logged window")
    axes.set_title(f"{arm} vs {baseline}", fontsize=10)
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure
