import io
import struct
import sys

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from adaconv.errors import ImageError
from adaconv.imageio import (
    SRGB_PROFILE,
    ContentMetadata,
    allow_huge_images,
    check_output_path,
    list_images,
    open_image,
    read_content,
    save_image,
    to_tensor,
)


def swapped_red_blue_profile() -> bytes:
    """sRGB with its red and blue primaries (and curves) swapped: stored (R, G, B) means sRGB (B, G, R), so a
    correct conversion to sRGB visibly swaps the channels."""
    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    count = struct.unpack_from(">I", data, 128)[0]
    entries = {struct.unpack_from(">4s", data, 132 + 12 * i)[0]: 132 + 12 * i for i in range(count)}
    for red, blue in ((b"rXYZ", b"bXYZ"), (b"rTRC", b"bTRC")):
        red_place, blue_place = data[entries[red] + 4:entries[red] + 12], data[entries[blue] + 4:entries[blue] + 12]
        data[entries[red] + 4:entries[red] + 12], data[entries[blue] + 4:entries[blue] + 12] = blue_place, red_place
    return bytes(data)


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


def test_icc_profile_is_converted_to_srgb(tmp_path):
    path = tmp_path / "tagged.png"
    Image.new("RGB", (4, 3), (200, 30, 0)).save(path, icc_profile=swapped_red_blue_profile())
    image = open_image(path)
    assert image.getpixel((0, 0)) == (0, 30, 200)
    assert image.info["icc_profile"] == SRGB_PROFILE  # the profile the pixels are now really in
    rgba = tmp_path / "tagged_alpha.png"
    Image.new("RGBA", (4, 3), (200, 30, 0, 77)).save(rgba, icc_profile=swapped_red_blue_profile())
    assert open_image(rgba).getpixel((0, 0)) == (0, 30, 200, 77)


def test_an_unusable_profile_is_dropped_not_fatal(tmp_path):
    path = tmp_path / "bad_profile.png"
    Image.new("RGB", (4, 3), (200, 30, 0)).save(path, icc_profile=b"not a profile at all")
    image = open_image(path)
    assert image.getpixel((0, 0)) == (200, 30, 0) and "icc_profile" not in image.info


def test_read_content_keeps_alpha_exif_and_profile(tmp_path):
    rgba = Image.new("RGBA", (6, 4), (10, 20, 30, 0))
    rgba.putpixel((5, 3), (10, 20, 30, 255))
    rgba.save(tmp_path / "alpha.png")
    pixels, metadata = read_content(tmp_path / "alpha.png")
    assert pixels.shape == (3, 4, 6) and metadata.alpha.getpixel((5, 3)) == 255 and metadata.alpha.getpixel((0, 0)) == 0
    assert metadata.exif is None and metadata.icc_profile is None

    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = 8, "adaconv-test"  # rotate 90° counter-clockwise on display; camera maker
    Image.new("RGB", (6, 4)).save(tmp_path / "rotated.jpg", exif=exif, icc_profile=swapped_red_blue_profile())
    pixels, metadata = read_content(tmp_path / "rotated.jpg")
    kept = Image.Exif()
    kept.load(metadata.exif)
    assert pixels.shape == (3, 6, 4) and kept[0x0112] == 1 and kept[0x010F] == "adaconv-test"
    assert metadata.icc_profile == SRGB_PROFILE and metadata.alpha is None


@pytest.mark.parametrize("mode", ["LA", "PA"])
def test_greyscale_and_palette_alpha_are_found(tmp_path, mode):
    if mode == "LA":
        Image.new("LA", (5, 5), (90, 40)).save(tmp_path / "a.png")
    else:
        image = Image.new("RGB", (5, 5), (255, 0, 0)).quantize(4)
        image.save(tmp_path / "a.png", transparency=image.getpixel((2, 2)))  # that palette entry is transparent
    _, metadata = read_content(tmp_path / "a.png")
    assert metadata.alpha.getpixel((2, 2)) == (40 if mode == "LA" else 0)


@pytest.mark.parametrize("suffix, mode", [(".png", "RGBA"), (".webp", "RGBA"), (".tif", "RGBA"), (".jpg", "RGB")])
def test_alpha_goes_back_where_the_format_keeps_it(tmp_path, suffix, mode):
    alpha = Image.linear_gradient("L").resize((32, 16))
    metadata = ContentMetadata(alpha=alpha, exif=None, icc_profile=SRGB_PROFILE)
    path = tmp_path / f"out{suffix}"
    save_image(torch.rand(3, 8, 16), path, metadata=metadata)  # output at half the alpha's size
    written = Image.open(path)
    assert written.mode == mode and written.size == (16, 8) and written.info.get("icc_profile") == SRGB_PROFILE
    if mode == "RGBA":
        column = [written.getchannel("A").getpixel((8, y)) for y in range(8)]
        assert column[0] < 40 and column[-1] > 215 and column == sorted(column)


def test_decompression_bombs_are_refused_unless_allowed(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (64, 48), (1, 2, 3)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 3072 pixels is then a bomb: the guard's own code runs
    with pytest.raises(ImageError, match="too large to read safely.*--allow-huge"):
        open_image(path)
    allow_huge_images()
    assert open_image(path).size == (64, 48)


def test_standard_input_is_read_by_content(monkeypatch):
    buffer = io.BytesIO()
    Image.new("RGB", (7, 5), (0, 255, 0)).save(buffer, "JPEG")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(buffer.getvalue())))
    assert open_image("-").size == (7, 5)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    with pytest.raises(ImageError, match="standard input is empty"):
        open_image("-")


def test_damaged_files_are_one_line_whatever_pillow_raises(tmp_path, content_path):
    png = io.BytesIO()
    Image.open(content_path).resize((40, 30)).save(png, "PNG")
    cases = {"cut.png": png.getvalue()[:300], "cut_header.png": png.getvalue()[:20],
             "cut.jpg": content_path.read_bytes()[:600], "png_garbage.png": png.getvalue()[:100] + b"\x00" * 500}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageError) as error:
            open_image(tmp_path / name)
        assert str(error.value).startswith(f"{tmp_path / name}: ") and "\n" not in str(error.value)


def test_listing_skips_hidden_files_and_other_suffixes(tmp_path):
    for name in ("a.jpg", "sub/b.PNG", ".hidden.jpg", ".cache/c.jpg", "notes.txt", ".x.png.abc.tmp"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == ["a.jpg", "sub/b.PNG"]
