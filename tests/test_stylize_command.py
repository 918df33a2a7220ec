"""`adaconv stylize` on a corpus of awkward and broken inputs built here with Pillow: each bad case is one stderr line
naming the file, exit 2 and nothing left behind; each odd-but-valid case gives a correct picture; a folder run goes
past the bad files, lists them and exits 1."""

import io
import json
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from adaconv.cli import main
from adaconv.imageio import SRGB_PROFILE

SIZE = ["--content-size", "64", "--style-size", "64"]
GOOD = ["png_named.jpg", "cmyk.jpg", "deep.png", "palette.png", "grey_alpha.png", "alpha.png", "rotated.jpg",
        "tagged.png"]
BAD = {"empty.jpg": "empty file", "truncated.png": "damaged image", "truncated.jpg": "damaged image",
       "text.jpg": "not an image file", "bomb.png": "image is too large to read safely"}


def header_only_png(width: int, height: int) -> bytes:
    """A PNG declaring width × height with no pixel data: the few bytes a decompression bomb needs to be refused."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def swapped_red_blue_profile() -> bytes:
    """sRGB with its red and blue primaries and curves swapped (see test_imageio): stored red is sRGB blue."""
    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    count = struct.unpack_from(">I", data, 128)[0]
    entries = {struct.unpack_from(">4s", data, 132 + 12 * i)[0]: 132 + 12 * i for i in range(count)}
    for red, blue in ((b"rXYZ", b"bXYZ"), (b"rTRC", b"bTRC")):
        red_place, blue_place = data[entries[red] + 4:entries[red] + 12], data[entries[blue] + 4:entries[blue] + 12]
        data[entries[red] + 4:entries[red] + 12], data[entries[blue] + 4:entries[blue] + 12] = blue_place, red_place
    return bytes(data)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, content_path):
    folder = tmp_path_factory.mktemp("corpus")
    photo = Image.open(content_path).convert("RGB").resize((96, 64))
    (folder / "empty.jpg").write_bytes(b"")
    for name, image_format in (("truncated.png", "PNG"), ("truncated.jpg", "JPEG")):
        buffer = io.BytesIO()
        photo.save(buffer, image_format)
        (folder / name).write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (folder / "text.jpg").write_text("this is not a picture\n")
    (folder / "bomb.png").write_bytes(header_only_png(30000, 30000))  # 900 Mpx: over Pillow's limit, 45 bytes
    photo.save(folder / "png_named.jpg", "PNG")
    photo.convert("CMYK").save(folder / "cmyk.jpg", "JPEG")
    Image.fromarray(np.asarray(photo.convert("L"), dtype=np.uint16) * 257).save(folder / "deep.png")
    photo.convert("P").save(folder / "palette.png")
    grey_alpha = photo.convert("LA")
    grey_alpha.putalpha(128)
    grey_alpha.save(folder / "grey_alpha.png")
    rgba = photo.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(photo.size))  # transparent at the top, opaque at the bottom
    rgba.save(folder / "alpha.png")
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = 6, "adaconv-test"  # shown rotated 90° clockwise; a camera maker to carry over
    photo.save(folder / "rotated.jpg", exif=exif.tobytes())
    photo.save(folder / "tagged.png", icc_profile=swapped_red_blue_profile())
    assert sorted(GOOD + list(BAD)) == sorted(p.name for p in folder.iterdir())
    return folder


def stylize(*argv) -> int:
    return main(["stylize", *map(str, argv), *SIZE])


@pytest.mark.parametrize("name", [*BAD, "missing.jpg"])
def test_bad_inputs_are_one_line_with_nothing_written(corpus, tmp_path, style_path, name, capsys):
    message = BAD.get(name, "no such file")
    for output in ("out.png", "out.jpg"):
        assert stylize(corpus / name, "--style", style_path, "-o", tmp_path / output) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and error.startswith(f"adaconv stylize: error: {corpus / name}: ")
        assert message in error
    assert list(tmp_path.iterdir()) == []  # no output, no temporary file


def test_a_bad_style_fails_before_anything_is_written(corpus, tmp_path, style_path, content_path, capsys):
    out = tmp_path / "out"
    assert stylize(content_path, corpus / "cmyk.jpg", "--style", corpus / "truncated.jpg", "-o", out) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"{corpus / 'truncated.jpg'}: damaged image" in error
    assert list(tmp_path.iterdir()) == []


def test_bomb_guard_names_its_override_and_the_override_works(corpus, tmp_path, style_path, monkeypatch, capsys):
    small = tmp_path / "inputs"
    small.mkdir()
    Image.new("RGB", (64, 48), (90, 120, 200)).save(small / "wide.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # the 3,072-pixel file is then a bomb (restored after)
    out = tmp_path / "out.png"
    assert stylize(small / "wide.png", "--style", style_path, "-o", out) == 2
    assert "--allow-huge" in capsys.readouterr().err and not out.exists()
    assert stylize(small / "wide.png", "--style", style_path, "-o", out, "--allow-huge") == 0
    assert Image.open(out).size == (64, 48)


@pytest.mark.parametrize("name, mode, size", [
    ("png_named.jpg", "RGB", (64, 43)),  # a PNG behind a .jpg name: sniffed, not trusted to the suffix
    ("cmyk.jpg", "RGB", (64, 43)),
    ("deep.png", "RGB", (64, 43)),
    ("palette.png", "RGB", (64, 43)),
    ("grey_alpha.png", "RGBA", (64, 43)),
    ("alpha.png", "RGBA", (64, 43)),
    ("rotated.jpg", "RGB", (43, 64)),
    ("tagged.png", "RGB", (64, 43)),
])
def test_odd_but_valid_inputs_give_correct_pictures(corpus, tmp_path, style_path, name, mode, size):
    out = tmp_path / "out.png"
    assert stylize(corpus / name, "--style", style_path, "-o", out, "--quiet") == 0
    result = Image.open(out)
    assert result.mode == mode and result.size == size
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # no temporary file left


def test_alpha_is_carried_over_to_formats_that_keep_it(corpus, tmp_path, style_path):
    for suffix, mode in ((".png", "RGBA"), (".webp", "RGBA"), (".jpg", "RGB")):
        out = tmp_path / f"out{suffix}"
        assert stylize(corpus / "alpha.png", "--style", style_path, "-o", out) == 0
        result = Image.open(out)
        assert result.mode == mode and result.size == (64, 43)
    alpha = Image.open(tmp_path / "out.png").getchannel("A")
    assert alpha.getpixel((0, 0)) < 10 and alpha.getpixel((63, 0)) < 10 and alpha.getpixel((0, 42)) > 240


def test_exif_orientation_is_applied_and_reset(corpus, tmp_path, style_path):
    """The rotated JPEG gives exactly the output of its upright pixels, and its EXIF is kept with orientation 1."""
    upright = tmp_path / "upright.png"
    ImageOps.exif_transpose(Image.open(corpus / "rotated.jpg")).save(upright)
    assert stylize(corpus / "rotated.jpg", "--style", style_path, "-o", tmp_path / "a.jpg") == 0
    assert stylize(corpus / "rotated.jpg", "--style", style_path, "-o", tmp_path / "a.png") == 0
    assert stylize(upright, "--style", style_path, "-o", tmp_path / "b.png") == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(tmp_path / "b.png")))
    exif = Image.open(tmp_path / "a.jpg").getexif()
    assert exif[0x0112] == 1 and exif[0x010F] == "adaconv-test"


def test_colour_profile_is_converted_and_srgb_embedded(corpus, tmp_path, style_path):
    """The tagged PNG is stylised as its sRGB pixels (red and blue swapped back) and says so with an sRGB profile."""
    as_srgb = tmp_path / "as_srgb.png"
    stored = np.asarray(Image.open(corpus / "tagged.png").convert("RGB"))
    Image.fromarray(np.ascontiguousarray(stored[..., ::-1])).save(as_srgb)  # what the profile means
    assert stylize(corpus / "tagged.png", "--style", style_path, "-o", tmp_path / "a.png") == 0
    assert stylize(as_srgb, "--style", style_path, "-o", tmp_path / "b.png") == 0
    tagged, plain = Image.open(tmp_path / "a.png"), Image.open(tmp_path / "b.png")
    difference = np.abs(np.asarray(tagged, dtype=int) - np.asarray(plain, dtype=int))
    assert difference.mean() < 2  # colour management rounds a little differently from a channel swap
    assert tagged.info["icc_profile"] == SRGB_PROFILE and "icc_profile" not in plain.info


def test_folder_continues_past_bad_files_and_skips_existing(corpus, tmp_path, style_path, capsys):
    out = tmp_path / "out"
    argv = [corpus, "--style", style_path, "-o", out, "--json"]
    assert stylize(*argv) == 1  # some failed
    captured = capsys.readouterr()
    for bad, message in BAD.items():
        assert f"adaconv stylize: failed: {corpus / bad}: {message}" in captured.err
    summary = json.loads(captured.out)
    assert sorted(f["content"] for f in summary["failed"]) == sorted(str(corpus / bad) for bad in BAD)
    stem = style_path.stem
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{name.split('.')[0]}__{stem}.png" for name in GOOD)
    assert stylize(*argv, "--skip-existing") == 1
    summary = json.loads(capsys.readouterr().out)
    assert len(summary["skipped_existing"]) == len(GOOD) and summary["outputs"] == []


def test_a_folder_tree_is_kept_and_clashing_names_are_refused(tmp_path, content_path, style_path, capsys):
    tree = tmp_path / "photos"
    for folder in ("a", "b"):
        (tree / folder).mkdir(parents=True)
        Image.open(content_path).resize((48, 32)).save(tree / folder / "x.jpg")
    Image.open(content_path).resize((48, 32)).save(tree / "a" / "x.png")
    out = tmp_path / "out"
    assert stylize(tree, "--style", style_path, "-o", out) == 0
    made = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert made == [f"a/x.jpg__{style_path.stem}.png", f"a/x.png__{style_path.stem}.png",
                    f"b/x__{style_path.stem}.png"]  # subfolders kept; a shared stem spelt out in full
    clash = tmp_path / "clash"
    assert stylize(tree / "a" / "x.jpg", tree / "b" / "x.jpg", "--style", style_path, "-o", clash) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "would both be written to" in error and not clash.exists()


def test_standard_input_to_standard_output(corpus, style_path):
    command = [sys.executable, "-m", "adaconv", "stylize", "-", "--style", str(style_path), "-o", "-", *SIZE]
    result = subprocess.run(command, input=(corpus / "png_named.jpg").read_bytes(), capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr
    image = Image.open(io.BytesIO(result.stdout))
    assert image.format == "PNG" and image.size == (64, 43)
    broken = subprocess.run(command, input=b"not an image", capture_output=True, timeout=300)
    assert broken.returncode == 2 and broken.stdout == b""
    assert broken.stderr.decode().strip() == "adaconv stylize: error: -: not an image file " \
                                             "(or a format Pillow cannot read)"


def test_precision_bf16_writes_the_picture_and_fp16_on_the_cpu_is_a_one_line_error(tmp_path, content_path,
                                                                                   style_path, capsys):
    out = tmp_path / "bf16.png"
    assert main(["stylize", str(content_path), "--style", str(style_path), "-o", str(out), "--precision", "bf16",
                 "--device", "cpu", *SIZE, "--quiet"]) == 0
    assert Image.open(out).size[0] == 64 or Image.open(out).size[1] == 64
    refused = tmp_path / "fp16.png"
    code = main(["stylize", str(content_path), "--style", str(style_path), "-o", str(refused), "--precision", "fp16",
                 "--device", "cpu", *SIZE, "--quiet"])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and not refused.exists()
    assert error[-1] == "adaconv stylize: error: precision fp16 needs a CUDA device (use bf16 or fp32 on the CPU)"
