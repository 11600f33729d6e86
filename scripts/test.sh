#!/usr/bin/env bash
# The test command: set up the locked environment, the browser and buildah, then run the whole suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -m "not browser" -x).
# --under-load (first argument): run the suite while scripts/cpu_burn.sh keeps every core busy (2 busy loops per
# core: a load average of ~4-5 on 2 cores, like a laptop doing other work); the burners stop when the suite ends.
UNDER_LOAD=false
if [[ "${1:-}" == "--under-load" ]]; then UNDER_LOAD=true; shift; fi
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
# Debian packages the suite drives: chromium (UI tests), buildah + debootstrap (the Bento image, no Docker daemon),
# postgresql (the stack's own PostgreSQL for Prefect, prefect.database: postgres; Debian keeps initdb and postgres in
# /usr/lib/postgresql/<version>/bin, off PATH). The package's own system cluster, if its install starts one, is
# left alone: the stack runs a cluster of its own on a free port.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v buildah >/dev/null 2>&1 || missing+=(buildah)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
{ command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; } || missing+=(postgresql)
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "==> installing Debian's ${missing[*]} for the UI, container and PostgreSQL tests" >&2
  if [[ $(id -u) -eq 0 ]]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if $UNDER_LOAD; then
  setsid scripts/cpu_burn.sh &
  BURNER=$!
  trap 'kill -- -"$BURNER" 2>/dev/null || true' EXIT
fi
set +e
python -m pytest "$@"
status=$?
set -e
if [[ $status -eq 5 ]]; then echo "pytest collected no tests: that is a failure here" >&2; exit 1; fi
exit $status
