"""Inference speed of both models on this machine: one content at each size, style encoding timed apart.

    python benchmarks/stylize_speed.py [--sizes 256,512,1024] [--repeats 3]

Weights do not change the arithmetic, so freshly initialised models are timed (no trained weights needed).
A minimal channels_last AdaIN (encoder, AdaIN, decoder under inference_mode) is timed alongside as the
reference. Any training run is paused while measuring.
"""

from __future__ import annotations

import argparse
import functools

import torch

from adaconv import Stylizer, build_model
from adaconv.benchmarking import count_flops, measured_peak_gflops, median_seconds, training_paused
from adaconv.modulation import adain, mean_std


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="256,512,1024")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    style = torch.rand(3, 512, 512)
    with training_paused():
        peak = measured_peak_gflops()
        print(f"measured FP32 peak: {peak:.0f} GFLOP/s, {torch.get_num_threads()} threads")
        print("| model | size | style encoding (s) | stylise (s) | GFLOP | GFLOP/s | share of peak |")
        print("|---|---|---|---|---|---|---|")
        for kind in ("adain", "adaconv"):
            stylizer = Stylizer(build_model(kind), device="cpu")
            for size in map(int, args.sizes.split(",")):
                content = torch.rand(3, size, size)

                def encode(stylizer=stylizer):
                    stylizer._style_cache.clear()
                    stylizer.encode_style(style)

                encode_seconds, _ = median_seconds(encode, args.repeats)
                stylizer.encode_style(style)
                run = functools.partial(stylizer.stylize_tensor, content, style)
                seconds, _ = median_seconds(run, args.repeats)
                with torch.inference_mode():
                    flops = count_flops(run) / 1e9
                print(f"| {kind} | {size}² | {encode_seconds:.3f} | {seconds:.3f} | {flops:.0f} | "
                      f"{flops / seconds:.0f} | {flops / seconds / peak:.0%} |", flush=True)
        model = build_model("adain").to(memory_format=torch.channels_last).eval()
        for size in map(int, args.sizes.split(",")):
            content = torch.rand(1, 3, size, size).contiguous(memory_format=torch.channels_last)
            style_features = model.encoder.encode(style[None].contiguous(memory_format=torch.channels_last))

            @torch.inference_mode()
            def reference(content=content, style_features=style_features):
                return model.decoder(adain(model.encoder.encode(content), *mean_std(style_features)))

            seconds, _ = median_seconds(reference, args.repeats)
            print(f"| minimal AdaIN reference | {size}² | – | {seconds:.3f} | | | |", flush=True)


if __name__ == "__main__":
    main()
