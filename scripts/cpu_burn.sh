#!/usr/bin/env bash
# A bounded CPU burner: keeps the machine as busy as a user's laptop doing other work while the tests run.
# Usage: scripts/cpu_burn.sh [PROCESSES] [SECONDS]   (defaults: 2 x cores, 3 hours)
# Each burner is an ordinary-priority busy loop under `timeout`, so it ends by itself even if nobody stops it;
# stop them all earlier by signalling this script (`kill <pid>`, or `kill -- -<pid>` for its process group). Each
# `timeout` puts itself in a process group of its own, so a group kill does not reach the loops: the trap passes the
# signal on to every `timeout`, which stops its loop.
set -euo pipefail
processes="${1:-$(( 2 * $(nproc) ))}"
seconds="${2:-10800}"
trap 'kill $(jobs -p) 2>/dev/null || true; exit 0' TERM INT
for _ in $(seq "$processes"); do
  timeout "$seconds" bash -c 'while :; do :; done' &
done
echo "==> cpu_burn: $processes busy loops for at most ${seconds}s (pid $$)" >&2
wait
