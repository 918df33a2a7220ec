"""Training both models (SPEC §4): resumable, time-limited, multi-process, and fast on a CPU.

A run lives in one folder: ``checkpoint.pt`` (model, optimiser, schedule, iteration; written atomically
every ``checkpoint_every`` steps and at the time limit), ``log.csv`` (scalars), ``losses.png`` (curves)
and ``samples/`` (contact sheets of fixed content x style pairs). Batches are a pure function of
(seed, rank, step), so ``--resume`` continues exactly where an uninterrupted run would be.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import functools
import json
import math
import os
import shutil
import signal
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from . import allocator
from .contact_sheet import example_paths, examples_sheet
from .data import BatchPrefetcher, ImageBank, ShuffledIndices, random_crops, whole_images
from .devices import bf16_is_fast, pick_device
from .errors import AdaconvError, WeightsError
from .imageio import list_images, to_tensor, write_atomically
from .kernel_prediction import STYLE_IMAGE_SIZE
from .losses import IDENTITY_PIXEL_WEIGHT, content_loss, feature_statistics, identity_loss, style_loss
from .models import StyleTransferModel, build_model
from .modulation import adain
from .preprocessing import center_crop, resize, resize_short_side
from .style_cache import StyleFeatureCache
from .weights import int8_candidates, load_trainable_tensors, read_weights, save_weights

CHECKPOINT = "checkpoint.pt"
PREVIOUS_CHECKPOINT = "checkpoint.previous.pt"  # the one before: where a diverged run goes back to
VAL_AVERAGE = "val_average.csv"
STYLE_CACHE_DIR = "style_cache"  # AdaConv: the style features computed so far, one shard per checkpoint
FUSED_ADAM_DEVICES = ("cpu", "cuda", "mps")  # where torch 2.13 has a fused Adam kernel
VAL_FIELDS = ("iteration", "images_seen", "loss", "content_loss", "style_loss")
SAMPLE_SIZE = 192  # pixels a side of each cell of the training samples' contact sheet
LOG_FIELDS = ("iteration", "images_seen", "loss", "content_loss", "style_loss", "lr",
              "seconds_per_step", "data_wait_fraction", "wall_seconds")


@dataclass
class TrainConfig:
    """One invocation of ``adaconv train``. The recipe fields (RECIPE_DEFAULTS) default to None: a new run takes
    the defaults, a resumed run its own values, kept in its checkpoint; a value given here rules either way."""
    model: str
    content: str
    style: str
    out: str
    iterations: int | None = None     # the run's total steps
    batch_size: int | None = None     # per process
    crop_size: int | None = None
    lr: float | None = None
    lr_decay: float | None = None
    warmup: int | None = None         # steps of linear lr warm-up from iteration 0 (warm starts); a run stopped
                                      # mid-warm-up goes on ramping after a plain --resume
    anneal_steps: int | None = None   # take the lr linearly to 0 over this many steps, then stop (0: no anneal)
    anneal_from: int | None = None    # the iteration the anneal began at (set by the Trainer, kept on --resume)
    style_encoder_lr_scale: float | None = None  # AdaConv: the style encoder's learning rate is lr times this
    style_weight: float | None = None
    content_weight: float | None = None  # L = content_weight·L_content + λ·L_style (the papers': 1)
    identity_weight: float | None = None  # + this times the identity loss (SANet's; 0, the papers': none)
    identity_pixel_weight: float | None = None  # the identity loss's weight on its pixel term (SANet's 50)
    device: str = "auto"
    threads: int | None = None
    time_limit: float | None = None   # minutes from the Trainer's creation (data loading included)
    resume: bool = False
    init: str | None = None
    seed: int | None = None           # batch order
    parametrization: str | None = None
    style_statistics: str | None = None  # AdaConv: "crop" or "square" (see STYLE_STATISTICS)
    precision: str = "auto"           # auto: bf16 autocast where it is fast (bf16_is_fast); or "fp32" / "bf16"
    checkpoint_every: int = 100
    sample_every: int = 500
    log_every: int = 10
    max_images: int | None = None     # cap per folder (tests, quick experiments)
    val_content: str | None = None    # held-out folders: a fixed subset is scored every val_every steps
    val_style: str | None = None
    val_every: int = 500
    val_pairs: tuple[int, int] = (5, 8)  # contents x styles of the fixed validation subset
    style_cache_gb: float = 10.0      # AdaConv: memory for cached style features (0: no cache, styles flipped)
    ema_decay: float | None = None    # exponential moving average of the weights, exported by default (0: none)
    progress: bool | None = None      # None: a bar when attached to a terminal


def describe_device(device: torch.device) -> str:
    """For the run's log: the device and, on a CPU, its vector unit and whether it has native bf16."""
    if device.type != "cpu":
        return str(device)
    native = bf16_is_fast(device)
    return (f"cpu ({torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads, "
            f"{'native' if native else 'no native'} bf16)")


class TrainingObjective(nn.Module):
    """One forward pass of training: images -> (total loss, content loss, style loss).

    The frozen encoder runs on the content and style under no_grad; only the pass over the output
    keeps a graph (for the input gradient; VGG's weights need none).
    """

    def __init__(self, model: StyleTransferModel, style_weight: float, statistics_size: int | None = None,
                 content_weight: float = 1.0, identity_weight: float = 0.0,
                 identity_pixel_weight: float = IDENTITY_PIXEL_WEIGHT):
        super().__init__()
        self.model = model
        self.style_weight = style_weight
        self.content_weight = content_weight
        self.identity_weight = identity_weight  # 0: the papers' objective (see identity_loss)
        self.identity_pixel_weight = identity_pixel_weight
        self.statistics_size = statistics_size  # AdaConv: read the style's statistics at this size (None: as given)

    def forward(self, content: torch.Tensor, style: torch.Tensor | None = None,
                style_features: tuple[torch.Tensor, list] | None = None, identity: bool = True):
        """``style`` images, or (AdaConv, from the style cache) their relu4_1 and per-tap statistics, the latter
        already at ``statistics_size`` (the cache reads them there). ``identity=False`` leaves the identity term
        out (validation: the held-out losses stay comparable across recipes)."""
        model, encoder = self.model, self.model.encoder
        with_identity = identity and self.identity_weight > 0
        with torch.no_grad():
            content_taps = encoder(content) if with_identity else None
            content_features = content_taps[-1] if with_identity else encoder.encode(content)
            if style_features is None:
                features = encoder(style)
                style_relu4_1, style_stats = features[-1], feature_statistics(features)
                if self.statistics_size is not None and model.kind == "adaconv":
                    size = self.statistics_size
                    style_stats = feature_statistics(encoder(resize(style, size, size)))
            else:
                style_relu4_1, style_stats = style_features
        if model.kind == "adain":
            target = adain(content_features, *style_stats[-1])
            output = model.decoder(target)
        else:
            target = content_features
            code = model.style_code_from_features(style_relu4_1)
            code.mean, code.std = style_stats[-1]
            output = model.decode(content_features, code)
        output_features = encoder(output)
        loss_c = content_loss(output_features[-1], target)
        loss_s = style_loss(output_features, style_stats)
        total = self.content_weight * loss_c + self.style_weight * loss_s
        if with_identity:
            reconstruction = model.decode(content_features, model.own_style_code(content, content_features))
            total = total + self.identity_weight * identity_loss(reconstruction, encoder(reconstruction),
                                                                 content, content_taps, self.identity_pixel_weight)
        return total, loss_c.detach(), loss_s.detach()


