"""Orchestration overhead of `dvc repro`: full run from scratch and no-op run, beside a bare one-process script.

The bare script does the DAG's work without DVC, Dask or files between steps: collect + join, preprocess, the
search's candidates trained one after another, the winner evaluated (the gate's extra scoring is left out).

    python -m benchmarks.repro            # the default window (Jan-Aug 2013)
    python -m benchmarks.repro --quick    # three months, for a fast look

Prints wall time and peak memory (the largest process's max RSS) of each, and the ratios. Goals (issue 2):
no-op repro under 2 s; full repro within 3x the bare script.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tests.project_copy import copy_project, venv_env

BARE_SCRIPT = """
import resource, sys, time
start = time.perf_counter()
from pipelines.config import load_params
from pipelines.collect import collect
from pipelines.evaluate import evaluate_model
from pipelines.preprocess import prepare
from pipelines.search import candidate_params, pick_winner, train_candidate
params = load_params(sys.argv[1])
table = collect(params.source, params.collect)
data = prepare(table, params.source, params.features, params.split, keep=params.evaluate.slices)
# The same candidates the train stage searches, one after the other in this process (no Dask, no DVC).
results = [train_candidate(i, c, params.train, data.train, data.valid, data.schema)
           for i, c in enumerate(candidate_params(params.search, params.train))]
model = pick_winner(results, params.search.metric).model
evaluation = evaluate_model(model, data.train, data.test, params.source.time_column, params.evaluate.slices,
                            params.evaluate.min_slice_rows)
print(evaluation.metrics["model"]["roc_auc"])
"""


def measure_child(args: list[str], cwd: Path) -> tuple[float, float]:
    # ru_maxrss of RUSAGE_CHILDREN is the max over waited-for descendants; run each command in a fresh
    # python so earlier commands do not hide a smaller peak.
    probe = ("import resource,subprocess,sys,time,json;t=time.perf_counter();"
             "r=subprocess.run(sys.argv[1:]);w=time.perf_counter()-t;"
             "print(json.dumps([r.returncode,w,resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024]))")
    done = subprocess.run([sys.executable, "-c", probe, *args], cwd=cwd, env=venv_env(), capture_output=True,
                          text=True)
    code, wall, peak = json.loads(done.stdout.strip().splitlines()[-1])
    if code != 0:
        sys.exit(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return wall, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three months instead of the default window")
    args = parser.parse_args()
    overrides = ({"collect.start": "2013-03-01", "collect.end": "2013-06-01", "split.valid_days": 14,
                  "split.test_days": 14} if args.quick else {})
    console = Console()
    with tempfile.TemporaryDirectory(prefix="bench-repro-") as temp:
        repo = copy_project(Path(temp) / "project", overrides)
        console.log("bare script (same join + preprocess + train + evaluate, one process)")
        bare = measure_child([sys.executable, "-c", BARE_SCRIPT, "params.yaml"], repo)
        console.log("dvc repro from scratch")
        full = measure_child(["dvc", "repro", "--quiet"], repo)
        console.log("dvc repro with nothing changed")
        noops = [measure_child(["dvc", "repro", "--quiet"], repo) for _ in range(3)]
    noop = min(noops, key=lambda m: m[0])
    table = Table(title=f"dvc repro overhead ({'3 months' if args.quick else 'default window'})")
    for column in ("run", "wall s", "peak RSS MiB", "ratio to bare"):
        table.add_column(column, justify="right" if column != "run" else "left")
    table.add_row("bare script", f"{bare[0]:.2f}", f"{bare[1]:.0f}", "1.00")
    table.add_row("dvc repro (from scratch)", f"{full[0]:.2f}", f"{full[1]:.0f}", f"{full[0] / bare[0]:.2f}")
    table.add_row("dvc repro (no-op, best of 3)", f"{noop[0]:.2f}", f"{noop[1]:.0f}", f"{noop[0] / bare[0]:.2f}")
    console.print(table)
    console.print(f"goals: no-op < 2 s: {'met' if noop[0] < 2 else 'MISSED'}; "
                  f"full <= 3x bare: {'met' if full[0] <= 3 * bare[0] else 'MISSED'} ({full[0] / bare[0]:.2f}x)")


if __name__ == "__main__":
    main()
