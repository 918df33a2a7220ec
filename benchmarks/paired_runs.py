"""Compare forks of one training run step by step, on the batches they share (docs/training.md, sessions 16–17).

    python benchmarks/paired_runs.py BASE_RUN FORK_RUN [FORK_RUN ...] --since N

A run resumed from a checkpoint keeps its batch order, so forks made from the same checkpoint train on the same
batches, and their training losses at the same logged iteration differ only by the recipe. That makes a paired
comparison far less noisy than the held-out validation (40 pairs) or the loss curves: this prints, over the
iterations after N that every run logged, each run's mean content and style loss, the fork's difference from the
base in percent, and on how many of those steps the fork's style loss was the lower. The held-out losses of the
weight average (val_average.csv) at the iterations all runs validated follow.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def read(path: Path) -> dict[int, dict[str, float]]:
    """iteration -> row of a run's log.csv / val_average.csv (empty if the file is missing)."""
    if not path.exists():
        return {}
    with path.open() as file:
        return {int(float(row["iteration"])): {k: float(v) for k, v in row.items() if v}
                for row in csv.DictReader(file)}


def mean(rows: list[dict[str, float]], key: str) -> float:
    return sum(row[key] for row in rows) / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base")
    parser.add_argument("forks", nargs="+")
    parser.add_argument("--since", type=int, required=True, help="the fork point: compare iterations after it")
    args = parser.parse_args()
    runs = [args.base, *args.forks]
    logs = [read(Path(run) / "log.csv") for run in runs]
    common = sorted(set.intersection(*(set(log) for log in logs)) - set(range(args.since + 1)))
    if not common:
        raise SystemExit(f"paired_runs: no iteration after {args.since} is logged by all of {', '.join(runs)}")
    print(f"training batches, {len(common)} logged steps shared ({common[0]}..{common[-1]}):")
    base_rows = [logs[0][i] for i in common]
    base_content, base_style = mean(base_rows, "content_loss"), mean(base_rows, "style_loss")
    print(f"  {runs[0]:<32} content {base_content:.4f}  style {base_style:.4f}")
    for run, log in zip(runs[1:], logs[1:]):
        rows = [log[i] for i in common]
        content, style = mean(rows, "content_loss"), mean(rows, "style_loss")
        lower = sum(row["style_loss"] < base["style_loss"] for row, base in zip(rows, base_rows))
        print(f"  {run:<32} content {content:.4f} ({100 * (content / base_content - 1):+.1f}%)  "
              f"style {style:.4f} ({100 * (style / base_style - 1):+.1f}%)  lower style on {lower}/{len(common)}")
    averages = [read(Path(run) / "val_average.csv") for run in runs]
    validated = sorted(set.intersection(*(set(a) for a in averages)) - set(range(args.since + 1)))
    for iteration in validated:
        print(f"held-out weight average at {iteration}: " + "; ".join(
            f"{run} {a[iteration]['content_loss']:.3f} / {a[iteration]['style_loss']:.3f}"
            for run, a in zip(runs, averages)))


if __name__ == "__main__":
    main()