def learning_rate_factor(decay: float, warmup: int = 0, anneal_from: int = 0, anneal_steps: int = 0):
    """The papers' schedule, lr / (1 + decay · iteration), ramped up linearly over the first ``warmup`` steps and,
    with ``anneal_steps``, taken linearly down to 0 over the steps from ``anneal_from`` on.

    The ramp is for warm starts: trained weights with a fresh Adam state get updates of about lr · sign(g) on
    every weight in the first steps (the moment estimates hold one or two gradients), which knocked the loss
    back up in the campaign's warm-started sessions (docs/training.md). The anneal ends a run the way a finished
    schedule does (the inverse-time decay never gets near 0): the weights settle instead of wandering at lr."""
    def factor(iteration: int) -> float:
        ramp = min(1.0, (iteration + 1) / warmup if warmup else 1.0)
        anneal = 1.0
        if anneal_steps and iteration >= anneal_from:
            anneal = max(0.0, 1.0 - (iteration - anneal_from) / anneal_steps)
        return ramp * anneal / (1.0 + decay * iteration)
    return factor


# AdaConv: where a training style's channel statistics (the style loss's target, the AdaIN base of the residual
# form) are read. "square": from the 256x256 image the style encoder reads, while the content is a 128x128 crop:
# strokes at twice the content's scale, unlike stylize, which reads both at one scale (session 9 found this cost
# AdaConv ~20% in style distance at inference until stylize read styles as AdaIN does). "crop": from the style
# resized to the crop size, the content's scale. Runs that started before the choice existed are "square". Measured
# in session 9 on a paired run (same batches, ~550 steps from one checkpoint): "crop" scored worse at 512 px on
# content (+4.1%) and style (+16%) distance, so "square" stays the default.
STYLE_STATISTICS = ("crop", "square")
DEFAULT_LR = 1e-4  # the papers' Adam learning rate (SPEC)
LEGACY_STYLE_STATISTICS = "square"  # also the default
# what a phase recorded before a recipe key existed was trained with (λ was 10 in every earlier run)
PHASE_DEFAULTS = {"style_statistics": LEGACY_STYLE_STATISTICS, "style_weight": 10.0, "content_weight": 1.0,
                  "identity_weight": 0.0, "identity_pixel_weight": IDENTITY_PIXEL_WEIGHT}
# A run's recipe and the values a new run takes. On --resume, a field not given takes the run's own value from its
# checkpoint (or, for a checkpoint older than the field, this default, which every such run used): a plain
# `--resume` goes on as the run was last set up (a lowered lr, the 256² finishing phase, a λ experiment, the
# style encoder's slower rate), where falling back to the defaults would silently change the recipe.
RECIPE_DEFAULTS = {"iterations": 160_000, "batch_size": 8, "crop_size": 128, "lr": DEFAULT_LR, "lr_decay": 5e-5,
                   "warmup": 0, "anneal_steps": 0, "anneal_from": 0, "style_encoder_lr_scale": 1.0,
                   "style_weight": 10.0, "content_weight": 1.0, "identity_weight": 0.0,
                   "identity_pixel_weight": IDENTITY_PIXEL_WEIGHT,
                   "seed": 0, "parametrization": "residual", "style_statistics": LEGACY_STYLE_STATISTICS,
                   "ema_decay": 0.999}
ADACONV_ONLY = ("style_encoder_lr_scale", "parametrization", "style_statistics")  # no effect on an AdaIN run
FIXED_ON_RESUME = ("parametrization",)  # the weights mean something else in the other layer form


def resolve_recipe(config: TrainConfig, run: dict | None, announce: bool = True, iteration: int = 0) -> TrainConfig:
    """``config`` with its recipe complete: the given values, then ``run``'s (a resumed run's saved config), then
    the defaults. A given value that differs from the run's is said once on stderr (it applies from here on), but
    for the total of iterations, which a longer run routinely extends, and AdaConv's options on an AdaIN run.
    An anneal given anew (another length than the run's own) starts at ``iteration``, the run's current one; the
    same length again continues the run's anneal where it was."""
    resolved = {}
    for field, default in RECIPE_DEFAULTS.items():
        given = getattr(config, field)
        own = default if run is None or run.get(field) is None else run[field]
        resolved[field] = own if given is None else given
        if run is None or given is None or given == own or (field in ADACONV_ONLY and config.model != "adaconv"):
            continue
        option = f"--{field.replace('_', '-')}"
        if field in FIXED_ON_RESUME:
            raise AdaconvError(f"{option} {given}: this is a {own} AdaConv run, whose weights cannot go on as {given}")
        if announce and field != "iterations":
            print(f"adaconv train: {option} {given} differs from this run's {own}: it applies from here on",
                  file=sys.stderr)
    own_anneal = RECIPE_DEFAULTS["anneal_steps"] if run is None else run.get("anneal_steps") or 0
    if config.anneal_steps is not None and config.anneal_steps != own_anneal:
        resolved["anneal_from"] = iteration
    return dataclasses.replace(config, **resolved)

PARAMETER_GROUPS = {"adain": ("decoder",), "adaconv": ("decoder", "style_encoder", "kernel_predictors")}
DIVERGENCE_FACTOR = 20.0  # a log window's mean loss this many times the recent median is a divergence
DIVERGENCE_HISTORY = 10   # log windows the median is taken over


def parameter_groups(model: StyleTransferModel, lr: float, style_encoder_lr_scale: float = 1.0) -> list[dict]:
    """Adam's parameter groups: one per top-level part, in the order of ``model.trainable_parameters()``.

    AdaConv's style encoder may learn more slowly than the rest: its 38 M-weight fully connected layer sums
    8,192 inputs, and Adam moves every weight by about lr per step whatever its gradient's size, so steps that
    agree in sign move the style descriptor W by up to ~lr · ‖input‖₁ each. In the first campaign run that
    took W from 0.014 to 15 within ~100 steps at lr 1e-4 and the loss from ~20 to 1e16 (docs/training.md,
    session 7). The groups are fixed per model (whatever the scales), so checkpoints keep one layout.
    """
    scales = {"style_encoder": style_encoder_lr_scale}
    groups = []
    for part in PARAMETER_GROUPS[model.kind]:
        params = [p for name, p in model.named_parameters() if name.split(".")[0] == part]
        groups.append({"params": params, "lr": lr * scales.get(part, 1.0), "name": part})
    assert sum(len(g["params"]) for g in groups) == len(model.trainable_parameters()), "a part has no group"
    return groups


