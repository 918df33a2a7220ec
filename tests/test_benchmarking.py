"""`adaconv benchmark` and its helpers: consistent numbers, a FLOP count that matches torch's, real pausing."""

import json
import mmap
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from adaconv.benchmark_command import STYLE_SIDE, load_stylizer
from adaconv.benchmarking import (
    PEAK_CALL_SECONDS,
    PeakRSS,
    count_flops,
    cpu_peak_gflops,
    find_training_processes,
    grow_within_budget,
    training_paused,
)
from adaconv.cli import main
from adaconv.models import StyleCode
from adaconv.preprocessing import prepare_style


@pytest.fixture(scope="module")
def report(tmp_path_factory, adain_weights):
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    code = main(["benchmark", "--model", "adain", "--weights", str(adain_weights), "--sizes", "48,32",
                 "--repeats", "2", "--warmup", "0", "--batch", "2", "--json", str(path), "--no-pause", "--quiet"])
    assert code == 0
    return json.loads(path.read_text())


def test_report_is_consistent(report):
    assert report["schema"] == "adaconv-benchmark" and report["precision"] == "fp32"
    machine = report["machine"]
    assert machine["cores"] >= 1 and machine["threads"] >= 1 and machine["torch"] == torch.__version__
    assert report["paused_training_pids"] == []  # --no-pause
    assert [r["size"] for r in report["results"]] == [32, 48]  # ascending
    peaks = report["peaks_gflops"]
    assert peaks["nominal"] > 0 and peaks["measured"] > 0 and "FLOP/cycle" in peaks["nominal_formula"]
    for row in report["results"]:
        assert row["batch"] == 2 and len(row["latency_runs_s"]) == 2
        assert row["latency_s"] > 0 and row["style_encoding_s"] > 0 and row["peak_memory_mb"] > 50
        assert min(row["latency_runs_s"]) <= row["latency_s"] <= max(row["latency_runs_s"])
        assert row["throughput_img_s"] == pytest.approx(2 / row["latency_s"], rel=1e-3)
        achieved = row["flop"] / row["latency_s"] / 1e9
        assert row["gflops_per_s"] == pytest.approx(achieved, rel=1e-3)
        assert row["share_of_measured_peak"] == pytest.approx(achieved / peaks["measured"], rel=1e-2)
        assert row["share_of_nominal_peak"] == pytest.approx(achieved / peaks["nominal"], rel=1e-2)
        assert row["weights"].startswith("file")
    assert report["results"][1]["flop"] > 2 * report["results"][0]["flop"]  # 48² is 2.25× the pixels of 32²


def test_flop_count_matches_an_independent_count(report, adain_weights):
    stylizer, _ = load_stylizer("adain", str(adain_weights), torch.device("cpu"))
    model = stylizer.model
    style = prepare_style(torch.rand(3, STYLE_SIDE, STYLE_SIDE), "adain")[None]
    with torch.inference_mode():
        one = model.encode_style(style)
        code = StyleCode(one.mean.expand(2, -1, -1, -1), one.std.expand(2, -1, -1, -1))
        content = torch.rand(2, 3, 32, 32)
        with FlopCounterMode(display=False) as counter:
            model.decode(model.encoder.encode(content), code)
    assert report["results"][0]["flop"] == counter.get_total_flops()


def test_bf16_run_reports_against_bf16_peaks(tmp_path, adain_weights):
    path = tmp_path / "bf16.json"
    assert main(["benchmark", "--model", "adain", "--weights", str(adain_weights), "--sizes", "32", "--repeats", "1",
                 "--warmup", "0", "--precision", "bf16", "--json", str(path), "--no-pause", "--quiet"]) == 0
    report = json.loads(path.read_text())
    assert report["precision"] == "bf16" and report["results"][0]["backend"] == "torch bf16"
    assert "BF16" in report["peaks_gflops"]["measured_how"] and report["results"][0]["flop"] > 0


def test_peak_problems_grow_only_while_the_next_call_fits_the_budget():
    """A slow unit (BF16 emulated: ~1 GFLOP/s here) stops at a smaller problem instead of spending minutes at the
    fast unit's size; a fast one reaches the largest."""
    def sleeper(seconds_per_unit):
        return lambda size: (lambda: time.sleep(seconds_per_unit * size))

    assert grow_within_budget(sleeper(0.3 * PEAK_CALL_SECONDS), (1, 2, 4), growth=2)[1] == 2  # 0.6, then 1.2: stop
    assert grow_within_budget(sleeper(0.0), (1, 2, 4), growth=2)[1] == 4


