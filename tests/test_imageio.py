import io

import numpy as np
import pytest
import torch
from PIL import Image

from adaconv.errors import ImageError
from adaconv.imageio import check_output_path, open_image, save_image, to_tensor


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert to_tensor(path).shape == (3, 40, 20)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "LA", "I;16"])
def test_odd_modes_become_rgb(tmp_path, mode):
    if mode == "I;16":
        image = Image.fromarray(np.full((8, 10), 65535 // 2, dtype=np.uint16))
    else:
        image = Image.new(mode, (10, 8))
    path = tmp_path / ("odd.tif" if mode == "CMYK" else "odd.png")
    image.save(path)
    tensor = to_tensor(path)
    assert tensor.shape == (3, 8, 10) and tensor.dtype == torch.float32
    assert 0.0 <= tensor.min() and tensor.max() <= 1.0
    if mode == "I;16":
        assert abs(tensor.mean().item() - 0.5) < 0.01


def test_bad_files_give_one_line_errors(tmp_path, content_path):
    cases = {
        "missing.jpg": None,
        "empty.jpg": b"",
        "text.jpg": b"this is not an image\n",
        "truncated.jpg": content_path.read_bytes()[:2000],
    }
    for name, data in cases.items():
        path = tmp_path / name
        if data is not None:
            path.write_bytes(data)
        with pytest.raises(ImageError) as error:
            open_image(path)
        assert name in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(ImageError, match="is a directory"):
        open_image(tmp_path)


def test_save_is_atomic_and_uses_the_extension(tmp_path):
    image = torch.rand(3, 12, 16)
    for suffix, fmt in ((".png", "PNG"), (".jpg", "JPEG"), (".webp", "WEBP")):
        path = tmp_path / f"out{suffix}"
        save_image(image, path)
        assert Image.open(path).format == fmt
    assert not list(tmp_path.glob(".*tmp"))


def test_failed_write_leaves_nothing(tmp_path):
    class Broken:
        def save(self, handle, **kwargs):
            handle.write(b"partial")
            raise RuntimeError("disk full")

    path = tmp_path / "out.png"
    with pytest.raises(RuntimeError):
        save_image(Broken(), path)
    assert list(tmp_path.iterdir()) == []


def test_output_path_checks(tmp_path):
    with pytest.raises(ImageError, match="unknown output format"):
        check_output_path(tmp_path / "out.xyz")
    with pytest.raises(ImageError, match="does not exist"):
        check_output_path(tmp_path / "no" / "out.png")


def test_arrays_and_pil_images_are_accepted():
    array = (np.random.default_rng(0).random((6, 7, 3)) * 255).astype(np.uint8)
    from_array, from_pil = to_tensor(array), to_tensor(Image.fromarray(array))
    assert torch.equal(from_array, from_pil)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    assert from_array.shape == (3, 6, 7)


def test_written_files_get_the_usual_permissions(tmp_path):
    import os
    import stat

    path = tmp_path / "out.png"
    save_image(torch.rand(3, 4, 4), path)
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
