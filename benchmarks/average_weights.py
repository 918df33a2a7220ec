"""The mean of several weights files of one run: a longer weight average than the run's own, after the fact.

    python benchmarks/average_weights.py A.safetensors B.safetensors [...] --out MEAN.safetensors [--dtype fp32]

The campaign's run keeps an exponential moving average of its weights (decay 0.999: ~1,000 steps). Its exported
averages at several sessions' ends, averaged again, weigh a longer stretch of the run: whether that beats the
run's own average (on `adaconv evaluate --grid 5x8`) says whether a longer average would pay. Every file must hold
the same model; the output keeps the newest file's provenance and lists what it averaged.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys

import torch

from adaconv.errors import AdaconvError
from adaconv.weights import int8_candidates, load_trainable_tensors, model_from_weights, read_weights, save_weights

DTYPES = {"fp16": torch.float16, "fp32": torch.float32}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", nargs="+", help="weights files of one model (e.g. exported averages)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="fp16",
                        help="fp16 stores the fully connected layer in int8, as the package does")
    args = parser.parse_args()
    if len(args.weights) < 2:
        parser.error("give at least two weights files")
    try:
        model, info = model_from_weights(args.weights[0])
        total = {name: tensor.float().clone() for name, tensor in model.trainable_state_dict().items()}
        sources = [info["provenance"]]
        for path in args.weights[1:]:
            tensors, metadata = read_weights(path)
            if metadata["model"] != info["model"] or tensors.keys() != total.keys():
                raise AdaconvError(f"{path}: not the same model as {args.weights[0]}")
            for name, tensor in tensors.items():
                total[name] += tensor.float()
            sources.append(json.loads(metadata.get("provenance", "{}")))
    except AdaconvError as error:
        print(f"average_weights: {error}", file=sys.stderr)
        return 2
    load_trainable_tensors(model, {name: tensor / len(args.weights) for name, tensor in total.items()},
                           source=args.out)
    newest = max(sources, key=lambda provenance: provenance.get("iterations", 0))
    provenance = {**newest, "weights": f"mean of {len(sources)} weights files", "validation": None,
                  "exported": datetime.date.today().isoformat(),
                  "averaged": [{"path": path, "iterations": source.get("iterations"), "weights": source.get("weights")}
                               for path, source in zip(args.weights, sources)]}
    int8 = int8_candidates(model, "auto" if args.dtype == "fp16" else "off")
    save_weights(model, args.out, dtype=DTYPES[args.dtype], provenance=provenance, int8=int8)
    print(f"{args.out}: mean of {len(sources)} files at iterations "
          f"{', '.join(str(source.get('iterations')) for source in sources)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
