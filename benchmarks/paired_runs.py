"""Compare forks of one training run step by step, on the batches they share (docs/training.md, sessions 16–17).

    python benchmarks/paired_runs.py BASE_RUN FORK_RUN [FORK_RUN ...] --since N

A run resumed from a checkpoint keeps its batch order, so forks made from the same checkpoint train on the same
batches, and their training losses at the same logged iteration differ only by the recipe. That makes a paired
comparison far less noisy than the held-out validation (40 pairs) or the loss curves: this prints, over the
iterations after N that every run logged, each run's mean content and style loss, the fork's difference from the
base in percent, and on how many of those steps the fork's style loss was the lower. The held-out losses of the
weight average (val_average.csv) at the iterations all runs validated follow.

    python benchmarks/paired_runs.py BASE_RUN FORK_RUN --since N --by images

compares forks at another batch size (session 23) per image seen instead: their batches differ, so the training
losses are unpaired means over every logged window in the range of images both have seen, and the held-out losses
are those at the images-seen counts both validated.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def read(path: Path, key: str = "iteration") -> dict[int, dict[str, float]]:
    """``key`` (iteration or images_seen) -> row of a run's log.csv / val_average.csv (empty if missing)."""
    if not path.exists():
        return {}
    with path.open() as file:
        return {int(float(row[key])): {k: float(v) for k, v in row.items() if v} for row in csv.DictReader(file)}


def mean(rows: list[dict[str, float]], key: str) -> float:
    return sum(row[key] for row in rows) / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base")
    parser.add_argument("forks", nargs="+")
    parser.add_argument("--since", type=int, required=True, help="the fork point: compare iterations after it")
    parser.add_argument("--by", choices=("iteration", "images"), default="iteration",
                        help="pair by iteration (same batches), or compare per image seen (another batch size)")
    args = parser.parse_args()
    runs = [args.base, *args.forks]
    if args.by == "images":
        compare_per_image(runs, args.since)
        return
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
    print_held_out(runs, "iteration", args.since)


def compare_per_image(runs: list[str], since: int) -> None:
    """Unpaired means of the training losses over the images all runs have seen after iteration ``since`` of the
    base run, then the held-out weight average at the images-seen counts all runs validated."""
    logs = [read(Path(run) / "log.csv", "images_seen") for run in runs]
    by_iteration = read(Path(runs[0]) / "log.csv")
    if since not in by_iteration:
        raise SystemExit(f"paired_runs: {runs[0]} logged no iteration {since}")
    start, end = int(by_iteration[since]["images_seen"]), min(max(log) for log in logs)
    if end <= start:
        raise SystemExit(f"paired_runs: the runs share no images after {start} (iteration {since} of {runs[0]})")
    print(f"training windows over images {start}..{end} (unpaired: the batches differ):")
    base_content = base_style = 0.0
    for index, (run, log) in enumerate(zip(runs, logs)):
        rows = [row for images, row in log.items() if start < images <= end]
        if not rows:
            raise SystemExit(f"paired_runs: {run} logged no window in images {start}..{end}")
        content, style = mean(rows, "content_loss"), mean(rows, "style_loss")
        if index == 0:
            base_content, base_style = content, style
            print(f"  {run:<32} content {content:.4f}  style {style:.4f}  ({len(rows)} windows)")
        else:
            print(f"  {run:<32} content {content:.4f} ({100 * (content / base_content - 1):+.1f}%)  "
                  f"style {style:.4f} ({100 * (style / base_style - 1):+.1f}%)  ({len(rows)} windows)")
    print_held_out(runs, "images_seen", start)


def print_held_out(runs: list[str], key: str, after: int) -> None:
    """The held-out weight average of every run at each ``key`` (iteration or images_seen) past ``after`` that all
    of them validated."""
    averages = [read(Path(run) / "val_average.csv", key) for run in runs]
    unit = " images" if key == "images_seen" else ""
    for at in sorted(set.intersection(*(set(a) for a in averages))):
        if at > after:
            print(f"held-out weight average at {at}{unit}: " + "; ".join(
                f"{run} {a[at]['content_loss']:.3f} / {a[at]['style_loss']:.3f}" for run, a in zip(runs, averages)))


if __name__ == "__main__":
    main()