def test_nominal_peak_formula_matches_its_number():
    peak, formula = cpu_peak_gflops()
    cores, ghz, per_cycle = formula.split(" x ")[:3]
    assert peak == pytest.approx(int(cores.split()[0]) * float(ghz.split()[0]) * int(per_cycle.split()[0]), rel=5e-3)
    bf16_peak, bf16_formula = cpu_peak_gflops("bf16")
    assert bf16_formula.startswith(formula) or "AMX" in bf16_formula
    assert bf16_peak is None or bf16_peak in (peak, 2 * peak)


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.fixture
def fake_training():
    """A real process whose command line looks like a training run."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "adaconv", "train"])
    time.sleep(0.3)
    yield child
    child.kill()
    child.wait()


def test_training_runs_are_paused_and_resumed(fake_training):
    notes = []
    with training_paused(announce=notes.append) as paused:
        assert fake_training.pid in paused
        assert _state(fake_training.pid) == "T"
    time.sleep(0.2)
    assert _state(fake_training.pid) in {"S", "R"}
    assert str(fake_training.pid) in notes[0] and "resumed" in notes[-1]


def test_training_runs_are_resumed_after_an_error(fake_training):
    with pytest.raises(KeyboardInterrupt):
        with training_paused(announce=lambda text: None):
            assert _state(fake_training.pid) == "T"
            raise KeyboardInterrupt
    time.sleep(0.2)
    assert _state(fake_training.pid) in {"S", "R"}


def test_only_training_command_lines_are_paused(fake_training):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "adaconv", "stylize"])
    try:
        time.sleep(0.3)
        found = find_training_processes()
        assert fake_training.pid in found and other.pid not in found
    finally:
        other.kill()
        other.wait()


def test_a_run_stopped_by_someone_else_stays_stopped(fake_training):
    os.kill(fake_training.pid, signal.SIGSTOP)
    time.sleep(0.2)
    with training_paused(announce=lambda text: None) as paused:
        assert fake_training.pid not in paused
    time.sleep(0.2)
    assert _state(fake_training.pid) == "T"


def test_peak_rss_sees_a_short_lived_allocation():
    with PeakRSS() as idle:
        time.sleep(0.05)
    with PeakRSS() as busy:
        # 64 MiB of fresh pages, each touched: an anonymous mapping, so no allocator can hand back memory that
        # is already resident (glibc's malloc may, after an earlier large free raised its mmap threshold)
        block = mmap.mmap(-1, 64 * 2 ** 20)
        for offset in range(0, len(block), mmap.PAGESIZE):
            block[offset] = 1
        time.sleep(0.05)
        block.close()
    assert busy.peak - idle.peak > 48 * 2 ** 20


@pytest.mark.parametrize("argv, message", [
    (["--sizes", "abc"], "--sizes abc"),
    (["--sizes", "8"], "at least 16"),
    (["--precision", "fp16", "--device", "cpu"], "fp16 needs a CUDA"),
    (["--weights", "x.safetensors"], "--weights needs --model"),
])
def test_bad_arguments_are_one_line(argv, message, capsys):
    assert main(["benchmark", "--no-pause", *argv]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "\n" not in error


def test_bad_warmup_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["benchmark", "--warmup", "-1"])
    error = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "--warmup" in error and "\n" not in error


def test_onnxruntime_backend_reports_the_same_flops(tmp_path, adain_weights, report):
    path = tmp_path / "onnx.json"
    assert main(["benchmark", "--model", "adain", "--weights", str(adain_weights), "--sizes", "32", "--repeats", "1",
                 "--backend", "onnxruntime", "--json", str(path), "--no-pause", "--quiet"]) == 0
    row = json.loads(path.read_text())["results"][0]
    assert row["backend"] == "onnxruntime fp32" and row["latency_s"] > 0
    torch_row = report["results"][0]  # 32², batch 2 there: twice the FLOPs of one image
    assert row["flop"] * 2 == torch_row["flop"]


def test_wide_sizes_and_tiled_runs_are_measured_as_stylize_runs_them(tmp_path, adain_weights):
    """WxH sizes; with --tile on a 1104-pixel-wide content is two overlapping 1024-pixel tiles, so the tiled pass
    does more arithmetic than the one-piece pass of the same image (the overlap) and is reported as tiled."""
    rows = {}
    for tile in ("on", "off"):
        path = tmp_path / f"{tile}.json"
        assert main(["benchmark", "--model", "adain", "--weights", str(adain_weights), "--sizes", "1104x64",
                     "--repeats", "1", "--warmup", "0", "--tile", tile, "--json", str(path), "--no-pause",
                     "--quiet"]) == 0
        rows[tile] = json.loads(path.read_text())["results"][0]
    assert rows["on"]["tiled"] and not rows["off"]["tiled"]
    assert (rows["on"]["width"], rows["on"]["height"], rows["on"]["size"]) == (1104, 64, "1104x64")
    assert rows["off"]["flop"] < rows["on"]["flop"] < 2 * rows["off"]["flop"]


def test_flop_count_of_a_grouped_convolution_backward_counts_each_group_once():
    """Forward 2·out·(C_in/groups)·k²; each gradient (input, weight) as much again, whatever the grouping (torch's
    own formula counts a grouped backward as dense: 8x too much here)."""
    def convolution(features, weight, groups, backward):
        output = torch.nn.functional.conv2d(features, weight, groups=groups)
        if backward:
            output.sum().backward()

    for groups in (1, 8):
        features = torch.randn(2, 16, 12, 10, requires_grad=True)
        weight = torch.randn(16, 16 // groups, 3, 3, requires_grad=True)
        forward = 2 * (2 * 16 * 10 * 8) * (16 // groups) * 9
        assert count_flops(lambda: convolution(features, weight, groups, False)) == forward  # noqa: B023
        assert count_flops(lambda: convolution(features, weight, groups, True)) == 3 * forward  # noqa: B023
        frozen = features.detach()  # no gradient for the input: the weight's alone
        assert count_flops(lambda: convolution(frozen, weight, groups, True)) == 2 * forward  # noqa: B023
