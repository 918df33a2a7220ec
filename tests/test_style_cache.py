import torch

from adaconv.models import build_model
from adaconv.style_cache import StyleFeatureCache
from adaconv.training import TrainingObjective


def test_cache_returns_the_encoder_output_and_counts_hits(encoder):
    torch.manual_seed(0)
    images = torch.rand(3, 3, 64, 64)
    cache = StyleFeatureCache(budget_bytes=2 ** 30)
    relu4_1, stats = cache.features([7, 8, 9], images, encoder)
    with torch.no_grad():
        expected = encoder(images)
    assert torch.allclose(relu4_1, expected[-1], rtol=2e-3, atol=2e-3)
    assert cache.misses == 3 and len(cache) == 3
    again, stats_again = cache.features([9, 7, 8], images[[2, 0, 1]], encoder)
    assert cache.hits == 3 and cache.misses == 3
    assert torch.equal(again[0], relu4_1[2])
    for (mean, std), (mean2, std2) in zip(stats, stats_again):
        assert torch.equal(mean2[1], mean[0]) and torch.equal(std2[0], std[2])


def test_cache_respects_its_budget(encoder):
    images = torch.rand(2, 3, 64, 64)
    one_entry = 512 * 8 * 8 * 2 + (64 + 128 + 256 + 512) * 2 * 4
    cache = StyleFeatureCache(budget_bytes=one_entry)
    cache.features([0, 1], images, encoder)
    assert len(cache) == 1 and cache.used_bytes == one_entry


def test_objective_on_cached_features_equals_objective_on_images(encoder):
    torch.manual_seed(0)
    model = build_model("adaconv", parametrization="paper")
    objective = TrainingObjective(model, style_weight=10.0)
    content, style = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 256, 256)
    cache = StyleFeatureCache(budget_bytes=2 ** 30)
    with torch.no_grad():
        direct = objective(content, style)
        cached = objective(content, style_features=cache.features([0, 1], style, encoder))
    for a, b in zip(direct, cached):
        assert torch.allclose(a, b, rtol=2e-3), (a, b)
