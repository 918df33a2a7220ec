"""Colour preservation (Gatys et al., "Preserving colour in neural artistic style transfer", 2016): keep the
photo's colours and take only the painting's texture.

- ``histogram``: before transfer, the style image's RGB values are mapped by the affine transform that gives them
  the content's colour mean and covariance (x ↦ A(x − μ_s) + μ_c, A = Σ_c^½ Σ_s^−½). The network then paints
  with the photo's palette.
- ``luminance``: after transfer, the output's luminance is kept and its chroma replaced by the content's (YCbCr,
  BT.601), so the colours are exactly the photo's and the brush work is the painting's.
"""

from __future__ import annotations

import torch

from .errors import AdaconvError

MODES = ("histogram", "luminance")
MOMENT_PIXELS = 1 << 22  # colour moments of larger images from a regular subsample (4 Mpx estimate them to ~1e-4)
CHUNK_ROWS = 256         # luminance mode works in float64 on this many rows at a time (bounded memory at 8K)
_TO_YCBCR = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
                         dtype=torch.float64)


def check_mode(mode: str | None) -> None:
    if mode is not None and mode not in MODES:
        raise AdaconvError(f"preserve_color must be one of {', '.join(MODES)}, got {mode!r}")


def _mean_covariance(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    step = 1
    while image.shape[-2] * image.shape[-1] > MOMENT_PIXELS * step * step:
        step += 1
    pixels = image[:, ::step, ::step].reshape(3, -1).double()
    mean = pixels.mean(1, keepdim=True)
    centred = pixels - mean
    return mean, centred @ centred.T / centred.shape[1] + 1e-5 * torch.eye(3, dtype=torch.float64)


def _matrix_power(matrix: torch.Tensor, power: float) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return vectors @ torch.diag(values.clamp_min(1e-10) ** power) @ vectors.T


def match_color_statistics(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """``style`` [3, H, W] recoloured to the mean and covariance of ``content`` [3, H', W'] (clipped to [0, 1])."""
    style_mean, style_covariance = _mean_covariance(style)
    content_mean, content_covariance = _mean_covariance(content)
    transform = _matrix_power(content_covariance, 0.5) @ _matrix_power(style_covariance, -0.5)
    pixels = style.reshape(3, -1).double()
    matched = transform @ (pixels - style_mean) + content_mean
    return matched.reshape(style.shape).clamp(0, 1).to(style.dtype)


def rgb_to_ycbcr(image: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,j...->i...", _TO_YCBCR.to(image.dtype), image)


def ycbcr_to_rgb(image: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,j...->i...", torch.linalg.inv(_TO_YCBCR).to(image.dtype), image)


def keep_content_chroma(output: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The output's luminance with the content's chroma, [3, H, W] in float (the caller clips)."""
    combined = torch.empty_like(output)
    for top in range(0, output.shape[-2], CHUNK_ROWS):  # pixelwise, so chunks change nothing but the memory
        rows = slice(top, top + CHUNK_ROWS)
        output_ycbcr, content_ycbcr = rgb_to_ycbcr(output[:, rows].double()), rgb_to_ycbcr(content[:, rows].double())
        combined[:, rows] = ycbcr_to_rgb(torch.cat([output_ycbcr[:1], content_ycbcr[1:]])).to(output.dtype)
    return combined
