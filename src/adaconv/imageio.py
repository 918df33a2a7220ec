"""Reading and writing images robustly: every failure becomes one line naming the file and the problem.

Files are recognised by their content, never by their name. They are read with EXIF orientation applied and their
embedded ICC profile converted to sRGB (the colour space the networks were trained in), then turned into RGB floats
in [0, 1] (greyscale, palette, CMYK, RGBA and 16-bit files included). ``read_content`` also keeps what a stylised
picture should carry over from its photo: the alpha channel (re-attached to PNG/WebP/TIFF output), the EXIF block
(orientation reset to 1, since the pixels are upright now) and, when the photo had a profile, the sRGB profile its
pixels were converted to. Images are written atomically (a temporary file in the same folder, then a rename) in the
format of their extension, so a failed or interrupted write never leaves a partial file.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from .errors import ImageError

WRITABLE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP",
                    ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}
IMAGE_SUFFIXES = frozenset(WRITABLE_FORMATS) | {".gif", ".ppm", ".pgm"}
ALPHA_FORMATS = frozenset({"PNG", "WEBP", "TIFF"})
METADATA_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "TIFF"})  # formats that store EXIF and ICC profiles
EXIF_ORIENTATION = 0x0112
JPEG_EXIF_LIMIT = 65_000  # one APP1 segment; Pillow refuses longer EXIF blocks in JPEG

ImageLike = "str | os.PathLike | Image.Image | np.ndarray | torch.Tensor"

_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
SRGB_PROFILE = _SRGB.tobytes()


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _read_bytes(path: Path) -> bytes:
    """The whole file (or standard input for ``-``), with missing, empty and unreadable files named."""
    if str(path) == "-":
        data = sys.stdin.buffer.read()
        if not data:
            raise ImageError("-: standard input is empty")
        return data
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, not an image")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ImageError(f"{path}: cannot read ({error.strerror or _one_line(error)})") from None
    if not data:
        raise ImageError(f"{path}: empty file")
    return data


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode an image file (``-``: standard input), upright and in sRGB.

    The format is sniffed from the bytes, so a PNG named ``.jpg`` reads fine and a text file named ``.jpg`` is
    "not an image". Pillow's decompression-bomb guard stays on unless :func:`allow_huge_images` lifted it.
    """
    path = Path(path)
    data = _read_bytes(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.load()
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (or a format Pillow cannot read)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{path}: image is too large to read safely (over {Image.MAX_IMAGE_PIXELS:,} pixels; "
                         "--allow-huge reads it anyway)") from None
    except Exception as error:  # Pillow's decoders raise many types (OSError, SyntaxError, struct.error...)
        raise ImageError(f"{path}: damaged image ({_one_line(error)})") from None
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block should not make a readable picture unreadable
        pass
    return to_srgb(image)


def allow_huge_images() -> None:
    """Lift Pillow's decompression-bomb guard for this process (the --allow-huge flag): trusted files only."""
    Image.MAX_IMAGE_PIXELS = None


def to_srgb(image: Image.Image) -> Image.Image:
    """Convert an image with an embedded ICC profile to sRGB, alpha kept.

    The result's ``info["icc_profile"]`` is then the sRGB profile, so whoever writes it out can embed the profile
    its pixels are really in. An unusable profile (damaged, or for another colour space than the pixels) is dropped
    and the numbers are read as they are, which is what a viewer without colour management shows.
    """
    icc = image.info.get("icc_profile")
    if not icc:
        return image
    info = {key: value for key, value in image.info.items() if key != "icc_profile"}
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA" if image.mode == "PA" or "transparency" in image.info else "RGB")
    if image.mode not in ("RGB", "RGBA", "CMYK", "L", "LA"):
        image.info = info
        return image
    alpha = image.getchannel("A") if image.mode in ("RGBA", "LA") else None
    base = {"RGBA": "RGB", "LA": "L"}.get(image.mode, image.mode)
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(image.convert(base), source, _SRGB, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        image.info = info
        return image
    if alpha is not None:
        converted.putalpha(alpha)
    converted.info = {**info, "icc_profile": SRGB_PROFILE}
    return converted


@dataclass
class ContentMetadata:
    """What a stylised output carries over from its content image (see :func:`read_content`)."""

    alpha: Image.Image | None = None  # the photo's alpha channel, at the photo's (upright) size
    exif: bytes | None = None         # the photo's EXIF block with orientation 1
    icc_profile: bytes | None = None  # sRGB, when the photo had a profile (its pixels were converted to sRGB)


def read_content(path: str | os.PathLike) -> tuple[torch.Tensor, ContentMetadata]:
    """A content image as an RGB tensor [3, H, W] in [0, 1], plus what its output should carry over."""
    image = open_image(path)
    alpha = None
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        alpha = image.convert("RGBA").getchannel("A")
    return pil_to_tensor(image, name=path), ContentMetadata(alpha, _upright_exif(image),
                                                            image.info.get("icc_profile"))


def _upright_exif(image: Image.Image) -> bytes | None:
    """The image's EXIF block (if it had one) with orientation 1: its pixels were already turned upright."""
    if "exif" not in image.info:
        return None
    try:
        exif = image.getexif()
        exif[EXIF_ORIENTATION] = 1
        return exif.tobytes()
    except Exception:  # an EXIF block Pillow cannot re-encode is left out rather than failing the picture
        return None


def pil_to_tensor(image: Image.Image, *, name: str | os.PathLike | None = None) -> torch.Tensor:
    """PIL image of any mode -> float32 tensor [3, H, W], RGB in [0, 1] (16-bit greyscale keeps its depth)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(image, dtype=np.float32)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        array = np.clip(array / peak, 0.0, 1.0)
        array = np.repeat(array[..., None], 3, axis=2)
    elif image.mode == "F":
        array = np.repeat(np.clip(np.asarray(image, dtype=np.float32), 0, 1)[..., None], 3, axis=2)
    else:
        if image.mode != "RGB":
            try:
                image = image.convert("RGB")
            except ValueError:
                prefix = f"{name}: " if name is not None else ""
                raise ImageError(f"{prefix}cannot read a {image.mode} image as RGB") from None
        array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).contiguous()


def to_tensor(image) -> torch.Tensor:
    """Path, PIL image, HxWx3 uint8/float array or [3, H, W] tensor -> float tensor [3, H, W] in [0, 1]."""
    if isinstance(image, (str, os.PathLike)):
        return pil_to_tensor(open_image(image), name=image)
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


def save_image(image: Image.Image | torch.Tensor, path: str | os.PathLike, *, quality: int = 95,
               metadata: ContentMetadata | None = None) -> None:
    """Write atomically in the format of the extension; ``-`` writes PNG to standard output.

    ``metadata`` (from :func:`read_content`): the alpha channel is re-attached (resized to the output) where the
    format keeps one (PNG, WebP, TIFF); EXIF and the ICC profile are embedded where the format stores them.
    """
    if isinstance(image, torch.Tensor):
        image = tensor_to_pil(image)
    image_format = check_output_path(path)
    options = {"quality": quality} if image_format in ("JPEG", "WEBP") else {}
    if metadata is not None:
        if metadata.alpha is not None and image_format in ALPHA_FORMATS:
            image = image.convert("RGB")
            image.putalpha(metadata.alpha.resize(image.size, Image.Resampling.LANCZOS))
        if image_format in METADATA_FORMATS:
            if metadata.exif and not (image_format == "JPEG" and len(metadata.exif) > JPEG_EXIF_LIMIT):
                options["exif"] = metadata.exif
            if metadata.icc_profile:
                options["icc_profile"] = metadata.icc_profile
    if str(path) == "-":
        buffer = io.BytesIO()
        image.save(buffer, format=image_format, **options)
        sys.stdout.buffer.write(buffer.getvalue())
        sys.stdout.buffer.flush()
        return
    try:
        write_atomically(Path(path), lambda handle: image.save(handle, format=image_format, **options))
    except (OSError, ValueError) as error:  # disk full, read-only folder, a mode the format cannot store
        raise ImageError(f"{path}: cannot write ({getattr(error, 'strerror', None) or _one_line(error)})") from None


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
    """Image files directly in a folder or below it, sorted (for datasets and batch stylisation).

    Files are picked by their extension (a folder may hold notes, caches and the like); hidden files and folders
    (``.name``: editor and OS droppings, our own temporary files and manifests) are left out.
    """
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))
