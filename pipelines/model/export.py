"""Edge artefacts: a model (the champion, or a variant `optimize` made) as files a device runs without our Python.

`python -m pipelines export --format onnx|c` writes into one folder:

- the model: `model.onnx` (onnxruntime or any ONNX runtime), or TL2cgen's C (`main.c`, `header.h`) with
  `runner.c`, a small program that reads encoded rows as CSV on stdin and prints P(label 1) per line, built by the
  system's `cc` into `runner`;
- `encoding.json`: what the model reads, spelled out: the column order, each categorical column's codes (the
  training vocabulary: text -> code; anything else is missing), the numeric columns, the calendar parts of the
  time column (UTC; how each is computed) and how a missing value is written. It is `pipelines.features`'
  `FeatureSchema` in words for another language.

Before the folder is handed over, the artefact is run on probe rows (the test split's seeded rows, encoded by
`pipelines.features.encode`, the service's own encoding) and compared with the model's own `predict_matrix` (the
service's prediction): above `C_TOLERANCE` / `ONNX_TOLERANCE` (float32 inside the ONNX tree operator), or the
quantised variant's documented bound, the export fails.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from pipelines import io
from pipelines.config import Params
from pipelines.contracts import EdgeEncoding
from pipelines.features import FeatureSchema, encode_frame
from pipelines.model.families.lightgbm_exchange import ONNX_TOLERANCE
from pipelines.model.seam import TrainedModel

Format = Literal["onnx", "c"]
FORMATS: tuple[str, ...] = ("onnx", "c")
# The runner computes in float64 as LightGBM does: the same sums, to rounding.
C_TOLERANCE = 1e-6
ENCODING_VERSION = 1
TIME_PART_RULES = {
    "day_of_week": "days since 1970-01-01 (UTC) plus 3, modulo 7 (Monday = 0)",
    "day_of_year": "1 on 1 January (UTC)",
    "month": "1 to 12 (UTC)",
    "hour_of_day": "0 to 23 (UTC)",
}
# The C runner: TL2cgen's `predict` per CSV line. An empty field (or nan) is missing, as NaN is to LightGBM.
RUNNER_C = r"""/* Reads rows of encoded features as CSV on stdin (column order and codes: encoding.json; an empty field
   or nan is missing), prints P(label 1) per row. Built with: cc -O2 -o runner runner.c main.c -lm */
#include "header.h"

static int is_missing(const char* field, const char* end) {
  while (field < end && (*field == ' ' || *field == '"')) ++field;
  return field == end || strncmp(field, "nan", 3) == 0 || strncmp(field, "NaN", 3) == 0;
}

int main(void) {
  const int32_t columns = get_num_feature();
  union Entry* row = (union Entry*)calloc((size_t)columns, sizeof(union Entry));
  size_t capacity = 1 << 16;
  char* line = (char*)malloc(capacity);
  long number = 0;
  if (!row || !line) return 2;
  while (fgets(line, (int)capacity, stdin)) {
    size_t length = strlen(line);
    while (length == capacity - 1 && line[length - 1] != '\n') {  /* a longer line: grow and read the rest */
      capacity *= 2;
      line = (char*)realloc(line, capacity);
      if (!line || !fgets(line + length, (int)(capacity - length), stdin)) break;
      length = strlen(line);
    }
    ++number;
    if (length <= 1 && (length == 0 || line[0] == '\n')) continue;
    char* field = line;
    for (int32_t column = 0; column < columns; ++column) {
      char* end = field;
      while (*end && *end != ',' && *end != '\n' && *end != '\r') ++end;
      if (is_missing(field, end)) {
        row[column].missing = -1;
      } else {
        char* parsed;
        row[column].fvalue = strtod(field, &parsed);
        if (parsed == field) { fprintf(stderr, "line %ld, column %d: not a number\n", number, column + 1); return 1; }
      }
      if (*end != ',' && column + 1 < columns) {
        fprintf(stderr, "line %ld: %d columns, expected %d\n", number, column + 1, columns);
        return 1;
      }
      field = *end ? end + 1 : end;
    }
    double result[1] = {0.0};
    predict(row, 0, result);
    printf("%.17g\n", result[0]);
  }
  free(row);
  free(line);
  return 0;
}
"""


class ExportError(RuntimeError):
    """The artefact could not be built, or does not give the model's predictions."""


