"""Measuring speed honestly: pausing training runs, the CPU's peak FLOP rate, FLOP counts, timing, peak memory.

Used by ``adaconv benchmark`` and the scripts in benchmarks/.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import statistics
import sys
import threading
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

# `adaconv train`, `python -m adaconv train`, `adaconv.cli train`, `torchrun ... -m adaconv train`
TRAINING_COMMAND = re.compile(r"(^|[\s/])adaconv(\.cli)?\s+train(\s|$)")


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:  # gone meanwhile, or not ours to read
        return ""


def _state(pid: int) -> str:
    """The one-letter state of /proc/<pid>/stat (R running, S sleeping, T stopped...)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"


def _ancestors(pid: int) -> set[int]:
    """This process and its parents: never paused, even if a parent's command line mentions a training run."""
    seen = set()
    while pid > 0 and pid not in seen:
        seen.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return seen


def find_training_processes() -> list[int]:
    """Pids of running ``adaconv train`` processes (read from /proc; empty where there is no /proc).

    Already stopped ones are left out: whoever stopped them (a person, another benchmark) resumes them.
    """
    if not Path("/proc").is_dir():
        return []
    own = _ancestors(os.getpid())
    pids = [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    return sorted(pid for pid in pids if pid not in own and TRAINING_COMMAND.search(_command_line(pid))
                  and _state(pid) not in ("T", "t", "Z"))


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _resume(pids: list[int]) -> None:
    """SIGCONT every pid, even if a Ctrl-C lands in the middle (it is re-raised once all are resumed)."""
    remaining, interrupted = list(pids), None
    while remaining:
        try:
            while remaining:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(remaining[0], signal.SIGCONT)
                remaining.pop(0)
        except KeyboardInterrupt as error:
            interrupted = error
    if interrupted is not None:
        raise interrupted


@contextlib.contextmanager
def training_paused(announce=lambda text: print(text, file=sys.stderr, flush=True)):
    """SIGSTOP every running ``adaconv train`` while measuring (they would share the cores), and SIGCONT them
    after, also on Ctrl-C or SIGTERM/SIGHUP; yields the paused pids."""
    paused: list[int] = []
    handlers = {}
    if threading.current_thread() is threading.main_thread():  # a killed benchmark must not leave them stopped
        handlers = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        for pid in find_training_processes():
            paused.append(pid)  # listed before it is stopped, so an interrupt in between still resumes it
            try:
                os.kill(pid, signal.SIGSTOP)
            except (ProcessLookupError, PermissionError):
                paused.pop()
        if paused:
            announce(f"paused training processes {', '.join(map(str, paused))} while measuring (SIGSTOP)")
            time.sleep(1.0)  # let their in-flight work drain off the cores
        yield paused
    finally:
        _resume(paused)
        if paused:
            announce(f"resumed training processes {', '.join(map(str, paused))} (SIGCONT)")
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _cpuinfo_field(info: str, name: str) -> str | None:
    match = re.search(rf"^{name}\s*:\s*(.*)$", info, re.M)
    return match.group(1).strip() if match else None


def cpu_name() -> str:
    return _cpuinfo_field(_cpuinfo(), "model name") or "unknown"


def physical_cores() -> int:
    """Cores this process may run on, counting SMT siblings once (they share one core's FMA units)."""
    info = _cpuinfo()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    siblings, cores = _cpuinfo_field(info, "siblings"), _cpuinfo_field(info, "cpu cores")
    per_core = int(siblings) // int(cores) if siblings and cores and int(cores) > 0 else 1
    return max(1, cpus // max(1, per_core))


def _clock_ghz(info: str) -> tuple[float, str]:
    """The nominal clock: cpufreq's maximum, else the "@ x GHz" in the model name, else /proc/cpuinfo's MHz."""
    with contextlib.suppress(OSError, ValueError):
        return int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()) / 1e6, "cpufreq max"
    match = re.search(r"@\s*([\d.]+)\s*GHz", _cpuinfo_field(info, "model name") or "")
    if match:
        return float(match.group(1)), "model name"
    mhz = _cpuinfo_field(info, "cpu MHz")
    return (float(mhz) / 1000, "cpu MHz") if mhz else (0.0, "unknown")


def cpu_peak_gflops(precision: str = "fp32") -> tuple[float | None, str]:
    """Nominal peak: cores x clock x FLOPs per cycle (2 FMA pipes x vector lanes x 2), from /proc/cpuinfo.

    Lanes come from the flags: AVX-512 is 16 FP32 lanes, except on AMD Zen 4 (family 25), which executes it on
    256-bit datapaths (8 lanes); AVX2 is 8; SSE 4. For bf16, AVX512-BF16 dot products do twice the FP32 work per
    instruction; with AMX the figure is not derivable from the flags (None). Returns the figure and its formula.
    """
    info = _cpuinfo()
    flags = set((_cpuinfo_field(info, "flags") or "").split())
    cores = min(torch.get_num_threads(), physical_cores())
    ghz, clock_source = _clock_ghz(info)
    amd_family = int(_cpuinfo_field(info, "cpu family") or 0) if "AuthenticAMD" in info else None
    if "avx512f" in flags and (amd_family is None or amd_family >= 26):
        lanes, what = 16, "AVX-512"
    elif "avx512f" in flags:
        lanes, what = 8, "AVX-512 on 256-bit datapaths"
    elif "avx2" in flags:
        lanes, what = 8, "AVX2"
    else:
        lanes, what = 4, "SSE"
    per_cycle = 2 * lanes * 2 if "fma" in flags else 2 * lanes
    formula = f"{cores} cores x {ghz:.2f} GHz ({clock_source}) x {per_cycle} FP32 FLOP/cycle ({what}"
    formula += ", FMA)" if "fma" in flags else ")"
    peak = cores * ghz * per_cycle
    if precision == "bf16":
        if "amx_bf16" in flags:
            return None, "AMX-BF16: no nominal figure from the flags"
        if "avx512_bf16" in flags:
            return 2 * peak, formula + " x 2 (AVX512-BF16 dot products)"
        return peak, formula + " (no native BF16: computed at the FP32 rate)"
    return peak, formula


def synchronise(device: torch.device) -> None:
    """Wait for queued GPU work, so wall time measures the work and not just its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# A measured peak's problems grow while the next size's call is expected to take at most this long: the full sizes
# on a fast unit (~0.2 s per call in FP32 here), while a slow one (BF16 emulated on a CPU without native BF16:
# ~1 GFLOP/s for matrix products here) is not kept busy for minutes by problems sized for the fast case.
PEAK_CALL_SECONDS = 1.0


def grow_within_budget(make_call, sizes, growth: float):
    """The call of the largest size in ``sizes`` (ascending, each costing ``growth`` times the one before) whose
    call is expected to take at most PEAK_CALL_SECONDS, timed warm on the size before it; with that size."""
    for index, size in enumerate(sizes):
        call = make_call(size)
        call()  # warm: oneDNN primitives, allocator
        started = time.perf_counter()
        call()
        if index + 1 == len(sizes) or (time.perf_counter() - started) * growth > PEAK_CALL_SECONDS:
            return call, size


def measured_peak(repeats: int = 5, dtype: torch.dtype = torch.float32,
                  device: torch.device | str = "cpu") -> tuple[float, str]:
    """The best rate this machine reaches in ``dtype`` (GFLOP/s) and how it was measured: the faster of a square
    matrix product (up to 2048²) and a channels_last 256-channel 3x3 convolution at 64² (up to batch 8), each as big
    as PEAK_CALL_SECONDS allows (CPUs boost above their nominal clock, so the nominal peak can undercount).
    """
    device = torch.device(device)

    def matmul_of(n):
        a, b = (torch.randn(n, n, dtype=dtype, device=device) for _ in range(2))

        def matmul():
            torch.mm(a, b)
            synchronise(device)
        return matmul

    matmul, n = grow_within_budget(matmul_of, (256, 512, 1024, 2048), growth=8)
    seconds, _ = median_seconds(matmul, repeats, warmup=0)
    matmul_rate = 2 * n ** 3 / seconds / 1e9
    conv = torch.nn.Conv2d(256, 256, 3, padding=1, dtype=dtype, device=device).to(memory_format=torch.channels_last)

    def convolution_of(batch):
        x = torch.randn(batch, 256, 64, 64, dtype=dtype, device=device).contiguous(memory_format=torch.channels_last)

        @torch.inference_mode()
        def convolution():
            conv(x)
            synchronise(device)
        return convolution

    convolution, batch = grow_within_budget(convolution_of, (1, 2, 4, 8), growth=2)
    seconds, _ = median_seconds(convolution, repeats, warmup=0)
    conv_rate = 2 * batch * 64 * 64 * 256 * 256 * 9 / seconds / 1e9
    how = f"best of a {n}² matmul and a channels_last 3×3 conv, batch {batch} of 256×64²"
    return max(matmul_rate, conv_rate), how


def measured_peak_gflops(repeats: int = 5, dtype: torch.dtype = torch.float32,
                         device: torch.device | str = "cpu") -> float:
    """The best rate this machine reaches in ``dtype`` (``measured_peak`` without its description)."""
    return measured_peak(repeats, dtype, device)[0]


def count_flops(function) -> int:
    """FLOPs of one call by torch's FLOP counter (convolutions and matrix products; element-wise ops are free),
    with grouped convolutions' backward counted per group (:func:`_convolution_backward_flops`)."""
    mapping = {torch.ops.aten.convolution_backward: _convolution_backward_flops}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        function()
    return counter.get_total_flops()


def _convolution_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                                _output_padding, _groups, output_mask, out_shape=None, **kwargs) -> int:
    """torch's formula (2.13) counts a grouped convolution's backward as if it were dense, ``groups`` times too
    many: AdaConv's per-sample kernels, folded into one convolution of B·groups groups, came out at 20x their
    cost. Each gradient (input, weight) costs what the forward does: 2 x (elements of the side that is not
    summed over) x (the weight's elements per output channel)."""
    elements = math.prod(x_shape if transposed else grad_out_shape)
    per_pass = 2 * elements * math.prod(w_shape[1:])
    return per_pass * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def median_seconds(function, repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
    """Median wall time of ``repeats`` calls after ``warmup`` untimed ones (oneDNN primitives, allocator)."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


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
