"""What storing AdaConv's fully connected layer in 8 bits costs in the pictures.

    python benchmarks/int8_weights_error.py RUN_DIR [--size 512]

Exports RUN_DIR's checkpoint three ways (fp32; fp16; fp16 with the large matrices as per-row int8, the
package default) and stylises every shipped example content with every shipped example style with each. Prints
the file sizes and, against the fp32 weights, the PSNR and largest 8-bit pixel difference of the fp16 and int8
files' outputs: int8 is worth shipping when its error is of the order of fp16's.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from adaconv import Stylizer
from adaconv.imageio import to_tensor
from adaconv.preprocessing import resize_long_side
from adaconv.training import export_weights

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "adaconv" / "assets" / "examples"


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a - b) ** 2).item()
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(1.0 / mse)).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--size", type=int, default=512, help="content long side")
    parser.add_argument("--weights", choices=("auto", "average", "last"), default="auto")
    args = parser.parse_args()
    contents = [resize_long_side(to_tensor(path), args.size) for path in sorted((EXAMPLES / "content").glob("*.jpg"))]
    styles = sorted((EXAMPLES / "style").glob("*.jpg"))
    with tempfile.TemporaryDirectory() as folder:
        files = {"fp32": (Path(folder) / "fp32.safetensors", "fp32", "off"),
                 "fp16": (Path(folder) / "fp16.safetensors", "fp16", "off"),
                 "fp16 + int8 FC": (Path(folder) / "int8.safetensors", "fp16", "auto")}
        outputs = {}
        for label, (path, dtype, int8) in files.items():
            export_weights(args.run_dir, path, dtype=dtype, weights=args.weights, int8=int8)
            stylizer = Stylizer.from_weights(path, device="cpu")
            with torch.inference_mode():
                outputs[label] = [stylizer.stylize_tensor(content, style, progress=False)
                                  for content in contents for style in styles]
            print(f"{label:>15}: {path.stat().st_size / 1e6:7.1f} MB", flush=True)
    reference = outputs["fp32"]
    for label in ("fp16", "fp16 + int8 FC"):
        values = [psnr(a, b) for a, b in zip(reference, outputs[label])]
        worst = max((a - b).abs().max().item() * 255 for a, b in zip(reference, outputs[label]))
        print(f"{label:>15} vs fp32 over {len(values)} pairs at {args.size}: PSNR min {min(values):.1f} dB, "
              f"mean {sum(values) / len(values):.1f} dB; largest pixel difference {worst:.1f}/255")


if __name__ == "__main__":
    main()
