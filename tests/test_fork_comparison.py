"""Two arms of a training run, compared step by step on the batches both trained on."""

import csv
import shutil

import pytest
import torch
from PIL import Image

from adaconv.cli import main
from adaconv.errors import AdaconvError
from adaconv.fork_comparison import compare_arms, comparison_markdown
from adaconv.training import CHECKPOINT, LOG_FIELDS, VAL_FIELDS, TrainConfig, Trainer


def write_csv(path, fields, rows):
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(fields)
        writer.writerows(rows)


def log_rows(iterations, content, style):
    return [[i, 8 * i, c + 10 * s, c, s, 1e-5, 2.5, 0.0, 3.0 * i] for i, c, s in zip(iterations, content, style)]


def test_hand_worked_arms(tmp_path):
    """A fork whose log was copied: the rows up to 20 are shared and skipped; from 30 on, the arm's style loss is
    0.1, 0.2, 0.3 lower and its content loss the same; held-out rows before the fork are left out."""
    base, arm = tmp_path / "base", tmp_path / "arm"
    base.mkdir(), arm.mkdir()
    prefix = log_rows([10, 20], [4.0, 4.0], [1.0, 1.0])
    write_csv(base / "log.csv", LOG_FIELDS, prefix + log_rows([30, 40, 50, 60], [4.0, 3.8, 3.9, 3.7],
                                                              [1.0, 0.9, 1.1, 0.8]))
    write_csv(arm / "log.csv", LOG_FIELDS, prefix + log_rows([30, 40, 50], [4.0, 3.8, 3.9], [0.9, 0.7, 0.8]))
    write_csv(base / "val.csv", VAL_FIELDS, [[20, 160, 14.0, 4.0, 1.0], [50, 400, 13.0, 4.0, 0.9]])
    write_csv(arm / "val.csv", VAL_FIELDS, [[20, 160, 14.0, 4.0, 1.0], [50, 400, 12.0, 4.0, 0.8]])
    result = compare_arms(base, arm)
    assert result["paired"] and result["first"] == 30 and result["steps"] == 3 and result["last"] == 50
    style = result["training"]["style_loss"]
    assert style["baseline"] == pytest.approx(1.0) and style["arm"] == pytest.approx(0.8)
    assert style["mean"] == pytest.approx(-0.2) and style["standard_error"] == pytest.approx(0.1 / 3 ** 0.5)
    assert style["relative"] == pytest.approx(-0.2) and style["lower"] == 3
    assert result["training"]["content_loss"]["mean"] == pytest.approx(0.0) and result["training"]["content_loss"][
        "lower"] == 0
    assert [i for i, _, _ in result["held_out"]["held-out, last weights"]] == [50]
    assert "held-out, weight average" not in result["held_out"]  # neither arm has one
    markdown = comparison_markdown(result, "base", "arm")
    assert "| style loss | 1.0000 | 0.8000 | −0.2000 ± 0.0577 (−20.00%) | 3 of 3 |" in markdown
    assert "| 50 | 13.000 (4.000 / 0.900) | 12.000 (4.000 / 0.800) |" in markdown
    # an explicit fork point: the steps after it
    later = compare_arms(base, arm, since=30)
    assert (later["first"], later["steps"]) == (40, 2)
    assert later["training"]["style_loss"]["mean"] == pytest.approx(-0.25)


