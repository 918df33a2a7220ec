"""Where a training step's time goes: forward time per part of the step, backward and optimiser, and the
operators that cost most (torch.profiler, self time), for one model, crop and precision.

    python benchmarks/train_profile.py [--model adaconv] [--crop 128] [--batch 8] [--precision bf16] [--steps 3]
                                       [--memory-format channels_last]

The step is the campaign's: encoder features of content and style without gradients (AdaConv's style features
as the style-feature cache serves them, so the VGG pass over the styles is not in the step), decoder (and for
AdaConv the style encoder and kernel predictors), encoder on the output, the losses, backward, Adam. Random
tensors stand in for images (speed does not depend on pixel values). Any training run is paused while measuring.
`adaconv train` runs under tcmalloc where it is installed (src/adaconv/allocator.py); to measure the step it
takes, preload it here too (LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4): under glibc's malloc
the same step took 12.0 s instead of 5.5 (session 26), page faults inflating every copy and fill.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch

from adaconv.allocator import in_use as allocator_in_use
from adaconv.benchmarking import count_flops, training_paused
from adaconv.losses import content_loss, feature_statistics, style_loss
from adaconv.models import build_model
from adaconv.modulation import adain


def step(model, optimizer, content, style_features, stats, precision, timings=None):
    """One training step; with ``timings`` (a dict), the wall time of each part is added to it."""
    marks = [time.perf_counter()]

    def mark(name):
        marks.append(time.perf_counter())
        if timings is not None:
            timings[name] += marks[-1] - marks[-2]

    encoder = model.encoder
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        with torch.no_grad():
            content_features = encoder(content)[-1]
        mark("encoder on content (no grad)")
        if model.kind == "adain":
            target = adain(content_features, *stats[-1])
            mark("AdaIN")
            output = model.decoder(target)
            mark("decoder")
        else:
            target = content_features
            code = model.style_code_from_features(style_features[-1])
            mark("style encoder")
            layers = model._adaptive_layers(code, None)
            output = model.decoder(content_features, layers)
            mark("decoder incl. kernel predictors and adaptive layers")
        output_features = encoder(output)
        mark("encoder on output")
        loss = content_loss(output_features[-1], target) + 10 * style_loss(output_features, stats)
        mark("losses")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    mark("backward")
    optimizer.step()
    mark("Adam step")


def step_inputs(kind: str, crop: int, batch: int, precision: str = "fp32", layout=torch.channels_last):
    """The model, its optimiser and random inputs for :func:`step`, as the campaign trains (seed 0)."""
    torch.manual_seed(0)
    model = build_model(kind).to(memory_format=layout)
    if kind == "adaconv":  # residual init zeroes the predictors; give them trained-like nonzero weights
        for predictor in model.kernel_predictors:
            for conv in (predictor.spatial, predictor.pointwise, predictor.bias):
                torch.nn.init.normal_(conv.weight, std=1e-4)
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-4, fused=True)  # as adaconv train does
    style_size = 256 if kind == "adaconv" else crop
    content = torch.rand(batch, 3, crop, crop).contiguous(memory_format=layout)
    style = torch.rand(batch, 3, style_size, style_size).contiguous(memory_format=layout)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        style_features = [f.float() for f in model.encoder(style)]
        stats = feature_statistics(style_features)  # the style loss's targets, as the cache serves them
    return model, optimizer, content, style_features, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="adaconv", choices=("adain", "adaconv"))
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--precision", default="bf16", choices=("fp32", "bf16"))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--memory-format", default="channels_last", choices=("channels_last", "contiguous"),
                        help="the layout of the model and the batches (adaconv train uses channels_last)")
    args = parser.parse_args()

    layout = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}[args.memory_format]
    model, optimizer, content, style_features, stats = step_inputs(args.model, args.crop, args.batch, args.precision,
                                                                   layout)

    with training_paused():
        flops = count_flops(lambda: step(model, optimizer, content, style_features, stats, "fp32"))
        step(model, optimizer, content, style_features, stats, args.precision)  # warm-up
        timings: dict[str, float] = defaultdict(float)
        started = time.perf_counter()
        for _ in range(args.steps):
            step(model, optimizer, content, style_features, stats, args.precision, timings)
        total = (time.perf_counter() - started) / args.steps
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
            step(model, optimizer, content, style_features, stats, args.precision)
        adam_seconds = {}
        for fused in (True, False):  # the optimiser step alone, on the gradients of the last step
            adam = torch.optim.Adam(model.trainable_parameters(), lr=1e-4, fused=fused or None)
            adam.step()
            started = time.perf_counter()
            for _ in range(args.steps):
                adam.step()
            adam_seconds[fused] = (time.perf_counter() - started) / args.steps

    print(f"{args.model}, crop {args.crop}, batch {args.batch}, {args.precision}, {args.memory_format}, "
          f"{torch.get_num_threads()} threads, {allocator_in_use()} malloc: "
          f"{total:.3f} s/step (mean of {args.steps}), {flops / 1e9:,.0f} GFLOP/step (fp32 count)\n")
    print("| part | s/step | share |\n|---|---|---|")
    for name, seconds in timings.items():
        print(f"| {name} | {seconds / args.steps:.3f} | {seconds / args.steps / total:.0%} |")
    print(f"\nAdam step alone: fused {adam_seconds[True]:.3f} s, per-tensor loop (torch's CPU default) "
          f"{adam_seconds[False]:.3f} s")
    events = sorted(profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    profiled = sum(e.self_cpu_time_total for e in events)
    print(f"\nTop {args.top} operators by self time (one profiled step):\n")
    print("| operator | calls | self ms | share |\n|---|---|---|---|")
    for event in events[:args.top]:
        print(f"| {event.key} | {event.count} | {event.self_cpu_time_total / 1e3:.0f} | "
              f"{event.self_cpu_time_total / profiled:.0%} |")


if __name__ == "__main__":
    main()