# What a caller of the ONNX export does first (pipelines.model.families.lightgbm_exchange.float32_decisions).
FLOAT32_RULE = ("The ONNX tree operator compares float32(value) <= float32(threshold); LightGBM compares in float64, "
                "so a value within float32 rounding of a threshold can go the other way. Before the model, replace "
                "each value x of a column that lists float32_thresholds (sorted float64 thresholds of its splits): "
                "|x| <= 1e-35 becomes 0 (as LightGBM reads it); then x becomes float32(the first threshold >= x), or "
                "the next float32 above float32(the last threshold) when x is above them all; missing stays missing. "
                "Every split then goes where LightGBM sends x.")


def encoding_spec(schema: FeatureSchema, thresholds: list[np.ndarray] | None = None) -> EdgeEncoding:
    """`encoding.json`: the model's input, in the order the columns go, for a caller without `pipelines.features`;
    with `thresholds` (the forest's numeric split thresholds per encoded column: the ONNX export) each such column
    lists them and `float32_rule` says how to use them."""
    columns = []
    for name, vocabulary in schema.categorical.items():
        columns.append({"name": name, "kind": "categorical", "codes": {text: code for code, text in
                                                                         enumerate(vocabulary)},
                        "otherwise": "missing (an unseen or rare category is routed as a missing value)"})
    columns += [{"name": name, "kind": "numeric"} for name in schema.numeric]
    columns += [{"name": part, "kind": "time_part", "of": schema.time_column, "rule": TIME_PART_RULES[part]}
                for part in schema.time_parts]
    if thresholds is not None:
        by_name = dict(zip(schema.feature_names, thresholds, strict=True))
        for column in columns:
            values = by_name[column["name"]]
            if len(values):
                column["float32_thresholds"] = [float(value) for value in values]
    return EdgeEncoding(version=ENCODING_VERSION, column_order=schema.feature_names, columns=columns,
                        missing="an empty CSV field or nan (ONNX: NaN)", output="P(label 1), one per row",
                        float32_rule=FLOAT32_RULE if thresholds is not None else None)


def rows_csv(matrix: np.ndarray) -> str:
    """Encoded rows as the runner reads them: each value in its shortest exact form (`repr`), missing empty."""
    return "".join(",".join("" if math.isnan(value) else repr(float(value)) for value in row) + "\n"
                   for row in matrix)


def run_runner(program: Path, matrix: np.ndarray) -> np.ndarray:
    """P(label 1) per row from the built runner, rows sent as CSV on stdin."""
    done = subprocess.run([str(program)], input=rows_csv(matrix), capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise ExportError(f"{program} exited {done.returncode}: {done.stderr.strip()}")
    return np.array([float(line) for line in done.stdout.split()], dtype=float)


def build_runner(directory: Path, compiler: str = "cc") -> Path:
    """`runner` from `runner.c` and TL2cgen's sources in `directory`, by the system's C compiler."""
    if shutil.which(compiler) is None:
        raise ExportError(f"no C compiler {compiler!r} on PATH: the C export builds its runner with it")
    (directory / io.RUNNER_SOURCE).write_text(RUNNER_C)
    program = directory / io.RUNNER_PROGRAM
    done = subprocess.run([compiler, "-O2", "-o", io.RUNNER_PROGRAM, io.RUNNER_SOURCE, io.C_SOURCES[0], "-lm"],
                          cwd=directory, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise ExportError(f"{compiler} could not build the runner: {done.stderr.strip()[-2000:]}")
    return program


def export_model(model: TrainedModel, fmt: str, out: Path, probe: pd.DataFrame, *, leaf_precision: str = "float32",
                 bound: float | None = None) -> dict[str, Any]:
    """Write `model` as `fmt` into `out` with its encoding.json, and check it against `model.predict_matrix` on the
    encoded `probe` rows: within `bound` (the quantised variant's) or the format's tolerance, else `ExportError`."""
    from pipelines.model.families import lightgbm_exchange as exchange
    from pipelines.model.optimize import require_lightgbm

    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    forest = require_lightgbm(model)
    if fmt == "c" and leaf_precision != "float32":
        raise ValueError("the C export writes the forest in float64: export the quantised variant as onnx")
    out.mkdir(parents=True, exist_ok=True)
    matrix = encode_frame(probe, forest.schema)
    thresholds = None
    if fmt == "onnx":
        from pipelines.model.variants import split_rows

        # The probe rows and rows on every split threshold and the next double either side of it, moved by the
        # encoding's float32 rule as a caller must: where a plain float32 cast parts from LightGBM.
        thresholds = exchange.split_thresholds(forest)
        if len(matrix):
            matrix = np.vstack([matrix, split_rows(matrix[0], thresholds)])
    expected = forest.predict_matrix(matrix, threads=1)
    if fmt == "onnx":
        data = exchange.onnx_bytes(forest, leaf_precision)  # type: ignore[arg-type]
        target = io.write_atomic(out / io.ONNX_FILE, lambda temp: Path(temp).write_bytes(data))
        got = exchange.onnx_predictor(data, thresholds=thresholds)(matrix)
        tolerance, files = bound if bound is not None else ONNX_TOLERANCE, [target]
    else:
        files = exchange.write_c_source(forest, out)
        target = build_runner(out)
        got = run_runner(target, matrix)
        tolerance, files = bound if bound is not None else C_TOLERANCE, [*files, out / io.RUNNER_SOURCE, target]
    encoding = encoding_spec(forest.schema, thresholds).save(out)
    difference = float(np.max(np.abs(got - expected))) if len(got) == len(expected) else math.inf
    if not difference <= tolerance:
        raise ExportError(f"the {fmt} artefact differs from the model by {difference:.3g} on {len(expected)} probe "
                          f"rows (tolerance {tolerance:g})")
    return {"format": fmt, "out": str(out), "model_file": str(target), "bytes": target.stat().st_size,
            "encoding": str(encoding), "files": sorted(str(path.name) for path in {*files, encoding}),
            "probe_rows": len(expected), "max_difference": difference, "tolerance": tolerance}


def run_export(params: Params, fmt: str, variant: str, full: Path, out: Path | None = None) -> dict[str, Any]:
    """Export the model in `full` (the champion's folder, or `paths.model_dir`: the caller's choice) or a variant
    `optimize` made of it, checked on `optimize.probe_rows` seeded test rows."""
    from pipelines.model.catalog import load_model
    from pipelines.model.optimize import MODEL_VARIANTS, probe_rows, variant_dir

    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    source, leaf_precision, bound = full, "float32", None
    if variant in MODEL_VARIANTS:
        source = variant_dir(params, variant)
    elif variant == "quantised":  # the full model's ONNX with rounded leaves, made again as optimize made it
        variant_dir(params, variant)
        leaf_precision, bound = params.optimize.leaf_precision, params.optimize.max_prob_diff
    elif variant != "full":
        variant_dir(params, variant)  # the onnx variant is the full model's; anything else is refused by name
    model = load_model(source)
    test = io.read_parquet(io.prepared_path(params.paths, "test"), "preprocess")
    out = out or params.paths.variants_dir / f"export-{variant}-{fmt}"
    result = export_model(model, fmt, out, probe_rows(test, params.optimize.probe_rows, params.train.seed),
                          leaf_precision=leaf_precision, bound=bound)
    return {"variant": variant, "model": str(source), **result}
