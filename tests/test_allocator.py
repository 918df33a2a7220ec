"""Every `adaconv` command restarts itself under tcmalloc where it is installed, before PyTorch is imported (a
real training run and a real benchmark); the system's malloc on request; a bad choice is a one-line error."""

import ctypes.util
import json
import os
import subprocess
import sys

import pytest

from adaconv import allocator


def without_preloads(**environment) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", allocator.ENVIRONMENT)}
    return clean | environment


def need_tcmalloc():
    if ctypes.util.find_library(allocator.TCMALLOC) is None:
        pytest.fail("tcmalloc is not installed (apt-get install libtcmalloc-minimal4; .ci/run installs it)")


def train(data_dir, out, **environment):
    """A two-step AdaIN run through the real command; its completed process."""
    command = [sys.executable, "-m", "adaconv", "train", "--model", "adain",
               "--content", data_dir / "train" / "content", "--style", data_dir / "train" / "style", "--out", out,
               "--iterations", "2", "--batch-size", "1",
               "--crop-size", "64", "--max-images", "4", "--sample-every", "0", "--checkpoint-every", "2"]
    return subprocess.run(list(map(str, command)), capture_output=True, text=True, timeout=600,
                          env=without_preloads(**environment))


def test_train_command_runs_under_tcmalloc(data_dir, tmp_path):
    need_tcmalloc()
    result = train(data_dir, tmp_path / "run")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "memory allocator tcmalloc" in result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["iteration"] == 2


def test_system_malloc_on_request(data_dir, tmp_path):
    result = train(data_dir, tmp_path / "run", ADACONV_ALLOCATOR="system")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "memory allocator system malloc" in result.stderr and "tcmalloc" not in result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["iteration"] == 2


def test_unknown_allocator_is_a_one_line_error(data_dir, tmp_path):
    result = train(data_dir, tmp_path / "run", ADACONV_ALLOCATOR="mimalloc")
    assert result.returncode == 2
    assert result.stderr.strip() == "adaconv train: error: ADACONV_ALLOCATOR='mimalloc': choose tcmalloc or system"
    assert not (tmp_path / "run").exists()


def test_this_process_reports_its_allocator():
    # pytest itself runs under the system's malloc unless someone preloaded tcmalloc into it
    expected = "tcmalloc" if "tcmalloc" in os.environ.get("LD_PRELOAD", "") else "system"
    assert allocator.in_use() == expected


def test_benchmark_command_runs_and_reports_under_tcmalloc(adain_weights, tmp_path):
    need_tcmalloc()
    report = tmp_path / "bench.json"
    command = [sys.executable, "-m", "adaconv", "benchmark", "--model", "adain", "--weights", adain_weights,
               "--sizes", "32", "--repeats", "1", "--warmup", "0", "--no-pause", "--quiet", "--json", report]
    result = subprocess.run(list(map(str, command)), capture_output=True, text=True, timeout=600,
                            env=without_preloads())
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(report.read_text())["machine"]["allocator"] == "tcmalloc"
    assert "tcmalloc malloc" in result.stdout


def test_the_command_line_restarts_before_torch_is_imported():
    # the restart costs a fraction of a second only while the package and the parser leave torch unimported
    code = ("import sys; from adaconv.cli import build_parser; "
            "build_parser().parse_args(['stylize', 'a.jpg', '--style', 'b.jpg', '-o', 'c.png']); "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"
