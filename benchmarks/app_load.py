"""Load test of the web app: N concurrent requests to its HTTP API, latency percentiles, errors, server memory.

    python benchmarks/app_load.py [--requests 50] [--size 256] [--model adain] [--url http://127.0.0.1:7860/]

Without --url it starts `adaconv app` on a free loopback port (its queue sized to hold every request), sends one
untimed warm-up request, then all N at once through `gradio_client` (each with a 300 s timeout), each a
size x size photo and one of the shipped paintings, and samples the server's resident memory (RSS, from /proc)
every 50 ms. Latency is from submission to result, so it includes the wait in the queue. Running `adaconv train`
processes are paused (SIGSTOP) while measuring and resumed afterwards, whatever happens.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

from gradio_client import Client, handle_file
from PIL import Image

from adaconv.benchmarking import training_paused

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "adaconv" / "assets" / "examples"


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its children (Linux /proc), 0 once it is gone."""
    total = 0
    for task in [pid] + children(pid):
        try:
            for line in Path(f"/proc/{task}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def children(pid: int) -> list[int]:
    try:
        found = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return found + [grandchild for child in found for grandchild in children(child)]


class MemorySampler:
    """The peak RSS of a process, sampled in a background thread."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def start_app(model: str, queue: int, log) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "adaconv", "app", "--host", "127.0.0.1", "--port", str(port),
                               "--model", model, "--max-queue", str(queue)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"adaconv app exited with status {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return server, url
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit("adaconv app did not start within 300 s")


def make_images(folder: Path, size: int) -> tuple[list[Path], list[Path]]:
    """size x size crops of the shipped photos, and the shipped paintings at size x size."""
    contents, styles = [], []
    for kind, out in (("content", contents), ("style", styles)):
        for path in sorted((EXAMPLES / kind).glob("*.jpg")):
            image = Image.open(path).convert("RGB")
            side = min(image.size)
            image = image.crop((0, 0, side, side)).resize((size, size), Image.BICUBIC)
            out.append(folder / f"{kind}_{path.stem}.png")
            image.save(out[-1])
    return contents, styles


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100])."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an app already running (default: start one on 127.0.0.1)")
    parser.add_argument("--pid", type=int, help="with --url: the server's process id, to sample its memory")
    parser.add_argument("--model", default="adain", choices=("adain", "adaconv"))
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--size", type=int, default=256, help="side of the square content images")
    parser.add_argument("--timeout", type=float, default=300.0, help="client timeout per request, seconds")
    parser.add_argument("--no-pause", action="store_true", help="do not pause running training processes")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()
    if args.url and not args.url.startswith(("http://127.0.0.1", "http://localhost")):
        raise SystemExit("--url must be on loopback (127.0.0.1 or localhost)")

    with tempfile.TemporaryDirectory(prefix="app_load_") as folder:
        contents, styles = make_images(Path(folder), args.size)
        log = open(Path(folder) / "server.log", "w")
        server = None
        pause = nullcontext() if args.no_pause else training_paused()
        try:
            if args.url:
                url, pid = args.url, args.pid
            else:  # started before training is paused: only the measurement needs the cores to itself
                server, url = start_app(args.model, max(64, args.requests), log)
                pid = server.pid
            client = Client(url, verbose=False, max_workers=args.requests + 4, download_files=folder,
                            analytics_enabled=False)

            def one(index: int) -> tuple[float, str | None]:
                started = time.perf_counter()
                try:
                    job = client.submit(handle_file(str(contents[index % len(contents)])),
                                        handle_file(str(styles[index % len(styles)])), 1.0, "none", None,
                                        0.5, "off", api_name="/stylize")
                    path, _ = job.result(timeout=args.timeout)
                    size = Image.open(path).size
                    error = None if size == (args.size, args.size) else f"result is {size[0]}x{size[1]}"
                    return time.perf_counter() - started, error
                except Exception as error:  # every failure is counted; none stops the run
                    return time.perf_counter() - started, f"{type(error).__name__}: {error}"

            with pause:
                warm, warm_error = one(0)
                if warm_error:
                    raise SystemExit(f"warm-up request failed: {warm_error}")
                idle = rss_bytes(pid) if pid else 0
                sampler = MemorySampler(pid) if pid else nullcontext()
                with sampler, ThreadPoolExecutor(args.requests) as pool:
                    started = time.perf_counter()
                    outcomes = list(pool.map(one, range(args.requests)))
                    wall = time.perf_counter() - started
        finally:
            if server is not None:
                server.terminate()
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    server.kill()
            log.close()

    latencies = [seconds for seconds, error in outcomes if error is None]
    errors = [error for _, error in outcomes if error is not None]
    results = {
        "requests": args.requests, "size": args.size, "model": args.model if not args.url else None,
        "cpu_count": os.cpu_count(), "warmup_s": round(warm, 3), "wall_s": round(wall, 2),
        "throughput_per_s": round(len(latencies) / wall, 3),
        "latency_s": {name: round(percentile(latencies, q), 2) for name, q in
                      (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))} if latencies else None,
        "mean_service_s": round(wall / max(1, len(latencies)), 3),
        "errors": len(errors), "error_messages": sorted(set(errors))[:5],
        "server_rss_idle_mb": round(idle / 2**20) if pid else None,
        "server_rss_peak_mb": round(sampler.peak / 2**20) if pid else None,
    }
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
