"""`adaconv evaluate` end to end on a tiny grid: stylise, score, re-score as --outputs, compare, bad input."""

import json
import shutil

import pytest
import torch
from PIL import Image

from adaconv.cli import main
from adaconv.evaluate_command import SCHEMA, evenly_spaced, scatter_plot, select_pairs, trade_off_curves
from adaconv.evaluation import MEASURE_SIZE, METRICS, summarize
from adaconv.models import build_model
from adaconv.weights import save_weights


@pytest.fixture(scope="module")
def bench(data_dir):
    return data_dir / "bench"


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, bench, adain_weights):
    out = tmp_path_factory.mktemp("evaluate") / "run"
    code = main(run_arguments(adain_weights, bench, out))
    assert code == 0
    return out


def run_arguments(weights, bench, out, size="64", grid="2x2"):
    return ["evaluate", "--weights", str(weights), "--content", str(bench / "content"), "--style", str(bench / "style"),
            "--grid", grid, "--size", size, "--out", str(out), "--quiet"]


def test_run_folder_holds_outputs_report_and_sheet(evaluated):
    images = sorted(p.name for p in (evaluated / "images").iterdir())
    assert images == ["00__00.png", "00__39.png", "19__00.png", "19__39.png"]
    assert Image.open(evaluated / "images" / "00__00.png").size == (64, 64)
    # 2 content rows + 2 style columns, plus the header row and column, 160-px cells with 4-px gaps
    assert Image.open(evaluated / "contact_sheet.png").size == (3 * 164 + 4, 3 * 164 + 4)
    assert "| content error" in (evaluated / "evaluation.md").read_text()


def test_report_schema(evaluated):
    report = json.loads((evaluated / "evaluation.json").read_text())
    assert report["schema"] == SCHEMA and report["count"] == 4 and len(report["pairs"]) == 4
    assert report["source"]["model"] == "adain" and len(report["source"]["weights_sha256"]) == 16
    assert report["size"] == 64 and report["measure"]["size"] == MEASURE_SIZE
    assert report["measure"]["normalisation"] == "raw" and report["measure"]["metrics"] == list(METRICS)
    assert {(p["content"], p["style"]) for p in report["pairs"]} == {
        (c, s) for c in ("00.png", "19.png") for s in ("00.png", "39.png")}
    for pair in report["pairs"]:
        assert set(METRICS) <= set(pair) and all(isinstance(pair[m], float) for m in METRICS)
        assert pair["content_error"] > 0 and 0 <= pair["color_distance"] <= 1 and -1 <= pair["ssim"] <= 1
        assert -1 <= pair["coarse_ssim"] <= 1
    assert set(report["summary"]) == set(METRICS)
    assert all(set(v) == {"mean", "median"} for v in report["summary"].values())
    assert all(isinstance(v, float) and v >= 0 for v in report["seconds"].values())
    probe = report["structure_probe"]
    assert probe["count"] == 2 and probe["probe"]["orientation_match"] == 1.0
    # the probe is made of crisp black/white edges; photos have far fewer
    assert probe["probe"]["sharp_edge_density"] > 2 * probe["contents"]["sharp_edge_density"]
    assert set(probe["outputs"]) == {"sharp_edge_density", "orientation_match"}
    assert (evaluated / "probe" / "00__structure_probe.png").exists()


def test_residual_adaconv_report_says_how_much_its_kernels_are_used(tmp_path, evaluated, bench):
    torch.manual_seed(0)
    model = build_model("adaconv")
    with torch.no_grad():
        model.kernel_predictors[0].spatial.weight.normal_(0, 0.02)  # kernels at the first layer only
    weights = tmp_path / "residual.safetensors"
    save_weights(model, weights)
    out = tmp_path / "run"
    assert main(run_arguments(weights, bench, out, grid="1x2")) == 0
    usage = json.loads((out / "evaluation.json").read_text())["kernel_usage"]
    assert usage["pairs"] == 2 and usage["size"] == 256
    assert usage["departure"][0] > 0.01 and usage["style_dependence"][0] > 0
    assert max(usage["departure"][1:]) < 1e-4  # the later layers are still the identity
    assert "| kernels: departure from AdaIN (layers 1–4) |" in (out / "evaluation.md").read_text()
    assert json.loads((evaluated / "evaluation.json").read_text())["kernel_usage"] is None  # AdaIN has none


