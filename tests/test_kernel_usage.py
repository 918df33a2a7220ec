"""The kernel-usage diagnostic on real images: zero for an untrained residual AdaConv, and it tells a learned
style-independent filter from style-dependent kernels, at the layer where each was put."""

import pytest
import torch

from adaconv.imageio import list_images, to_tensor
from adaconv.kernel_usage import kernel_usage
from adaconv.models import build_model
from adaconv.preprocessing import center_crop, prepare_style, resize_short_side


@pytest.fixture(scope="module")
def images(data_dir):
    contents = [center_crop(resize_short_side(to_tensor(p), 64), 64, 64)
                for p in list_images(data_dir / "bench" / "content")[:2]]
    styles = [prepare_style(to_tensor(p), "adaconv") for p in list_images(data_dir / "bench" / "style")[:3]]
    return contents, styles


def test_untrained_residual_adaconv_uses_no_kernels(images):
    torch.manual_seed(0)
    usage = kernel_usage(build_model("adaconv").eval(), *images)
    assert usage["pairs"] == 6
    assert max(usage["departure"]) < 1e-5 and max(usage["style_dependence"]) < 1e-5


def test_a_fixed_filter_departs_without_depending_on_the_style(images):
    torch.manual_seed(0)
    model = build_model("adaconv").eval()
    with torch.no_grad():
        model.kernel_predictors[1].spatial.bias.normal_(0, 0.05)  # the same added kernel for every style
    usage = kernel_usage(model, *images)
    assert usage["departure"][1] > 0.01
    assert usage["style_dependence"][1] < 1e-5 * usage["departure"][1] + 1e-6
    assert usage["departure"][0] < 1e-5 and usage["departure"][2] < 1e-5 and usage["departure"][3] < 1e-5


def test_predicted_kernels_that_follow_the_descriptor_depend_on_the_style(images):
    torch.manual_seed(0)
    model = build_model("adaconv").eval()
    with torch.no_grad():
        model.kernel_predictors[2].spatial.weight.normal_(0, 0.05)
    usage = kernel_usage(model, *images)
    assert usage["style_dependence"][2] > 0.1 * usage["departure"][2] > 0
    assert max(usage["style_dependence"][:2]) < 1e-5 and usage["style_dependence"][3] < 1e-5


def test_only_residual_adaconv_has_a_base_to_measure_against(images):
    with pytest.raises(ValueError, match="residual AdaConv"):
        kernel_usage(build_model("adain"), *images)
    with pytest.raises(ValueError, match="residual AdaConv"):
        kernel_usage(build_model("adaconv", parametrization="paper"), *images)
