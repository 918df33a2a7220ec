"""`adaconv info` as a user runs it: the shipped weights described from their metadata, a run's export too."""

import json
import subprocess
import sys

from adaconv.models import build_model
from adaconv.training import TrainConfig, Trainer, export_weights
from adaconv.weights import read_weights, save_weights, shipped_weights_path


def run(*args):
    return subprocess.run([sys.executable, "-m", "adaconv", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_info_describes_the_shipped_weights_and_marks_the_default():
    result = run("info")
    assert result.returncode == 0, result.stderr
    from adaconv.inference import DEFAULT_MODEL

    for kind in ("adain", "adaconv"):
        provenance = json.loads(read_weights(shipped_weights_path(kind))[1]["provenance"])
        label = f"{kind} (default model)" if kind == DEFAULT_MODEL else kind
        block = result.stdout.split(f"\n{label}: ")[1].split("\n\n")[0]
        assert f"trained   {provenance['total_iterations']:,} iterations" in block
        assert f"exported  {provenance['exported']}" in block
        assert ("8-bit rows" in block) == (kind == "adaconv")  # AdaConv's fully connected layer
    assert result.stdout.count("(default model)") == 1


def test_info_of_an_exported_two_phase_run(data_dir, tmp_path):
    """A run resumed at another crop and batch (and with the identity loss, features only): info names both
    phases, the warm-start chain and the held-out score, and --json carries the provenance export-weights wrote."""
    common = dict(model="adain", content=str(data_dir / "train" / "content"), style=str(data_dir / "train" / "style"),
                  max_images=16, checkpoint_every=1, sample_every=0, log_every=1, progress=False,
                  val_content=str(data_dir / "bench" / "content"), val_style=str(data_dir / "bench" / "style"),
                  val_every=1, val_pairs=(1, 1))
    Trainer(TrainConfig(out=str(tmp_path / "first"), iterations=1, batch_size=2, crop_size=64, **common)).train()
    export_weights(tmp_path / "first", tmp_path / "first.safetensors")
    run_dir = tmp_path / "second"
    Trainer(TrainConfig(out=str(run_dir), iterations=1, batch_size=2, crop_size=64,
                        init=str(tmp_path / "first.safetensors"), **common)).train()
    Trainer(TrainConfig(out=str(run_dir), iterations=2, batch_size=1, crop_size=96, resume=True,
                        identity_weight=0.5, identity_pixel_weight=0.0, **common)).train()
    exported = export_weights(run_dir, tmp_path / "second.safetensors", weights="last")

    result = run("info", tmp_path / "second.safetensors")
    assert result.returncode == 0, result.stderr
    fields = [line.strip().split("  ", 1) for line in result.stdout.splitlines() if line.startswith("  ")]
    lines = {field: value.strip() for field, value in fields}
    assert lines["trained"] == "3 iterations (64²: 2, 96²: 1), 5 images"  # 2 + 2 at batch 2, then 1 at batch 1
    assert lines["phases"] == ("from 0: crop 64², batch 2, λ 10; "
                               "from 1: crop 96², batch 1, λ 10, identity weight 0.5 (pixel term × 0)")
    assert "identity weight 0.5 (pixel term × 0)" in lines["recipe"]
    assert lines["this run"].endswith(f"warm-started from adain weights of {exported['exported']} (1 iterations)")
    assert lines["weights"] == "last step"
    assert lines["held-out"].startswith("loss ") and "on 1 × 1 held-out pairs at 96², iteration 2" in lines["held-out"]

    report = json.loads(run("info", "--json", tmp_path / "second.safetensors").stdout)
    assert report["weights"][0]["provenance"] == json.loads(json.dumps(exported))
    assert report["weights"][0]["model"] == "adain" and report["default_model"] in ("adain", "adaconv")


def test_info_refuses_a_bad_file_in_one_line(tmp_path):
    text = tmp_path / "notes.safetensors"
    text.write_text("hello")
    odd = tmp_path / "odd.safetensors"  # provenance that export-weights would not write
    save_weights(build_model("adain"), odd, provenance={"iterations": 3, "validation": {"loss": "low"}})
    for path in (text, tmp_path / "missing.safetensors", odd):
        result = run("info", path)
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr.count("\n") == 1 and str(path) in result.stderr


def test_version():
    from adaconv import __version__

    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"adaconv {__version__}"
