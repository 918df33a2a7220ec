"""Training throughput: one process using both cores vs two data-parallel processes of one thread each.

    python benchmarks/train_processes.py [--model adain] [--crop 128] [--batch 8] [--steps 12]

Two training runs sharing the 2 cores were seen to make more steps between them than one run alone (intra-op
threading leaves the cores partly idle), so this measures the real `adaconv train` pipeline at the same global
batch three ways: 1 process x 2 threads, 1 process x 1 thread, and `torchrun` with 2 processes x 1 thread (batch
split between them, gradients averaged). Median s/step over the steps after the first three; any training run is
paused while measuring.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from adaconv.benchmarking import training_paused

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "train"
WARM_UP = 3


def median_step(out: Path, model: str, crop: int, batch: int, steps: int, processes: int, threads: int) -> float:
    train = ["-m", "adaconv", "train", "--model", model, "--content", str(DATA / "content"),
             "--style", str(DATA / "style"), "--out", str(out), "--iterations", str(steps + WARM_UP),
             "--batch-size", str(batch // processes), "--crop-size", str(crop), "--max-images", "64",
             "--sample-every", "0", "--checkpoint-every", "100000", "--log-every", "1", "--threads", str(threads)]
    launcher = ([sys.executable] if processes == 1 else
                [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
                 "--master-port", "29547"])
    result = subprocess.run(launcher + train, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"training failed:\n{result.stderr[-2000:]}")
    with open(out / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    return statistics.median(float(row["seconds_per_step"]) for row in rows[WARM_UP:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="adain", choices=("adain", "adaconv"))
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8, help="global batch (split between processes)")
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    layouts = [(1, 2), (1, 1), (2, 1)]
    results = {}
    with training_paused():
        for processes, threads in layouts:
            out = Path(tempfile.mkdtemp(prefix="train_processes_"))
            try:
                results[processes, threads] = median_step(out, args.model, args.crop, args.batch, args.steps,
                                                          processes, threads)
            finally:
                shutil.rmtree(out, ignore_errors=True)
            seconds = results[processes, threads]
            print(f"{args.model} {args.crop}² global batch {args.batch}: {processes} process(es) x {threads} "
                  f"thread(s): {seconds:.3f} s/step, {args.batch / seconds:.2f} images/s", flush=True)
    base = results[1, 2]
    print(f"2 x 1 data-parallel vs 1 x 2 threads: {base / results[2, 1]:.2f}x the throughput")


if __name__ == "__main__":
    main()
