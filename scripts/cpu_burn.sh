#!/usr/bin/env bash
# A bounded CPU burner: keeps the machine as busy as a user's laptop doing other work while the tests run.
# Usage: scripts/cpu_burn.sh [PROCESSES] [SECONDS]   (defaults: 2 x cores, 3 hours)
# Each burner is an ordinary-priority busy loop under `timeout`, so it ends by itself even if nobody stops it;
# stop them all earlier with `kill -- -<pid of this script>` (the burners share this script's process group).
set -euo pipefail
processes="${1:-$(( 2 * $(nproc) ))}"
seconds="${2:-10800}"
for _ in $(seq "$processes"); do
  timeout "$seconds" bash -c 'while :; do :; done' &
done
echo "==> cpu_burn: $processes busy loops for at most ${seconds}s (pid $$)" >&2
wait
