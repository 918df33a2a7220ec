"""Paired comparison of scored runs: is one model better than another, by more than the benchmark's noise?

Two runs over the same content × style pairs are compared pair by pair: the mean of the per-pair differences,
its standard error (the pairs differ far more from each other than two models do on one pair, so pairing removes
most of the spread), the difference as a share of the baseline's mean, and the share of pairs on which the run
is worse. Two models are compared fairly only at equal content error, since ``--alpha`` trades content for
style: ``at_equal_content`` reads a model's runs at several alphas as a curve and interpolates it, pair by pair,
to the α whose mean content error is the baseline's (never extrapolated).
"""

from __future__ import annotations

import math
import statistics

from .evaluation import METRICS, summarize

HIGHER_IS_BETTER = frozenset({"ssim", "coarse_ssim"})
PROBE_METRIC = "sharp_edge_density"


def _pairs_by_key(report: dict) -> dict[tuple[str, str], dict]:
    return {(pair["content"], pair["style"]): pair for pair in report["pairs"]}


def paired_differences(baseline: dict, report: dict, metrics=METRICS) -> dict | None:
    """``report`` − ``baseline`` over the pairs both scored, per metric: ``mean``, ``standard_error``,
    ``relative`` (the mean difference over the baseline's mean on those pairs; None when that is 0) and ``worse``
    (the share of pairs where the report is worse); a metric one of them lacks is left out. None when fewer than two
    pairs are shared."""
    base, other = _pairs_by_key(baseline), _pairs_by_key(report)
    shared = [key for key in base if key in other]
    if len(shared) < 2:
        return None
    result: dict = {"pairs": len(shared)}
    for metric in metrics:
        if any(metric not in base[key] or metric not in other[key] for key in shared):
            continue  # a report scored before the metric was added
        result[metric] = mean_difference([base[key][metric] for key in shared],
                                         [other[key][metric] for key in shared])
        sign = -1 if metric in HIGHER_IS_BETTER else 1
        result[metric]["worse"] = sum(sign * d > 0 for d in result[metric]["differences"]) / len(shared)
        del result[metric]["differences"]
    probes = [_probe(baseline), _probe(report)]
    if None not in probes:
        relative = probes[1] / probes[0] - 1 if probes[0] else None
        result[PROBE_METRIC] = {"mean": probes[1] - probes[0], "relative": relative}
    return result


def mean_difference(base: list[float], other: list[float]) -> dict:
    """``other`` − ``base``, paired element by element: the ``differences``, their ``mean`` and its
    ``standard_error``, and ``relative`` (the mean over ``base``'s mean; None when that is 0)."""
    differences = [b - a for a, b in zip(base, other)]
    mean, base_mean = statistics.fmean(differences), statistics.fmean(base)
    return {"differences": differences, "mean": mean,
            "standard_error": statistics.stdev(differences) / math.sqrt(len(differences)),
            "relative": mean / base_mean if base_mean else None}


def _probe(report: dict) -> float | None:
    probe = report.get("structure_probe") or {}
    value = (probe.get("outputs") or {}).get(PROBE_METRIC)
    return None if value is None else float(value)


def at_equal_content(curve: list[dict], content_error: float) -> dict | None:
    """A report interpolated along ``curve`` (one model's runs sorted by alpha, as ``trade_off_curves`` gives) to
    the mean ``content_error``: each pair's metrics and the probe linearly between the two runs that bracket it.
    None when no two neighbouring runs bracket it or they share no pairs."""
    for low, high in zip(curve, curve[1:]):
        a, b = low["summary"]["content_error"]["mean"], high["summary"]["content_error"]["mean"]
        if a == b or not min(a, b) <= content_error <= max(a, b):
            continue
        weight = (content_error - a) / (b - a)
        first, second = _pairs_by_key(low), _pairs_by_key(high)
        shared = [key for key in first if key in second]
        if not shared:
            return None
        metrics = [m for m in METRICS if all(m in first[key] and m in second[key] for key in shared)]
        pairs = [{"content": key[0], "style": key[1],
                  **{m: first[key][m] + weight * (second[key][m] - first[key][m]) for m in metrics}}
                 for key in shared]
        alphas = [run["source"].get("alpha", 1.0) for run in (low, high)]
        alpha = alphas[0] + weight * (alphas[1] - alphas[0])
        source = {**low["source"], "alpha": alpha, "interpolated_between": alphas}
        report = {"source": source, "pairs": pairs, "count": len(pairs), "summary": summarize(pairs, metrics),
                  "label": f"{source.get('weights_name', source.get('model', 'run'))} at α {alpha:.3f} "
                           f"(equal content, interpolated)"}
        if low.get("structure_probe") and high.get("structure_probe"):
            outputs = low["structure_probe"]["outputs"], high["structure_probe"]["outputs"]
            report["structure_probe"] = {"outputs": {key: value + weight * (outputs[1][key] - value)
                                                     for key, value in outputs[0].items() if key in outputs[1]}}
        return report
    return None


def format_difference(difference: dict) -> str:
    """'−2.13% (−0.0043 ± 0.0011), worse in 25%' — the relative change, the mean difference ± one standard error,
    and how often the run is worse."""
    share = difference["relative"]
    relative = "–" if share is None else f"{share * 100:+.2f}%".replace("-", "−")  # None: the baseline's mean is 0
    if "standard_error" not in difference:  # the probe: one number per run
        return f"{relative} ({difference['mean']:+.4f})".replace("-", "−")
    mean = f"{difference['mean']:+.4f}".replace("-", "−")
    return f"{relative} ({mean} ± {difference['standard_error']:.4f}), worse in {difference['worse'] * 100:.0f}%"
