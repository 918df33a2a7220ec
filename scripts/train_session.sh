#!/usr/bin/env bash
# One session of the training campaign (docs/training.md, "How a session trains"), from the project root:
#
#   scripts/train_session.sh MODEL MINUTES SEED [more `adaconv train` options]
#
# MODEL is adaconv or adain; MINUTES is when the run stops with a checkpoint (choose it to end ~50 minutes before
# the session does, for scripts/score_session.sh, the suite and the write-up); SEED is the session's number (used on a warm start only: a resumed run keeps its own
# batches' order). It continues runs/MODEL if its state survived, else warm-starts from the newest shipped weights
# (AdaConv: the shipped AdaConv, else the shipped AdaIN, whose decoder AdaConv shares), and starts the run in the
# background at low priority. DRY_RUN=1 prints the command instead of running it; RUN_DIR=runs/NAME trains that
# folder instead of runs/MODEL (a fork: copy runs/MODEL's checkpoint.pt there and link its style_cache/).
#
# Where the state lives: the work tree is laid anew for every session, but the machine (and $HOME) may be handed
# to the next session as it was. So runs/ is a link to $ADACONV_CAMPAIGN_DIR/runs (default ~/adaconv-campaign),
# outside the work tree, where the checkpoint, the optimiser's moments and the style-feature cache can survive.
set -euo pipefail
cd "$(dirname "$0")/.."

usage="usage: scripts/train_session.sh adaconv|adain MINUTES SEED [adaconv train options]"
if [ $# -lt 3 ]; then echo "$usage" >&2; exit 2; fi
model=$1 minutes=$2 seed=$3
shift 3
case $model in adaconv|adain) ;; *) echo "$usage (got model '$model')" >&2; exit 2 ;; esac
if ! [[ $minutes =~ ^[0-9]+$ ]] || [ "$minutes" -lt 1 ]; then echo "$usage (MINUTES must be a positive whole number, got '$minutes')" >&2; exit 2; fi
if ! [[ $seed =~ ^[0-9]+$ ]]; then echo "$usage (SEED must be a whole number, got '$seed')" >&2; exit 2; fi

campaign=${ADACONV_CAMPAIGN_DIR:-$HOME/adaconv-campaign}
if [ -L runs ] || [ ! -e runs ]; then
    mkdir -p "$campaign/runs"
    ln -sfn "$campaign/runs" runs
else
    echo "runs/ is a folder in the work tree, not a link to $campaign/runs: using it as it is" >&2
fi

run=${RUN_DIR:-runs/$model}  # RUN_DIR: a fork of the run (a recipe experiment from its checkpoint)
weights=src/adaconv/weights
if [ -f "$run/checkpoint.pt" ]; then
    start=(--resume)
    echo "continuing $run from its checkpoint" >&2
elif [ "$model" = adaconv ] && [ -f "$weights/adaconv.safetensors" ]; then
    # at a quarter of the papers' learning rate (docs/training.md: on the same batches, 5e-5 gave a 12% lower style
    # loss than 1e-4 at equal content loss in session 16, and 2.5e-5 5% lower than 5e-5 in session 17); a resumed
    # run keeps its own rate
    start=(--init "$weights/adaconv.safetensors" --seed "$seed" --warmup 200 --lr 2.5e-5)
    echo "no run state in $run: warm start from the shipped AdaConv" >&2
else
    start=(--init "$weights/adain.safetensors" --seed "$seed" --warmup 200)
    echo "no run state in $run: warm start from the shipped AdaIN" >&2
fi

data=(--content ../shared/data/train/content --style ../shared/data/train/style
      --val-content ../shared/data/bench/content --val-style ../shared/data/bench/style
      --val-every 250 --sample-every 250 --time-limit "$minutes")
if [ "$model" = adaconv ]; then
    # one process of two threads (its 59 M gradients make data-parallel processes slower); the style encoder at a
    # tenth of the learning rate (session 7: at the full rate it diverged at ~555 steps); 256² crops, the finishing
    # phase since session 20 (a resumed run would keep them anyway; named so that a warm start gets them too; a
    # later --crop-size among the extra options wins); the campaign's total, the papers' 160k steps, is named too,
    # because a run keeps its total on --resume: a paired comparison that stopped a run at some --iterations N
    # must not leave it stopped there
    command=(python -m adaconv train --model adaconv --batch-size 8 --threads 2 --style-encoder-lr-scale 0.1
             --crop-size 256 --iterations 160000 --checkpoint-every 50 --out "$run" "${start[@]}" "${data[@]}" "$@")
else
    # two data-parallel processes of one thread, batch 4 each (= 8), at 256² crops (the phase since session 5)
    command=(python -m torch.distributed.run --nproc-per-node 2 --master-port 29511
             -m adaconv train --model adain --batch-size 4 --threads 1 --crop-size 256 --iterations 160000
             --checkpoint-every 100 --out "$run" "${start[@]}" "${data[@]}" "$@")
fi

if [ "${DRY_RUN:-0}" = 1 ]; then
    printf '%q ' nice -n 10 "${command[@]}"; echo
    exit 0
fi
mkdir -p "$run"
nohup nice -n 10 "${command[@]}" >> "$run.log" 2>&1 &
echo "started (pid $!): log $run.log, losses $run/log.csv, held-out $run/val.csv" >&2
