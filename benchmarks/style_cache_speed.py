"""What the AdaConv style-feature cache saves per training step, once the styles drawn are cached.

    python benchmarks/style_cache_speed.py [--crop 128] [--steps 8] [--precision bf16]

Two short `adaconv train` runs on the same 16 paintings (so after the first steps every style drawn is a cache
hit, as in a long run once the cache holds the style set): cache on vs `--style-cache-gb 0`. Median step time
from the runs' logs, warm-up steps skipped. Any training run is paused while measuring.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

from adaconv.benchmarking import training_paused
from adaconv.training import TrainConfig, Trainer

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "train"


def median_step(cache_gb: float, crop: int, steps: int, precision: str) -> tuple[float, dict]:
    out = Path(tempfile.mkdtemp(prefix="style_cache_"))
    try:
        config = TrainConfig(model="adaconv", content=str(DATA / "content"), style=str(DATA / "style"), out=str(out),
                             iterations=steps + 4, batch_size=8, crop_size=crop, sample_every=0,
                             checkpoint_every=10_000, log_every=1, progress=False, max_images=16,
                             precision=precision, style_cache_gb=cache_gb)
        summary = Trainer(config).train()
        log = (out / "log.csv").read_text().splitlines()[1:]
        return statistics.median(float(line.split(",")[6]) for line in log[4:]), summary.get("style_cache", {})
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--precision", default="bf16")
    args = parser.parse_args()
    with training_paused():
        without, _ = median_step(0.0, args.crop, args.steps, args.precision)
        with_cache, cache = median_step(2.0, args.crop, args.steps, args.precision)
    print(f"AdaConv {args.crop}² batch 8 {args.precision}: {without:.2f} s/step without the style cache, "
          f"{with_cache:.2f} s/step with it ({1 - with_cache / without:.0%} less; cache {cache})")


if __name__ == "__main__":
    main()
