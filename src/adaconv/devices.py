"""Choosing where to run: ``auto`` takes CUDA, then Apple's MPS, then the CPU."""

from __future__ import annotations

import torch

from .errors import AdaconvError


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return backend is not None and backend.is_available()


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_available() else torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise AdaconvError("--device cuda: no CUDA device is available")
    if name == "mps" and not mps_available():
        raise AdaconvError("--device mps: no MPS device is available")
    if name not in ("cpu", "cuda", "mps"):
        raise AdaconvError(f"--device {name}: choose auto, cpu, cuda or mps")
    return torch.device(name)


def bf16_is_fast(device: torch.device) -> bool:
    """bf16 autocast pays on CUDA and on CPUs with native bf16 dot products (AVX512-BF16 / AMX).

    Measured here (AMD EPYC with AVX512-BF16): AdaIN steps 1.7x faster, training losses within 0.2% of fp32
    over the same 60 batches (docs/training.md). Without it (an AVX2-only EPYC, session 11) bf16 products are
    emulated and far slower than fp32, so fp32 it is.
    """
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool((check and check()) or (amx and amx()))
