"""A tiny flow for the worker tests: it records which worker ran each attempt, and takes long enough to be caught."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run


@flow(name="probe")
def probe(seconds: float, record_dir: str, later_attempts_s: float = 1.0, chatter: bool = False) -> str:
    """Append who runs this attempt (the worker's name, from the environment Prefect's worker gives the run; the
    pid; the attempt) to `<record_dir>/<flow run id>.jsonl`, then sleep `seconds` (`later_attempts_s` when this is
    a retry: a run that hangs on its first attempt finishes on its second). With `chatter` it prints a line a
    second meanwhile."""
    record = {"flow_run_id": str(flow_run.id), "worker": os.environ.get("PREFECT__WORKER_NAME"),
              "pid": os.getpid(), "run_count": flow_run.run_count, "started": time.time()}
    with (Path(record_dir) / f"{record['flow_run_id']}.jsonl").open("a") as out:
        out.write(json.dumps(record) + "\n")
    wait = seconds if flow_run.run_count <= 1 else later_attempts_s
    if not chatter:
        time.sleep(wait)
    else:  # a line a second on the run's stdout, as a flow whose stages print does
        for second in range(int(wait)):
            print(f"probe: second {second}", flush=True)
            time.sleep(1)
    return record["worker"] or ""
