"""Orchestration overhead of `dvc repro`: full run from scratch and no-op run, beside a bare one-process script.

The bare script does the DAG's whole work in one process, without DVC, Dask or files between steps: collect + join,
validation (the suite on the table and on each period, its reports), preprocess, the search's candidates trained one
after another, the winner evaluated, the gate's work (baselines, latency, the decision, the monitoring reference and
its calibration) and the registration in BentoML's store. Until issue 13 it left validation and the gate out; that
"train only" figure is printed beside it, for comparison with older numbers.

    python -m benchmarks.repro            # the default window (Jan-Aug 2013)
    python -m benchmarks.repro --quick    # three months, for a fast look
    python -m benchmarks.repro --params ../stops/params.yaml   # another dataset (README "Your own data")

With --params, that file replaces the project's params.yaml in the throwaway copy, and the files it names by a
relative path (source.path, validate.suite) are copied from beside it, so a project made as the README's
"Your own data" walks through is measured as it is.

Prints wall time and peak memory (the largest process's max RSS) of each, and the ratios. Goals (issue 2):
no-op repro under 2 s; full repro within 3x the bare script. Issue 16 adds, in the same run:
- the Prefect `training` flow (against a running Prefect server) vs `dvc repro` on the same change
  (train.lightgbm.learning_rate, in two identical copies of the repo): goal <= 1.3x;
- `python -m pipelines reproduce <tag>` wall time for the model that flow registered;
- the no-op `dvc repro` vs a trivial 6-stage pipeline's no-op (`echo` stages): goal <= 1.5x.
Ratios measured in the same run stay meaningful on a shared machine; absolute seconds do not.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pipelines.config import load_params
from support.project_copy import commit, copy_project, run, set_params, venv_env

TRIVIAL_STAGES = 6
FLOW_SCRIPT = """
import sys, time
from flows.training import training
start = time.perf_counter()
summary = training(params_file=sys.argv[1])
print("FLOW_SECONDS", time.perf_counter() - start)
print("TAG", (summary.get("gate") or {}).get("registered_tag"))
"""

# The DAG's whole work in one process: no DVC, no Dask, no files between steps (the reports and the registered model
# are written, as they are products). `--train-only` leaves out validation and the gate (the definition before
# issue 13; printed beside for continuity).
BARE_SCRIPT = """
import shutil, sys, tempfile, time
from pathlib import Path
start = time.perf_counter()
from pipelines.config import load_params
from pipelines.data.collect import collect
from pipelines.model.evaluate import evaluate_model
from pipelines.data.preprocess import prepare
from pipelines.model.search import candidate_params, pick_winner, train_candidate
params = load_params(sys.argv[1])
full = sys.argv[2] == "full"
table = collect(params.source, params.collect)
if full:
    work = Path(tempfile.mkdtemp(prefix="bare-"))
    from pipelines.data.validate import validate_table
    validate_table(table, params.validate_.suite, work / "validation", time_column=params.source.time_column,
                   period=params.validate_.period, window=(params.collect.start, params.collect.end),
                   max_duplicate_share=params.validate_.max_duplicate_share,
                   chunk_rows=params.validate_.chunk_rows)
data = prepare(table, params.source, params.features, params.split, keep=params.evaluate.slices)
# The same candidates the train stage searches, one after the other in this process (no Dask, no DVC).
results = [train_candidate(i, c, params.train, data.train, data.valid, data.schema)
           for i, c in enumerate(candidate_params(params.search, params.train))]
model = pick_winner(results, params.search.metric).model
evaluation = evaluate_model(model, data.train, data.test, params.source.time_column, params.evaluate.slices,
                            params.evaluate.min_slice_rows)
if full:
    # The gate stage's work: baselines, latency, the decision, the monitoring reference + calibration, registration.
    from pipelines import io
    from pipelines.contracts import RegistryEntry, RegistryMetrics
    from pipelines.release import registry
    from pipelines.model.evaluate import baseline_predictions
    from pipelines.features import encode_frame
    from pipelines.model.gate import decide
    from pipelines.model.seam import measure_latency_ms
    from pipelines.monitor.reference import build_reference
    latency = measure_latency_ms(model, encode_frame(data.test.head(params.gate.latency_batch_rows),
                                 model.schema), params.gate.latency_repeats)
    decision = decide(data.test, model.predict_proba(data.test), None,
                      baseline_predictions(data.train, data.test, params.source.time_column), latency, params.gate,
                      params.evaluate.slices, params.evaluate.min_slice_rows)
    reference, calibration = build_reference([data.train, data.valid], model, params.features,
                                             params.source.time_column, params.monitor,
                                             labelled=[data.valid, data.test])
    model.save(work / "model")
    entry = RegistryEntry(metrics=RegistryMetrics(test=decision.metrics.challenger))
    registry.save_model(work / "model", entry, name="bare-benchmark",
                        extra_files={io.REFERENCE_FILE: lambda path: reference.to_parquet(path, index=False),
                                     io.CALIBRATION_FILE: lambda path: io.write_json(path,
                                                                                     calibration.to_json_dict())})
    shutil.rmtree(work)
