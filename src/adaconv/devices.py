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
