"""What `adaconv app`'s content cache saves: the same photo stylised in further paintings, encoded each time
versus encoded once (`adaconv.app.ContentCache`), through the app's own request function.

    python benchmarks/app_content_cache.py [--photo PATH] [--styles 4]

Style codes are encoded before timing (a warm server has them cached), so the difference is the content encoder.
Median of the further paintings; any training run is paused while measuring.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from PIL import Image

from adaconv.app import ContentCache, example_images, stylize_request
from adaconv.benchmarking import training_paused
from adaconv.inference import Stylizer

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "adaconv" / "assets" / "examples"
EXAMPLE_PHOTO = EXAMPLES / "content" / "city0.jpg"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", type=Path, default=EXAMPLE_PHOTO)
    parser.add_argument("--styles", type=int, default=4, help="paintings: the first warms up, the rest are timed")
    args = parser.parse_args()
    photo = Image.open(args.photo).convert("RGB")
    paintings = [Image.open(p) for p in example_images("style")[:args.styles]]
    with training_paused():
        for kind in ("adain", "adaconv"):
            stylizer = Stylizer.from_pretrained(kind, device="cpu")
            for painting in paintings:
                stylizer.encode_style(painting)

            def request(painting, contents, stylizer=stylizer):
                return stylize_request(stylizer, photo, painting, 1.0, "none", None, 0.5, "off",
                                       max_pixels=photo.width * photo.height, contents=contents)

            timings = {}
            for label, contents in (("encoded each time", None), ("encoded once", ContentCache(stylizer))):
                request(paintings[0], contents)  # warm-up; with a cache, this one encodes the photo
                seconds = []
                for painting in paintings[1:]:
                    started = time.perf_counter()
                    request(painting, contents)
                    seconds.append(time.perf_counter() - started)
                timings[label] = statistics.median(seconds)
            print(f"{kind}, {photo.width}x{photo.height}: " +
                  ", ".join(f"{label} {value:.2f} s" for label, value in timings.items()))


if __name__ == "__main__":
    main()
