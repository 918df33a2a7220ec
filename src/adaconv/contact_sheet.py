"""Contact sheets: a grid of images with a header row and column, for training samples and evaluations."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from .imageio import list_images, tensor_to_pil, to_tensor
from .preprocessing import center_crop, prepare_style, resize_short_side


def _fit(image, cell: int) -> Image.Image:
    image = tensor_to_pil(image) if not isinstance(image, Image.Image) else image.convert("RGB")
    image = image.copy()
    image.thumbnail((cell, cell), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (cell, cell), (255, 255, 255))
    canvas.paste(image, ((cell - image.width) // 2, (cell - image.height) // 2))
    return canvas


def contact_sheet(cells: Sequence[Sequence], *, column_headers: Sequence | None = None,
                  row_headers: Sequence | None = None, cell: int = 160, gap: int = 4,
                  title: str | None = None) -> Image.Image:
    """Lay out ``cells[row][column]`` (PIL images or [3, H, W] tensors) with optional header images.

    With both headers the top-left corner stays blank: the usual content-rows x style-columns layout.
    """
    rows, columns = len(cells), max(len(r) for r in cells)
    top = (1 if column_headers is not None else 0)
    left = (1 if row_headers is not None else 0)
    title_height = 20 if title else 0
    width = (columns + left) * (cell + gap) + gap
    height = (rows + top) * (cell + gap) + gap + title_height
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    if title:
        ImageDraw.Draw(sheet).text((gap, 4), title, fill=(0, 0, 0))

    def place(image, row: int, column: int) -> None:
        sheet.paste(_fit(image, cell), (gap + column * (cell + gap), title_height + gap + row * (cell + gap)))

    if column_headers is not None:
        for column, image in enumerate(column_headers):
            place(image, 0, column + left)
    if row_headers is not None:
        for row, image in enumerate(row_headers):
            place(image, row + top, 0)
    for row, images in enumerate(cells):
        for column, image in enumerate(images):
            place(image, row + top, column + left)
    return sheet


def example_paths() -> tuple[list[Path], list[Path]]:
    """The public-domain example photos and paintings shipped in the package, in name order."""
    root = Path(str(resources.files("adaconv") / "assets" / "examples"))
    return list_images(root / "content"), list_images(root / "style")


def example_images() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The shipped example photos and paintings, read."""
    contents, styles = example_paths()
    return [to_tensor(p) for p in contents], [to_tensor(p) for p in styles]


@torch.no_grad()
def examples_sheet(model, *, size: int = 192, title: str | None = None) -> Image.Image:
    """Every shipped example photo (rows, centre crops of ``size``) stylised with every example painting
    (columns) by ``model``: the picture of a model's state that training samples and docs/ use."""
    contents, styles = example_images()
    contents = [center_crop(resize_short_side(c, size), size, size) for c in contents]
    device = next(model.decoder.parameters()).device
    was_training = model.training
    model.eval()
    features = model.encoder.encode(torch.stack(contents).to(device, memory_format=torch.channels_last))
    columns = []
    for style in styles:
        prepared = prepare_style(style, model.kind, size)
        code = model.encode_style(prepared[None].to(device))
        code.mean, code.std = (t.expand(len(contents), -1, -1, -1) for t in (code.mean, code.std))
        if code.descriptor is not None:
            code.descriptor = code.descriptor.expand(len(contents), -1, -1, -1)
        columns.append(model.decode(features, code).float().clamp(0, 1).cpu())
    model.train(was_training)
    cells = [[columns[s][c] for s in range(len(styles))] for c in range(len(contents))]
    return contact_sheet(cells, column_headers=styles, row_headers=contents, cell=size, title=title)
