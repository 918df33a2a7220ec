"""Measuring speed honestly: pausing training runs, the CPU's peak FLOP rate, FLOP counts, timing, peak memory.

Used by ``adaconv benchmark`` and the scripts in benchmarks/.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import statistics
import subprocess
import threading
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

TRAINING_PATTERN = "adaconv train|adaconv.cli train|-m adaconv train"


@contextlib.contextmanager
def training_paused():
    """SIGSTOP every running `adaconv train` while measuring, SIGCONT after; says what it paused."""
    found = subprocess.run(["pgrep", "-f", TRAINING_PATTERN], capture_output=True, text=True).stdout.split()
    pids = [int(p) for p in found if int(p) != os.getpid()]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    if pids:
        print(f"(paused training processes {pids} while measuring)")
        time.sleep(1.0)
    try:
        yield pids
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def cpu_peak_gflops() -> tuple[float, str]:
    """cores x clock x FP32 FLOPs per cycle (2 FMA pipes x vector width x 2), from /proc/cpuinfo."""
    info = open("/proc/cpuinfo").read()
    flags = set(re.search(r"^flags\s*:(.*)$", info, re.M).group(1).split())
    mhz = float(re.search(r"^cpu MHz\s*:\s*([\d.]+)", info, re.M).group(1))
    cores = torch.get_num_threads()
    amd = "AuthenticAMD" in info or "AMD" in info
    if "avx512f" in flags and not amd:
        lanes, what = 16, "AVX-512"
    elif "avx2" in flags or "avx512f" in flags:
        lanes, what = 8, "AVX2/AVX-512 on 256-bit datapaths" if amd else "AVX2"
    else:
        lanes, what = 4, "SSE"
    per_cycle = 2 * lanes * 2 if "fma" in flags else lanes * 2
    peak = cores * mhz / 1000 * per_cycle
    return peak, f"{cores} cores x {mhz / 1000:.2f} GHz x {per_cycle} FP32 FLOP/cycle ({what}, FMA)"


def measured_peak_gflops(repeats: int = 5) -> float:
    """The best FP32 rate this machine reaches: the faster of a large matrix product and a large
    channels_last 3x3 convolution (the CPU boosts above its nominal clock, so the nominal peak undercounts)."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    seconds, _ = median_seconds(lambda: torch.mm(a, b), repeats, warmup=2)
    matmul = 2 * 2048 ** 3 / seconds / 1e9
    x = torch.randn(8, 256, 64, 64).contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(256, 256, 3, padding=1).to(memory_format=torch.channels_last).requires_grad_(False)
    with torch.inference_mode():
        seconds, _ = median_seconds(lambda: conv(x), repeats, warmup=2)
    convolution = 2 * 8 * 64 * 64 * 256 * 256 * 9 / seconds / 1e9
    return max(matmul, convolution)


def count_flops(function) -> int:
    with FlopCounterMode(display=False) as counter:
        function()
    return counter.get_total_flops()


def median_seconds(function, repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


def cpu_name() -> str:
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", open("/proc/cpuinfo").read(), re.M)
    except OSError:
        return "unknown"
    return match.group(1).strip() if match else "unknown"


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Samples this process's resident memory every few milliseconds while active; ``peak`` in bytes.

    ru_maxrss would be the process's lifetime peak, so it could not tell one image size from the next.
    """

    def __init__(self, interval: float = 0.005):
        self.interval, self.peak = interval, 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self.peak = _rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())
