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


def test_entries_saved_to_disk_come_back_equal_under_new_keys(encoder, tmp_path):
    torch.manual_seed(0)
    images = torch.rand(3, 3, 64, 64)
    cache = StyleFeatureCache(budget_bytes=2 ** 30)
    cache.features([0, 1], images[:2], encoder)
    names = {0: "a.jpg", 1: "sub/b.jpg", 2: "c.jpg"}
    assert cache.save_new(tmp_path / "one.safetensors", names, "id") == 2
    cache.features([2], images[2:], encoder)
    assert cache.save_new(tmp_path / "two.safetensors", names, "id") == 1  # only what is new since the last save
    assert cache.save_new(tmp_path / "three.safetensors", names, "id") == 0
    assert not (tmp_path / "three.safetensors").exists()

    # another run lists the paintings in another order: entries follow the names, not the old keys
    again = StyleFeatureCache(budget_bytes=2 ** 30)
    assert again.load(tmp_path, {"c.jpg": 0, "sub/b.jpg": 5, "a.jpg": 9}, "id") == 3
    assert again.loaded == 3 and len(again) == 3 and again.used_bytes == cache.used_bytes
    for old, new in ((0, 9), (1, 5), (2, 0)):
        assert torch.equal(again.entries[new][0], cache.entries[old][0])
        assert all(torch.equal(a, b) for a, b in zip(again.entries[new][1], cache.entries[old][1]))
    relu4_1, _ = again.features([5], images[1:2], encoder)
    assert again.hits == 1 and again.misses == 0
    # loaded entries are on disk already: the next checkpoint writes nothing for them
    assert again.save_new(tmp_path / "four.safetensors", {0: "c.jpg", 5: "sub/b.jpg", 9: "a.jpg"}, "id") == 0


def test_loading_skips_other_identities_damaged_shards_and_stops_at_the_budget(encoder, tmp_path):
    images = torch.rand(2, 3, 64, 64)
    cache = StyleFeatureCache(budget_bytes=2 ** 30)
    cache.features([0, 1], images, encoder)
    names = {0: "a.jpg", 1: "b.jpg"}
    cache.save_new(tmp_path / "good.safetensors", names, "normalisation x")
    (tmp_path / "broken.safetensors").write_bytes(b"not a safetensors file")  # e.g. a disk that filled up
    keys = {"a.jpg": 0, "b.jpg": 1}
    assert StyleFeatureCache(2 ** 30).load(tmp_path, keys, "normalisation y") == 0
    assert StyleFeatureCache(2 ** 30).load(tmp_path, keys, "normalisation x") == 2
    one_entry = cache.used_bytes // 2
    small = StyleFeatureCache(budget_bytes=one_entry)
    assert small.load(tmp_path, keys, "normalisation x") == 1 and small.used_bytes == one_entry