def regroup_optimizer_state(state: dict, groups: list[dict]) -> dict:
    """An optimiser state saved with one group for all parameters (runs before session 7), split into
    ``groups`` (same parameter order) so that such a run resumes with its Adam moments."""
    if len(state["param_groups"]) == len(groups):
        return state
    saved = state["param_groups"]
    if len(saved) != 1 or len(saved[0]["params"]) != sum(len(g["params"]) for g in groups):
        raise AdaconvError("the checkpoint's optimiser state does not match this model's parameters")
    indices, regrouped, start = saved[0]["params"], [], 0
    for group in groups:
        count = len(group["params"])
        regrouped.append({**saved[0], "params": indices[start:start + count], "name": group["name"]})
        start += count
    return {"state": state["state"], "param_groups": regrouped}


class Trainer:
    def __init__(self, config: TrainConfig):
        # --time-limit counts from here: loading the data and the style cache is part of the session's budget
        # (counted from the loop's start, a 12-minute limit ended 1-2 minutes late in session 31)
        self.created = time.monotonic()
        self.config = config
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.distributed = self.world_size > 1
        self.device = pick_device(config.device)
        if config.threads:
            torch.set_num_threads(config.threads)
        if self.distributed and not dist.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            dist.init_process_group(backend)
            if self.device.type == "cuda":
                local_rank = int(os.environ.get("LOCAL_RANK", "0"))
                self.device = torch.device("cuda", local_rank)
                torch.cuda.set_device(self.device)
        self.out = Path(config.out)
        self.is_main = self.rank == 0
        if self.is_main:
            (self.out / "samples").mkdir(parents=True, exist_ok=True)
        checkpoint = self.out / CHECKPOINT
        state = None
        if config.resume and checkpoint.exists():
            state = self._read_checkpoint(checkpoint)
        elif config.resume:
            raise AdaconvError(f"--resume: no checkpoint in {self.out} (start without --resume, or --init WEIGHTS)")
        elif checkpoint.exists():
            raise AdaconvError(f"{self.out} already holds a run: add --resume to continue it, or choose another --out")
        run_config = state.get("config", {}) if state is not None else None
        self.config = config = resolve_recipe(config, run_config, announce=self.is_main,
                                              iteration=state.get("iteration", 0) if state is not None else 0)
        self._validate_recipe()
        hyperparameters = {"parametrization": config.parametrization} if config.model == "adaconv" else {}
        try:
            self.model = build_model(config.model, **hyperparameters)
        except ValueError as error:
            raise AdaconvError(str(error)) from None
        self.model.to(self.device, memory_format=torch.channels_last)
        self.objective = TrainingObjective(self.model, config.style_weight, content_weight=config.content_weight,
                                           identity_weight=config.identity_weight,
                                           identity_pixel_weight=config.identity_pixel_weight)
        groups = parameter_groups(self.model, config.lr, config.style_encoder_lr_scale)
        self.group_scales = [group["lr"] / config.lr for group in groups]
        # fused Adam: one kernel over all parameters instead of a dozen elementwise passes per tensor; for
        # AdaConv's 59 M parameters the default loop cost 0.32 s of a ~3 s one-thread step (docs/benchmarks.md)
        self.fused_adam = self.device.type in FUSED_ADAM_DEVICES
        self.optimizer = torch.optim.Adam(groups, lr=config.lr, fused=self.fused_adam or None)
        self.recent_losses: list[float] = []  # log windows' mean losses, for the divergence guard
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._schedule())
        self.iteration = 0
        self.elapsed_before = 0.0  # training seconds of earlier sessions of this run
        self.checkpoint_iteration: int | None = None  # the iteration checkpoint.pt holds
        self.previous_checkpoint_iteration: int | None = None  # and checkpoint.previous.pt (this session's)
        self.provenance: dict = {"init": None}
        if state is not None:
            self._restore(state, checkpoint)
        elif config.init:
            self._warm_start(config.init)
        self.objective.statistics_size = self._statistics_size()
        self._record_phase()
        self.average = None
        if config.ema_decay > 0:
            # Polyak averaging: the held-out loss of single checkpoints jumps by ±15% between validations
            # (docs/training.md); the average of the recent weights is the steadier model to ship.
            self.average = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay))
            if self._checkpoint_average is not None:
                load_trainable_tensors(self.average.module, self._checkpoint_average["weights"], source=checkpoint)
                self.average.n_averaged.fill_(self._checkpoint_average["updates"])
            self.average_objective = TrainingObjective(self.average.module, config.style_weight,
                                                       self._statistics_size(), config.content_weight)
        self.style_cache = None
        if config.model == "adaconv" and config.style_cache_gb > 0:
            # the budget is the machine's: split between the data-parallel processes that run on it
            local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
            self.style_cache = StyleFeatureCache(int(config.style_cache_gb * 2 ** 30 / local_processes),
                                                 statistics_size=self._statistics_size())
        self.step_module = self.objective
        if self.distributed:
            # buffers are constants (the encoder's mean, AdaConv's identity kernels): equal on every rank, so
            # no sync before each forward (torch 2.13 renamed broadcast_buffers to forward_sync_buffers)
            self.step_module = nn.parallel.DistributedDataParallel(
                self.objective, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                forward_sync_buffers=False)

    # -- state -----------------------------------------------------------------------------------
    def _warm_start(self, path: str) -> None:
        tensors, metadata = read_weights(path)
        source = metadata["model"]
        if source == self.model.kind:
            load_trainable_tensors(self.model, tensors, source=path)
        elif source == "adain" and self.model.kind == "adaconv":
            load_trainable_tensors(self.model, tensors, source=path, prefixes=("decoder.",))
        else:
            raise WeightsError(f"{path}: cannot warm-start {self.model.kind} from {source} weights")
        self.provenance["init"] = {"path": str(path), "model": source,
                                   "provenance": json.loads(metadata.get("provenance", "{}"))}

    _checkpoint_average: dict | None = None  # the weight average found in a resumed checkpoint

    def _read_checkpoint(self, path: Path) -> dict:
        try:
            state = torch.load(path, map_location=self.device, weights_only=False)
        except Exception as error:  # a damaged checkpoint is a user-facing problem, not a crash
            raise AdaconvError(f"{path}: cannot read checkpoint ({error})") from None
        if not isinstance(state, dict) or "model" not in state or "optimizer" not in state:
            raise AdaconvError(f"{path}: is not an adaconv training checkpoint")
        if state.get("model_kind") != self.config.model:
            raise AdaconvError(f"{path}: is a {state.get('model_kind')} run, not {self.config.model}")
        return state

    def _validate_recipe(self) -> None:
        config = self.config
        for option, value in (("--lr", config.lr), ("--content-weight", config.content_weight),
                              ("--style-weight", config.style_weight),
                              ("--style-encoder-lr-scale", config.style_encoder_lr_scale)):
            if not value > 0:
                raise AdaconvError(f"{option} {value}: must be positive")
        for option, value in (("--identity-weight", config.identity_weight),
                              ("--identity-pixel-weight", config.identity_pixel_weight)):
            if not value >= 0:
                raise AdaconvError(f"{option} {value}: must be 0 or more")
        if not 0.0 <= config.ema_decay < 1.0:
            raise AdaconvError(f"--ema-decay {config.ema_decay}: must be in [0, 1)")
        if config.style_statistics not in STYLE_STATISTICS:
            raise AdaconvError(f"style statistics {config.style_statistics!r}: "
                               f"choose from {', '.join(STYLE_STATISTICS)}")

    def _restore(self, state: dict, path: Path) -> None:
        """The run's weights, optimiser, schedule position and averages from its checkpoint (the recipe was
        resolved from it before the model was built)."""
        load_trainable_tensors(self.model, state["model"], source=path)
        self.optimizer.load_state_dict(regroup_optimizer_state(state["optimizer"], self.optimizer.param_groups))
        for group in self.optimizer.param_groups:  # a checkpoint saved by the unfused optimiser says fused=None
            group["fused"] = self.fused_adam or None
        self.scheduler.load_state_dict(state["scheduler"])
        self.iteration = state["iteration"]
        # The saved optimiser carries the old learning rate; the run's lr (or this invocation's --lr) and --lr-decay
        # rule from here (a recipe change on a resumed run, e.g. a higher lr, must not be silently ignored).
        schedule = self._schedule()
        self.scheduler.lr_lambdas = [schedule] * len(self.optimizer.param_groups)
        factor = schedule(self.scheduler.last_epoch)
        self.scheduler.base_lrs = [self.config.lr * scale for scale in self.group_scales]
        for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs):
            group["initial_lr"], group["lr"] = base, base * factor
        self.elapsed_before = state.get("train_seconds", 0.0)
        self.provenance = state.get("provenance", self.provenance)
        self.provenance["phases"] = recorded_phases(state)
        self._checkpoint_average = state.get("average")  # None in runs started before averaging existed
        self.recent_losses = list(state.get("recent_losses", []))  # the divergence guard's memory
        self.checkpoint_iteration = self.iteration

    def _schedule(self):
        config = self.config
        return learning_rate_factor(config.lr_decay, config.warmup, config.anneal_from, config.anneal_steps)

    @property
    def final_iteration(self) -> int:
        """Where the run ends: its total of iterations, or the end of its anneal (the lr is 0 from there)."""
        config = self.config
        return min(config.iterations, config.anneal_from + config.anneal_steps) if config.anneal_steps \
            else config.iterations

    def _statistics_size(self) -> int | None:
        crop = self.config.model == "adaconv" and self.config.style_statistics == "crop"
        return self.config.crop_size if crop else None

    def save_checkpoint(self, train_seconds: float) -> None:
        if not self.is_main:  # other ranks only track what the main one keeps (for the divergence message)
            self.previous_checkpoint_iteration, self.checkpoint_iteration = self.checkpoint_iteration, self.iteration
            return
        state = {
            "model_kind": self.model.kind,
            "hyperparameters": self.model.hyperparameters(),
            "model": self.model.trainable_state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "iteration": self.iteration,
            "images_seen": self.images_seen,
            "train_seconds": train_seconds,
            "config": dataclasses.asdict(self.config),
            "world_size": self.world_size,
            "provenance": self.provenance,
            "encoder_normalization": self.model.encoder.normalisation_id,
            "recent_losses": self.recent_losses,
        }
        if self.average is not None:
            state["average"] = {"decay": self.config.ema_decay, "updates": int(self.average.n_averaged),
                                "weights": self.average.module.trainable_state_dict()}
        current, previous = self.out / CHECKPOINT, self.out / PREVIOUS_CHECKPOINT
        if current.exists():  # keep it as the previous one (a hard link: checkpoint.pt never goes missing)
            link = previous.with_suffix(".tmp")
            link.unlink(missing_ok=True)
            try:
                os.link(current, link)
            except OSError:  # a file system without hard links: a copy
                shutil.copyfile(current, link)
            os.replace(link, previous)
            self.previous_checkpoint_iteration = self.checkpoint_iteration
        write_atomically(current, lambda handle: torch.save(state, handle))
        self.checkpoint_iteration = self.iteration

    def _record_phase(self) -> None:
        """Crop size, batch, the style weight λ and (AdaConv) the style statistics' scale may change on --resume
        (the campaign's 256² finishing phase, a λ experiment): one entry each, so the held-out losses, whose scale
        they change, can be read per phase."""
        phases = self.provenance.setdefault("phases", [])
        batch = self.config.batch_size * self.world_size
        recipe = {"crop_size": self.config.crop_size, "batch_size": batch, "style_weight": self.config.style_weight,
                  "content_weight": self.config.content_weight, "identity_weight": self.config.identity_weight,
                  "identity_pixel_weight": self.config.identity_pixel_weight}
        if self.config.model == "adaconv":
            recipe["style_statistics"] = self.config.style_statistics
        if phases and all(phases[-1].get(key, PHASE_DEFAULTS.get(key)) == value for key, value in recipe.items()):
            return
        phase = {"from_iteration": self.iteration, **recipe, "images_before": self.images_seen if phases else 0}
        if phases and phases[-1]["from_iteration"] == self.iteration:
            phases[-1] = phase | {"images_before": phases[-1]["images_before"]}
        else:
            phases.append(phase)

    @property
    def images_seen(self) -> int:
        phase = self.provenance["phases"][-1]
        return phase["images_before"] + (self.iteration - phase["from_iteration"]) * phase["batch_size"]

    # -- data ------------------------------------------------------------------------------------
    def load_data(self) -> None:
        config = self.config
        show = self._show_progress()
        longest = math.ceil(config.crop_size * 1.25)
        self.contents = ImageBank.load(config.content, short_side=longest, limit=config.max_images, progress=show)
        if config.model == "adaconv":
            self.styles = ImageBank.load(config.style, square=STYLE_IMAGE_SIZE, limit=config.max_images,
                                         progress=show)
        else:
            self.styles = ImageBank.load(config.style, short_side=longest, limit=config.max_images, progress=show)
        seed = config.seed * 1000 + self.rank
        self.content_order = ShuffledIndices(len(self.contents), seed)
        # Data-parallel ranks draw from disjoint shares of the paintings (together: all of them), so that with
        # AdaConv's style cache each rank caches its own share rather than every rank the whole set.
        sharded = self.distributed and len(self.styles) >= self.world_size
        self.style_share = list(range(self.rank, len(self.styles), self.world_size) if sharded
                                else range(len(self.styles)))
        self.style_order = ShuffledIndices(len(self.style_share), seed + 500)
        self.validation = self._load_validation() if config.val_content and config.val_style else None
        skipped = len(self.contents.skipped) + len(self.styles.skipped)
        if skipped and self.is_main:
            print(f"adaconv train: skipped {skipped} unreadable images", file=sys.stderr)

    def _load_validation(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A fixed subset of held-out images, evenly spaced in name order: centre crops at the crop size."""
        config = self.config

        def pick(folder: str, count: int) -> list[Path]:
            paths = list_images(folder)
            if not paths:
                raise AdaconvError(f"{folder}: no validation images found")
            step = max(1, len(paths) // count)
            return paths[::step][:count]

        size = config.crop_size
        contents = [center_crop(resize_short_side(to_tensor(p), size), size, size)
                    for p in pick(config.val_content, config.val_pairs[0])]
        styles = []
        for path in pick(config.val_style, config.val_pairs[1]):
            image = to_tensor(path)
            if config.model == "adaconv":  # as its training styles: whole, 256x256 (the curve stays comparable)
                styles.append(resize(image, STYLE_IMAGE_SIZE, STYLE_IMAGE_SIZE))
            else:
                styles.append(center_crop(resize_short_side(image, size), size, size))
        content = torch.stack([c for c in contents for _ in styles])
        style = torch.stack([s for _ in contents for s in styles])
        return content, style

    @torch.no_grad()
    def validation_loss(self, batch_size: int = 8, averaged: bool = False) -> dict[str, float]:
        """The training objective (fp32) on the fixed held-out pairs: comparable across runs and recipes.
        ``averaged``: of the weight average instead of the current weights."""
        content, style = self.validation
        objective = self.average_objective if averaged else self.objective
        was_training = objective.model.training
        objective.model.eval()
        totals = torch.zeros(3, dtype=torch.float64, device=self.device)
        # data-parallel ranks score every world_size-th batch and add up (one rank alone would leave the rest idle)
        for start in range(self.rank * batch_size, len(content), batch_size * self.world_size):
            c = content[start:start + batch_size].to(self.device, memory_format=torch.channels_last)
            s = style[start:start + batch_size].to(self.device, memory_format=torch.channels_last)
            values = objective(c, s, identity=False)
            totals += torch.stack([v.detach().double() for v in values]) * len(c)
        objective.model.train(was_training)
        if self.distributed:
            dist.all_reduce(totals)
        totals /= len(content)
        return {"loss": totals[0].item(), "content_loss": totals[1].item(), "style_loss": totals[2].item()}

    def _validate(self) -> None:
        """Held-out losses of the current weights (val.csv) and of their average (val_average.csv)."""
        if self.validation is None:
            return
        kinds = [("validation", "val.csv", False)]
        if self.average is not None:
            kinds.append(("validation_average", VAL_AVERAGE, True))
        for key, name, averaged in kinds:
            values = self.validation_loss(averaged=averaged)  # every rank takes part; the main one writes
            path = self.out / name
            if self.is_main:
                new = not path.exists()
                with open(path, "a", newline="") as file:
                    writer = csv.writer(file)
                    if new:
                        writer.writerow(VAL_FIELDS)
                    writer.writerow([self.iteration, self.images_seen]
                                    + [f"{values[k]:.5f}" for k in VAL_FIELDS[2:]])
            self.provenance[key] = {"iteration": self.iteration, **{k: round(v, 5) for k, v in values.items()},
                                    "content": self.config.val_content, "style": self.config.val_style,
                                    "pairs": list(self.config.val_pairs), "crop_size": self.config.crop_size}

    def make_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """(content crops, style images, style indices) of a step: a pure function of (seed, rank, step)."""
        config = self.config
        generator = torch.Generator().manual_seed((config.seed * 1_000_003 + self.rank) * 10_000_019 + step)
        start = step * config.batch_size
        contents = [self.contents.images[i] for i in self.content_order.take(start, config.batch_size)]
        style_indices = [self.style_share[i] for i in self.style_order.take(start, config.batch_size)]
        styles = [self.styles.images[i] for i in style_indices]
        content = random_crops(contents, config.crop_size, generator)
        if config.model == "adaconv":
            style = whole_images(styles, generator, flip=self.style_cache is None)
        else:
            style = random_crops(styles, config.crop_size, generator)
        return content, style, style_indices

    # -- the loop --------------------------------------------------------------------------------
    def _show_progress(self) -> bool:
        if self.config.progress is not None:
            return self.config.progress and self.is_main
        return self.is_main and sys.stderr.isatty()

    def train(self) -> dict:
        config = self.config
        if config.anneal_steps and self.iteration >= self.final_iteration:
            raise AdaconvError(f"{self.out} has annealed its learning rate to 0 at iteration {self.final_iteration}: "
                               f"give another --anneal-steps to train on (0: back to the run's schedule)")
        if self.iteration >= config.iterations:
            # a run keeps its total on --resume, so a run stopped at its total would otherwise just end again
            # (a Trainer on such a run is still good for scoring it: validation_loss, write_samples)
            raise AdaconvError(f"{self.out} is at iteration {self.iteration} of its {config.iterations}: "
                               f"give a larger --iterations to train on")
        self.load_data()
        self._load_style_cache()
        self.checked_iteration = self.iteration  # the state training starts from is taken as good
        started = time.monotonic()
        limit = config.time_limit * 60 if config.time_limit else math.inf
        prefetcher = BatchPrefetcher(self.make_batch, self.iteration)
        log_path = self.out / "log.csv"
        if self.is_main:
            self._trim_log(log_path)
            if self.validation is not None:
                self._trim_log(self.out / "val.csv", VAL_FIELDS)
                if self.average is not None:
                    self._trim_log(self.out / VAL_AVERAGE, VAL_FIELDS)
        if config.precision not in ("auto", "fp32", "bf16"):
            raise AdaconvError(f"--precision {config.precision}: choose auto, fp32 or bf16")
        use_bf16 = config.precision == "bf16" or (config.precision == "auto" and bf16_is_fast(self.device))
        if self.is_main:  # the same recipe ran ~2x slower in fp32 on a CPU without native bf16 (session 11)
            print(f"adaconv train: {'bf16 autocast' if use_bf16 else 'fp32'} on {describe_device(self.device)}, "
                  f"memory allocator {allocator.describe()}", file=sys.stderr)
        bar = tqdm(total=self.final_iteration, initial=self.iteration, disable=not self._show_progress(),
                   unit="step", dynamic_ncols=True)
        window = {"loss": 0.0, "content": 0.0, "style": 0.0, "n": 0, "seconds": 0.0, "wait": 0.0}
        step_seconds = None
        # What the work around a step costs, measured when it last ran (until then: a first checkpoint is guessed
        # at 5 s, validation and samples from the step's time): the limit reserves the next step, whatever falls
        # due after it, and the stop's own validation, checkpoint and samples, so the run ends within its minutes.
        costs: dict[str, float | None] = {"checkpoint": 5.0, "validation": None, "samples": None}
        stop_reason = "iterations"
        stop_signal: list[str] = []
        previous_handlers = self._catch_stop_signals(stop_signal)
        self.model.train()
        try:
            while self.iteration < self.final_iteration:
                spent = time.monotonic() - self.created
                expected = (step_seconds or 0.0) * 1.5 + self._reserve(costs, self.iteration + 1, step_seconds)
                reason = stop_signal[0] if stop_signal else "time limit" if spent + expected > limit else None
                reason = self._agree_on_stop(reason)
                if reason:
                    stop_reason = reason
                    break
                step_started = time.perf_counter()
                wait_before = prefetcher.wait_seconds
                content, style, style_indices = prefetcher.get(self.iteration)
                content = content.to(self.device, memory_format=torch.channels_last, non_blocking=True)
                style = style.to(self.device, memory_format=torch.channels_last, non_blocking=True)
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    if self.style_cache is not None:
                        cached = self.style_cache.features(style_indices, style, self.model.encoder)
                        loss, loss_c, loss_s = self.step_module(content, style_features=cached)
                    else:
                        loss, loss_c, loss_s = self.step_module(content, style)
                if not torch.isfinite(loss):
                    raise AdaconvError(f"training diverged at iteration {self.iteration} (loss {loss.item()}); "
                                       "resume from the last checkpoint with a lower --lr")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                self.scheduler.step()
                if self.average is not None:
                    self.average.update_parameters(self.model)
                self.iteration += 1
                seconds = time.perf_counter() - step_started
                step_seconds = seconds if step_seconds is None else 0.9 * step_seconds + 0.1 * seconds
                window["loss"] += loss.item()
                window["content"] += loss_c.item()
                window["style"] += loss_s.item()
                window["n"] += 1
                window["seconds"] += seconds
                window["wait"] += prefetcher.wait_seconds - wait_before
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", c=f"{loss_c.item():.3f}", s=f"{loss_s.item():.3f}")
                if self.iteration % config.log_every == 0 or self.iteration == self.final_iteration:
                    self._log(log_path, window, started)
                    self._guard_divergence(window["loss"] / window["n"])
                    window = dict.fromkeys(window, 0.0)
                if self.validation is not None and self.iteration % config.val_every == 0:
                    costs["validation"] = timed(self._validate)
                if self.iteration % config.checkpoint_every == 0:
                    costs["checkpoint"] = timed(lambda: self._checkpoint(started))
                if self.is_main and config.sample_every and self.iteration % config.sample_every == 0:
                    costs["samples"] = timed(self.write_samples)
        finally:
            prefetcher.close()
            bar.close()
            for number, handler in previous_handlers.items():
                signal.signal(number, handler)
        if window["n"]:
            self._log(log_path, window, started)
        # A signal means "stop now" (torchrun kills its workers 30 s after passing SIGTERM on): checkpoint at
        # once and skip the final validation and samples, which can take longer than that on busy cores.
        stopped_by_signal = stop_reason in ("SIGINT", "SIGTERM")
        validated = self.provenance.get("validation", {}).get("iteration") == self.iteration
        if self.validation is not None and not validated and not stopped_by_signal:
            self._validate()
        self._checkpoint(started)
        if self.is_main:
            if not stopped_by_signal:
                self.write_samples()
            plot_losses(log_path, self.out / "losses.png", self.provenance.get("phases"))
        summary = {"iteration": self.iteration, "images_seen": self.images_seen, "stopped_by": stop_reason,
                   "session_seconds": round(time.monotonic() - started, 1),
                   "data_wait_seconds": round(prefetcher.wait_seconds, 2),
                   "rank": self.rank, "weights_checksum": weights_checksum(self.model)}
        if self.style_cache is not None:
            summary["style_cache"] = {"entries": len(self.style_cache), "hits": self.style_cache.hits,
                                      "misses": self.style_cache.misses, "read_from_disk": self.style_cache.loaded,
                                      "gib": round(self.style_cache.used_bytes / 2 ** 30, 2)}
        if self.distributed:
            dist.barrier()
        return summary

    def _reserve(self, costs: dict[str, float | None], step: int, step_seconds: float | None) -> float:
        """Seconds the time limit keeps free besides the next step (which ends at iteration ``step``): the
        validation, checkpoint and samples due right after it, then the stop's final validation (unless that
        step's), checkpoint and samples (main rank; the others agree to its stop)."""
        config = self.config

        def cost(kind: str) -> float:
            measured = costs[kind]
            return self._first_guess(kind, step_seconds) if measured is None else measured

        validating = self.validation is not None
        due_validation = validating and step % config.val_every == 0
        after_step = ((cost("validation") if due_validation else 0.0)
                      + (cost("checkpoint") if step % config.checkpoint_every == 0 else 0.0)
                      + (cost("samples") if config.sample_every and step % config.sample_every == 0 else 0.0))
        at_stop = ((cost("validation") if validating and not due_validation else 0.0)
                   + cost("checkpoint") + (cost("samples") if self.is_main else 0.0))
        return after_step + at_stop

    def _first_guess(self, kind: str, step_seconds: float | None) -> float:
        """Seconds a validation or a sample sheet not yet timed in this session may take, from the step's time.

        Validation scores each pair with the loss in fp32 (encoding the content, the style and the output, and
        decoding) at about the cost of one of a step's training images of the same size; a sample sheet only
        decodes each cell (a row's photo and a column's painting are encoded once), about a quarter of that.
        (Session 34: for AdaConv at 256² this gives 57 s where they took ~59 s; for a tiny AdaIN test run, 6.0 s
        and 2.7 s where they took 3.8 s and 2.8 s.) Without a guess, a run shorter than --val-every steps
        validated at its stop unreserved and overran its limit."""
        if step_seconds is None:
            return 0.0
        per_image = step_seconds / self.config.batch_size
        if kind == "validation":  # the current weights and their average; the ranks share the pairs
            passes = 2 if self.average is not None else 1
            return passes * len(self.validation[0]) / self.world_size * per_image
        return self._sample_cells * (SAMPLE_SIZE / self.config.crop_size) ** 2 * per_image / 4

    @functools.cached_property
    def _sample_cells(self) -> int:
        """Cells of the sample sheet (example photos × paintings), counted once: the guess runs before every step
        until the first sheet is timed."""
        contents, styles = example_paths()
        return len(contents) * len(styles)

    def _guard_divergence(self, window_loss: float) -> None:
        """Stop, keeping the last checkpoint, when the loss explodes: a log window's mean more than
        ``DIVERGENCE_FACTOR`` times the median of the previous ``DIVERGENCE_HISTORY`` windows.

        A diverged AdaConv run stays finite (its loss went from ~20 to 1e16 and settled at ~1e11 in session 7),
        so the non-finite check alone let it train garbage, overwriting its last good checkpoint, for 40 minutes.
        Ranks decide on the mean of their windows, so all of them stop together.
        """
        if self.distributed:
            total = torch.tensor([window_loss], dtype=torch.float64, device=self.device)
            dist.all_reduce(total)
            window_loss = total.item() / self.world_size
        history = self.recent_losses
        if len(history) >= DIVERGENCE_HISTORY // 2:
            reference = statistics.median(history)
            if window_loss > DIVERGENCE_FACTOR * reference:
                kept = self._keep_checked_checkpoint()
                raise AdaconvError(
                    f"training diverged at iteration {self.iteration}: loss {window_loss:.4g} over the last "
                    f"{self.config.log_every} steps, {window_loss / reference:.0f}x the recent {reference:.4g}; "
                    f"{self.out / CHECKPOINT} holds iteration {kept}, the last state whose loss was normal: "
                    "--resume it with a lower --lr (AdaConv: or a lower --style-encoder-lr-scale)")
        history.append(window_loss)
        del history[:-DIVERGENCE_HISTORY]
        self.checked_iteration = self.iteration

    def _keep_checked_checkpoint(self) -> int | None:
        """The iteration the checkpoint holds once a divergence is found. Weights saved at iteration C are known
        good only when the loss of step C + 1 (computed with them) passed the guard; a newer checkpoint goes
        back to the previous one, which has."""
        saved = self.checkpoint_iteration
        previous = self.out / PREVIOUS_CHECKPOINT
        if saved is not None and saved >= self.checked_iteration and self.previous_checkpoint_iteration is not None:
            if self.is_main:
                os.replace(previous, self.out / CHECKPOINT)
            saved = self.checkpoint_iteration = self.previous_checkpoint_iteration
        return saved

    STOP_REASONS = (None, "time limit", "SIGINT", "SIGTERM")

    def _agree_on_stop(self, reason: str | None) -> str | None:
        """Data-parallel ranks must stop at the same step (one stepping alone would wait forever for the
        others' gradients): each says whether it wants to stop, and all stop when one does."""
        if not self.distributed:
            return reason
        code = torch.tensor([self.STOP_REASONS.index(reason)], device=self.device)
        dist.all_reduce(code, op=dist.ReduceOp.MAX)
        return self.STOP_REASONS[int(code)]

    @staticmethod
    def _catch_stop_signals(flag: list[str]) -> dict:
        """SIGTERM / SIGINT end the run after the current step, with a checkpoint (main thread only)."""
        import threading

        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        for number in (signal.SIGTERM, signal.SIGINT):
            previous[number] = signal.getsignal(number)
            signal.signal(number, lambda signum, frame: flag.append(signal.Signals(signum).name))
        return previous

    def _checkpoint(self, started: float) -> None:
        if self.distributed:
            dist.barrier()
        self.save_checkpoint(self.elapsed_before + time.monotonic() - started)
        self._save_style_cache()

    # -- the style cache on disk (AdaConv) -------------------------------------------------------------
    def _style_cache_identity(self) -> str:
        identity = f"normalisation {self.model.encoder.normalisation_id}, style {STYLE_IMAGE_SIZE}px"
        size = self._statistics_size()
        return identity + (f", statistics {size}px" if size else "")

    def _style_names(self) -> dict[int, str]:
        root = Path(self.config.style)
        return {key: self.styles.paths[key].relative_to(root).as_posix() for key in self.style_share}

    def _save_style_cache(self) -> None:
        """Each rank writes the style features it computed since the last checkpoint (its own shard)."""
        if self.style_cache is None:
            return
        shard = self.out / STYLE_CACHE_DIR / f"rank{self.rank}-iteration{self.iteration:07d}.safetensors"
        self.style_cache.save_new(shard, self._style_names(), self._style_cache_identity())

    def _load_style_cache(self) -> None:
        """A resumed run starts with the style features its earlier sessions computed (as does a new run in a
        folder given another run's ``style_cache/``: entries are checked against this run's paintings)."""
        if self.style_cache is None or not (self.out / STYLE_CACHE_DIR).is_dir():
            return
        keys = {name: key for key, name in self._style_names().items()}
        read = self.style_cache.load(self.out / STYLE_CACHE_DIR, keys, self._style_cache_identity())
        if read and self.is_main:
            print(f"adaconv train: {read} cached style features read from {self.out / STYLE_CACHE_DIR}",
                  file=sys.stderr, flush=True)

    def _trim_log(self, path: Path, fields=LOG_FIELDS) -> None:
        """On resume, drop log rows past the checkpoint, so the logs match the weights."""
        if not path.exists():
            with open(path, "w", newline="") as file:
                csv.writer(file).writerow(fields)
            return
        with open(path, newline="") as file:
            rows = list(csv.DictReader(file))
        kept = [r for r in rows if int(r["iteration"]) <= self.iteration]
        if len(kept) != len(rows):
            with open(path, "w", newline="") as file:
                writer = csv.DictWriter(file, fields)
                writer.writeheader()
                writer.writerows(kept)

    def _log(self, path: Path, window: dict, started: float) -> None:
        if not self.is_main or not window["n"]:
            return
        n = window["n"]
        row = [self.iteration, self.images_seen, f"{window['loss'] / n:.5f}", f"{window['content'] / n:.5f}",
               f"{window['style'] / n:.5f}", f"{self.scheduler.get_last_lr()[0]:.3e}",
               f"{window['seconds'] / n:.3f}", f"{window['wait'] / max(window['seconds'], 1e-9):.4f}",
               f"{self.elapsed_before + time.monotonic() - started:.1f}"]
        with open(path, "a", newline="") as file:
            csv.writer(file).writerow(row)
        if not self._show_progress() and self.iteration % (self.config.log_every * 10) == 0:
            print(f"iteration {self.iteration}: loss {row[2]} (content {row[3]}, style {row[4]}), "
                  f"{row[6]} s/step, data wait {float(row[7]):.1%}", flush=True)

    def write_samples(self, size: int = SAMPLE_SIZE) -> None:
        """A contact sheet of the shipped example contents x styles at this iteration."""
        sheet = examples_sheet(self.model, size=size, title=f"{self.model.kind} iteration {self.iteration}")
        target = self.out / "samples" / f"iteration_{self.iteration:07d}.png"
        write_atomically(target, lambda handle: sheet.save(handle, format="PNG"))


def timed(work) -> float:
    """Seconds ``work()`` took."""
    began = time.perf_counter()
    work()
    return time.perf_counter() - began


def weights_checksum(model: StyleTransferModel) -> str:
    """A fingerprint of the trainable weights: ranks of a multi-process run must agree on it."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(model.trainable_state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def plot_losses(log_path: Path, target: Path, phases: list[dict] | None = None) -> None:
    """Loss curves (total, content, style) against iterations, as a PNG.

    A change of crop size or batch starts a new phase and changes the losses' scale (the held-out pairs are
    scored at the crop size), so each phase after the first is marked with a labelled vertical line."""
    with open(log_path, newline="") as file:
        rows = list(csv.DictReader(file))
    if not rows:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    held_out = {}
    for name, label in (("val.csv", "held-out pairs"), (VAL_AVERAGE, "held-out pairs, weight average")):
        if (log_path.parent / name).exists():
            with open(log_path.parent / name, newline="") as file:
                held_out[label] = list(csv.DictReader(file))
    iterations = [int(r["iteration"]) for r in rows]
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for axis, key in zip(axes, ("loss", "content_loss", "style_loss")):
        axis.plot(iterations, [float(r[key]) for r in rows], linewidth=0.6, alpha=0.6, label="training batches")
        for label, validation in held_out.items():
            axis.plot([int(r["iteration"]) for r in validation], [float(r[key]) for r in validation],
                      "o-", linewidth=1.2, markersize=3, label=label)
        if held_out:
            axis.legend(fontsize=8)
        for phase in (phases or [])[1:]:
            axis.axvline(phase["from_iteration"], color="grey", linestyle="--", linewidth=0.8)
            label = f"crop {phase['crop_size']}, batch {phase['batch_size']}"
            if "style_weight" in phase:
                label += f", λ {phase['style_weight']:g}"
            if phase.get("content_weight", 1.0) != 1.0:
                label += f", content × {phase['content_weight']:g}"
            if phase.get("identity_weight", 0.0):
                label += f", identity × {phase['identity_weight']:g}"
                pixels = phase.get("identity_pixel_weight", IDENTITY_PIXEL_WEIGHT)
                if pixels != IDENTITY_PIXEL_WEIGHT:
                    label += f" (pixels × {pixels:g})"
            axis.annotate(label,
                          (phase["from_iteration"], 1.0), xycoords=("data", "axes fraction"),
                          xytext=(-2, -4), textcoords="offset points", fontsize=7, color="grey",
                          rotation=90, ha="right", va="top")
        axis.set_title(key.replace("_", " "))
        axis.set_xlabel("iteration")
        axis.set_yscale("log")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(target.with_suffix(".tmp.png"), dpi=100)
    plt.close(figure)
    os.replace(target.with_suffix(".tmp.png"), target)


EXPORT_CHOICES = ("auto", "average", "last")


def recorded_phases(state: dict) -> list[dict]:
    """A checkpoint's phases; a run from before phases were recorded had one phase so far."""
    config = state["config"]
    return state.get("provenance", {}).get("phases") or [
        {"from_iteration": 0, "crop_size": config["crop_size"],
         "batch_size": config["batch_size"] * state.get("world_size", 1), "images_before": 0}]


