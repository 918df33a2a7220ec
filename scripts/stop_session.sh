#!/usr/bin/env bash
# Stop a training run cleanly (docs/training.md, "How a session trains"), from the project root:
#
#   scripts/stop_session.sh RUN_DIR [SECONDS]
#
# RUN_DIR is the run's --out folder (runs/adaconv, runs/adain, a fork). SIGTERM goes to the training processes
# only, never to the torch.distributed launcher: each rank then finishes its step, the ranks agree to stop, write
# the checkpoint and exit, and the launcher ends by itself. Signalling the launcher too (`pkill -f "--out RUN "`
# matches it) makes it kill its workers after its own timeout, which once (session 31) came before they had
# written their checkpoint. The script waits up to SECONDS (default 600) for every process of the run, the
# launcher included, to end, then prints the iteration the checkpoint holds. Exit 1 if nothing was running,
# 2 on bad arguments, 3 if the run was still going when the wait ran out.
set -euo pipefail
cd "$(dirname "$0")/.."

usage="usage: scripts/stop_session.sh RUN_DIR [SECONDS]"
if [ $# -lt 1 ] || [ $# -gt 2 ]; then echo "$usage" >&2; exit 2; fi
run=${1%/} seconds=${2:-600}
if ! [[ $seconds =~ ^[0-9]+$ ]]; then echo "$usage (SECONDS must be a whole number, got '$seconds')" >&2; exit 2; fi

# The run's processes: Python running `adaconv train` (itself or under the launcher) whose command line names
# `--out RUN_DIR` followed by another option or at its end, so that runs/adain does not also match runs/adain384
# (-ww: the whole command line, which ps cuts at 80 columns when its output is piped and no width is set).
run_processes() {
    ps -ww -eo pid=,args= | awk -v out="--out $run" '$2 ~ /python[0-9.]*$/ {
        line = $0; at = index(line, out); rest = substr(line, at + length(out), 1)
        if (at && (rest == " " || rest == "") && index(line, "adaconv train")) print
    }' || true
}
ranks() { run_processes | awk '!/torch\.distributed\.run|torchrun/ {print $1}'; }

pids=$(ranks)
if [ -z "$pids" ]; then echo "no training process writes to $run" >&2; exit 1; fi
# shellcheck disable=SC2086  # one pid per word
kill -TERM $pids
echo "SIGTERM to $(echo $pids | wc -w) training process(es) of $run ($(echo $pids)); waiting for the checkpoint" >&2
waited=0
while [ -n "$(run_processes)" ]; do
    if [ "$waited" -ge "$seconds" ]; then echo "$run: still running after ${seconds} s" >&2; exit 3; fi
    sleep 2; waited=$((waited + 2))
done
if [ -f "$run/checkpoint.pt" ]; then
    python -c "import sys, torch
state = torch.load(sys.argv[1], weights_only=False, map_location='cpu')
print(f'{sys.argv[1]}: iteration {state[\"iteration\"]}')" "$run/checkpoint.pt"
else
    echo "$run: stopped, but it holds no checkpoint" >&2
fi
