"""How much of AdaIN's content error is the method and how much the decoder: `adaconv evaluate`'s content error of
the AdaIN target t = AdaIN(f(c), f(s)) itself, i.e. what a perfect decoder (f(g(t)) = t) would score.

    python benchmarks/adain_content_floor.py [--bench ../shared/data/bench]

The content error is ‖f(out) − f(c)‖ / ‖f(c)‖ at relu4_1 of the measuring VGG-19 (evaluation.py); here f(out) is
replaced by t (at `--alpha` a, t blends to a·t + (1 − a)·f(c), so the floor is a times this one). Every content
against every style at the measuring size (the full 20 × 40 benchmark: 60 encodings at 512 px). Session 30
(docs/training.md): 0.605 at α 1 against AdaIN v0.4's 0.925, so the decoder's reconstruction, not the statistics
transfer, is most of the error.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from adaconv.evaluation import measure_features, to_measure_size
from adaconv.imageio import open_image, pil_to_tensor
from adaconv.modulation import adain, mean_std

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "bench"


def relu4_1(path: Path) -> torch.Tensor:
    image = pil_to_tensor(open_image(path), name=path)
    return measure_features(to_measure_size(image))[-1][None].double()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", type=Path, default=DATA, help="folder with content/ and style/")
    args = parser.parse_args()
    contents = [relu4_1(p) for p in sorted((args.bench / "content").glob("*.png"))]
    styles = [mean_std(relu4_1(p)) for p in sorted((args.bench / "style").glob("*.png"))]
    errors = [float((adain(content, mean, std) - content).norm() / content.norm())
              for content in contents for mean, std in styles]
    print(f"{len(contents)} contents x {len(styles)} styles at the measuring size: content error of the AdaIN "
          f"target {statistics.mean(errors):.4f} (median {statistics.median(errors):.4f}; at --alpha a, a times it)")


if __name__ == "__main__":
    main()
