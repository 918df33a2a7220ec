"""The benchmarks' shared helpers live in the package (adaconv.benchmarking); re-exported for the scripts here."""

from adaconv.benchmarking import (  # noqa: F401
    count_flops,
    cpu_peak_gflops,
    measured_peak_gflops,
    median_seconds,
    training_paused,
)
