"""Real training on ../shared/data at small sizes: the loss falls, resume is exact, checkpoints are atomic."""

import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from adaconv.errors import AdaconvError
from adaconv.losses import identity_loss
from adaconv.models import build_model
from adaconv.training import CHECKPOINT, STYLE_CACHE_DIR, TrainConfig, Trainer, bf16_is_fast, export_weights
from adaconv.weights import model_from_weights, save_weights


def config(data_dir, out, **overrides):
    settings = dict(model="adain", content=str(data_dir / "train" / "content"),
                    style=str(data_dir / "train" / "style"), out=str(out), iterations=4, batch_size=2,
                    crop_size=64, max_images=24, checkpoint_every=2, sample_every=0, log_every=1, progress=False)
    settings.update(overrides)
    return TrainConfig(**settings)


def held_out_loss(trainer, steps=range(10_000, 10_006)):
    """The objective on fixed batches the run never trains on (steps far ahead of it)."""
    with torch.no_grad():
        return sum(trainer.objective(*trainer.make_batch(step)[:2])[0].item() for step in steps) / len(steps)


@pytest.mark.parametrize("kind,lr", [("adain", 1e-3), ("adaconv", 1e-4)])
def test_loss_falls_over_real_steps(data_dir, tmp_path, kind, lr):
    """30 steps at batch 2, 64 px. (AdaConv's predicted kernels diverge at lr 5e-4: see docs/training.md.)"""
    torch.manual_seed(0)
    trainer = Trainer(config(data_dir, tmp_path / kind, model=kind, iterations=30, lr=lr, lr_decay=0.0,
                             checkpoint_every=30))  # AdaConv: ~1 GB per checkpoint
    trainer.load_data()
    before = held_out_loss(trainer)
    trainer.train()
    after = held_out_loss(trainer)
    assert after < 0.9 * before, (before, after)
    rows = (tmp_path / kind / "log.csv").read_text().splitlines()
    assert len(rows) == 31 and rows[0].startswith("iteration,")
    assert (tmp_path / kind / "losses.png").stat().st_size > 0


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(data_dir, tmp_path):
    torch.manual_seed(0)
    straight = Trainer(config(data_dir, tmp_path / "straight", iterations=4, seed=5))
    straight.train()
    torch.manual_seed(0)
    first = Trainer(config(data_dir, tmp_path / "split", iterations=2, seed=5))
    first.train()
    torch.manual_seed(1)  # the resumed trainer starts from another initialisation: the checkpoint must replace it
    resumed = Trainer(config(data_dir, tmp_path / "split", iterations=4, resume=True))  # no seed: the run's own
    assert resumed.iteration == 2 and resumed.config.seed == 5
    resumed.train()
    a, b = straight.model.trainable_state_dict(), resumed.model.trainable_state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    a, b = straight.average.module.trainable_state_dict(), resumed.average.module.trainable_state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # the weight average resumes exactly too


def test_weight_average_follows_the_steps_and_is_what_export_ships(data_dir, tmp_path):
    """The average is the EMA of the weights after each step (the first step's weights, then lerp by 1 - decay);
    export-weights ships it by default, the last step's weights on request."""
    decay = 0.5
    trainer = Trainer(config(data_dir, tmp_path / "run", iterations=1, ema_decay=decay))
    name = "decoder.scales.3.2.weight"
    after_steps = []
    for iterations in (1, 2, 3):
        trainer.config.iterations = iterations
        trainer.train()
        after_steps.append(dict(trainer.model.named_parameters())[name].detach().clone())
    expected = after_steps[0]
    for weights in after_steps[1:]:
        expected = decay * expected + (1 - decay) * weights
    average = dict(trainer.average.module.named_parameters())[name]
    assert torch.allclose(average, expected, atol=1e-7) and not torch.allclose(average, after_steps[-1])
    export_weights(tmp_path / "run", tmp_path / "average.safetensors", dtype="fp32")
    export_weights(tmp_path / "run", tmp_path / "last.safetensors", dtype="fp32", weights="last")
    shipped, info = model_from_weights(tmp_path / "average.safetensors")
    last, _ = model_from_weights(tmp_path / "last.safetensors")
    assert torch.equal(shipped.trainable_state_dict()[name], average.detach())
    assert torch.equal(last.trainable_state_dict()[name], after_steps[-1])
    assert info["provenance"]["weights"].startswith("exponential moving average")


def test_existing_run_needs_resume_and_resume_needs_a_run(data_dir, tmp_path):
    Trainer(config(data_dir, tmp_path / "run", iterations=1)).train()
    with pytest.raises(AdaconvError, match="--resume"):
        Trainer(config(data_dir, tmp_path / "run"))
    with pytest.raises(AdaconvError, match="no checkpoint"):
        Trainer(config(data_dir, tmp_path / "other", resume=True))


def test_adaconv_warm_start_from_adain_carries_the_decoder_over(tmp_path, data_dir):
    torch.manual_seed(0)
    adain_model = build_model("adain")
    weights = tmp_path / "adain.safetensors"
    save_weights(adain_model, weights)
    trainer = Trainer(config(data_dir, tmp_path / "warm", model="adaconv", init=str(weights)))
    ours, theirs = trainer.model.decoder.state_dict(), adain_model.decoder.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert trainer.provenance["init"]["model"] == "adain"


