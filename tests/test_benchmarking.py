"""`adaconv benchmark` and its helpers: consistent numbers, a FLOP count that matches torch's, real pausing."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from adaconv.benchmark_command import STYLE_SIDE, load_model
from adaconv.benchmarking import PeakRSS, count_flops, cpu_peak_gflops, training_paused
from adaconv.cli import main
from adaconv.preprocessing import prepare_style


@pytest.fixture(scope="module")
def report(tmp_path_factory, adain_weights):
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    code = main(["benchmark", "--model", "adain", "--weights", str(adain_weights), "--sizes", "48,32",
                 "--repeats", "2", "--warmup", "0", "--batch", "2", "--json", str(path), "--no-pause", "--quiet"])
    assert code == 0
    return json.loads(path.read_text())


def test_report_is_consistent(report):
    assert report["schema"] == "adaconv-benchmark" and report["machine"]["threads"] >= 1
    assert [r["size"] for r in report["results"]] == [32, 48]  # ascending
    peaks = report["peaks_gflops"]
    assert peaks["nominal"] > 0 and peaks["measured"] > 0 and "FLOP/cycle" in peaks["nominal_formula"]
    for row in report["results"]:
        assert row["latency_s"] > 0 and row["style_encoding_s"] > 0 and row["peak_memory_mb"] > 50
        assert row["throughput_img_s"] == pytest.approx(2 / row["latency_s"], rel=1e-2)
        achieved = row["flop"] / row["latency_s"] / 1e9
        assert row["gflops_per_s"] == pytest.approx(achieved, rel=1e-2)
        assert row["share_of_measured_peak"] == pytest.approx(achieved / peaks["measured"], rel=1e-2)
        assert row["weights"].startswith("file")
    assert report["results"][1]["flop"] > 2 * report["results"][0]["flop"]  # 48² is 2.25× the pixels of 32²


def test_flop_count_matches_an_independent_count(report, adain_weights):
    model, _ = load_model("adain", str(adain_weights))
    style = prepare_style(torch.rand(3, STYLE_SIDE, STYLE_SIDE), "adain")[None]
    with torch.inference_mode():
        code = model.encode_style(style)
        code.mean, code.std = code.mean.expand(2, -1, -1, -1), code.std.expand(2, -1, -1, -1)
        content = torch.rand(2, 3, 32, 32)
        flops = count_flops(lambda: model.decode(model.encoder.encode(content), code))
    assert report["results"][0]["flop"] == flops


def test_nominal_peak_formula_matches_its_number():
    peak, formula = cpu_peak_gflops()
    cores, ghz, per_cycle = formula.split(" x ")[:3]
    assert peak == pytest.approx(int(cores.split()[0]) * float(ghz.split()[0]) * int(per_cycle.split()[0]), rel=5e-3)


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_training_runs_are_paused_and_resumed():
    # a real process whose command line looks like a training run
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "adaconv", "train"])
    try:
        time.sleep(0.5)
        with training_paused() as paused:
            assert child.pid in paused
            assert _state(child.pid) == "T"
        time.sleep(0.2)
        assert _state(child.pid) in {"S", "R"}
    finally:
        child.kill()
        child.wait()


def test_peak_rss_sees_a_short_lived_allocation():
    with PeakRSS() as idle:
        time.sleep(0.05)
    with PeakRSS() as busy:
        block = torch.ones(64 * 2 ** 20 // 4)  # 64 MiB, touched
        time.sleep(0.05)
        del block
    assert busy.peak - idle.peak > 48 * 2 ** 20


@pytest.mark.parametrize("argv, message", [
    (["--sizes", "abc"], "--sizes abc"),
    (["--sizes", "8"], "at least 16"),
    (["--precision", "fp16", "--device", "cpu"], "fp16 needs a CUDA"),
])
def test_bad_arguments_are_one_line(argv, message, capsys):
    assert main(["benchmark", "--no-pause", *argv]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "\n" not in error


def test_onnxruntime_backend_reports_the_same_flops(tmp_path, adain_weights, report):
    path = tmp_path / "onnx.json"
    assert main(["benchmark", "--model", "adain", "--weights", str(adain_weights), "--sizes", "32", "--repeats", "1",
                 "--backend", "onnxruntime", "--json", str(path), "--no-pause", "--quiet"]) == 0
    row = json.loads(path.read_text())["results"][0]
    assert row["backend"] == "onnxruntime fp32" and row["latency_s"] > 0
    torch_row = report["results"][0]  # 32², batch 2 there: twice the FLOPs of one image
    assert row["flop"] * 2 == torch_row["flop"]