def test_kernel_usage_is_measured_on_a_capped_spread_subset(tmp_path, bench, monkeypatch):
    """Its cost grows as contents x styles²: a full 20 x 40 run measures the kernels on KERNEL_USAGE_GRID only."""
    import adaconv.evaluate_command as evaluate_command

    monkeypatch.setattr(evaluate_command, "KERNEL_USAGE_GRID", (1, 2))
    weights = tmp_path / "residual.safetensors"
    save_weights(build_model("adaconv"), weights)
    out = tmp_path / "run"
    assert main(run_arguments(weights, bench, out, grid="2x3")) == 0
    report = json.loads((out / "evaluation.json").read_text())
    assert report["count"] == 6  # every pair is still stylised and scored
    usage = report["kernel_usage"]
    assert (usage["pairs"], usage["contents"], usage["styles"]) == (2, 1, 2)
    assert set(report["seconds"]) == {"stylize", "score", "probe", "kernels", "total"}

    # a second alpha of the same weights needs no second measurement: --no-kernel-usage skips it
    assert main([*run_arguments(weights, bench, out, grid="2x3"), "--no-kernel-usage"]) == 0
    again = json.loads((out / "evaluation.json").read_text())
    assert again["kernel_usage"] is None and "kernels" not in again["seconds"]
    assert again["summary"] == report["summary"]  # the same folder resumed: same images, same scores


def test_outputs_mode_gives_the_same_numbers(tmp_path, evaluated, bench):
    elsewhere = tmp_path / "peer"
    shutil.copytree(evaluated / "images", elsewhere)
    out = tmp_path / "scored"
    code = main(["evaluate", "--outputs", str(elsewhere), "--content", str(bench / "content"),
                 "--style", str(bench / "style"), "--grid", "2x2", "--out", str(out), "--quiet"])
    assert code == 0
    ours = json.loads((evaluated / "evaluation.json").read_text())
    theirs = json.loads((out / "evaluation.json").read_text())
    assert theirs["structure_probe"] is None
    for metric in METRICS:
        assert theirs["summary"][metric]["mean"] == pytest.approx(ours["summary"][metric]["mean"], abs=1e-6)


def test_outputs_mode_with_limit_takes_a_spread_subset(tmp_path, evaluated, bench, capsys):
    out = tmp_path / "limited"
    code = main(["evaluate", "--outputs", str(evaluated / "images"), "--content", str(bench / "content"),
                 "--style", str(bench / "style"), "--grid", "2x2", "--limit", "2", "--out", str(out)])
    assert code == 0
    # stderr is not a terminal here, as in a background run's log: progress comes as whole lines
    progress = capsys.readouterr().err
    assert "score: 0/2 (0%)" in progress and "score: 2/2 (100%)" in progress and "\r" not in progress
    report = json.loads((out / "evaluation.json").read_text())
    assert report["count"] == 2 and report["limit"] == 2 and report["size"] is None
    assert [p["output"] for p in report["pairs"]] == ["00__00.png", "19__39.png"]  # both contents, both styles


def test_interrupted_run_resumes_and_other_settings_are_refused(tmp_path, evaluated, bench, adain_weights, capsys):
    run = tmp_path / "run"
    shutil.copytree(evaluated, run)
    (run / "images" / "19__00.png").unlink()
    kept = (run / "images" / "00__00.png").stat().st_mtime_ns
    assert main(run_arguments(adain_weights, bench, run)) == 0
    assert (run / "images" / "19__00.png").exists() and (run / "images" / "00__00.png").stat().st_mtime_ns == kept
    capsys.readouterr()
    assert main(run_arguments(adain_weights, bench, run, size="96")) == 2
    assert "other settings" in capsys.readouterr().err


