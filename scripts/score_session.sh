#!/usr/bin/env bash
# The end of a training session (docs/training.md, "How a session trains"): score runs/MODEL against the shipped
# MODEL, from the project root, once the run has stopped:
#
#   [MODEL=adain] scripts/score_session.sh NAME [ALPHA ...]
#
# MODEL is adaconv (the default) or adain; RUN_DIR=runs/NAME scores a fork of the run instead of runs/MODEL.
# NAME labels this session's files (e.g. s28). It exports the run's weight average and last weights
# (/tmp/MODEL_NAME_average.safetensors, /tmp/MODEL_NAME_last.safetensors, as shipped: fp16, AdaConv's FC in int8)
# and an fp32 copy of the average (runs/snapshots/, ignored); scores on the 5 x 8 grid the average at α 1 (AdaConv:
# with the kernel-usage diagnostic) and at each ALPHA (default 0.98 0.96: lower alphas trade style for content, so
# that the average's curve brackets the shipped model's content error), the last weights at α 1, and the shipped
# file once per checksum, at α 1 and at each ALPHA (runs/eval/MODEL_shipped_<checksum>[_aALPHA]; scored again when
# its report lacks a metric added since), three evaluations at a time; then `adaconv evaluate --compare` twice:
# with the shipped model first (every run against it pair by pair, and the average read off at its content error:
# runs/eval/MODEL_NAME_comparison/comparison.md), and with the average at α 1 first (the shipped model read off at
# the average's content error, for an average with less content error than the shipped model:
# runs/eval/MODEL_NAME_vs_shipped_curve/comparison.md). The ship rule (docs/training.md, "Next") is read off them.
# An evaluation interrupted part-way resumes when the script is run again.
set -euo pipefail
cd "$(dirname "$0")/.."

usage="usage: [MODEL=adaconv|adain] scripts/score_session.sh NAME [ALPHA ...]"
model=${MODEL:-adaconv}
case $model in adaconv|adain) ;; *) echo "$usage (got MODEL '$model')" >&2; exit 2 ;; esac
if [ $# -lt 1 ]; then echo "$usage" >&2; exit 2; fi
name=$1
shift
alphas=("$@")
if [ ${#alphas[@]} -eq 0 ]; then alphas=(0.98 0.96); fi
if ! [[ $name =~ ^[A-Za-z0-9_.-]+$ ]]; then echo "$usage (NAME: letters, digits, . _ -; got '$name')" >&2; exit 2; fi
for alpha in "${alphas[@]}"; do
    if ! [[ $alpha =~ ^(0(\.[0-9]+)?|1(\.0*)?)$ ]]; then echo "$usage (ALPHA must be in [0, 1], got '$alpha')" >&2; exit 2; fi
done

run=${RUN_DIR:-runs/$model}
shipped=src/adaconv/weights/$model.safetensors
if [ ! -f "$run/checkpoint.pt" ]; then echo "score_session.sh: no checkpoint in $run" >&2; exit 1; fi
if pgrep -f -- "--out $run( |$)" > /dev/null; then
    echo "score_session.sh: $run is still training; stop it first (scripts/stop_session.sh $run checkpoints)" >&2
    exit 1
fi

mkdir -p runs/eval runs/snapshots
# (each export prints the file's provenance; `adaconv info --weights FILE` shows it again)
adaconv export-weights "$run" "/tmp/${model}_${name}_average.safetensors" --weights average > /dev/null
adaconv export-weights "$run" "/tmp/${model}_${name}_last.safetensors" --weights last > /dev/null
adaconv export-weights "$run" "runs/snapshots/${model}_${name}_average_fp32.safetensors" --weights average \
    --dtype fp32 --int8 off > /dev/null
checksum=$(sha256sum "$shipped" | cut -c1-16)

# each job: OUT WEIGHTS ALPHA KERNELS(yes/no)
kernels=yes
if [ "$model" = adain ]; then kernels=no; fi  # the kernel-usage diagnostic measures AdaConv's predicted kernels
jobs=("runs/eval/${model}_shipped_$checksum $shipped 1 no"
      "runs/eval/${model}_${name}_average_a1 /tmp/${model}_${name}_average.safetensors 1 $kernels")
for alpha in "${alphas[@]}"; do
    jobs+=("runs/eval/${model}_${name}_average_a$alpha /tmp/${model}_${name}_average.safetensors $alpha no")
done
jobs+=("runs/eval/${model}_${name}_last_a1 /tmp/${model}_${name}_last.safetensors 1 no")
candidates=${#jobs[@]}  # jobs 1 .. candidates-1 are this run's; the shipped file's other alphas follow
for alpha in "${alphas[@]}"; do
    jobs+=("runs/eval/${model}_shipped_${checksum}_a$alpha $shipped $alpha no")
done

has_every_metric='
import json, sys
from adaconv.evaluation import METRICS
sys.exit(not set(METRICS) <= set(json.load(open(sys.argv[1]))["summary"]))'
evaluate() {
    local out=$1 weights=$2 alpha=$3 kernels=$4 extra=()
    # a finished report with every current metric is kept; one from before a metric was added is scored again
    # (its images are kept, so only the scoring runs)
    if [ -f "$out/evaluation.json" ] && python -c "$has_every_metric" "$out/evaluation.json"; then
        echo "scored already: $out" >&2
        return 0
    fi
    if [ "$kernels" = no ]; then extra+=(--no-kernel-usage); fi
    adaconv evaluate --model "$model" --weights "$weights" --grid 5x8 --alpha "$alpha" "${extra[@]}" \
        --out "$out" --quiet > "$out.log" 2>&1 && echo "scored: $out" >&2
}

failed=0
running=0
for job in "${jobs[@]}"; do
    # shellcheck disable=SC2086
    evaluate $job &
    running=$((running + 1))
    if [ $running -ge 3 ]; then wait -n || failed=1; running=$((running - 1)); fi
done
while [ $running -gt 0 ]; do wait -n || failed=1; running=$((running - 1)); done
if [ $failed = 1 ]; then echo "score_session.sh: an evaluation failed (see runs/eval/*.log)" >&2; exit 1; fi

report() { echo "${1%% *}/evaluation.json"; }  # a job's report
shipped_reports=("$(report "${jobs[0]}")")
for job in "${jobs[@]:candidates}"; do shipped_reports+=("$(report "$job")"); done
run_reports=()
for job in "${jobs[@]:1:candidates-1}"; do run_reports+=("$(report "$job")"); done
adaconv evaluate --compare "${shipped_reports[0]}" "${run_reports[@]}" --out "runs/eval/${model}_${name}_comparison"
adaconv evaluate --compare "${run_reports[0]}" "${shipped_reports[@]}" \
    --out "runs/eval/${model}_${name}_vs_shipped_curve"
