"""`adaconv stylize-dataset`: tree kept, deterministic styles, resumable, and sharded over 2 torchrun ranks with
every image produced exactly once."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from adaconv.cli import main
from adaconv.dataset_command import choose_style, plan_shard


@pytest.fixture
def tree(tmp_path, data_dir):
    """6 photos at 64 px in nested class folders (one PNG among the JPEGs), and 2 paintings."""
    source = tmp_path / "dataset"
    photos = sorted((data_dir / "bench" / "content").iterdir())[:6]
    for index, photo in enumerate(photos):
        folder = source / f"class_{index % 3}" / ("nested" if index % 2 else "")
        folder.mkdir(parents=True, exist_ok=True)
        suffix = ".png" if index == 5 else ".JPEG"
        Image.open(photo).convert("RGB").resize((64, 48)).save(folder / f"image_{index}{suffix}")
    styles = tmp_path / "styles"
    styles.mkdir()
    for name in ("00.png", "01.png"):
        Image.open(data_dir / "bench" / "style" / name).resize((64, 64)).save(styles / name)
    return source, styles


def relative_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_two_torchrun_ranks_write_every_image_once(tree, tmp_path, adain_weights):
    source, styles = tree
    out = tmp_path / "stylized"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "adaconv", "stylize-dataset", str(source), str(styles), str(out), "--weights",
               str(adain_weights), "--size", "32", "--quiet"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment)
    assert result.returncode == 0, result.stderr
    records = out / ".adaconv-dataset"
    logs = [records / f"rank-{rank}-of-2.jsonl" for rank in (0, 1)]
    per_rank = [[json.loads(line)["input"] for line in log.read_text().splitlines()] for log in logs]
    assert set(per_rank[0]).isdisjoint(per_rank[1]) and all(per_rank)
    inputs = relative_files(source)
    assert sorted(per_rank[0] + per_rank[1]) == inputs  # each exactly once, across ranks
    assert relative_files(out) == sorted(inputs + [f".adaconv-dataset/{name}" for name in (
        "rank-0-of-2.json", "rank-0-of-2.jsonl", "rank-1-of-2.json", "rank-1-of-2.jsonl", "summary.json")])
    summary = json.loads((records / "summary.json").read_text())  # rank 0 merged it after the gloo barrier
    assert summary["counts"] == {"written": 6, "existing": 0, "failed": 0} and summary["world_size"] == 2
    for item in summary["items"]:
        assert item["status"] == "written" and item["output"] == item["input"]  # tree layout kept
        assert item["style"] == ["00.png", "01.png"][choose_style(item["input"], 0, 2)]
        output = Image.open(out / item["output"])
        assert output.size == (43, 32) and output.format == ("PNG" if item["input"].endswith(".png") else "JPEG")

    # resumable: a second run finds everything done; a lost output is redone, and only that one
    (out / inputs[0]).unlink()
    again = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment)
    assert again.returncode == 0, again.stderr
    summary = json.loads((records / "summary.json").read_text())
    assert summary["counts"] == {"written": 1, "existing": 5, "failed": 0} and (out / inputs[0]).exists()
    assert sum(len(log.read_text().splitlines()) for log in logs) == len(inputs) + 1


def test_style_choice_does_not_depend_on_the_number_of_ranks(tree, tmp_path):
    source, styles = tree
    images, paintings = sorted(source.rglob("*.*")), sorted(styles.iterdir())

    def assignment(world: int) -> dict:
        shards = [plan_shard(images, source, paintings, styles, tmp_path, 7, rank, world) for rank in range(world)]
        assert sum(len(shard) for shard in shards) == len(images)
        return {item["input"]: item["style"] for shard in shards for item in shard}

    assert assignment(1) == assignment(2) == assignment(4)


def test_style_choice_is_deterministic_and_spread():
    picks = [choose_style(f"class/{i}.jpg", 0, 4) for i in range(200)]
    assert picks == [choose_style(f"class/{i}.jpg", 0, 4) for i in range(200)]
    assert all(20 < picks.count(k) < 80 for k in range(4))
    assert picks != [choose_style(f"class/{i}.jpg", 1, 4) for i in range(200)]


def test_bad_files_are_listed_and_the_rest_is_done(tree, tmp_path, adain_weights, capsys):
    source, styles = tree
    (source / "class_0" / "broken.jpg").write_text("not a picture")
    (source / "class_1" / "anim.gif").write_bytes(b"")
    out = tmp_path / "stylized"
    argv = ["stylize-dataset", str(source), str(styles), str(out), "--weights", str(adain_weights), "--size", "32",
            "--json"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert f"failed: {source / 'class_0' / 'broken.jpg'}: not an image file" in captured.err
    assert f"failed: {source / 'class_1' / 'anim.gif'}: empty file" in captured.err
    report = json.loads(captured.out)
    assert report["counts"] == {"written": 6, "existing": 0, "failed": 2}
    assert sorted(item["input"] for item in report["failed"]) == ["class_0/broken.jpg", "class_1/anim.gif"]
    assert not (out / "class_0" / "broken.jpg").exists() and not (out / "class_1" / "anim.gif.png").exists()
    assert not list(out.rglob("*.tmp"))
    summary = json.loads((out / ".adaconv-dataset" / "summary.json").read_text())
    assert {item["input"]: item["status"] for item in summary["items"]}["class_1/anim.gif"] == "failed"


@pytest.mark.parametrize("problem", ["output inside source", "no styles", "bad rank"])
def test_bad_setups_are_one_line(tree, tmp_path, adain_weights, monkeypatch, capsys, problem):
    source, styles = tree
    out = source / "stylized" if problem == "output inside source" else tmp_path / "stylized"
    if problem == "no styles":
        styles = tmp_path / "empty_styles"
        styles.mkdir()
    if problem == "bad rank":
        monkeypatch.setenv("RANK", "2")
        monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["stylize-dataset", str(source), str(styles), str(out), "--weights", str(adain_weights)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("adaconv stylize-dataset: error:")
    assert not (out / "class_0").exists()