def test_resumed_adaconv_run_reads_its_style_features_back_from_disk(tmp_path, data_dir):
    """4 paintings, batch 2: the first session encodes all four (one shard per checkpoint); the resumed session
    reads them back and encodes none."""
    settings = dict(model="adaconv", max_images=4, style_cache_gb=1.0)
    first = Trainer(config(data_dir, tmp_path / "run", iterations=2, **settings)).train()
    assert first["style_cache"]["misses"] == 4 and first["style_cache"]["read_from_disk"] == 0
    shards = sorted(p.name for p in (tmp_path / "run" / STYLE_CACHE_DIR).iterdir())
    assert shards == ["rank0-iteration0000002.safetensors"]  # the final checkpoint adds nothing new
    resumed = Trainer(config(data_dir, tmp_path / "run", iterations=4, resume=True, **settings)).train()
    assert resumed["style_cache"] == {"entries": 4, "hits": 4, "misses": 0, "read_from_disk": 4,
                                      "gib": first["style_cache"]["gib"]}


def test_validation_and_export_weights_record_provenance(tmp_path, data_dir):
    run = tmp_path / "run"
    Trainer(config(data_dir, run, iterations=2, val_content=str(data_dir / "bench" / "content"),
                   val_style=str(data_dir / "bench" / "style"), val_every=1, val_pairs=(1, 2))).train()
    rows = (run / "val.csv").read_text().splitlines()
    assert rows[0].startswith("iteration,") and [r.split(",")[0] for r in rows[1:]] == ["1", "2"]
    provenance = export_weights(run, tmp_path / "w.safetensors", dtype="fp16")
    model, info = model_from_weights(tmp_path / "w.safetensors")
    assert provenance["iterations"] == 2 and info["provenance"]["images_seen"] == 4
    assert info["provenance"]["crop_size"] == 64 and model.kind == "adain"
    validation = info["provenance"]["validation"]  # of the weight average, which is what was exported
    averaged = (run / "val_average.csv").read_text().splitlines()
    assert validation["iteration"] == 2 and validation["loss"] == float(averaged[-1].split(",")[2])


KILL_WRITER = """
import sys, torch
from pathlib import Path
from adaconv.imageio import write_atomically
path = Path(sys.argv[1])
generation = 0
while True:
    generation += 1
    state = {"generation": generation, "payload": torch.full((8_000_000,), float(generation))}
    write_atomically(path, lambda handle: torch.save(state, handle))
    print(generation, flush=True)
"""