def test_style_size_changes_the_strokes_and_is_part_of_the_run(tmp_path, evaluated, bench, adain_weights, capsys):
    """--style-size reads the style at another scale (other images, other numbers) and is recorded in run.json,
    so a folder made at the default scale is not resumed at another."""
    run = tmp_path / "run"
    assert main(run_arguments(adain_weights, bench, run) + ["--style-size", "128"]) == 0
    assert json.loads((run / "run.json").read_text())["style_size"] == 128
    report = json.loads((run / "evaluation.json").read_text())
    default = json.loads((evaluated / "evaluation.json").read_text())
    assert report["source"]["style_size"] == 128 and "style_size" not in default["source"]
    assert report["summary"]["style_distance"] != default["summary"]["style_distance"]
    copy = tmp_path / "copy"
    shutil.copytree(evaluated, copy)
    capsys.readouterr()
    assert main(run_arguments(adain_weights, bench, copy) + ["--style-size", "128"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_alpha_trades_style_for_content_and_is_part_of_the_run(tmp_path, bench, capsys):
    """With the shipped (trained) AdaIN, a lower --alpha keeps more of the photo: less content error, more of its
    structure (SSIM) and of its colours (further from the painting's); at this tiny size the style distance is not
    monotone in alpha, so it is not asserted. The alpha is recorded in the report, its label and run.json, so a
    folder is not resumed at another."""
    runs = {}
    for alpha in ("1", "0.5"):
        out = tmp_path / alpha
        argv = ["evaluate", "--model", "adain", "--content", str(bench / "content"), "--style", str(bench / "style"),
                "--grid", "2x2", "--size", "128", "--out", str(out), "--quiet", "--alpha", alpha]
        assert main(argv) == 0
        runs[alpha] = json.loads((out / "evaluation.json").read_text())
    full, half = runs["1"]["summary"], runs["0.5"]["summary"]
    assert half["content_error"]["mean"] < 0.97 * full["content_error"]["mean"]
    assert half["ssim"]["mean"] > 1.05 * full["ssim"]["mean"]
    assert half["color_distance"]["mean"] > 1.1 * full["color_distance"]["mean"]  # the photo's colours stay
    assert runs["0.5"]["source"]["alpha"] == 0.5 and "alpha" not in runs["1"]["source"]
    assert runs["0.5"]["label"].endswith("α 0.5")
    assert json.loads((tmp_path / "0.5" / "run.json").read_text())["alpha"] == 0.5
    (curve,) = trade_off_curves([runs["1"], runs["0.5"], runs["1"]])  # the same weights: one curve, by alpha
    assert [r["source"].get("alpha", 1.0) for r in curve] == [0.5, 1.0]
    (line,) = scatter_plot([runs["1"], runs["0.5"]]).axes[0].get_lines()
    assert list(line.get_xdata()) == [half["content_error"]["mean"], full["content_error"]["mean"]]
    capsys.readouterr()
    argv[argv.index("--alpha") + 1] = "0.25"
    assert main(argv) == 2 and "other settings" in capsys.readouterr().err
    argv[argv.index("--alpha") + 1] = "1.5"
    with pytest.raises(SystemExit) as stopped:  # argparse's own one-line error, as for stylize --alpha
        main(argv)
    assert stopped.value.code == 2 and "--alpha: expected a number in [0, 1]" in capsys.readouterr().err


def test_compare_writes_table_and_scatter_plot(tmp_path, evaluated, capsys):
    code = main(["evaluate", "--compare", str(evaluated / "evaluation.json"), str(evaluated / "evaluation.json"),
                 "--out", str(tmp_path)])
    assert code == 0
    assert "style distance" in capsys.readouterr().out
    assert Image.open(tmp_path / "comparison.png").size[0] > 300
    header, rule = (tmp_path / "comparison.md").read_text().splitlines()[:2]
    assert header.count("|") == 4 and rule == "|---|---|---|"  # the metric column and one per run
    # a run against itself, pair by pair: no difference at all, worse nowhere
    paired = (tmp_path / "comparison.md").read_text().split("Paired against")[1]
    assert "| style distance ↓ | +0.00% (+0.0000 ± 0.0000), worse in 0% |" in paired


def test_scatter_plot_zooms_on_the_means_beside_the_spread(evaluated):
    report = json.loads((evaluated / "evaluation.json").read_text())
    other = json.loads(json.dumps(report))
    for pair in other["pairs"]:
        pair["content_error"] *= 1.02
    other["summary"] = summarize(other["pairs"])
    spread, means = scatter_plot([report, other]).axes
    centres = [r["summary"]["content_error"]["mean"] for r in (report, other)]
    low, high = means.get_xlim()
    assert low < min(centres) and max(centres) < high  # both means shown ...
    assert high - low < (spread.get_xlim()[1] - spread.get_xlim()[0]) / 3  # ... closer than the pairs' spread allows


def test_compare_reads_another_model_at_equal_content_error(tmp_path, evaluated, capsys):
    """The real run as the baseline and a second 'model' (the same pairs, every content error scaled, as two runs
    at α 0.5 and 1 would differ) read off at the baseline's content error, pair by pair."""
    baseline = json.loads((evaluated / "evaluation.json").read_text())
    paths = []
    for alpha, scale, style_shift in ((0.5, 0.8, 0.02), (1.0, 1.2, -0.02)):
        run = json.loads(json.dumps(baseline))
        run["source"].update(alpha=alpha, weights_sha256="other", weights_name="other.safetensors")
        for pair in run["pairs"]:
            pair["content_error"] *= scale
            pair["style_distance"] += style_shift
        run["summary"] = {m: {"mean": sum(p[m] for p in run["pairs"]) / len(run["pairs"])} for m in METRICS}
        run["label"] = f"other α {alpha}"
        path = tmp_path / f"other_{alpha}.json"
        path.write_text(json.dumps(run))
        paths.append(str(path))
    capsys.readouterr()
    assert main(["evaluate", "--compare", str(evaluated / "evaluation.json"), *paths, "--out", str(tmp_path)]) == 0
    markdown = (tmp_path / "comparison.md").read_text()
    # content 0.8x at α 0.5 and 1.2x at α 1: the baseline's content error lies halfway, at α 0.75, where every
    # pair's content error is the baseline's and its style distance unchanged
    assert "other.safetensors at α 0.750 (equal content, interpolated)" in markdown
    row = next(line for line in markdown.split("Paired against")[1].splitlines() if line.startswith("| style"))
    assert row.split(" | ")[-1] == "+0.00% (+0.0000 ± 0.0000), worse in 0% |"
    assert main(["evaluate", "--compare", paths[0], str(evaluated / "evaluation.json"), paths[0]]) == 0
    assert "do not bracket" not in capsys.readouterr().err  # one α only: no curve to read


def test_bad_input_is_one_line_and_exit_2(tmp_path, evaluated, bench, capsys, monkeypatch):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    incomplete = tmp_path / "incomplete.json"
    incomplete.write_text(json.dumps({"schema": SCHEMA, "pairs": [], "count": 0}))
    partial = tmp_path / "partial"
    partial.mkdir()
    cases = [
        ["evaluate", "--content", str(tmp_path / "absent"), "--style", str(bench / "style"), "--out", str(tmp_path)],
        ["evaluate", "--outputs", str(partial), "--content", str(bench / "content"), "--style", str(bench / "style"),
         "--grid", "2x2", "--out", str(tmp_path / "o")],
        ["evaluate", "--compare", str(bad_json)],
        ["evaluate", "--compare", str(evaluated / "evaluation.json"), str(incomplete)],
        ["evaluate", "--outputs", str(evaluated / "images"), "--model", "adain", "--out", str(tmp_path / "m")],
        ["evaluate", "--grid", "2by2", "--out", str(tmp_path / "g")],
    ]
    for argv in cases:
        capsys.readouterr()
        assert main(argv) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("adaconv evaluate: error:") and "\n" not in error
    # a report written before coarse SSIM was measured: compared on the rest, with a note saying how to add it
    old = json.loads((evaluated / "evaluation.json").read_text())
    for record in (old["summary"], *old["pairs"]):
        del record["coarse_ssim"]
    del old["measure"]["coarse_ssim_factor"]
    old["measure"]["metrics"].remove("coarse_ssim")
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert main(["evaluate", "--compare", str(evaluated / "evaluation.json"), str(tmp_path / "old.json")]) == 0
    captured = capsys.readouterr()
    assert "old.json has no coarse_ssim" in captured.err and "evaluate command again" in captured.err
    assert "measured differently" not in captured.err
    table, paired = captured.out.split("Paired against")
    assert [line for line in table.splitlines() if line.startswith("| coarse SSIM")][0].endswith(" | – |")
    assert "coarse SSIM" not in paired and "| style distance ↓ | +0.00% (+0.0000 ± 0.0000)" in paired
    # the default benchmark folder is looked up relative to the current folder
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", "--outputs", str(evaluated / "images"), "--out", str(tmp_path / "d")]) == 2
    error = capsys.readouterr().err.strip()
    assert "../shared/data/bench/content" in error and "default" in error and "\n" not in error


def test_pair_selection_spreads_over_the_grid():
    assert evenly_spaced(list(range(20)), 5) == [0, 5, 10, 14, 19]
    pairs = select_pairs(list(range(20)), list(range(40)), 40)
    assert len(pairs) == 40 and len({c for c, _ in pairs}) >= 10 and len({s for _, s in pairs}) >= 10
