"""A stand-in `retraining` flow for the trigger test, served like the real one: same flow name, same parameters,
the same deployment concurrency settings (`flows.deployments.concurrency_for`), applied with the same Automation.

It sleeps instead of training so the test controls how long "a retrain is running" lasts; what is under test is
Prefect's wiring (event -> Automation -> deployment run, the deployment's concurrency limit), not training.

`python -m tests.integration.slow_retraining <params file> <deployment name>` serves it until SIGTERM.
"""

from __future__ import annotations

import os
import sys
import time

from prefect import flow


@flow(name="retraining", flow_run_name="retraining up to {data_end}")
def slow_retraining(params_file: str = "params.yaml", data_end: str | None = None, reason: str = "") -> str | None:
    time.sleep(float(os.environ.get("SLOW_RETRAINING_SECONDS", "40")))
    return data_end


def main(params_file: str, name: str) -> None:
    from prefect import serve

    from flows.deployments import concurrency_for
    from pipelines.config import load_params

    params = load_params(params_file)
    deployment = slow_retraining.to_deployment(name=name, parameters={"params_file": params_file},
                                               **concurrency_for("retraining", params))
    # No runner limit: only the deployment's own concurrency limit can stop a second run.
    serve(deployment, limit=None)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
