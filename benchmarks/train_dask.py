"""Benchmark: single-process LightGBM vs `lightgbm.dask` (train.engine dask), on the x1 table and a x10 one.

    .venv/bin/python -m benchmarks.train_dask [--params params.yaml] [--scales 1 10] [--workers 2] [--workdir DIR]

Runs collect + preprocess for the params' window into a scratch folder (x1). The x10 table is the x1 train split
replicated ten times, each copy moved 52 weeks further back in time (day of week kept), written in the same 100k-row
Parquet groups as the preprocess stage writes; valid, test and the feature schema are the x1 ones. (No scale
generator exists in the project yet: this is the documented stand-in.)

Each measurement runs in a fresh child process (and, for dask, a fresh local cluster of `--workers` processes with
one thread each; the single-process run uses as many threads), so peak RSS is that run's own: the single process's
VmHWM, and for dask each worker's plus the client's (`support.memory`). Prints wall time (data read + fit +
early stopping + threshold), trees, test ROC AUC and peak RSS per process. Nothing is timed in the test suite.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from support.memory import peak_rss_mib

REPLICA_SHIFT_DAYS = 364  # 52 weeks: a copy keeps its day of week


def _replicate(prepared: Path, target: Path, times: int, time_column: str) -> int:
    import shutil

    import pandas as pd

    from pipelines.io import SPLIT_ROW_GROUP_ROWS, write_parquet

    target.mkdir(parents=True, exist_ok=True)
    for name in ("valid.parquet", "test.parquet", "feature_schema.json"):
        shutil.copy2(prepared / name, target / name)
    train = pd.read_parquet(prepared / "train.parquet")
    copies = [train.assign(**{time_column: train[time_column] - pd.Timedelta(days=REPLICA_SHIFT_DAYS * k)})
              for k in reversed(range(times))]
    table = pd.concat(copies, ignore_index=True)
    write_parquet(target / "train.parquet", table, row_group_rows=SPLIT_ROW_GROUP_ROWS)
    return len(table)


def _measure(engine: str, prepared: Path, params_file: Path, workers: int) -> dict[str, Any]:
    """One training run in this (fresh) process; returns its figures."""
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from pipelines.config import TrainParams, load_params
    from pipelines.features import LABEL, FeatureSchema

    params = load_params(params_file)
    train_params = TrainParams.model_validate({**params.train.model_dump(), "engine": engine, "num_threads": workers})
    schema = FeatureSchema.load(prepared / "feature_schema.json")
    valid = pd.read_parquet(prepared / "valid.parquet")
    test = pd.read_parquet(prepared / "test.parquet")
    result: dict[str, Any] = {"engine": engine}
    if engine == "local":
        from pipelines.model.train import train_model

        start = time.perf_counter()
        model = train_model(pd.read_parquet(prepared / "train.parquet"), valid, schema, train_params)
        result["seconds"] = time.perf_counter() - start
    else:
        from distributed import Client, LocalCluster

        from pipelines.model.distributed import train_model_dask

        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None) as cluster, Client(cluster) as client:
            start = time.perf_counter()
            model = train_model_dask(client, prepared / "train.parquet", valid, schema, train_params,
                                     partitions=workers)
            result["seconds"] = time.perf_counter() - start
            result["worker_peak_rss_mib"] = sorted(client.run(peak_rss_mib).values())
    result["peak_rss_mib"] = peak_rss_mib()
    result["trees"] = model.meta["best_iteration"]
    result["train_rows"] = model.meta["train_rows"]
    result["test_auc"] = float(roc_auc_score(test[LABEL], model.predict_proba(test)))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--workdir", help="scratch folder (default: a new temp dir)")
    parser.add_argument("--rounds", type=int, help="cap train.lightgbm.num_boost_round (a busy machine: fewer rounds, "
                        "same "
                        "data, so the memory figures hold and the time per round can still be compared)")
    parser.add_argument("--measure", nargs=2, metavar=("ENGINE", "PREPARED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:  # the child process
        print(json.dumps(_measure(args.measure[0], Path(args.measure[1]), Path(args.params), args.workers)))
        return

    from pipelines import io, stages
    from pipelines.config import parse_params

    root = Path(args.workdir or tempfile.mkdtemp(prefix="bench-train-dask-"))
    root.mkdir(parents=True, exist_ok=True)
    data = yaml.safe_load(Path(args.params).read_text())
    data["paths"] = {key: str(root / value) for key, value in data["paths"].items()}
    if args.rounds:
        data["train"]["num_boost_round"] = args.rounds
    params = parse_params(data)
    params_file = root / f"params-{args.rounds or 'as-configured'}.yaml"
    params_file.write_text(yaml.safe_dump(data, sort_keys=False))
    if not io.prepared_path(params.paths, "train").exists():
        stages.run_collect(params)
        stages.run_preprocess(params)
    prepared = {1: params.paths.prepared_dir}
    for scale in args.scales:
        if scale != 1:
            prepared[scale] = root / f"prepared-x{scale}"
            if not (prepared[scale] / "train.parquet").exists():
                _replicate(params.paths.prepared_dir, prepared[scale], scale, params.source.time_column)

    print(f"window {params.collect.start:%Y-%m-%d}..{params.collect.end:%Y-%m-%d}; {args.workers} dask worker "
          f"processes x 1 thread vs one process x {args.workers} threads; train: "
          f"{params.train.lightgbm.num_boost_round} "
          f"rounds max, early stopping {params.train.lightgbm.early_stopping_rounds}")
    print(f"\n{'table':<6} {'engine':<7} {'train rows':>10} {'wall s':>7} {'trees':>5} {'test AUC':>8}  peak RSS MiB")
    for scale in args.scales:
        for engine in ("local", "dask"):
            done = subprocess.run([sys.executable, "-m", "benchmarks.train_dask", "--params", str(params_file),
                                   "--workers", str(args.workers), "--measure", engine, str(prepared[scale])],
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(f"x{scale:<5} {engine:<7} failed:\n{done.stderr[-2000:]}")
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rss = f"{row['peak_rss_mib']:.0f}"
            if "worker_peak_rss_mib" in row:
                rss = f"client {rss}, workers " + " / ".join(f"{value:.0f}" for value in row["worker_peak_rss_mib"])
            print(f"x{scale:<5} {engine:<7} {row['train_rows']:>10,} {row['seconds']:>7.1f} {row['trees']:>5} "
                  f"{row['test_auc']:>8.4f}  {rss}", flush=True)


if __name__ == "__main__":
    main()