def test_a_fork_at_another_batch_size_is_compared_per_image_seen(tmp_path):
    """Batch 8 logs every 80 images, batch 16 every 160: from iteration 20 (160 images) to the 480 both reached,
    the windows' means are compared unpaired, with Welch's standard error."""
    base, arm = tmp_path / "base", tmp_path / "arm"
    base.mkdir(), arm.mkdir()
    write_csv(base / "log.csv", LOG_FIELDS, log_rows([10, 20, 30, 40, 50, 60], [4.0] * 6,
                                                     [1.2, 1.1, 1.0, 0.8, 1.0, 0.8]))
    rows = log_rows([30, 40], [4.0, 4.0], [0.7, 0.5])
    for row, images in zip(rows, (320, 480)):
        row[1] = images
    write_csv(arm / "log.csv", LOG_FIELDS, rows)
    result = compare_arms(base, arm, since=20, by="images")
    assert not result["paired"] and (result["first"], result["last"]) == (160, 480) and result["steps"] == [4, 2]
    style = result["training"]["style_loss"]
    assert style["baseline"] == pytest.approx(0.9) and style["arm"] == pytest.approx(0.6)
    assert style["mean"] == pytest.approx(-0.3) and style["lower"] is None
    assert style["standard_error"] == pytest.approx((0.04 / 3 / 4 + 0.02 / 2) ** 0.5)
    assert "– (unpaired)" in comparison_markdown(result, "base", "arm")
    with pytest.raises(AdaconvError, match="--since"):
        compare_arms(base, arm, by="images")


def test_arms_that_never_parted_are_refused(tmp_path):
    base, arm = tmp_path / "base", tmp_path / "arm"
    base.mkdir(), arm.mkdir()
    rows = log_rows([10, 20, 30], [4.0, 4.0, 4.0], [1.0, 1.0, 1.0])
    write_csv(base / "log.csv", LOG_FIELDS, rows)
    write_csv(arm / "log.csv", LOG_FIELDS, rows)
    with pytest.raises(AdaconvError, match="fewer than two logged steps"):
        compare_arms(base, arm)


def test_a_real_fork_at_a_lower_rate_on_the_same_batches(data_dir, tmp_path, capsys):
    """A run trained 2 steps, forked (checkpoint and log copied), both arms trained to 10 on the same batches: the
    first step after the fork starts from the same weights on the same batch, so its losses agree exactly; after
    it the arm at a 1000x lower rate stands still while the run learns, so its losses are higher."""
    def run(out, lr, iterations, resume=False):
        Trainer(TrainConfig(model="adain", content=str(data_dir / "train" / "content"),
                            style=str(data_dir / "train" / "style"), out=str(out), iterations=iterations,
                            batch_size=2, crop_size=64, max_images=24, checkpoint_every=2, sample_every=0,
                            log_every=1, progress=False, lr=lr, lr_decay=0.0, seed=3, resume=resume)).train()

    base, arm = tmp_path / "base", tmp_path / "arm"
    torch.manual_seed(0)
    run(base, 1e-3, 2)
    arm.mkdir()
    for name in (CHECKPOINT, "log.csv"):
        shutil.copy(base / name, arm / name)
    run(base, 1e-3, 10, resume=True)
    run(arm, 1e-6, 10, resume=True)
    logs = [{int(r["iteration"]): r for r in csv.DictReader(open(folder / "log.csv"))} for folder in (base, arm)]
    assert logs[0][3]["loss"] == logs[1][3]["loss"]  # the same weights on the same batch
    result = compare_arms(base, arm)
    assert result["first"] == 4 and result["steps"] == 7
    assert result["training"]["loss"]["mean"] > 0 and result["training"]["loss"]["lower"] <= 2
    # the command: the table, and the plot when asked
    capsys.readouterr()
    assert main(["compare-runs", str(base), str(arm), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "7 logged steps from iteration 4 to 10" in out and "| style loss |" in out
    assert Image.open(tmp_path / "cmp" / "comparison_arm.png").size[0] > 300
    assert (tmp_path / "cmp" / "comparison.md").read_text() == out.rstrip("\n") + "\n"


def test_bad_run_folders_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "log.csv").write_text("iteration,loss\n10,abc\n")
    for argv in (["compare-runs", str(tmp_path / "empty"), str(tmp_path / "bad")],
                 ["compare-runs", str(tmp_path / "bad"), str(tmp_path / "bad")]):
        assert main(argv) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("adaconv compare-runs: error:") and "\n" not in error and "log.csv" in error
