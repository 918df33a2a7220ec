import subprocess
import sys

import torch
from PIL import Image

from adaconv.data import BatchPrefetcher, ImageBank, ShuffledIndices, prepare_folder, random_crops


def test_shuffled_indices_visit_every_image_once_per_epoch():
    order = ShuffledIndices(7, seed=3)
    first, second = order.take(0, 7), order.take(7, 7)
    assert sorted(first) == list(range(7)) and sorted(second) == list(range(7))
    assert first != second
    assert ShuffledIndices(7, seed=3).take(5, 4) == (first + second)[5:9]


def test_random_crops_shape_range_and_determinism(data_dir):
    bank = ImageBank.load(data_dir / "train" / "content", short_side=80, limit=4)
    assert all(min(image.shape[-2:]) == 80 for image in bank.images)
    a = random_crops(bank.images, 64, torch.Generator().manual_seed(1))
    b = random_crops(bank.images, 64, torch.Generator().manual_seed(1))
    assert a.shape == (4, 3, 64, 64) and torch.equal(a, b)
    assert 0.0 <= a.min() and a.max() <= 1.0


def test_prefetcher_hands_out_steps_in_order():
    prefetcher = BatchPrefetcher(lambda step: step * 10, start=5)
    assert [prefetcher.get(step) for step in range(5, 9)] == [50, 60, 70, 80]
    prefetcher.close()


def test_prepare_data_skips_bad_files(tmp_path, data_dir):
    source = tmp_path / "src"
    source.mkdir()
    photos = sorted((data_dir / "train" / "content").iterdir())[:3]
    for photo in photos:
        (source / photo.name).write_bytes(photo.read_bytes())
    (source / "corrupt.jpg").write_bytes(photos[0].read_bytes()[:500])
    (source / "readme.png").write_text("not an image")
    destination = tmp_path / "dst"
    result = subprocess.run([sys.executable, "-m", "adaconv", "prepare-data", source, destination,
                             "--short-side", "64", "--quality", "85"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "prepared 3 images, skipped 2" in result.stderr
    written = sorted(destination.iterdir())
    assert len(written) == 3
    assert all(min(Image.open(p).size) == 64 for p in written)
    again = prepare_folder(source, tmp_path / "dst2", short_side=64, quality=85, progress=False)
    assert again["written"] == 3
    assert [p.read_bytes() for p in written] == [p.read_bytes() for p in sorted((tmp_path / "dst2").iterdir())]
