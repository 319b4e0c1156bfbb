#!/usr/bin/env bash
# Run a timing command with the machine quiet: takes a lock (one benchmark at a time), pauses a
# background training job (SIGSTOP) for the duration, and resumes it (SIGCONT) afterwards.
# Usage: scripts/quiet.sh COMMAND [ARGS...]
# The training job's PIDs are found by their command line (edge-sr train / -m edge_sr.train / torchrun).
set -u
lock=${EDGE_SR_QUIET_LOCK:-/tmp/edge-sr-quiet.lock}
exec 9>"$lock"
flock 9
pids=$(pgrep -f "edge-sr train|-m edge_sr.train|torchrun|train_bg" | grep -v "^$$\$" || true)
[ -n "$pids" ] && kill -STOP $pids 2>/dev/null
trap '[ -n "$pids" ] && kill -CONT $pids 2>/dev/null' EXIT INT TERM
sleep 1
"$@"
