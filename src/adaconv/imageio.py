"""Reading and writing images robustly: every failure becomes one line naming the file and the problem.

Images are read with EXIF orientation applied and converted to RGB floats in [0, 1]
(greyscale, palette, CMYK, RGBA and 16-bit files included); they are written atomically
(a temporary file in the same folder, then a rename) in the format of their extension.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

WRITABLE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP",
                    ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}
IMAGE_SUFFIXES = frozenset(WRITABLE_FORMATS) | {".gif", ".ppm", ".pgm"}

ImageLike = "str | os.PathLike | Image.Image | np.ndarray | torch.Tensor"


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode an image file, with EXIF orientation applied."""
    path = Path(path)
    if str(path) == "-":
        data = sys.stdin.buffer.read()
        source = io.BytesIO(data)
    else:
        if not path.exists():
            raise ImageError(f"{path}: no such file")
        if path.is_dir():
            raise ImageError(f"{path}: is a directory, not an image")
        if path.stat().st_size == 0:
            raise ImageError(f"{path}: empty file")
        source = path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(source)
            image.load()
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (or a format Pillow cannot read)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{path}: image is too large to read safely (over {Image.MAX_IMAGE_PIXELS:,} pixels)"
                         ) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{path}: damaged image ({error})") from None
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block should not make a readable picture unreadable
        return image


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL image of any mode -> float32 tensor [3, H, W], RGB in [0, 1]."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(image, dtype=np.float32)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        array = np.clip(array / peak, 0.0, 1.0)
        array = np.repeat(array[..., None], 3, axis=2)
    elif image.mode == "F":
        array = np.repeat(np.clip(np.asarray(image, dtype=np.float32), 0, 1)[..., None], 3, axis=2)
    else:
        if image.mode != "RGB":
            image = image.convert("RGB")
        array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).contiguous()


def to_tensor(image) -> torch.Tensor:
    """Path, PIL image, HxWx3 uint8/float array or [3, H, W] tensor -> float tensor [3, H, W] in [0, 1]."""
    if isinstance(image, (str, os.PathLike)):
        return pil_to_tensor(open_image(image))
    if isinstance(image, Image.Image):
        return pil_to_tensor(image)
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=2)
        if array.ndim != 3 or array.shape[2] not in (3, 4):
            raise ImageError(f"an array image must be HxW, HxWx3 or HxWx4, got shape {array.shape}")
        array = array[..., :3]
        if array.dtype == np.uint8:
            array = array.astype(np.float32) / 255.0
        elif array.dtype == np.uint16:
            array = array.astype(np.float32) / 65535.0
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1).clamp(0, 1)
    if isinstance(image, torch.Tensor):
        tensor = image.detach().float().cpu()
        if tensor.ndim == 4 and tensor.shape[0] == 1:
            tensor = tensor[0]
        if tensor.ndim != 3 or tensor.shape[0] != 3:
            raise ImageError(f"a tensor image must be [3, H, W], got shape {tuple(image.shape)}")
        return tensor.clamp(0, 1)
    raise ImageError(f"cannot read an image from a {type(image).__name__}")


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """Float tensor [3, H, W] (or [1, 3, H, W]) in [0, 1] -> 8-bit RGB PIL image (rounded, not truncated)."""
    if image.ndim == 4:
        image = image[0]
    array = (image.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8)
    return Image.fromarray(array.permute(1, 2, 0).cpu().numpy(), "RGB")


def check_output_path(path: str | os.PathLike) -> str:
    """Validate an output path before any work is done; returns the Pillow format name."""
    if str(path) == "-":
        return "PNG"
    path = Path(path)
    image_format = WRITABLE_FORMATS.get(path.suffix.lower())
    if image_format is None:
        raise ImageError(f"{path}: unknown output format '{path.suffix}' "
                         f"(use one of {', '.join(sorted(WRITABLE_FORMATS))})")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ImageError(f"{path}: folder {parent} does not exist")
    if path.is_dir():
        raise ImageError(f"{path}: is a directory")
    return image_format


def save_image(image: Image.Image | torch.Tensor, path: str | os.PathLike, *, quality: int = 95) -> None:
    """Write atomically in the format of the extension; ``-`` writes PNG to standard output."""
    if isinstance(image, torch.Tensor):
        image = tensor_to_pil(image)
    image_format = check_output_path(path)
    options = {"quality": quality} if image_format in ("JPEG", "WEBP") else {}
    if str(path) == "-":
        buffer = io.BytesIO()
        image.save(buffer, format=image_format, **options)
        sys.stdout.buffer.write(buffer.getvalue())
        sys.stdout.buffer.flush()
        return
    write_atomically(Path(path), lambda handle: image.save(handle, format=image_format, **options))


def write_atomically(path: Path, write) -> None:
    """Call ``write(file_handle)`` on a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; a written file gets the usual permissions
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in a folder or below it, sorted (for datasets and batch stylisation)."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
