"""Paired differences and the equal-content interpolation, on reports whose answers can be worked out by hand."""

import pytest

from adaconv.comparison import at_equal_content, format_difference, paired_differences
from adaconv.evaluation import METRICS, summarize


def report(values: dict[str, list[float]], *, alpha=1.0, sha="a", probe=None) -> dict:
    """A report over pairs (c0, s0), (c1, s0), ... with the given per-pair values (other metrics 1.0)."""
    count = len(next(iter(values.values())))
    pairs = [{"content": f"c{i}.png", "style": "s0.png",
              **{m: values.get(m, [1.0] * count)[i] for m in METRICS}} for i in range(count)]
    result = {"source": {"model": "adaconv", "weights_sha256": sha, "weights_name": f"{sha}.safetensors",
                         "alpha": alpha},
              "pairs": pairs, "count": count, "summary": summarize(pairs), "label": f"{sha} α {alpha}"}
    if probe is not None:
        result["structure_probe"] = {"outputs": {"sharp_edge_density": probe, "orientation_match": 0.5}}
    return result


def test_paired_differences_mean_standard_error_share_worse():
    baseline = report({"style_distance": [0.2, 0.3, 0.4, 0.5], "ssim": [0.4, 0.4, 0.4, 0.4]}, probe=0.040)
    other = report({"style_distance": [0.3, 0.2, 0.3, 0.4], "ssim": [0.5, 0.3, 0.3, 0.4]}, sha="b", probe=0.044)
    d = paired_differences(baseline, other)
    assert d["pairs"] == 4
    # style differences +0.1, −0.1, −0.1, −0.1: mean −0.05, squared deviations 0.0225 + 3 × 0.0025 = 0.03, sample
    # variance 0.01, standard error 0.1 / √4 = 0.05
    assert d["style_distance"]["mean"] == pytest.approx(-0.05)
    assert d["style_distance"]["standard_error"] == pytest.approx(0.05)
    assert d["style_distance"]["relative"] == pytest.approx(-0.05 / 0.35)
    assert d["style_distance"]["worse"] == 0.25  # only the first pair's distance grew
    # SSIM is better when higher: +0.1, −0.1, −0.1, 0 is worse on two pairs
    assert d["ssim"]["mean"] == pytest.approx(-0.025) and d["ssim"]["worse"] == 0.5
    assert d["content_error"]["mean"] == 0 and d["content_error"]["standard_error"] == 0
    assert d["sharp_edge_density"]["mean"] == pytest.approx(0.004)
    assert d["sharp_edge_density"]["relative"] == pytest.approx(0.1)


def test_paired_differences_use_only_the_shared_pairs():
    baseline = report({"content_error": [1.0, 2.0, 3.0]})
    other = report({"content_error": [1.5, 2.5]}, sha="b")  # c0, c1 only
    d = paired_differences(baseline, other)
    assert d["pairs"] == 2 and d["content_error"]["mean"] == pytest.approx(0.5)
    assert d["content_error"]["relative"] == pytest.approx(0.5 / 1.5)  # the baseline's mean over c0, c1
    assert "sharp_edge_density" not in d  # no probe in either
    assert paired_differences(baseline, report({"content_error": [1.0]}, sha="b")) is None


def test_equal_content_interpolates_each_pair_between_the_bracketing_alphas():
    low = report({"content_error": [0.8, 1.0], "style_distance": [0.3, 0.5]}, alpha=0.5, sha="b", probe=0.04)
    high = report({"content_error": [1.0, 1.4], "style_distance": [0.2, 0.3]}, alpha=1.0, sha="b", probe=0.05)
    # means 0.9 and 1.2: content 1.05 lies halfway, so α 0.75 and every value halfway
    run = at_equal_content([low, high], 1.05)
    assert run["source"]["alpha"] == pytest.approx(0.75)
    assert run["source"]["interpolated_between"] == [0.5, 1.0]
    assert [p["style_distance"] for p in run["pairs"]] == pytest.approx([0.25, 0.4])
    assert run["summary"]["content_error"]["mean"] == pytest.approx(1.05)
    assert run["structure_probe"]["outputs"]["sharp_edge_density"] == pytest.approx(0.045)
    assert "α 0.750" in run["label"] and "interpolated" in run["label"]
    assert at_equal_content([low, high], 0.9)["source"]["alpha"] == pytest.approx(0.5)  # an end is inside
    assert at_equal_content([low, high], 1.3) is None  # never extrapolated
    assert at_equal_content([low], 0.9) is None


def test_difference_is_formatted_with_sign_error_and_share():
    cell = format_difference({"mean": -0.0043, "standard_error": 0.0011, "relative": -0.0213, "worse": 0.25})
    assert cell == "−2.13% (−0.0043 ± 0.0011), worse in 25%"
    assert format_difference({"mean": 0.0005, "relative": 0.01}) == "+1.00% (+0.0005)"


def test_a_zero_baseline_has_no_relative_change():
    d = paired_differences(report({"ssim": [0.0, 0.0]}, probe=0.0), report({"ssim": [0.1, 0.3]}, sha="b", probe=0.01))
    assert d["ssim"]["relative"] is None and d["sharp_edge_density"]["relative"] is None
    assert format_difference(d["ssim"]).startswith("– (+0.2000 ± 0.1000)")
