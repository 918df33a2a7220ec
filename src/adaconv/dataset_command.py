"""``adaconv stylize-dataset SRC STYLES OUT``: the Stylized-ImageNet use case (Geirhos et al., ICLR 2019).

Every image below SRC gets one painting from STYLES, chosen by a hash of (seed, its path relative to SRC) — so the
choice depends neither on how many processes run nor on their order — and is written to the same relative path
below OUT. Outputs are written atomically, so one that exists is finished: a killed run skips them and continues.

Sharding: under torchrun (or any launcher setting RANK and WORLD_SIZE, e.g. one process per machine) each rank
takes every WORLD_SIZE-th image of the sorted file list, so all ranks must see the same SRC tree. No process group
is needed for the work; under torchrun a gloo barrier at the very end lets rank 0 merge the summaries. Files in
OUT/.adaconv-dataset/:

- ``rank-R-of-N.jsonl``: one line per image this rank wrote (appended as it goes, across resumed runs);
- ``rank-R-of-N.json``: this rank's last run: every image it is responsible for with its style, output and status;
- ``summary.json``: all ranks' items merged (single process, or torchrun after the barrier).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import warnings
from datetime import timedelta
from pathlib import Path

from .errors import AdaconvError
from .imageio import (
    WRITABLE_FORMATS,
    allow_huge_images,
    list_images,
    read_content,
    save_image,
    tensor_to_pil,
    write_atomically,
)
from .preprocessing import resize_short_side
from .progress import progress_bar

RECORDS_DIR = ".adaconv-dataset"
BARRIER_TIMEOUT = timedelta(days=7)  # ranks may finish hours apart on a large dataset


def choose_style(relative: str, seed: int, count: int) -> int:
    """Index of the painting for the image at ``relative`` (a POSIX path below SRC): a pure function of its inputs."""
    digest = hashlib.sha256(f"{seed}:{relative}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def shard_from_environment() -> tuple[int, int]:
    """(rank, world size) from RANK and WORLD_SIZE, as torchrun sets them; (0, 1) when they are absent."""
    try:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    except ValueError:
        raise AdaconvError("RANK and WORLD_SIZE must be whole numbers") from None
    if world < 1 or not 0 <= rank < world:
        raise AdaconvError(f"bad shard: RANK={rank}, WORLD_SIZE={world}")
    return rank, world


def output_path(out: Path, relative: str) -> Path:
    """Same relative path below OUT; a format we cannot write (GIF, PPM) gets ``.png`` appended, not swapped in,
    so ``a.gif`` and ``a.png`` never land on the same output."""
    target = out / relative
    return target if target.suffix.lower() in WRITABLE_FORMATS else target.with_name(target.name + ".png")


def plan_shard(images: list[Path], source: Path, styles: list[Path], style_root: Path, out: Path, seed: int,
               rank: int, world: int) -> list[dict]:
    """This rank's items (input, style, output), grouped by style so each painting is encoded once per run."""
    items = []
    for path in images[rank::world]:
        relative = path.relative_to(source).as_posix()
        style = styles[choose_style(relative, seed, len(styles))]
        items.append({"input": relative, "style": style.relative_to(style_root).as_posix(),
                      "output": output_path(out, relative).relative_to(out).as_posix(), "style_path": style})
    return sorted(items, key=lambda item: (item["style"], item["input"]))


def check_folders(source: Path, style_root: Path, out: Path) -> None:
    for folder, what in ((source, "source"), (style_root, "styles")):
        if not folder.is_dir():
            raise AdaconvError(f"{folder}: {what} folder not found")
    if out.exists() and not out.is_dir():
        raise AdaconvError(f"{out}: exists and is not a folder")
    resolved_out, resolved_source = out.resolve(), source.resolve()
    if resolved_out == resolved_source or resolved_source in resolved_out.parents:
        raise AdaconvError(f"{out}: the output folder must not be inside the source folder {source}")