print(evaluation.metrics.model.roc_auc)
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


def use_params(repo: Path, params_file: Path) -> str:
    """Put `params_file` and the relative files it names into the copy; returns a label for the table title."""
    params = load_params(params_file)
    shutil.copy2(params_file, repo / "params.yaml")
    for name in (params.source.path, params.validate_.suite):
        if not name.is_absolute() and (params_file.parent / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(params_file.parent / name, repo / name)
    where = params.source.path if params.source.kind == "file" else params.source.kind
    return f"{where}, {params.collect.start:%Y-%m-%d} .. {params.collect.end:%Y-%m-%d}"


def trivial_pipeline(dest: Path) -> Path:
    """A git+DVC repo with a chain of TRIVIAL_STAGES `echo` stages, reproduced once."""
    dest.mkdir(parents=True)
    stages = {f"s{i}": {"cmd": f"echo {i} > out{i}.txt", "deps": [f"out{i - 1}.txt"] if i else [],
                        "outs": [f"out{i}.txt"]} for i in range(TRIVIAL_STAGES)}
    import yaml

    (dest / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    run(dest, "git", "init", "-q")
    run(dest, "dvc", "init", "-q")
    run(dest, "dvc", "repro", "--quiet")
    commit(dest, "trivial")
    return dest


def flow_vs_repro(repo: Path, console: Console) -> dict[str, float]:
    """The same change (train.lightgbm.learning_rate) in two identical copies: `dvc repro` in one, the flow in the
    other."""
    import shutil

    from support.servers import prefect_server

    flow_copy = repo.parent / "flow-copy"
    shutil.copytree(repo, flow_copy, symlinks=True)
    for copy in (repo, flow_copy):
        set_params(copy, {"train.lightgbm.learning_rate": 0.08})
    console.log("dvc repro after the change")
    repro = measure_child(["dvc", "repro", "--quiet"], repo)
    with prefect_server(repo.parent / "prefect-home") as api:
        console.log("Prefect training flow after the same change (running server)")
        env = {"PREFECT_API_URL": api, "BENTOML_HOME": str(flow_copy / "var" / "bentoml")}
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", FLOW_SCRIPT, "params.yaml"], cwd=flow_copy,
                              env=venv_env(**env), capture_output=True, text=True)
        flow_wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"training flow failed:\n{done.stderr[-3000:]}")
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if line.startswith(("FLOW_", "TAG ")))
    console.log("python -m pipelines reproduce (the model the flow registered)")
    started = time.perf_counter()
    rebuilt = subprocess.run([sys.executable, "-m", "pipelines", "reproduce", lines["TAG"].strip()],
                             cwd=flow_copy, env=venv_env(**env), capture_output=True, text=True)
    reproduce_wall = time.perf_counter() - started
    from pipelines.cli import REPORT_START

    identical = (json.loads(rebuilt.stdout[rebuilt.stdout.rindex(REPORT_START):]).get("identical")
                 if REPORT_START in rebuilt.stdout else None)
    return {"repro": repro[0], "flow_wall": flow_wall, "flow_in_process": float(lines["FLOW_SECONDS"]),
            "reproduce": reproduce_wall, "reproduce_identical": identical}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three months instead of the default window")
    parser.add_argument("--params", type=Path, help="a params file of another dataset (default: the project's)")
    args = parser.parse_args()
    overrides = ({"collect.start": "2013-03-01", "collect.end": "2013-06-01", "split.valid_days": 14,
                  "split.test_days": 14} if args.quick else {})
    console = Console()
    with tempfile.TemporaryDirectory(prefix="bench-repro-") as temp:
        repo = copy_project(Path(temp) / "project", overrides)
        label = "3 months" if args.quick else "default window"
        if args.params is not None:
            label = use_params(repo, args.params.resolve())
            subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
            subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm",
                            "params"], cwd=repo, check=True)
        # The model store inside the repo's var/, so the flow's copy of the repo gets a copy of it (its registry
        # pointer names a model that store holds) and nothing lands in ~/bentoml.
        os.environ["BENTOML_HOME"] = str(repo / "var" / "bentoml")
        console.log("bare script, train only (collect + preprocess + train + evaluate, one process)")
        bare_train = measure_child([sys.executable, "-c", BARE_SCRIPT, "params.yaml", "train-only"], repo)
        console.log("bare script, the DAG's whole work (+ validate + gate + reference + registration)")
        bare = measure_child([sys.executable, "-c", BARE_SCRIPT, "params.yaml", "full"], repo)
        console.log("dvc repro from scratch")
        full = measure_child(["dvc", "repro", "--quiet"], repo)
        console.log("dvc repro with nothing changed")
        noops = [measure_child(["dvc", "repro", "--quiet"], repo) for _ in range(3)]
        console.log(f"trivial {TRIVIAL_STAGES}-stage pipeline: dvc repro with nothing changed")
        trivial_repo = trivial_pipeline(Path(temp) / "trivial")
        trivial = min((measure_child(["dvc", "repro", "--quiet"], trivial_repo) for _ in range(3)),
                      key=lambda m: m[0])
        commit(repo, "after a full repro")
        versioned = flow_vs_repro(repo, console)
    noop = min(noops, key=lambda m: m[0])
    table = Table(title=f"dvc repro overhead ({label})")
    for column in ("run", "wall s", "peak RSS MiB", "ratio to bare"):
        table.add_column(column, justify="right" if column != "run" else "left")
    table.add_row("bare script (the same work, one process)", f"{bare[0]:.2f}", f"{bare[1]:.0f}", "1.00")
    table.add_row("bare script, train only (no validation, no gate)", f"{bare_train[0]:.2f}", f"{bare_train[1]:.0f}",
                  f"{bare_train[0] / bare[0]:.2f}")
    table.add_row("dvc repro (from scratch)", f"{full[0]:.2f}", f"{full[1]:.0f}", f"{full[0] / bare[0]:.2f}")
    table.add_row("dvc repro (no-op, best of 3)", f"{noop[0]:.2f}", f"{noop[1]:.0f}", f"{noop[0] / bare[0]:.2f}")
    console.print(table)
    console.print(f"goals: no-op < 2 s: {'met' if noop[0] < 2 else 'MISSED'}; "
                  f"full <= 3x bare: {'met' if full[0] <= 3 * bare[0] else 'MISSED'} ({full[0] / bare[0]:.2f}x)")
    versioning = Table(title="versioning (issue 16): same change, same run")
    for column in ("run", "wall s", "ratio", "goal"):
        versioning.add_column(column, justify="right" if column != "run" else "left")
    flow_ratio = versioned["flow_wall"] / versioned["repro"]
    noop_ratio = noop[0] / trivial[0]
    versioning.add_row("dvc repro (train.lightgbm.learning_rate changed)", f"{versioned['repro']:.2f}", "1.00", "")
    versioning.add_row("Prefect training flow, same change (process wall)", f"{versioned['flow_wall']:.2f}",
                       f"{flow_ratio:.2f}", "<= 1.3")
    versioning.add_row("  of which the flow call itself", f"{versioned['flow_in_process']:.2f}",
                       f"{versioned['flow_in_process'] / versioned['repro']:.2f}", "")
    versioning.add_row(f"reproduce <tag> (identical: {versioned['reproduce_identical']})",
                       f"{versioned['reproduce']:.2f}", "", "")
    versioning.add_row(f"trivial {TRIVIAL_STAGES}-stage dvc repro no-op (best of 3)", f"{trivial[0]:.2f}", "1.00", "")
    versioning.add_row("our dvc repro no-op (best of 3)", f"{noop[0]:.2f}", f"{noop_ratio:.2f}", "<= 1.5")
    console.print(versioning)
    console.print(f"goals: flow <= 1.3x repro: {'met' if flow_ratio <= 1.3 else 'MISSED'} ({flow_ratio:.2f}x); "
                  f"no-op <= 1.5x trivial: {'met' if noop_ratio <= 1.5 else 'MISSED'} ({noop_ratio:.2f}x)")


if __name__ == "__main__":
    main()
