"""Training speed: the real pipeline vs a minimal reference loop, per model, crop size and precision.

    python benchmarks/train_speed.py [--steps 5] [--crops 128,256] [--models adain,adaconv] [--precision fp32,bf16]

Prints s/step, images/s, achieved GFLOP/s (torch's FLOP counter) and its share of the CPU's peak, and the
pipeline's data-wait fraction. The reference loop is the bare decoder, the encoder run every step on content
and style, and the losses: no data loading, no logging. Any training run is paused while measuring.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import torch

from adaconv.benchmarking import (
    count_flops,
    cpu_peak_gflops,
    measured_peak_gflops,
    median_seconds,
    training_paused,
)
from adaconv.losses import content_loss, feature_statistics, style_loss
from adaconv.models import build_model
from adaconv.modulation import adain
from adaconv.training import TrainConfig, Trainer

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "train"


def reference_step(model, optimizer, content, style, precision):
    """The least a training step must do (SPEC §2 losses), written out plainly."""
    encoder = model.encoder
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        with torch.no_grad():
            content_features = encoder(content)[-1]
            style_features = encoder(style)
            stats = feature_statistics(style_features)
        if model.kind == "adain":
            target = adain(content_features, *stats[-1])
            output = model.decoder(target)
        else:
            target = content_features
            output = model.decode(content_features, model.style_code_from_features(style_features[-1]))
        output_features = encoder(output)
        loss = content_loss(output_features[-1], target) + 10 * style_loss(output_features, stats)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def measure(kind: str, crop: int, batch: int, steps: int, precision: str, peak: float) -> list[dict]:
    rows = []
    torch.manual_seed(0)
    model = build_model(kind).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-4)
    style_size = 256 if kind == "adaconv" else crop
    content = torch.rand(batch, 3, crop, crop).contiguous(memory_format=torch.channels_last)
    style = torch.rand(batch, 3, style_size, style_size).contiguous(memory_format=torch.channels_last)
    flops = count_flops(lambda: reference_step(model, optimizer, content, style, "fp32"))
    seconds, _ = median_seconds(lambda: reference_step(model, optimizer, content, style, precision), steps)
    rows.append({"loop": "reference", "model": kind, "crop": crop, "batch": batch, "precision": precision,
                 "s_per_step": seconds, "images_per_s": batch / seconds, "gflop_per_step": flops / 1e9,
                 "gflops": flops / 1e9 / seconds, "peak_share": flops / 1e9 / seconds / peak, "data_wait": None})

    out = Path(tempfile.mkdtemp(prefix="train_speed_"))
    try:
        config = TrainConfig(model=kind, content=str(DATA / "content"), style=str(DATA / "style"), out=str(out),
                             iterations=steps + 2, batch_size=batch, crop_size=crop, sample_every=0,
                             checkpoint_every=10_000, log_every=1, progress=False, max_images=400,
                             precision=precision)
        summary = Trainer(config).train()
        log = (out / "log.csv").read_text().splitlines()[1:]
        times = sorted(float(line.split(",")[6]) for line in log[2:steps + 2])  # skip 2 warm-up steps
        seconds = times[len(times) // 2]
        rows.append({"loop": "pipeline", "model": kind, "crop": crop, "batch": batch, "precision": precision,
                     "s_per_step": seconds, "images_per_s": batch / seconds, "gflop_per_step": flops / 1e9,
                     "gflops": flops / 1e9 / seconds, "peak_share": flops / 1e9 / seconds / peak,
                     "data_wait": summary["data_wait_seconds"] / max(sum(times), 1e-9)})
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="adain,adaconv")
    parser.add_argument("--crops", default="128,256")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    nominal, how = cpu_peak_gflops()
    rows = []
    with training_paused():
        peak = measured_peak_gflops()
        print(f"CPU peak: nominal {nominal:.0f} GFLOP/s = {how}; measured (fp32 matrix product) {peak:.0f} GFLOP/s;"
              " shares below are of the measured peak")
        for kind in args.models.split(","):
            for crop in map(int, args.crops.split(",")):
                for precision in args.precision.split(","):
                    rows += measure(kind, crop, args.batch, args.steps, precision, peak)
                    row = rows[-2:]
                    for r in row:
                        wait = "" if r["data_wait"] is None else f"  data wait {r['data_wait']:.1%}"
                        print(f"{r['model']:8s} crop {r['crop']:4d} {r['precision']} {r['loop']:9s} "
                              f"{r['s_per_step']:6.2f} s/step  {r['images_per_s']:5.2f} img/s  "
                              f"{r['gflops']:6.1f} GFLOP/s ({r['peak_share']:.0%} of peak){wait}", flush=True)
                    print(f"{'':8s} pipeline / reference: {row[1]['s_per_step'] / row[0]['s_per_step']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
