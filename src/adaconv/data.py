"""Training data: image folders decoded once into memory, random crops, endless shuffled sampling.

Every batch is a pure function of (seed, rank, step), so a resumed run sees exactly the batches an
uninterrupted one would, and a background thread can prepare the next batches while the current
step runs (the step never waits for JPEG decoding).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from .errors import AdaconvError
from .imageio import list_images, open_image, write_atomically

CROP_SCALE_RANGE = 1.25  # images resized so the short side is in [S, 1.25·S] before an SxS crop (SPEC §4)


def _decode_resized(path: Path, short_side: int | None, square: int | None) -> torch.Tensor | None:
    """uint8 [3, H, W]: short side ``short_side`` (aspect kept) or ``square`` x ``square``; None if unreadable."""
    try:
        with Image.open(path) as image:
            target = square or short_side
            image.draft("RGB", (target, target))  # JPEG: decode at a reduced scale, much faster
            image = image.convert("RGB")
            if square is not None:
                image = image.resize((square, square), Image.Resampling.BICUBIC, reducing_gap=3.0)
            else:
                width, height = image.size
                factor = short_side / min(width, height)
                size = (max(short_side, round(width * factor)), max(short_side, round(height * factor)))
                image = image.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
            return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).contiguous()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


@dataclass
class ImageBank:
    """Decoded images held in memory as uint8 tensors [3, H, W]."""

    images: list[torch.Tensor]
    paths: list[Path]
    skipped: list[Path]

    @classmethod
    def load(cls, folder: str | Path, *, short_side: int | None = None, square: int | None = None,
             limit: int | None = None, progress: bool = False, workers: int = 2) -> ImageBank:
        paths = list_images(folder)
        if limit is not None:
            paths = paths[:limit]
        if not paths:
            raise AdaconvError(f"{folder}: no images found")
        with ThreadPoolExecutor(workers) as pool:
            decoded = list(tqdm(pool.map(lambda p: _decode_resized(p, short_side, square), paths),
                                total=len(paths), disable=not progress, desc=f"loading {Path(folder).name}",
                                unit="img", leave=False))
        images = [d for d in decoded if d is not None]
        kept = [p for p, d in zip(paths, decoded) if d is not None]
        skipped = [p for p, d in zip(paths, decoded) if d is None]
        if not images:
            raise AdaconvError(f"{folder}: none of the {len(paths)} images could be read")
        return cls(images, kept, skipped)

    def __len__(self) -> int:
        return len(self.images)


class ShuffledIndices:
    """Endless shuffled sampling: epoch e visits every image once in an order fixed by (seed, e)."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed = size, seed
        self._epoch, self._order = -1, None
        self._lock = threading.Lock()

    def take(self, start: int, count: int) -> list[int]:
        """Indices at positions start .. start+count-1 of the endless sequence."""
        result = []
        with self._lock:
            for position in range(start, start + count):
                epoch = position // self.size
                if epoch != self._epoch:
                    generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
                    self._order = torch.randperm(self.size, generator=generator).tolist()
                    self._epoch = epoch
                result.append(self._order[position % self.size])
        return result


def random_crops(images: list[torch.Tensor], crop_size: int, generator: torch.Generator,
                 flip: bool = True) -> torch.Tensor:
    """Float batch [B, 3, S, S] in [0, 1]: each image rescaled so its short side is uniform in [S, 1.25·S],
    a random SxS crop taken, randomly flipped. Done as one crop of the stored image plus one resize."""
    batch = []
    for image in images:
        height, width = image.shape[-2:]
        short = min(height, width)
        target_short = crop_size * (1 + (CROP_SCALE_RANGE - 1) * torch.rand((), generator=generator).item())
        window = min(short, max(1, round(crop_size * short / target_short)))
        top = int(torch.randint(0, height - window + 1, (), generator=generator))
        left = int(torch.randint(0, width - window + 1, (), generator=generator))
        crop = image[:, top:top + window, left:left + window].float().div_(255.0)[None]
        if window != crop_size:
            crop = F.interpolate(crop, size=(crop_size, crop_size), mode="bilinear",
                                 antialias=window > crop_size, align_corners=False)
        if flip and torch.rand((), generator=generator).item() < 0.5:
            crop = crop.flip(-1)
        batch.append(crop)
    return torch.cat(batch).clamp_(0, 1)


def whole_images(images: list[torch.Tensor], generator: torch.Generator, flip: bool = True) -> torch.Tensor:
    """Float batch of same-size stored images (AdaConv's 256x256 styles), randomly flipped."""
    batch = torch.stack(images).float().div_(255.0)
    if flip:
        flips = torch.rand(len(images), generator=generator) < 0.5
        batch[flips] = batch[flips].flip(-1)
    return batch


class BatchPrefetcher:
    """Makes the batches of steps start, start+1, ... in a background thread, a few steps ahead.

    ``make_batch(step)`` must be a pure function of the step. ``wait_seconds`` counts how long the
    training loop was blocked waiting for data (the data-wait fraction of the benchmark).
    """

    def __init__(self, make_batch: Callable[[int], object], start: int, depth: int = 2):
        self.make_batch = make_batch
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.wait_seconds = 0.0
        self._next = start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(start,), daemon=True)
        self._thread.start()

    def _run(self, step: int) -> None:
        while not self._stop.is_set():
            try:
                item = (step, self.make_batch(step), None)
            except BaseException as error:  # handed to the consumer, raised there
                item = (step, None, error)
            while not self._stop.is_set():
                try:
                    self.queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item[2] is not None:
                return
            step += 1

    def get(self, step: int):
        started = time.perf_counter()
        got_step, batch, error = self.queue.get()
        self.wait_seconds += time.perf_counter() - started
        if error is not None:
            raise error
        assert got_step == step, f"prefetcher out of order: wanted step {step}, got {got_step}"
        return batch

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def prepare_folder(source: str | Path, destination: str | Path, *, short_side: int, quality: int = 90,
                   max_images: int | None = None, seed: int = 0, progress: bool = True) -> dict:
    """Resize (short side ``short_side``, never upscaled) and re-encode an image folder as JPEG.

    Deterministic: the same arguments give the same files. With ``max_images``, a seeded random subset.
    Unreadable files are skipped and counted. Returns a summary dict.
    """
    source, destination = Path(source), Path(destination)
    if not source.is_dir():
        raise AdaconvError(f"{source}: not a folder")
    paths = list_images(source)
    if max_images is not None and max_images < len(paths):
        generator = torch.Generator().manual_seed(seed)
        chosen = sorted(torch.randperm(len(paths), generator=generator)[:max_images].tolist())
        paths = [paths[i] for i in chosen]
    destination.mkdir(parents=True, exist_ok=True)
    written, skipped = 0, []
    for path in tqdm(paths, disable=not progress, desc="prepare", unit="img"):
        try:
            image = open_image(path).convert("RGB")
        except AdaconvError:
            skipped.append(str(path))
            continue
        width, height = image.size
        factor = short_side / min(width, height)
        if factor < 1:
            image = image.resize((max(1, round(width * factor)), max(1, round(height * factor))),
                                 Image.Resampling.LANCZOS)
        relative = path.relative_to(source).with_suffix(".jpg")
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, lambda handle, im=image: im.save(handle, format="JPEG", quality=quality))
        written += 1
    return {"written": written, "skipped": len(skipped), "skipped_files": skipped}
