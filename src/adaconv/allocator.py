"""The memory allocator the ``adaconv`` command runs under: tcmalloc where it is installed.

A stylisation pass allocates and frees hundreds of megabytes of activations, a training step about a gigabyte.
glibc's malloc serves blocks above its mmap threshold from fresh mappings, unmaps them on free and trims the heap's
free top, so every pass faults the same memory in again page by page (the kernel zeroing each page, the compute
threads queueing on the process's memory map): ~250,000 page faults and 1-2.6 s of system CPU time per AdaConv
training step (128², batch 8) on the project's 2-core machine. tcmalloc keeps the blocks: training steps
1.16-1.42x faster in three paired measurements (benchmarks/train_allocator.py), stylisation at 512-1024 px
1.26-1.42x (``adaconv benchmark``; docs/benchmarks.md).

tcmalloc has to be loaded before the process starts, so the ``adaconv`` command re-executes itself once with it
preloaded (Debian/Ubuntu: ``apt-get install libtcmalloc-minimal4``), before PyTorch is imported (the package
imports it lazily for this). ADACONV_ALLOCATOR=system keeps the C library's malloc.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from pathlib import Path

ENVIRONMENT = "ADACONV_ALLOCATOR"  # tcmalloc (default: use it if installed) or system (the C library's malloc)
CHOICES = ("tcmalloc", "system")
TCMALLOC = "tcmalloc_minimal"  # the library without tcmalloc's heap profiler, which the training has no use for


def requested() -> str:
    """The allocator asked for by the environment (one-line error on a value that is not a choice)."""
    choice = os.environ.get(ENVIRONMENT, "tcmalloc") or "tcmalloc"
    if choice not in CHOICES:
        from .errors import AdaconvError
        raise AdaconvError(f"{ENVIRONMENT}={choice!r}: choose {' or '.join(CHOICES)}")
    return choice


def in_use() -> str:
    """``tcmalloc`` if it is loaded into this process (Linux: read from its memory map), else ``system``."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "system"
    return "tcmalloc" if "libtcmalloc" in maps else "system"


def describe() -> str:
    """For the training log: the allocator in use, and how to get tcmalloc where it would help and is missing."""
    name = in_use()
    if name == "system" and sys.platform.startswith("linux") and requested() == "tcmalloc":
        return "system malloc (apt-get install libtcmalloc-minimal4 for ~1.2x faster CPU steps)"
    return "tcmalloc" if name == "tcmalloc" else "system malloc"


def use_tcmalloc_if_installed(argv: list[str]) -> str:
    """Re-execute this command (``python -m adaconv`` + ``argv``) with tcmalloc preloaded if it is installed and
    wanted and not yet loaded (never returns then); else return the allocator in use."""
    if in_use() == "tcmalloc":
        return "tcmalloc"
    library = ctypes.util.find_library(TCMALLOC) if sys.platform.startswith("linux") else None
    if requested() == "tcmalloc" and library and os.environ.get("_ADACONV_REEXECUTED") != "1":
        preload = ":".join(filter(None, [library, os.environ.get("LD_PRELOAD")]))
        environment = os.environ | {"LD_PRELOAD": preload, "_ADACONV_REEXECUTED": "1"}
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, "-m", "adaconv", *argv], environment)
    return in_use()
