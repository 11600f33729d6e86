"""The `retraining` flow: the same training DAG (and the same gate, inside it) on a window that now reaches the
latest labelled traffic.

The monitoring flow starts it through its deployment (`monitor.retraining_deployment`), so a retrain is an
ordinary flow run: visible in the UI, retried, cancellable, and counted when the monitor asks "is one running?".
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.training import training


@flow(name="retraining", log_prints=True, flow_run_name="retraining up to {data_end}")
def retraining(params_file: str = "params.yaml", data_end: str | None = None,
               reason: str = "") -> dict[str, Any]:
    """Re-run `training` with `collect.end = data_end` (the end of the latest labelled window); same DAG, same gate."""
    overrides = {"collect.end": data_end} if data_end else None
    print(f"retraining with data up to {data_end or '(params.yaml collect.end)'}: {reason or 'manual'}")
    return training(params_file=params_file, overrides=overrides)


if __name__ == "__main__":
    retraining()