def test_checkpoint_killed_while_being_written_is_never_read_half_written(tmp_path):
    path = tmp_path / CHECKPOINT
    writer = subprocess.Popen([sys.executable, "-c", KILL_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "1"  # one complete checkpoint exists
        time.sleep(0.35)                                 # now, most likely, mid-way through another
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    state = torch.load(path, weights_only=False)
    assert state["generation"] >= 1
    assert torch.equal(state["payload"], torch.full((8_000_000,), float(state["generation"])))


def test_sigterm_stops_with_a_checkpoint(data_dir, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "adaconv", "train", "--model", "adain", "--content",
               data_dir / "train" / "content", "--style", data_dir / "train" / "style", "--out", out,
               "--iterations", "1000", "--batch-size", "1", "--crop-size", "64", "--max-images", "8",
               "--checkpoint-every", "1000", "--sample-every", "0", "--val-content", data_dir / "bench" / "content",
               "--val-style", data_dir / "bench" / "style", "--val-every", "1000"]
    process = subprocess.Popen(list(map(str, command)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "log.csv"
    deadline = time.time() + 300
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 2):
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["stopped_by"] == "SIGTERM" and summary["iteration"] >= 10
    # the log says which precision this machine trains in (the step's speed depends on it)
    precision = "bf16 autocast" if bf16_is_fast(torch.device("cpu")) else "fp32"
    assert f"adaconv train: {precision} on cpu (" in stderr and "bf16)" in stderr
    assert torch.load(out / CHECKPOINT, weights_only=False)["iteration"] == summary["iteration"]
    # stopping at once: no final validation (torchrun kills workers 30 s after a SIGTERM)
    assert not (out / "val.csv").exists() or len((out / "val.csv").read_text().splitlines()) <= 1
    assert not list((out / "samples").glob("*.png"))
    # a plain --resume from the command line goes on with the run's recipe (64² crops, batch 1), not the defaults
    command = [sys.executable, "-m", "adaconv", "train", "--model", "adain", "--content",
               data_dir / "train" / "content", "--style", data_dir / "train" / "style", "--out", out, "--resume",
               "--max-images", "8",
               "--iterations", summary["iteration"] + 1, "--sample-every", "0"]
    resumed = subprocess.run(list(map(str, command)), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    state = torch.load(out / CHECKPOINT, weights_only=False)
    assert state["iteration"] == summary["iteration"] + 1
    assert (state["config"]["crop_size"], state["config"]["batch_size"]) == (64, 1)
    assert "differs" not in resumed.stderr and len(state["provenance"]["phases"]) == 1
    # run again, it is at its total: one line saying so, a non-zero exit, and the checkpoint untouched
    again = subprocess.run(list(map(str, command)), capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "Traceback" not in again.stderr
    assert again.stderr.strip().splitlines()[-1].endswith(
        f"is at iteration {summary['iteration'] + 1} of its {summary['iteration'] + 1}: give a larger --iterations "
        "to train on")
    assert torch.load(out / CHECKPOINT, weights_only=False)["iteration"] == summary["iteration"] + 1


def torchrun_command(data_dir, out, *arguments, port):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(port),
               "-m", "adaconv", "train", "--model", "adain", "--content", data_dir / "train" / "content",
               "--style", data_dir / "train" / "style", "--out", out, "--batch-size", "1", "--crop-size", "64",
               "--max-images", "8", "--sample-every", "0", "--threads", "1", *arguments]
    return list(map(str, command))


@contextlib.contextmanager
def torchrun_in_background(data_dir, out, *, port):
    """A two-rank run that trains until stopped, yielded once it has logged a few steps; on leaving, its whole
    process group is killed (it has its own, so a failing test cannot leave workers behind)."""
    process = subprocess.Popen(torchrun_command(data_dir, out, "--iterations", "100000", "--log-every", "1",
                                                port=port), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not ((out / "log.csv").exists() and len((out / "log.csv").read_text().splitlines()) > 3):
            assert process.poll() is None and time.monotonic() < deadline, "training did not start"
            time.sleep(0.5)
        yield process
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def rank_summaries(returncode, stdout, stderr):
    assert returncode == 0, stderr[-2000:]
    summaries = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    assert sorted(s["rank"] for s in summaries) == [0, 1]
    return summaries


def torchrun_train(data_dir, out, *arguments, port):
    result = subprocess.run(torchrun_command(data_dir, out, *arguments, port=port), capture_output=True, text=True,
                            timeout=600)
    return rank_summaries(result.returncode, result.stdout, result.stderr)


def worker_of_rank(launcher_pid: int, rank: int) -> int:
    """The pid of torchrun's worker process with RANK=rank (read from /proc)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            environment = (stat.parent / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if parent == launcher_pid and f"RANK={rank}".encode() in environment:
            return int(stat.parent.name)
    raise AssertionError(f"no worker of rank {rank} under pid {launcher_pid}")


def test_torchrun_two_processes_end_with_identical_weights(data_dir, tmp_path):
    summaries = torchrun_train(data_dir, tmp_path / "ddp", "--iterations", "3", port=29531)
    assert summaries[0]["weights_checksum"] == summaries[1]["weights_checksum"]
    assert summaries[0]["images_seen"] == 6


def test_torchrun_ranks_stop_together_at_the_time_limit(data_dir, tmp_path):
    """Each rank times its own steps; without agreeing, one would step alone and wait forever for the other."""
    summaries = torchrun_train(data_dir, tmp_path / "ddp", "--iterations", "100000", "--time-limit", "0.25",
                               "--checkpoint-every", "5", port=29533)
    assert [s["stopped_by"] for s in summaries] == ["time limit"] * 2
    assert summaries[0]["iteration"] == summaries[1]["iteration"] > 0
    assert summaries[0]["weights_checksum"] == summaries[1]["weights_checksum"]


def test_the_time_limit_counts_the_time_before_the_first_step(data_dir, tmp_path):
    """The limit is the session's budget: time spent before training (building the model, loading the data, here
    a pause) counts, so a limit already used up ends the run at once, with a checkpoint, before any step. (The
    limit, 7.5 s, exceeds the 5 s the loop first reserves for its final checkpoint: counted from the loop's start,
    it would train.)"""
    trainer = Trainer(config(data_dir, tmp_path / "run", iterations=100, time_limit=0.125))
    time.sleep(8)
    summary = trainer.train()
    assert (summary["stopped_by"], summary["iteration"]) == ("time limit", 0)
    assert torch.load(tmp_path / "run" / CHECKPOINT, weights_only=False)["iteration"] == 0


def test_the_time_limit_leaves_room_for_the_stops_validation_and_samples(data_dir, tmp_path):
    """A stop at the limit validates, checkpoints and writes samples before the run ends (seconds each here,
    minutes for AdaConv at 256²): once measured, the limit keeps room for them, so the run as a whole ends within
    its minutes. (Without that room, the run overran its 24 s here by ~4 s.)"""
    began = time.monotonic()
    trainer = Trainer(config(data_dir, tmp_path / "run", iterations=100_000, time_limit=0.4, checkpoint_every=1000,
                             val_content=str(data_dir / "bench" / "content"),
                             val_style=str(data_dir / "bench" / "style"), val_every=1,
                             sample_every=1))
    summary = trainer.train()
    elapsed = time.monotonic() - began
    assert summary["stopped_by"] == "time limit" and summary["iteration"] >= 1
    assert elapsed <= 0.4 * 60 + 2.0, elapsed
    assert (tmp_path / "run" / "samples" / f"iteration_{summary['iteration']:07d}.png").exists()


def test_a_run_shorter_than_its_validation_interval_reserves_a_guess_for_the_stops_validation(data_dir, tmp_path):
    """Before the session has timed a validation or a sample sheet, the limit reserves a guess at them from the
    step's time: a run that never validates before its stop still ends within its minutes. (Without the guess,
    this run's stop validated 80 pairs and wrote samples unreserved, and it overran its 24 s by ~7 s.)"""
    began = time.monotonic()
    trainer = Trainer(config(data_dir, tmp_path / "run", iterations=100_000, time_limit=0.4, checkpoint_every=1000,
                             val_content=str(data_dir / "bench" / "content"),
                             val_style=str(data_dir / "bench" / "style"), val_pairs=(10, 8), val_every=100_000,
                             sample_every=100_000))
    summary = trainer.train()
    elapsed = time.monotonic() - began
    assert summary["stopped_by"] == "time limit" and summary["iteration"] >= 1
    assert elapsed <= 0.4 * 60 + 2.0, elapsed
    assert trainer.provenance["validation"]["iteration"] == summary["iteration"]
    assert (tmp_path / "run" / "samples" / f"iteration_{summary['iteration']:07d}.png").exists()


def test_stop_session_signals_the_ranks_and_waits_for_their_checkpoint(data_dir, tmp_path):
    """scripts/stop_session.sh: SIGTERM to the ranks only; the launcher ends by itself once they have checkpointed,
    and the script reports the iteration the checkpoint holds. A run at a longer name is left alone."""
    out = tmp_path / "ddp"
    script = Path(__file__).parents[1] / "scripts" / "stop_session.sh"
    with torchrun_in_background(data_dir, out, port=29537) as process:
        other = subprocess.run(["bash", str(script), f"{out}x"], capture_output=True, text=True, timeout=60)
        assert other.returncode == 1 and process.poll() is None
        stopped = subprocess.run(["bash", str(script), str(out), "120"], capture_output=True, text=True,
                                 timeout=300)
        assert stopped.returncode == 0, stopped.stderr
        assert process.poll() is not None  # the launcher too has ended
        stdout, stderr = process.communicate(timeout=60)
    summaries = rank_summaries(process.returncode, stdout, stderr)
    assert [s["stopped_by"] for s in summaries] == ["SIGTERM"] * 2
    iteration = torch.load(out / CHECKPOINT, weights_only=False)["iteration"]
    assert iteration == summaries[0]["iteration"] > 3
    assert stopped.stdout.strip() == f"{out / CHECKPOINT}: iteration {iteration}"


def test_exported_totals_count_the_warm_start(data_dir, tmp_path):
    """A run warm-started from exported weights reports its own steps and, in total, those behind its start."""
    Trainer(config(data_dir, tmp_path / "first", iterations=2)).train()
    export_weights(tmp_path / "first", tmp_path / "first.safetensors")
    Trainer(config(data_dir, tmp_path / "second", iterations=1, init=str(tmp_path / "first.safetensors"))).train()
    provenance = export_weights(tmp_path / "second", tmp_path / "second.safetensors")
    assert (provenance["iterations"], provenance["total_iterations"]) == (1, 3)
    assert (provenance["images_seen"], provenance["total_images_seen"]) == (2, 6)



def test_a_resumed_phase_at_another_crop_size_is_counted_apart(data_dir, tmp_path):
    """The campaign's finishing phase: --resume with a bigger crop (and another batch) from a 64² run."""
    run = tmp_path / "run"
    Trainer(config(data_dir, run, iterations=2)).train()
    summary = Trainer(config(data_dir, run, iterations=3, crop_size=96, batch_size=1, resume=True)).train()
    assert (summary["iteration"], summary["images_seen"]) == (3, 2 * 2 + 1)
    provenance = export_weights(run, tmp_path / "w.safetensors")
    assert provenance["iterations_by_crop"] == {"64": 2, "96": 1} and provenance["crop_size"] == 96
    assert [(p["from_iteration"], p["crop_size"], p["batch_size"], p["images_before"])
            for p in provenance["phases"]] == [(0, 64, 2, 0), (2, 96, 1, 4)]
    Trainer(config(data_dir, tmp_path / "warm", iterations=1, init=str(tmp_path / "w.safetensors"))).train()
    provenance = export_weights(tmp_path / "warm", tmp_path / "warm.safetensors")
    assert provenance["iterations_by_crop"] == {"64": 3, "96": 1} and provenance["total_images_seen"] == 5 + 2


def test_a_resumed_run_at_another_style_weight_records_a_phase(data_dir, tmp_path):
    """A λ experiment from a checkpoint changes the losses' scale: the run records where λ changed, once."""
    run = tmp_path / "run"
    Trainer(config(data_dir, run, iterations=2)).train()
    Trainer(config(data_dir, run, iterations=3, style_weight=15.0, resume=True)).train()
    trainer = Trainer(config(data_dir, run, iterations=4, style_weight=15.0, resume=True))
    trainer.train()
    phases = trainer.provenance["phases"]
    assert [(p["from_iteration"], p["style_weight"]) for p in phases] == [(0, 10.0), (2, 15.0)]
    assert export_weights(run, tmp_path / "w.safetensors")["style_weight"] == 15.0


def test_content_weight_scales_the_content_term_and_records_a_phase(data_dir, tmp_path):
    """--content-weight w: the total is w·L_content + λ·L_style on the same batch, and a resumed run at another
    weight records where it changed (the trade-off moved without raising λ) and exports it."""
    run = tmp_path / "run"
    Trainer(config(data_dir, run, iterations=2)).train()
    trainer = Trainer(config(data_dir, run, iterations=3, content_weight=0.5, resume=True))
    trainer.load_data()
    content, style = trainer.make_batch(7)[:2]
    with torch.no_grad():
        total, loss_c, loss_s = trainer.objective(content, style)
    assert total.item() == pytest.approx(0.5 * loss_c.item() + 10.0 * loss_s.item(), rel=1e-5)
    trainer.train()
    phases = trainer.provenance["phases"]
    assert [(p["from_iteration"], p.get("content_weight", 1.0)) for p in phases] == [(0, 1.0), (2, 0.5)]
    assert export_weights(run, tmp_path / "w.safetensors")["content_weight"] == 0.5


@pytest.mark.parametrize("kind", ["adain", "adaconv"])
def test_identity_weight_adds_the_self_stylisation_term_but_not_to_validation(data_dir, tmp_path, kind):
    """--identity-weight w: the training total gains w·identity_loss of the content decoded with its own style
    code (AdaIN: the decoder on f(c) itself), its pixel term weighed by --identity-pixel-weight; the held-out
    losses leave it out, so they stay comparable; a resumed run records the phase and exports both weights."""
    run = tmp_path / "run"
    Trainer(config(data_dir, run, model=kind, iterations=2, style_cache_gb=0)).train()
    trainer = Trainer(config(data_dir, run, model=kind, iterations=3, identity_weight=2.0, identity_pixel_weight=7.0,
                             resume=True, style_cache_gb=0))
    trainer.load_data()
    content, style = trainer.make_batch(7)[:2]
    model, encoder = trainer.model, trainer.model.encoder
    with torch.no_grad():
        total, loss_c, loss_s = trainer.objective(content, style)
        plain = trainer.objective(content, style, identity=False)[0]
        reconstruction = model.decode(encoder.encode(content), model.own_style_code(content, encoder.encode(content)))
        expected = identity_loss(reconstruction, encoder(reconstruction), content, encoder(content), pixel_weight=7.0)
        sanet = identity_loss(reconstruction, encoder(reconstruction), content, encoder(content))
    assert plain.item() == pytest.approx(loss_c.item() + 10.0 * loss_s.item(), rel=1e-5)
    assert expected.item() > 0.0
    assert total.item() == pytest.approx(plain.item() + 2.0 * expected.item(), rel=1e-4)
    assert expected.item() != pytest.approx(sanet.item(), rel=1e-3)  # the pixel term's weight is not SANet's 50
    trainer.train()
    phases = trainer.provenance["phases"]
    assert [(p["from_iteration"], p["identity_weight"], p["identity_pixel_weight"]) for p in phases] == [
        (0, 0.0, 50.0), (2, 2.0, 7.0)]
    exported = export_weights(run, tmp_path / "w.safetensors")
    assert (exported["identity_weight"], exported["identity_pixel_weight"]) == (2.0, 7.0)


def test_resume_takes_the_new_learning_rate(data_dir, tmp_path):
    """--resume --lr X continues at X·decay(step), not at the learning rate saved in the optimiser state."""
    run = tmp_path / "run"
    Trainer(config(data_dir, run, iterations=2, lr=1e-4, lr_decay=0.5)).train()
    trainer = Trainer(config(data_dir, run, iterations=3, lr=3e-4, lr_decay=0.5, resume=True))
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(3e-4 / (1 + 0.5 * 2))
    trainer.train()
    rows = (run / "log.csv").read_text().splitlines()
    assert float(rows[-1].split(",")[5]) == pytest.approx(3e-4 / (1 + 0.5 * 3), rel=1e-3)


def test_a_plain_resume_keeps_the_runs_own_learning_rate(data_dir, tmp_path):
    """A rate lowered on one --resume holds on the next plain --resume, as the seed does; a new run starts at 1e-4."""
    run = tmp_path / "run"
    fresh = Trainer(config(data_dir, run, iterations=2, lr_decay=0.5))
    assert fresh.config.lr == pytest.approx(1e-4)
    fresh.train()
    Trainer(config(data_dir, run, iterations=3, lr=4e-5, lr_decay=0.5, resume=True)).train()
    trainer = Trainer(config(data_dir, run, iterations=4, lr_decay=0.5, resume=True))
    assert trainer.config.lr == pytest.approx(4e-5)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(4e-5 / (1 + 0.5 * 3))
    trainer.train()
    rows = (run / "log.csv").read_text().splitlines()
    assert float(rows[-1].split(",")[5]) == pytest.approx(4e-5 / (1 + 0.5 * 4), rel=1e-3)


RECIPE_OF_A_RUN = dict(iterations=2, batch_size=1, crop_size=72, lr=3e-4, lr_decay=0.25, warmup=4,
                      style_encoder_lr_scale=0.5, style_weight=12.0, content_weight=0.75, seed=9, ema_decay=0.9)


def test_a_plain_resume_keeps_the_runs_whole_recipe(data_dir, tmp_path, capsys):
    """A run set up away from every default goes on as it was on a plain --resume (the campaign's 256² phase
    once fell back to 128² that way): same crops, rates, weights and averaging, and no new phase recorded."""
    run = tmp_path / "run"
    Trainer(config(data_dir, run, **RECIPE_OF_A_RUN)).train()
    unset = {field: None for field in RECIPE_OF_A_RUN}
    # the run is at its own total: a plain resume has nothing to train and says what to give
    with pytest.raises(AdaconvError, match=r"is at iteration 2 of its 2: give a larger --iterations"):
        Trainer(config(data_dir, run, resume=True, **unset)).train()
    with pytest.raises(AdaconvError, match=r"is at iteration 2 of its 1: give a larger --iterations"):
        Trainer(config(data_dir, run, resume=True, **(unset | {"iterations": 1}))).train()
    trainer = Trainer(config(data_dir, run, resume=True, **(unset | {"iterations": 3})))
    assert {field: getattr(trainer.config, field) for field in RECIPE_OF_A_RUN} == RECIPE_OF_A_RUN | {"iterations": 3}
    assert "differs" not in capsys.readouterr().err
    assert trainer.objective.style_weight == 12.0 and trainer.objective.content_weight == 0.75
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(3e-4 * 3 / 4 / (1 + 0.25 * 2))
    trainer.load_data()
    content, style, _ = trainer.make_batch(2)
    assert content.shape == style.shape == (1, 3, 72, 72)
    summary = trainer.train()
    assert (summary["iteration"], summary["images_seen"]) == (3, 3)
    assert len(trainer.provenance["phases"]) == 1 and trainer.average.n_averaged.item() == 3


def test_an_option_given_on_resume_changes_the_recipe_and_says_so(data_dir, tmp_path, capsys):
    """A given value rules over the run's own and is named once on stderr; defaults never override a run."""
    run = tmp_path / "run"
    Trainer(config(data_dir, run, **RECIPE_OF_A_RUN)).train()
    capsys.readouterr()
    trainer = Trainer(config(data_dir, run, resume=True, iterations=3, batch_size=None, crop_size=96,
                             lr=None, style_weight=None))  # a longer total is not a change of recipe
    assert (trainer.config.crop_size, trainer.config.batch_size, trainer.config.lr) == (96, 1, 3e-4)
    err = capsys.readouterr().err
    assert "--crop-size 96 differs from this run's 72" in err and err.count("differs") == 1
    assert [p["crop_size"] for p in trainer.provenance["phases"]] == [72, 96]


def test_a_new_run_takes_the_defaults(data_dir, tmp_path):
    from adaconv.training import RECIPE_DEFAULTS

    trainer = Trainer(TrainConfig(model="adain", content=str(data_dir / "train" / "content"),
                                  style=str(data_dir / "train" / "style"), out=str(tmp_path / "run"),
                                  max_images=2, progress=False))
    assert {field: getattr(trainer.config, field) for field in RECIPE_DEFAULTS} == RECIPE_DEFAULTS
    assert (trainer.config.crop_size, trainer.config.lr, trainer.config.iterations) == (128, 1e-4, 160_000)


def test_resume_refuses_a_file_that_is_not_a_training_checkpoint(data_dir, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"weights": torch.zeros(2)}, run / CHECKPOINT)
    with pytest.raises(AdaconvError, match="not an adaconv training checkpoint"):
        Trainer(config(data_dir, run, resume=True))
    (run / CHECKPOINT).write_bytes(b"not a pickle")
    with pytest.raises(AdaconvError, match="cannot read checkpoint"):
        Trainer(config(data_dir, run, resume=True))
    # checked before the model is built: weights of one AdaConv layer form cannot go on in the other
    torch.save({"model": {}, "optimizer": {}, "model_kind": "adaconv", "config": {"parametrization": "paper"}},
               run / CHECKPOINT)
    with pytest.raises(AdaconvError, match="is a paper AdaConv run"):
        Trainer(config(data_dir, run, model="adaconv", resume=True, parametrization="residual"))


def test_a_run_stopped_during_its_warmup_goes_on_ramping_after_a_plain_resume(data_dir, tmp_path):
    """A warm start stopped at step 2 of an 8-step warm-up resumes at 3/8 of the rate and ramps on, rather than
    jumping to the full rate; the run's warm-up is kept in its checkpoint (and so in exported provenance)."""
    run = tmp_path / "run"
    Trainer(config(data_dir, run, iterations=2, lr_decay=0.0, warmup=8)).train()
    trainer = Trainer(config(data_dir, run, iterations=3, lr_decay=0.0, resume=True))
    assert trainer.config.warmup == 8
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4 * 3 / 8)
    trainer.train()
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4 * 4 / 8)
    assert torch.load(run / CHECKPOINT, weights_only=False)["config"]["warmup"] == 8


def test_a_checkpoint_of_the_unfused_optimiser_resumes_fused(data_dir, tmp_path):
    """Checkpoints from before fused Adam (param groups say fused=None) must not fall back to the per-tensor
    loop, which cost AdaConv ~0.5 s a step; the run goes on from them to the same weights as from a fused one."""
    for name in ("fused", "unfused"):
        torch.manual_seed(0)
        Trainer(config(data_dir, tmp_path / name, iterations=2)).train()
    state = torch.load(tmp_path / "unfused" / CHECKPOINT, weights_only=False)
    assert all(group["fused"] for group in state["optimizer"]["param_groups"])
    for group in state["optimizer"]["param_groups"]:
        group["fused"] = None
    torch.save(state, tmp_path / "unfused" / CHECKPOINT)
    resumed = {name: Trainer(config(data_dir, tmp_path / name, iterations=4, resume=True))
               for name in ("fused", "unfused")}
    assert all(group["fused"] for group in resumed["unfused"].optimizer.param_groups)
    for trainer in resumed.values():
        trainer.train()
    a, b = (trainer.model.trainable_state_dict() for trainer in resumed.values())
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_torchrun_ranks_stop_together_when_only_one_is_signalled(data_dir, tmp_path):
    """SIGTERM to rank 1 alone: rank 0 must stop at the same step rather than wait for its gradients forever."""
    with torchrun_in_background(data_dir, tmp_path / "ddp", port=29535) as process:
        os.kill(worker_of_rank(process.pid, 1), signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    summaries = rank_summaries(process.returncode, stdout, stderr)
    assert [s["stopped_by"] for s in summaries] == ["SIGTERM"] * 2
    assert summaries[0]["iteration"] == summaries[1]["iteration"]
    assert summaries[0]["weights_checksum"] == summaries[1]["weights_checksum"]


def test_torchrun_ranks_share_the_validation_and_score_what_one_process_scores(data_dir, tmp_path):
    out = tmp_path / "ddp"
    torchrun_train(data_dir, out, "--iterations", "2", "--val-content", data_dir / "bench" / "content",
                   "--val-style", data_dir / "bench" / "style", "--val-every", "2", "--ema-decay", "0", port=29537)
    written = (out / "val.csv").read_text().splitlines()
    assert len(written) == 2 and written[1].startswith("2,")
    alone = Trainer(config(data_dir, out, iterations=2, resume=True, val_content=str(data_dir / "bench" / "content"),
                           val_style=str(data_dir / "bench" / "style"), ema_decay=0.0))
    alone.load_data()
    values = alone.validation_loss()
    assert float(written[1].split(",")[2]) == pytest.approx(values["loss"], rel=1e-4)


def test_torchrun_ranks_draw_from_disjoint_shares_of_the_paintings(data_dir, tmp_path):
    """8 paintings, 2 ranks, 8 steps of batch 1: each rank meets (and caches) only its own 4."""
    command = torchrun_command(data_dir, tmp_path / "ddp", "--iterations", "8", "--style-cache-gb", "1",
                               port=29539)
    command[command.index("adain")] = "adaconv"
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    summaries = rank_summaries(result.returncode, result.stdout, result.stderr)
    assert [s["style_cache"]["entries"] for s in summaries] == [4, 4]
    assert [s["style_cache"]["hits"] for s in summaries] == [4, 4]


def test_warmup_ramps_the_learning_rate_then_follows_the_schedule(data_dir, tmp_path):
    """--warmup 4: lr · 1/4, 2/4, 3/4 over the first steps, then the papers' decay (the log holds the lr
    the schedule gives after each step)."""
    Trainer(config(data_dir, tmp_path / "run", iterations=6, lr=1e-3, lr_decay=0.1, warmup=4)).train()
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()[1:]
    logged = [float(row.split(",")[5]) for row in rows]
    expected = [1e-3 * min(1.0, (i + 1) / 4) / (1 + 0.1 * i) for i in range(1, 7)]  # lr after step i
    assert logged == pytest.approx(expected, rel=1e-3)


def test_an_anneal_takes_the_rate_to_zero_across_a_resume_then_ends_the_run(data_dir, tmp_path, capsys):
    """--anneal-steps 4 given at iteration 2: lr · 3/4, 2/4, 1/4, 0 after steps 3-6, also when the phase is
    interrupted at 4 and continued by a plain --resume (which must not restart it); the run stops at 6, and a
    resume past it says what to give. Its export records the anneal."""
    run = tmp_path / "run"
    Trainer(config(data_dir, run, iterations=2, lr=1e-3, lr_decay=0.0)).train()
    Trainer(config(data_dir, run, iterations=4, resume=True, anneal_steps=4)).train()
    assert "--anneal-steps 4 differs from this run's 0" in capsys.readouterr().err
    summary = Trainer(config(data_dir, run, iterations=100, resume=True, anneal_steps=4)).train()
    assert (summary["iteration"], summary["stopped_by"]) == (6, "iterations")
    rows = (run / "log.csv").read_text().splitlines()[1:]
    logged = {int(row.split(",")[0]): float(row.split(",")[5]) for row in rows}
    assert [logged[i] for i in range(1, 7)] == pytest.approx([1e-3, 1e-3, 7.5e-4, 5e-4, 2.5e-4, 0.0])
    saved = torch.load(run / CHECKPOINT, weights_only=False)["config"]
    assert (saved["anneal_from"], saved["anneal_steps"]) == (2, 4)
    with pytest.raises(AdaconvError, match="annealed its learning rate to 0 at iteration 6: give another"):
        Trainer(config(data_dir, run, iterations=100, resume=True)).train()
    assert export_weights(run, tmp_path / "annealed.safetensors")["anneal"] == {"from_iteration": 2, "steps": 4}


def test_adaconv_style_encoder_learns_at_its_own_rate_through_warmup_decay_and_resume(data_dir, tmp_path):
    settings = dict(model="adaconv", max_images=4, lr=1e-4, lr_decay=0.1, warmup=2, style_encoder_lr_scale=0.1)
    trainer = Trainer(config(data_dir, tmp_path / "run", iterations=2, **settings))
    names = [group["name"] for group in trainer.optimizer.param_groups]
    assert names == ["decoder", "style_encoder", "kernel_predictors"]
    trainer.train()
    resumed = Trainer(config(data_dir, tmp_path / "run", iterations=4, resume=True, **settings))
    factor = 1 / (1 + 0.1 * 2)  # after 2 steps: warm-up done, decay applied
    assert [group["lr"] for group in resumed.optimizer.param_groups] == pytest.approx(
        [1e-4 * factor, 1e-5 * factor, 1e-4 * factor])
    # every parameter in exactly one group, and each group holding its part's parameters
    model = resumed.model
    grouped = {id(p): group["name"] for group in resumed.optimizer.param_groups for p in group["params"]}
    assert len(grouped) == len(model.trainable_parameters())
    assert all(grouped[id(p)] == name.split(".")[0] for name, p in model.named_parameters()
               if not name.startswith("encoder."))


def test_a_checkpoint_with_one_optimiser_group_resumes_with_its_adam_moments(data_dir, tmp_path):
    """Runs from before the per-part groups saved all of AdaConv's parameters in one group."""
    run = tmp_path / "run"
    Trainer(config(data_dir, run, model="adaconv", max_images=4, iterations=2)).train()
    state = torch.load(run / CHECKPOINT, weights_only=False)
    groups = state["optimizer"]["param_groups"]
    assert len(groups) == 3
    merged = {**groups[0], "params": [i for group in groups for i in group["params"]]}
    merged.pop("name")
    state["optimizer"]["param_groups"] = [merged]
    torch.save(state, run / CHECKPOINT)
    resumed = Trainer(config(data_dir, run, model="adaconv", max_images=4, iterations=3, resume=True))
    assert len(resumed.optimizer.param_groups) == 3
    for index, parameter in enumerate(resumed.model.trainable_parameters()):
        saved = state["optimizer"]["state"][index]
        assert torch.equal(resumed.optimizer.state[parameter]["exp_avg_sq"], saved["exp_avg_sq"])


def test_an_exploding_loss_stops_the_run_and_keeps_the_last_good_checkpoint(data_dir, tmp_path, capsys):
    """Ten sane steps, then a resume at a learning rate that blows the decoder up: the guard stops the run with
    one line, before a diverged state overwrites the checkpoint (a diverged loss can stay finite)."""
    from adaconv.cli import main

    run = tmp_path / "run"
    Trainer(config(data_dir, run, iterations=10)).train()
    good = torch.load(run / CHECKPOINT, weights_only=False)
    arguments = ["train", "--model", "adain", "--content", str(data_dir / "train" / "content"),
                 "--style", str(data_dir / "train" / "style"), "--out", str(run), "--resume", "--iterations", "40",
                 "--batch-size", "2", "--crop-size", "64", "--max-images", "24", "--checkpoint-every", "1",
                 "--log-every", "1", "--sample-every", "0", "--lr", "0.05", "--warmup", "0"]
    assert main(arguments) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    # each run's first line says its precision (two runs here), the resume names the changed rate; then the
    # error, in one line, no traceback
    assert lines[1].endswith("--lr 0.05 differs from this run's 0.0001: it applies from here on")
    assert " on cpu (" in lines[0] and " on cpu (" in lines[2] and len(lines) == 4
    assert "training diverged at iteration" in lines[-1] and "--resume it with a lower --lr" in lines[-1]
    after = torch.load(run / CHECKPOINT, weights_only=False)
    rows = (run / "log.csv").read_text().splitlines()
    stopped_at = int(rows[-1].split(",")[0])
    # the weights saved after step N are judged by the loss of step N + 1: the checkpoint of the step before the
    # exploding one made that loss, so the run goes back to the one before it, whose next loss was normal
    assert after["iteration"] == stopped_at - 2 >= good["iteration"]
    assert f"holds iteration {stopped_at - 2}," in lines[-1]
    assert float(rows[-1].split(",")[2]) > 20 * max(float(row.split(",")[2]) for row in rows[1:11])
    assert float(rows[stopped_at - 1].split(",")[2]) < 20 * max(float(row.split(",")[2]) for row in rows[1:11])


def test_adaconv_reads_training_styles_statistics_at_the_crop_scale(data_dir, tmp_path):
    """--style-statistics crop takes the style loss's target and the AdaIN base from the style resized to the
    crop size (the descriptor still from the 256x256 image; new runs default to square); a run from before the
    choice resumes as square, and switching on --resume starts a phase that the exported weights record."""
    from adaconv.losses import feature_statistics
    from adaconv.preprocessing import resize
    from adaconv.training import TrainingObjective

    run = tmp_path / "run"
    assert Trainer(config(data_dir, tmp_path / "default", model="adaconv", max_images=4)).config.style_statistics \
        == "square"
    gc.collect()
    trainer = Trainer(config(data_dir, run, model="adaconv", max_images=4, iterations=2, style_cache_gb=0,
                             style_statistics="crop"))
    assert trainer.objective.statistics_size == 64
    trainer.load_data()
    content, style, _ = trainer.make_batch(0)
    encoder = trainer.model.encoder
    with torch.no_grad():
        crop = trainer.objective(content, style)
        given = TrainingObjective(trainer.model, 10.0)(content, style_features=(
            encoder(style)[-1], feature_statistics(encoder(resize(style, 64, 64)))))
        square = TrainingObjective(trainer.model, 10.0)(content, style)
    assert torch.allclose(crop[0], given[0], rtol=1e-5) and not torch.allclose(crop[2], square[2], rtol=1e-2)
    # the style cache stores the statistics at the crop scale, and says so in its shards' identity
    cached_trainer = Trainer(config(data_dir, tmp_path / "cached", model="adaconv", max_images=4, iterations=2,
                                    style_statistics="crop"))
    assert "statistics 64px" in cached_trainer._style_cache_identity()
    cached_trainer.model.load_state_dict(trainer.model.state_dict())
    with torch.no_grad():
        from_cache = cached_trainer.objective(content, style_features=cached_trainer.style_cache.features(
            [0, 1], style, encoder))
    assert torch.allclose(from_cache[0], crop[0], rtol=1e-3), (from_cache, crop)
    del cached_trainer  # each AdaConv trainer holds ~1.2 GB (weights, average, gradients, Adam moments)
    gc.collect()
    trainer.train()
    del trainer
    gc.collect()

    state = torch.load(run / CHECKPOINT, weights_only=False)  # as saved before the option existed
    del state["config"]["style_statistics"]
    for phase in state["provenance"]["phases"]:
        phase.pop("style_statistics")
    torch.save(state, run / CHECKPOINT)
    resumed = Trainer(config(data_dir, run, model="adaconv", max_images=4, iterations=3, resume=True))
    assert resumed.config.style_statistics == "square" and resumed.objective.statistics_size is None
    del resumed
    gc.collect()
    switched = Trainer(config(data_dir, run, model="adaconv", max_images=4, iterations=3, resume=True,
                              style_statistics="crop"))
    switched.train()
    phases = switched.provenance["phases"]
    assert [(p["from_iteration"], p.get("style_statistics")) for p in phases] == [(0, None), (2, "crop")]
    provenance = export_weights(run, tmp_path / "w.safetensors", weights="last")
    assert provenance["style_statistics"] == "crop"
