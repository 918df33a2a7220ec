"""The package's weights format: safetensors holding a model's trainable tensors and its provenance.

The metadata (all strings, as safetensors requires) says which model the file is for, its
hyper-parameters, how it was trained (iterations, images seen, crop size, λ, data, date) and which
encoder normalisation it was trained with. Loading refuses, with one line, a file that is missing,
damaged, not ours, or for another model.

Large matrices may be stored in 8 bits (format version 2): AdaConv's style-encoder fully connected layer holds
38 M of its 59 M parameters, and in fp16 the whole file would be 119 MB, over what package indexes accept for
one file. Each row of such a tensor is stored as int8 with one fp32 scale (symmetric, absmax / 127) and is
expanded back to floats when the file is read, so the model runs exactly as with any other file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from .encoder import VGGEncoder
from .errors import WeightsError
from .imageio import write_atomically
from .models import MODEL_KINDS, StyleTransferModel, build_model

FORMAT_NAME = "adaconv-weights"
FORMAT_VERSION = "1"          # every tensor stored as it is (fp32 / fp16 / bf16)
INT8_FORMAT_VERSION = "2"     # some tensors stored as per-row int8 + scale, listed in the metadata
READABLE_VERSIONS = (FORMAT_VERSION, INT8_FORMAT_VERSION)
SCALE_SUFFIX = ".int8_row_scale"
INT8_MIN_ELEMENTS = 8 * 1024 * 1024  # "auto" stores tensors at least this large in 8 bits: only AdaConv's FC layer


def int8_candidates(model: StyleTransferModel, policy: str = "auto") -> list[str]:
    """Names of the tensors ``policy`` stores in 8 bits: "auto" (the large matrices) or "off" (none)."""
    if policy == "off":
        return []
    if policy != "auto":
        raise WeightsError(f"--int8 {policy}: choose auto or off")
    return sorted(name for name, tensor in model.trainable_state_dict().items()
                  if tensor.is_floating_point() and tensor.dim() >= 2 and tensor.numel() >= INT8_MIN_ELEMENTS)


def quantize_rows(tensor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float [R, ...] -> (int8 of the same shape, fp32 scale [R]); each row by its own absmax / 127."""
    rows = tensor.detach().float().reshape(tensor.shape[0], -1)
    scale = rows.abs().amax(dim=1) / 127.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    quantized = torch.round(rows / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return quantized.reshape(tensor.shape), scale


def dequantize_rows(quantized: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`quantize_rows` (to fp32)."""
    rows = quantized.reshape(quantized.shape[0], -1).float() * scale.float()[:, None]
    return rows.reshape(quantized.shape)


def save_weights(model: StyleTransferModel, path: str | os.PathLike, *, dtype: torch.dtype | None = None,
                 provenance: dict | None = None, int8: Sequence[str] = ()) -> None:
    """Write ``model``'s trainable tensors (optionally cast, e.g. to fp16) and metadata, atomically.

    ``int8``: names of tensors to store as per-row int8 (see :func:`int8_candidates`)."""
    state = model.trainable_state_dict()
    unknown = sorted(set(int8) - set(state))
    if unknown:
        raise WeightsError(f"cannot store {unknown[0]} in 8 bits: the {model.kind} model has no such tensor")
    tensors = {}
    for name, tensor in state.items():
        tensor = tensor.detach().to("cpu")
        if name in int8:
            tensors[name], tensors[name + SCALE_SUFFIX] = quantize_rows(tensor)
            continue
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        tensors[name] = tensor.contiguous()
    metadata = {
        "format": FORMAT_NAME,
        "format_version": INT8_FORMAT_VERSION if int8 else FORMAT_VERSION,
        "model": model.kind,
        "hyperparameters": json.dumps(model.hyperparameters(), sort_keys=True),
        "encoder_normalization": model.encoder.normalisation_id,
        "provenance": json.dumps(provenance or {}, sort_keys=True),
    }
    if int8:
        metadata["int8_tensors"] = json.dumps(sorted(int8))
    data = safetensors_bytes(tensors, metadata=metadata)
    write_atomically(Path(path), lambda handle: handle.write(data))


def read_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a weights file, or a one-line :class:`WeightsError`."""
    path = Path(path)
    tensors, metadata = _read_checked(path, lambda file: {name: file.get_tensor(name) for name in file.keys()})
    return _expand_int8(path, tensors, metadata), metadata


def inspect_weights(path: str | os.PathLike) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """Tensor shapes and metadata of a weights file, checked as :func:`read_weights` checks them, without reading
    the tensors (`adaconv info` describes an 81 MB file in milliseconds)."""
    return _read_checked(Path(path), lambda file: {name: tuple(file.get_slice(name).get_shape())
                                                   for name in file.keys()})


def _read_checked(path: Path, read) -> tuple[dict, dict[str, str]]:
    """``read(open file)`` and the metadata, once the file is known to be an adaconv weights file we can read."""
    if not path.exists():
        raise WeightsError(f"{path}: no such weights file")
    if path.is_dir():
        raise WeightsError(f"{path}: is a directory, not a weights file")
    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
            if metadata.get("format") != FORMAT_NAME:
                raise WeightsError(f"{path}: not an adaconv weights file (no '{FORMAT_NAME}' metadata)")
            contents = read(file)
    except SafetensorError as error:
        raise WeightsError(f"{path}: damaged or not a safetensors file ({error})") from None
    except (OSError, ValueError, RuntimeError) as error:
        raise WeightsError(f"{path}: cannot read weights ({error})") from None
    if metadata.get("format_version") not in READABLE_VERSIONS:
        raise WeightsError(f"{path}: weights format version {metadata.get('format_version')!r} is not supported "
                           f"(this adaconv reads versions {', '.join(READABLE_VERSIONS)})")
    if metadata.get("model") not in MODEL_KINDS:
        raise WeightsError(f"{path}: unknown model {metadata.get('model')!r} in the weights file")
    return contents, metadata


def _expand_int8(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> dict[str, torch.Tensor]:
    """Replace every tensor stored in 8 bits by its fp32 values (and drop the scales)."""
    try:
        names = json.loads(metadata.get("int8_tensors", "[]"))
    except ValueError:
        raise WeightsError(f"{path}: bad int8_tensors list in the weights file") from None
    for name in names:
        quantized, scale = tensors.get(name), tensors.pop(name + SCALE_SUFFIX, None)
        if quantized is None or scale is None or quantized.dtype != torch.int8 \
                or scale.shape != (quantized.shape[0],):
            raise WeightsError(f"{path}: tensor {name} is listed as 8-bit but is not stored as int8 with row scales")
        tensors[name] = dequantize_rows(quantized, scale)
    return tensors


def model_from_weights(path: str | os.PathLike, *, expected_kind: str | None = None,
                       encoder: VGGEncoder | None = None) -> tuple[StyleTransferModel, dict]:
    """Build the model a weights file describes and load it; returns (model in fp32, eval mode; info)."""
    tensors, metadata = read_weights(path)
    kind = metadata["model"]
    if expected_kind is not None and kind != expected_kind:
        raise WeightsError(f"{path}: holds {kind} weights, but the {expected_kind} model was asked for")
    try:
        hyperparameters = json.loads(metadata.get("hyperparameters", "{}"))
        provenance = json.loads(metadata.get("provenance", "{}"))
        model = build_model(kind, encoder, **hyperparameters)
    except (ValueError, TypeError) as error:
        raise WeightsError(f"{path}: bad hyper-parameters in the weights file ({error})") from None
    if metadata.get("encoder_normalization") != model.encoder.normalisation_id:
        raise WeightsError(f"{path}: trained with encoder normalisation {metadata.get('encoder_normalization')}, "
                           f"but this adaconv has {model.encoder.normalisation_id}")
    load_trainable_tensors(model, tensors, source=path)
    model.eval()
    info = {"model": kind, "hyperparameters": hyperparameters, "provenance": provenance, "path": str(path)}
    return model, info


def load_trainable_tensors(model: StyleTransferModel, tensors: dict[str, torch.Tensor], *,
                           source: str | os.PathLike, prefixes: tuple[str, ...] | None = None) -> None:
    """Copy tensors into ``model`` (cast to its dtype), checking names and shapes.

    ``prefixes`` restricts the copy to some submodules (e.g. ``("decoder.",)`` to warm-start AdaConv from
    AdaIN); without it the file must match the model's trainable tensors exactly.
    """
    own = model.trainable_state_dict()
    wanted = {k for k in own if prefixes is None or k.startswith(prefixes)}
    offered = {k for k in tensors if prefixes is None or k.startswith(prefixes)}
    missing, unexpected = sorted(wanted - offered), sorted(offered - wanted)
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise WeightsError(f"{source}: does not fit the {model.kind} model ({detail})")
    for name in sorted(wanted):
        if tensors[name].shape != own[name].shape:
            raise WeightsError(f"{source}: tensor {name} has shape {tuple(tensors[name].shape)}, "
                               f"the model needs {tuple(own[name].shape)}")
    with torch.no_grad():
        for name in wanted:
            own[name].copy_(tensors[name].to(own[name].dtype))


def shipped_weights_path(kind: str) -> Path:
    """Where the package keeps its trained weights for ``kind``."""
    return Path(str(resources.files("adaconv") / "weights" / f"{kind}.safetensors"))
