"""Overlay the loss curves of several training runs (the comparisons in docs/training.md).

    python benchmarks/plot_runs.py OUT.png RUN_DIR[=LABEL] [RUN_DIR[=LABEL] ...] [--smooth 10] [--since N]

Each run contributes its training loss from log.csv (moving average over --smooth logged steps, thin line), its
held-out loss from val.csv (circles) and its weight average's from val_average.csv (squares), in one colour.
--since N keeps the iterations after N only: forks of one run share everything before their fork point.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402


def read(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as file:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(file)]


def moving_average(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output")
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--smooth", type=int, default=10)
    parser.add_argument("--since", type=int, default=-1, help="plot only iterations after this one")
    parser.add_argument("--title", default="training loss (lines) and held-out loss (markers)")
    args = parser.parse_args()
    figure, axes = plt.subplots(figsize=(7.5, 4.5))
    for index, spec in enumerate(args.runs):
        folder, _, label = spec.partition("=")
        label = label or Path(folder).name
        colour = f"C{index}"
        log, val, average = (
            [row for row in read(Path(folder) / name) if row["iteration"] > args.since]
            for name in ("log.csv", "val.csv", "val_average.csv"))
        if log:
            axes.plot([r["iteration"] for r in log], moving_average([r["loss"] for r in log], args.smooth),
                      color=colour, linewidth=1.2, label=label)
        if val:
            axes.plot([r["iteration"] for r in val], [r["loss"] for r in val], "o--", color=colour, markersize=5,
                      linewidth=0.8)
        if average:
            axes.plot([r["iteration"] for r in average], [r["loss"] for r in average], "s:", color=colour,
                      markersize=5, linewidth=0.8)
    axes.set_xlabel("iteration")
    axes.set_ylabel("loss (content + λ·style)")
    axes.set_yscale("log")
    axes.set_title(args.title, fontsize=10)
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(args.output, dpi=110)


if __name__ == "__main__":
    main()
