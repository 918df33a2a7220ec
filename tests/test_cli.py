"""The command line end to end, as a user runs it (a real process, real images, weights saved by the tests)."""

import json
import subprocess
import sys

import pytest
from PIL import Image


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "adaconv", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def small_photo(tmp_path_factory, content_path):
    path = tmp_path_factory.mktemp("photo") / "photo.jpg"
    image = Image.open(content_path)
    image.thumbnail((200, 200))
    image.save(path)
    return path


def test_stylize_end_to_end(tmp_path, small_photo, style_path, adain_weights):
    out = tmp_path / "out.png"
    result = run("stylize", small_photo, "--style", style_path, "-o", out, "--weights", adain_weights,
                 "--style-size", "128", "--json")
    assert result.returncode == 0, result.stderr
    assert Image.open(out).size == Image.open(small_photo).size
    summary = json.loads(result.stdout)
    assert summary["model"] == "adain" and summary["outputs"][0]["output"] == str(out)


def test_stylize_adaconv_end_to_end(tmp_path, small_photo, style_path, adaconv_weights):
    out = tmp_path / "out.jpg"
    result = run("stylize", small_photo, "--style", style_path, "-o", out, "--weights", adaconv_weights,
                 "--alpha", "0.5")
    assert result.returncode == 0, result.stderr
    assert Image.open(out).format == "JPEG"


def test_folder_of_contents_goes_to_a_folder(tmp_path, small_photo, style_path, adain_weights):
    source = tmp_path / "in"
    source.mkdir()
    Image.open(small_photo).save(source / "a.png")
    Image.open(small_photo).resize((64, 48)).save(source / "b.jpg")
    (source / "broken.jpg").write_bytes(b"not a jpeg")
    result = run("stylize", source, "--style", style_path, "-o", tmp_path / "out", "--weights", adain_weights,
                 "--style-size", "64")
    assert result.returncode == 1  # one file failed, the others were written
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["a__hokusai_big_wave.png", "b__hokusai_big_wave.png"]
    assert "broken.jpg" in result.stderr


def bad_inputs(tmp_path, small_photo, style_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(small_photo.read_bytes()[:1500])
    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    return {
        "missing content": (tmp_path / "missing.jpg", style_path),
        "corrupt content": (corrupt, style_path),
        "text as content": (text, style_path),
        "directory as style": (small_photo, tmp_path),
        "corrupt style": (small_photo, corrupt),
    }


def test_bad_inputs_exit_2_with_one_line_and_no_output(tmp_path, small_photo, style_path, adain_weights):
    for case, (content, style) in bad_inputs(tmp_path, small_photo, style_path).items():
        out = tmp_path / "out.png"
        result = run("stylize", content, "--style", style, "-o", out, "--weights", adain_weights)
        assert result.returncode == 2, case
        assert len(result.stderr.strip().splitlines()) == 1, (case, result.stderr)
        assert "Traceback" not in result.stderr
        assert not out.exists(), case


def test_bad_arguments_and_weights(tmp_path, small_photo, style_path, adain_weights):
    out = tmp_path / "out.png"
    checks = [
        ("stylize", small_photo, "--style", style_path, "-o", out, "--weights", adain_weights, "--alpha", "2"),
        ("stylize", small_photo, "--style", style_path, "-o", tmp_path / "out.xyz", "--weights", adain_weights),
        ("stylize", small_photo, "--style", style_path, "-o", out, "--weights", small_photo),
        ("stylize", small_photo, "--style", style_path, "-o", out, "--weights", adain_weights, "--model", "adaconv"),
        ("stylize", small_photo, "-o", out),
    ]
    for args in checks:
        result = run(*args)
        assert result.returncode == 2, args
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert not out.exists()
