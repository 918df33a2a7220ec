import torch

from adaconv.losses import IDENTITY_PIXEL_WEIGHT, content_loss, feature_statistics, identity_loss, style_loss


def test_losses_are_zero_for_identical_features():
    torch.manual_seed(0)
    features = [torch.rand(2, c, s, s) for c, s in ((4, 16), (8, 8))]
    assert style_loss(features, feature_statistics(features)).item() == 0.0
    assert content_loss(features[1], features[1].clone()).item() == 0.0


def test_style_loss_by_hand():
    output = [torch.zeros(1, 1, 2, 2)]
    style = [torch.tensor([0.0, 2.0, 0.0, 2.0]).view(1, 1, 2, 2)]  # mean 1, population variance 1
    sigma_style, sigma_output = (1 + 1e-5) ** 0.5, 1e-5 ** 0.5
    expected = (0.0 - 1.0) ** 2 + (sigma_output - sigma_style) ** 2
    assert abs(style_loss(output, feature_statistics(style)).item() - expected) < 1e-6


def test_content_loss_is_a_mean_not_a_sum():
    assert content_loss(torch.zeros(1, 2, 4, 4), torch.full((1, 2, 4, 4), 3.0)).item() == 9.0


def test_identity_loss_weighs_pixels_fifty_times_and_adds_every_taps_error():
    image, features = torch.zeros(1, 3, 4, 4), [torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 2, 2)]
    assert identity_loss(image, features, image.clone(), [f.clone() for f in features]).item() == 0.0
    shifted = [features[0] + 1.0, features[1] + 2.0]  # errors 1 and 4
    expected = IDENTITY_PIXEL_WEIGHT * 0.25 + 1.0 + 4.0
    assert identity_loss(image + 0.5, shifted, image, features).item() == expected
    assert identity_loss(image + 0.5, shifted, image, features, pixel_weight=0.0).item() == 5.0  # features only
    assert identity_loss(image + 0.5, shifted, image, features, pixel_weight=4.0).item() == 4.0 * 0.25 + 5.0