def stylize_dataset_command(args) -> int:
    from .inference import Stylizer
    from .stylize_command import load_stylizer

    source, style_root, out = Path(args.source), Path(args.styles), Path(args.output)
    check_folders(source, style_root, out)
    styles = list_images(style_root)
    if not styles:
        raise AdaconvError(f"{style_root}: holds no images")
    images = list_images(source)
    if not images:
        raise AdaconvError(f"{source}: holds no images")
    if args.allow_huge:
        allow_huge_images()
    rank, world = shard_from_environment()
    items = plan_shard(images, source, styles, style_root, out, args.seed, rank, world)
    stylizer = load_stylizer(args)
    records = out / RECORDS_DIR
    records.mkdir(parents=True, exist_ok=True)
    name = f"rank-{rank}-of-{world}"
    started = time.perf_counter()
    with (records / f"{name}.jsonl").open("a") as log, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 2048-px cap note would repeat for every large image
        for item in progress_bar(items, desc=f"rank {rank}/{world}", unit="img", enabled=not args.quiet,
                                 position=rank):
            target = out / item["output"]
            if args.skip_existing and target.exists():
                item["status"] = "existing"
                continue
            try:
                pixels, metadata = read_content(source / item["input"])
                if args.size:
                    pixels = resize_short_side(pixels, args.size)
                content = pixels if isinstance(stylizer, Stylizer) else tensor_to_pil(pixels)
                image = stylizer.stylize(content, item["style_path"], alpha=args.alpha)
                target.parent.mkdir(parents=True, exist_ok=True)
                save_image(image, target, metadata=metadata)
            except AdaconvError as error:
                item.update(status="failed", error=str(error))
                continue
            item["status"] = "written"
            log.write(json.dumps({key: item[key] for key in ("input", "style", "output")}) + "\n")
            log.flush()
    for item in items:
        del item["style_path"]
    counts = {status: sum(item["status"] == status for item in items) for status in ("written", "existing", "failed")}
    summary = {"source": str(source), "styles": str(style_root), "output": str(out), "seed": args.seed,
               "size": args.size, "alpha": args.alpha, "model": stylizer.kind, "weights": stylizer.info.get("path"),
               "rank": rank, "world_size": world, "counts": counts, "seconds": round(time.perf_counter() - started, 2),
               "items": sorted(items, key=lambda item: item["input"])}
    write_json(records / f"{name}.json", summary)
    if wait_for_other_ranks(world) and rank == 0:
        merge_summaries(records, world)
    failures = [item for item in items if item["status"] == "failed"]
    if not args.quiet:
        for item in failures:
            print(f"adaconv stylize-dataset: failed: {item['error']}", file=sys.stderr)
        print(f"adaconv stylize-dataset: rank {rank} of {world}: {counts['written']} written, {counts['existing']} "
              f"already there, {counts['failed']} failed; records in {records}", file=sys.stderr)
    if args.json:
        print(json.dumps({key: value for key, value in summary.items() if key != "items"} | {"failed": failures}))
    return 1 if failures else 0


def wait_for_other_ranks(world: int) -> bool:
    """True once every rank has written its summary: at once for one process, after a gloo barrier under torchrun,
    never when ranks were started by hand (RANK/WORLD_SIZE without MASTER_ADDR): they cannot meet."""
    if world == 1:
        return True
    if "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
        return False
    import torch.distributed as dist

    dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
    try:
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return True


def merge_summaries(records: Path, world: int) -> None:
    """Every rank's items in one ``summary.json`` (the run's settings from rank 0, counts summed)."""
    parts = [json.loads((records / f"rank-{r}-of-{world}.json").read_text()) for r in range(world)]
    merged = {key: value for key, value in parts[0].items() if key not in ("rank", "seconds")}
    merged["counts"] = {key: sum(part["counts"][key] for part in parts) for key in parts[0]["counts"]}
    merged["items"] = sorted((item for part in parts for item in part["items"]), key=lambda item: item["input"])
    write_json(records / "summary.json", merged)


def write_json(path: Path, data: dict) -> None:
    write_atomically(path, lambda handle: handle.write((json.dumps(data, indent=1) + "\n").encode()))
