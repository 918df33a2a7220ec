"""Does torch.compile make a training step faster on this CPU? Eager vs compiled, same step, same inputs.

    python benchmarks/compile_trial.py [--model adain] [--crop 128] [--batch 8] [--steps 5] [--precision bf16]

The step is benchmarks/train_speed.py's reference step (encoder passes under no_grad, decoder, losses, Adam).
What is compiled: the decoder, and (separately) the encoder, each with inductor's default mode; the one-off
compile time is reported apart from the per-step time. Any training run is paused while measuring.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from adaconv.benchmarking import median_seconds, training_paused  # noqa: E402
from adaconv.models import build_model  # noqa: E402
from train_speed import reference_step  # noqa: E402


def trial(kind: str, crop: int, batch: int, steps: int, precision: str, what: str) -> tuple[float, float]:
    torch.manual_seed(0)
    model = build_model(kind).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-4)
    content = torch.rand(batch, 3, crop, crop).contiguous(memory_format=torch.channels_last)
    style_size = 256 if kind == "adaconv" else crop
    style = torch.rand(batch, 3, style_size, style_size).contiguous(memory_format=torch.channels_last)
    if what in ("decoder", "both"):
        model.decoder = torch.compile(model.decoder)
    if what in ("encoder", "both"):
        model.encoder = torch.compile(model.encoder)
    started = time.perf_counter()
    reference_step(model, optimizer, content, style, precision)  # compiles (or warms up eager)
    reference_step(model, optimizer, content, style, precision)
    first = time.perf_counter() - started
    seconds, _ = median_seconds(lambda: reference_step(model, optimizer, content, style, precision), steps,
                                warmup=0)
    return seconds, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="adain")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--precision", default="bf16", choices=("fp32", "bf16"))
    args = parser.parse_args()
    with training_paused():
        print(f"| {args.model} {args.crop}² batch {args.batch} {args.precision} | s/step (median of {args.steps}) "
              "| first two steps incl. compile (s) | vs eager |")
        print("|---|---|---|---|")
        eager = None
        for what in ("eager", "decoder", "encoder", "both"):
            seconds, first = trial(args.model, args.crop, args.batch, args.steps, args.precision, what)
            eager = eager or seconds
            print(f"| {what} | {seconds:.3f} | {first:.1f} | {eager / seconds:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
