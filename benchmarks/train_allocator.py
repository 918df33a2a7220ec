"""Training speed per memory allocator: the campaign's step (benchmarks/train_profile.py) in a fresh process per
allocator, with the process's user and system CPU time and page faults per step.

    python benchmarks/train_allocator.py [--model adaconv] [--crop 128] [--batch 8] [--steps 4]

Why it matters: a step allocates and frees about a gigabyte of activations. glibc's malloc serves blocks above its
mmap threshold from fresh mappings and returns them on free, so every step faults the same memory in again page by
page (system time, and the kernel zeroing each page). The variants: glibc as it comes; glibc told to keep its
blocks (GLIBC_TUNABLES: blocks of up to 32 MiB, glibc's limit, come from its heap); tcmalloc (what `adaconv
train` uses where installed) and jemalloc, preloaded where installed (Debian: libtcmalloc-minimal4, libjemalloc2).
Any training run is paused while measuring. The campaign's real step gained more than this synthetic one
(docs/training.md, session 14): its data thread and style cache add to the contention on the memory map.
"""

from __future__ import annotations

import argparse
import ctypes.util
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

PRELOADS = {"tcmalloc": "tcmalloc_minimal", "jemalloc": "jemalloc"}
KEEP_BLOCKS = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296"


def variants() -> dict[str, dict[str, str]]:
    """Allocator name -> the environment a child process gets."""
    found = {"glibc": {}, "glibc, GLIBC_TUNABLES keep blocks": {"GLIBC_TUNABLES": KEEP_BLOCKS}}
    for name, library in PRELOADS.items():
        path = ctypes.util.find_library(library)
        if path:
            found[name] = {"LD_PRELOAD": path}
    return found


def measure(args) -> None:
    """In the child: build the model, one warm-up step, then time ``args.steps`` steps."""
    sys.path.insert(0, str(Path(__file__).parent))
    import torch

    from train_profile import step, step_inputs

    torch.set_num_threads(args.threads)
    model, optimizer, content, style_features, stats = step_inputs(args.model, args.crop, args.batch)
    step(model, optimizer, content, style_features, stats, "fp32")
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(args.steps):
        step(model, optimizer, content, style_features, stats, "fp32")
    wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    n = args.steps
    print(f"{wall / n:.3f} {(after.ru_utime - before.ru_utime) / n:.2f} {(after.ru_stime - before.ru_stime) / n:.2f} "
          f"{(after.ru_minflt - before.ru_minflt) / n:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="adaconv", choices=("adain", "adaconv"))
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure(args)
        return

    from adaconv.benchmarking import training_paused

    print(f"{args.model}, crop {args.crop}, batch {args.batch}, fp32, {args.threads} threads, mean of {args.steps} "
          f"steps after one warm-up\n")
    print("| allocator | s/step | user CPU s/step | system CPU s/step | page faults/step |\n|---|---|---|---|---|")
    child = [sys.executable, __file__, "--child", *sys.argv[1:]]
    clean = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "GLIBC_TUNABLES")}
    with training_paused():
        for name, extra in variants().items():
            result = subprocess.run(child, env=clean | extra, capture_output=True, text=True)
            if result.returncode != 0:
                print(f"| {name} | failed: {result.stderr.strip().splitlines()[-1]} | | | |")
                continue
            wall, user, system, faults = result.stdout.split()
            print(f"| {name} | {wall} | {user} | {system} | {int(faults):,} |", flush=True)


if __name__ == "__main__":
    main()
