import torch

from adaconv.contact_sheet import contact_sheet, examples_sheet
from adaconv.models import build_model


def test_layout_size_and_placement():
    red = torch.zeros(3, 10, 20)
    red[0] = 1.0
    sheet = contact_sheet([[red, red, red], [red, red, red]], column_headers=[red] * 3, row_headers=[red] * 2,
                          cell=32, gap=4)
    assert sheet.size == (4 * 36 + 4, 3 * 36 + 4)
    assert sheet.getpixel((4, 4)) == (255, 255, 255)                  # the blank corner
    assert sheet.getpixel((4 + 36 + 16, 4 + 36 + 16)) == (255, 0, 0)  # centre of the first result cell


def test_examples_sheet_has_a_cell_per_example_pair():
    torch.manual_seed(0)
    sheet = examples_sheet(build_model("adain"), size=48, title="test")
    assert sheet.size == (5 * 52 + 4, 5 * 52 + 4 + 20)  # 4 photos x 4 paintings plus headers, and a title
