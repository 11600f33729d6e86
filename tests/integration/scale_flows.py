"""Tiny flows for the scale-out tests: they record which worker ran them, and take long enough to be caught."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run


@flow(name="probe", log_prints=True)
def probe(seconds: float, record_dir: str) -> str:
    """Append who ran this attempt (worker name from Prefect's own env, pid, attempt) and sleep `seconds`."""
    record = {"flow_run_id": str(flow_run.id), "worker": os.environ.get("PREFECT__WORKER_NAME"),
              "pid": os.getpid(), "run_count": flow_run.run_count, "started": time.time()}
    path = Path(record_dir) / f"{record['flow_run_id']}.jsonl"
    with path.open("a") as out:
        out.write(json.dumps(record) + "\n")
    time.sleep(seconds)
    return record["worker"] or ""
