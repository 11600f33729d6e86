#!/usr/bin/env bash
# The test command: set up the locked environment and the browser, then run the whole suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -m "not browser" -x).
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
if ! command -v chromium >/dev/null 2>&1; then
  echo "==> installing Debian's chromium for the UI tests" >&2
  if [[ $(id -u) -eq 0 ]]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
set +e
python -m pytest "$@"
status=$?
set -e
if [[ $status -eq 5 ]]; then echo "pytest collected no tests: that is a failure here" >&2; exit 1; fi
exit $status
