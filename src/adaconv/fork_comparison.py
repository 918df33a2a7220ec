"""Two arms of a training run on the same batches: did a recipe change (a learning rate, a loss weight) pay?

A fork copies a run's checkpoint into a new folder and resumes it with one option changed; a resumed run draws
the same batches as the run it came from, so the two arms' logged losses at the same iteration are losses on the
same images, and their per-step differences carry far less noise than either curve (one batch differs from the
next far more than two recipes do on one batch). ``compare_arms`` pairs them from the first logged step where the
arms differ (a fork whose log was copied shares the rows before it), and sets the held-out losses of both side by
side at the iterations both validated. Losses on the training batches compare fairly only at equal content loss:
the content row says whether that holds.
"""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path

from .errors import AdaconvError

LOSSES = ("loss", "content_loss", "style_loss")
HELD_OUT = {"val.csv": "held-out, last weights", "val_average.csv": "held-out, weight average"}


def read_log(path: Path) -> dict[int, dict[str, float]]:
    """A training CSV (log.csv, val.csv, val_average.csv) as iteration -> its losses."""
    try:
        with open(path, newline="") as file:
            rows = list(csv.DictReader(file))
        return {int(row["iteration"]): {key: float(row[key]) for key in LOSSES} for row in rows}
    except FileNotFoundError:
        raise AdaconvError(f"{path}: not found (is {path.parent} a training run folder?)") from None
    except (KeyError, TypeError, ValueError) as error:
        raise AdaconvError(f"{path}: not a training log (missing or bad {error})") from None


def compare_arms(baseline: Path, arm: Path) -> dict:
    """``arm`` − ``baseline`` on the training batches both logged after the fork, per loss: ``mean``,
    ``standard_error``, ``relative`` (to the baseline's mean) and ``lower`` (steps where the arm's is lower); and
    both arms' held-out losses at the iterations both validated after it."""
    first, second = read_log(Path(baseline) / "log.csv"), read_log(Path(arm) / "log.csv")
    shared = sorted(first.keys() & second.keys())
    fork = next((i for i in shared if first[i] != second[i]), None)
    steps = [i for i in shared if fork is not None and i >= fork]
    if len(steps) < 2:
        raise AdaconvError(f"{baseline} and {arm}: fewer than two logged steps where both arms trained after they "
                           "parted (not a fork of one another yet?)")
    result: dict = {"fork": fork, "steps": len(steps), "last": steps[-1], "training": {}, "held_out": {}}
    for key in LOSSES:
        differences = [second[i][key] - first[i][key] for i in steps]
        base = statistics.fmean(first[i][key] for i in steps)
        result["training"][key] = {
            "baseline": base, "arm": statistics.fmean(second[i][key] for i in steps),
            "mean": statistics.fmean(differences),
            "standard_error": statistics.stdev(differences) / math.sqrt(len(differences)),
            "relative": statistics.fmean(differences) / base if base else None,
            "lower": sum(d < 0 for d in differences)}
    result["differences"] = {key: [(i, second[i][key] - first[i][key]) for i in steps] for key in LOSSES}
    for name, label in HELD_OUT.items():
        if (Path(baseline) / name).exists() and (Path(arm) / name).exists():
            a, b = read_log(Path(baseline) / name), read_log(Path(arm) / name)
            rows = [(i, a[i], b[i]) for i in sorted(a.keys() & b.keys()) if i >= fork]
            if rows:
                result["held_out"][label] = rows
    return result


def comparison_markdown(result: dict, baseline: str, arm: str) -> str:
    lines = [f"{arm} against {baseline} on the same training batches: {result['steps']} logged steps from "
             f"iteration {result['fork']} to {result['last']} (mean of the arm − the baseline ± one standard "
             "error; fair only at equal content loss).", "",
             "| training batches | baseline | arm | difference | arm lower on |", "|---|---|---|---|---|"]
    for key, row in result["training"].items():
        relative = "" if row["relative"] is None else f" ({row['relative'] * 100:+.2f}%)"
        difference = f"{row['mean']:+.4f} ± {row['standard_error']:.4f}{relative}".replace("-", "−")
        lines.append(f"| {key.replace('_', ' ')} | {row['baseline']:.4f} | {row['arm']:.4f} | {difference} | "
                     f"{row['lower']} of {result['steps']} |")
    for label, rows in result["held_out"].items():
        lines += ["", f"| {label} | baseline loss (content / style) | arm loss (content / style) |", "|---|---|---|"]
        for iteration, a, b in rows:
            lines.append(f"| {iteration} | {a['loss']:.3f} ({a['content_loss']:.3f} / {a['style_loss']:.3f}) | "
                         f"{b['loss']:.3f} ({b['content_loss']:.3f} / {b['style_loss']:.3f}) |")
    return "\n".join(lines) + "\n"


def comparison_plot(result: dict, baseline: str, arm: str):
    """The per-step differences (arm − baseline, relative to the baseline's mean) of content and style loss on the
    shared batches, with their running means."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 3.8))
    for index, key in enumerate(("content_loss", "style_loss")):
        base = result["training"][key]["baseline"]
        points = result["differences"][key]
        iterations = [i for i, _ in points]
        relative = [100 * d / base for _, d in points]
        running = [statistics.fmean(relative[: n + 1]) for n in range(len(relative))]
        axes.plot(iterations, relative, "o", markersize=3, alpha=0.5, color=f"C{index}")
        axes.plot(iterations, running, linewidth=2, color=f"C{index}",
                  label=f"{key.replace('_', ' ')} (running mean)")
    axes.axhline(0, color="grey", linewidth=0.8)
    axes.set_xlabel("iteration (the same batches in both arms)")
    axes.set_ylabel("arm − baseline, % of the baseline's mean")
    axes.set_title(f"{arm} vs {baseline}", fontsize=10)
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure
