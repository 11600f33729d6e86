"""Benchmark: the search on 1 vs 2 Dask workers, and the winner against the default model and scikit-learn.

    .venv/bin/python benchmarks/search.py [--params params.yaml] [--workdir DIR]

Runs collect + preprocess for the params' window (default Jan-Aug 2013) into a scratch folder, then:
1. the same candidates (params `search:`) on a local Dask cluster of 1 and of 2 workers: wall time and ratio;
2. test-split ROC AUC of the search winner, of `train:` as configured (the default-params model), and of every
   other model family with its own `train.<family>` section, on the same encoded features.
Prints a table; nothing is timed inside the test suite.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--workdir", help="scratch folder (default: a new temp dir)")
    args = parser.parse_args()

    from sklearn.metrics import roc_auc_score

    from pipelines import io, stages
    from pipelines.config import FAMILIES, parse_params
    from pipelines.features import LABEL
    from pipelines.model.catalog import load_model
    from pipelines.model.train import train_model

    root = Path(args.workdir or tempfile.mkdtemp(prefix="bench-search-"))
    data = yaml.safe_load(Path(args.params).read_text())
    data["paths"] = {key: str(root / value) for key, value in data["paths"].items()}
    params = parse_params(data)
    stages.run_collect(params)
    stages.run_validate(params)
    splits = stages.run_preprocess(params)
    print(f"window {params.collect.start:%Y-%m-%d}..{params.collect.end:%Y-%m-%d}, rows {splits}")

    timings = {}
    for workers in (1, 2):
        run = parse_params({**data, "search": {**data["search"], "n_workers": workers},
                            "paths": {**data["paths"], "model_dir": str(root / f"model-{workers}w")}})
        start = time.perf_counter()
        summary = stages.run_search(run)
        total = time.perf_counter() - start
        timings[workers] = (total, summary["wall_seconds"], summary)
        print(f"{workers} worker(s): {summary['candidates']} candidates, total {total:.1f} s "
              f"(candidates' span {summary['wall_seconds']:.1f} s, rest is cluster start + I/O), "
              f"winner #{summary['winner']} valid AUC {summary['valid_metrics']['auc']:.4f}")
    ratio_total = timings[1][0] / timings[2][0]
    ratio_span = timings[1][1] / timings[2][1]

    train = io.read_parquet(io.prepared_path(params.paths, "train"), "preprocess")
    valid = io.read_parquet(io.prepared_path(params.paths, "valid"), "preprocess")
    test = io.read_parquet(io.prepared_path(params.paths, "test"), "preprocess")
    winner = load_model(root / "model-2w")
    schema = winner.schema
    start = time.perf_counter()
    default = train_model(train, valid, schema, params.train)
    default_seconds = time.perf_counter() - start

    others = {}
    for family in (name for name in FAMILIES if name != params.train.family):
        start = time.perf_counter()
        others[family] = train_model(train, valid, schema, params.train.with_family(family))
        others[family].meta["seconds"] = time.perf_counter() - start

    y_test = test[LABEL].to_numpy()
    rows = {
        f"search winner ({winner.family})": (roc_auc_score(y_test, winner.predict_proba(test)), timings[2][1],
                                     json.dumps(winner.meta["search"])),
        f"default train: params ({default.family})": (roc_auc_score(y_test, default.predict_proba(test)),
                                                      default_seconds, f"{default.meta['best_iteration']} rounds"),
        **{f"{family} family (train.{family})": (roc_auc_score(y_test, model.predict_proba(test)),
                                                  model.meta["seconds"], f"{model.meta['best_iteration']} iterations")
           for family, model in others.items()},
    }
    print(f"\nsearch wall time 1 vs 2 workers: total {timings[1][0]:.1f} s vs {timings[2][0]:.1f} s "
          f"(ratio {ratio_total:.2f}); candidates' span {timings[1][1]:.1f} s vs {timings[2][1]:.1f} s "
          f"(ratio {ratio_span:.2f})")
    print(f"\n{'model':<36} {'test ROC AUC':>12} {'fit s':>8}  note")
    for name, (auc, seconds, note) in rows.items():
        print(f"{name:<36} {auc:>12.4f} {seconds:>8.1f}  {note}")


if __name__ == "__main__":
    main()
