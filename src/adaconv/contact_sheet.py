"""Contact sheets: a grid of images with a header row and column, for training samples and evaluations."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw

from .imageio import tensor_to_pil


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
