"""The `retraining` flow: the same training DAG (and the same gate, inside it) on a window that now reaches the
latest labelled traffic.

The monitoring flow starts it through its deployment (`monitor.retraining_deployment`), so a retrain is an
ordinary flow run: visible in the UI, retried, cancellable, and counted when the monitor asks "is one running?".
Its data, model, metrics and plots go to a folder of their own under `paths.retraining_dir`: the DVC-tracked
outputs of `dvc repro` stay what `params.yaml` says they are, and every retrain's evidence is kept for audit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow

from flows.training import training
from pipelines.config import Params, load_params

# The training DAG's own outputs; everything else (registry, logs, model card) is shared with the champion.
RELOCATED_PATHS = ("raw_table", "validation_dir", "prepared_dir", "model_dir", "metrics_dir", "plots_dir")


def retraining_overrides(params: Params, data_end: str | None) -> dict[str, Any]:
    """Overrides that move the DAG's outputs to `<retraining_dir>/until-<data_end>/<key>/` and extend the window."""
    end = datetime.fromisoformat(data_end) if data_end else params.collect.end
    workspace = params.paths.retraining_dir / f"until-{end:%Y-%m-%dT%H%M}"
    overrides: dict[str, Any] = {f"paths.{key}": str(workspace / key / getattr(params.paths, key).name)
                                 for key in RELOCATED_PATHS}
    if data_end:
        overrides["collect.end"] = data_end
    return overrides


@flow(name="retraining", log_prints=True, flow_run_name="retraining up to {data_end}")
def retraining(params_file: str = "params.yaml", data_end: str | None = None, reason: str = "") -> dict[str, Any]:
    """Re-run `training` with `collect.end = data_end` (the end of the latest labelled window); same DAG, same gate."""
    overrides = retraining_overrides(load_params(params_file), data_end)
    print(f"retraining with data up to {data_end or '(params.yaml collect.end)'} in "
          f"{overrides['paths.model_dir']}: {reason or 'manual'}")
    return training(params_file=params_file, overrides=overrides)


if __name__ == "__main__":
    retraining()