def _totals(state: dict, init: dict | None) -> dict:
    """Iterations and images seen, in all and per crop size, including the weights a run was warm-started from
    (same model only): the campaign restarts from the shipped file whenever a machine loses its run folder."""
    earlier = (init or {}).get("provenance", {}) if (init or {}).get("model") == state["model_kind"] else {}
    earlier_iterations = earlier.get("total_iterations", earlier.get("iterations", 0))
    by_crop = dict(earlier.get("iterations_by_crop") or ({str(earlier["crop_size"]): earlier_iterations}
                                                         if earlier_iterations else {}))
    phases = recorded_phases(state)
    ends = [phase["from_iteration"] for phase in phases[1:]] + [state["iteration"]]
    for phase, end in zip(phases, ends):
        key = str(phase["crop_size"])
        by_crop[key] = by_crop.get(key, 0) + end - phase["from_iteration"]
    return {"total_iterations": state["iteration"] + earlier_iterations,
            "total_images_seen": state["images_seen"] + earlier.get("total_images_seen",
                                                                    earlier.get("images_seen", 0)),
            "iterations_by_crop": {key: count for key, count in sorted(by_crop.items(), key=lambda kv: int(kv[0]))
                                   if count}}


def export_weights(run_dir: str | Path, out: str | Path, *, dtype: str = "fp16", weights: str = "auto",
                   int8: str = "auto") -> dict:
    """A run's checkpoint -> the package's weights file, with how it was trained in the metadata.

    ``weights``: "average" (the exponential moving average of the weights), "last" (the weights of the last step)
    or "auto" (the average when the run kept one). ``int8``: "auto" stores the large matrices (AdaConv's
    fully connected layer) as per-row int8, which keeps the file under package indexes' size limit; "off"
    stores everything in ``dtype``."""
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT
    if not path.exists():
        raise AdaconvError(f"{run_dir}: no {CHECKPOINT} (is it a training run folder?)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise AdaconvError(f"{path}: cannot read checkpoint ({error})") from None
    dtypes = {"fp16": torch.float16, "fp32": torch.float32, "bf16": torch.bfloat16}
    if dtype not in dtypes:
        raise AdaconvError(f"--dtype {dtype}: choose one of {', '.join(dtypes)}")
    if weights not in EXPORT_CHOICES:
        raise AdaconvError(f"--weights {weights}: choose one of {', '.join(EXPORT_CHOICES)}")
    average = state.get("average")
    if weights == "average" and average is None:
        raise AdaconvError(f"{path}: this run kept no weight average (trained with --ema-decay 0); use --weights last")
    use_average = average is not None and weights != "last"
    model = build_model(state["model_kind"], **state.get("hyperparameters", {}))
    load_trainable_tensors(model, average["weights"] if use_average else state["model"], source=path)
    config = state["config"]
    recorded = state.get("provenance", {})
    provenance = {
        "iterations": state["iteration"],
        "images_seen": state["images_seen"],
        "crop_size": config["crop_size"],
        "batch_size": config["batch_size"] * state.get("world_size", 1),
        "style_weight": config["style_weight"],
        "content_weight": config.get("content_weight", 1.0),
        **({"identity_weight": config["identity_weight"],
            "identity_pixel_weight": config.get("identity_pixel_weight", IDENTITY_PIXEL_WEIGHT)}
           if config.get("identity_weight") else {}),
        "lr": config["lr"],
        "lr_decay": config["lr_decay"],
        "warmup": config.get("warmup", 0),
        **({"anneal": {"from_iteration": config["anneal_from"], "steps": config["anneal_steps"]}}
           if config.get("anneal_steps") else {}),
        "style_encoder_lr_scale": config.get("style_encoder_lr_scale", 1.0),
        **({"style_statistics": config.get("style_statistics") or LEGACY_STYLE_STATISTICS}
           if state["model_kind"] == "adaconv" else {}),
        "content_data": config["content"],
        "style_data": config["style"],
        "train_seconds": round(state.get("train_seconds", 0.0)),
        "init": recorded.get("init"),
        "phases": recorded_phases(state),  # the top-level crop, batch and λ are the last phase's
        **_totals(state, recorded.get("init")),
        "weights": (f"exponential moving average (decay {average['decay']}, {average['updates']} updates)"
                    if use_average else "last step"),
        "validation": recorded.get("validation_average" if use_average else "validation"),
        "exported": datetime.date.today().isoformat(),
        "dtype": dtype,
    }
    save_weights(model, out, dtype=dtypes[dtype], provenance=provenance, int8=int8_candidates(model, int8))
    return provenance
