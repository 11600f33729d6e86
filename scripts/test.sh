#!/usr/bin/env bash
# The test command: set up the locked environment, the browser and buildah, then run the whole suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -m "not browser" -x).
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
# Debian packages the suite drives: chromium (UI tests), buildah + debootstrap (the Bento image, no Docker daemon).
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v buildah >/dev/null 2>&1 || missing+=(buildah)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "==> installing Debian's ${missing[*]} for the UI and container tests" >&2
  if [[ $(id -u) -eq 0 ]]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
set +e
python -m pytest "$@"
status=$?
set -e
if [[ $status -eq 5 ]]; then echo "pytest collected no tests: that is a failure here" >&2; exit 1; fi
exit $status
