"""A LightGBM forest in the exchange formats other runtimes read: ONNX and C source.

- ONNX: onnxmltools converts the booster into an `ai.onnx.ml` TreeEnsembleClassifier, which onnxruntime runs. The
  operator holds thresholds and leaf values as float32 (and sums in float32): on the flights' encoded rows its
  probabilities are within ~1e-7 of LightGBM's. `leaf_precision: float16` rounds each leaf value further to half
  precision inside the same ONNX file: the quantised variant, whose cost is measured, never assumed.
- C: Treelite reads the booster and TL2cgen writes its trees as plain C (`main.c`, `header.h`) in float64, which
  the system's `cc` builds into a program or a shared library. Same answers as LightGBM to rounding (~1e-16).
- Compact: the same C with TL2cgen's `quantize` (each numeric split compares a bin index, the row's values are
  turned into bin indices once per row), built by `cc -Os` and stripped into the smallest shared library of the
  forest, and called one row at a time through TL2cgen's generated `predict` with ctypes into buffers made once: no
  DMatrix and no thread pool per call, which is most of what one row costs the other runtimes.

This is the one module outside `lightgbm.py` that touches the booster: every other caller passes a `LightGBMModel`.
Each library is imported inside its function: none of them is loaded unless a command asks for its format.
"""

from __future__ import annotations

import bisect
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pipelines.model.families.lightgbm import LIGHTGBM_ZERO, LightGBMModel

# The highest opset onnxmltools' LightGBM converter writes (1.16: ai.onnx 15, ai.onnx.ml 3).
ONNX_OPSET = 15
ONNX_INPUT = "input"
ONNX_OUTPUT = "probabilities"
# How far ONNX's float32 tree operator may be from LightGBM's float64 (~2e-7 on the flights): an export, or an ONNX
# variant the service serves, beyond it is refused.
ONNX_TOLERANCE = 1e-6
_ROWS_ONE_BY_ONE = 8  # float32_decisions: up to this many rows, a Python loop beats numpy's per-call cost
LeafPrecision = Literal["float32", "float16"]
# The tree operator's leaf values (onnxmltools' classifier: the positive class's weight per leaf).
_LEAF_ATTRIBUTE = "class_weights"


def onnx_bytes(model: LightGBMModel, leaf_precision: LeafPrecision = "float32") -> bytes:
    """The model as a serialised ONNX graph: one float32 input of the encoded features in schema order, and the
    (rows, 2) class probabilities as output `ONNX_OUTPUT` (no ZipMap: a plain tensor any runtime reads)."""
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    graph = onnxmltools.convert_lightgbm(
        model.booster, initial_types=[(ONNX_INPUT, FloatTensorType([None, len(model.schema.feature_names)]))],
        zipmap=False, target_opset=ONNX_OPSET)
    if leaf_precision == "float16":
        _round_leaves_to_half(graph)
    elif leaf_precision != "float32":
        raise ValueError(f"unknown leaf precision {leaf_precision!r}; known: float32, float16")
    return graph.SerializeToString()


def _round_leaves_to_half(graph: Any) -> None:
    """Every leaf value of the tree operator rounded to the nearest float16 (kept in the float32 attribute)."""
    trees = [node for node in graph.graph.node if node.op_type.startswith("TreeEnsemble")]
    if not trees:
        raise ValueError("the ONNX graph has no TreeEnsemble operator to quantise")
    for node in trees:
        for attribute in node.attribute:
            if attribute.name in (_LEAF_ATTRIBUTE, "target_weights"):
                rounded = np.asarray(attribute.floats, dtype=np.float32).astype(np.float16).astype(np.float32)
                del attribute.floats[:]
                attribute.floats.extend(rounded.tolist())


def split_thresholds(model: LightGBMModel) -> list[np.ndarray]:
    """Per encoded column, the sorted distinct thresholds of the forest's numeric (`<=`) splits, as LightGBM compares
    them: float64 (empty for a column only categorical splits or none use)."""
    nodes = model.booster.trees_to_dataframe()
    numeric = nodes[nodes["decision_type"] == "<="]
    return [np.unique(numeric.loc[numeric["split_feature"] == name, "threshold"].to_numpy(dtype=float))
            for name in model.booster.feature_name()]


def float32_decisions(thresholds: Sequence[np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """`matrix -> matrix` moving each numeric value to a float32 value that is on the same side of every split of its
    column (`thresholds`, from `split_thresholds`) in the float32 tree operator as the float64 value is in LightGBM.

    The operator compares float32(x) <= float32(t); LightGBM compares x <= t. A value between t and the next float32
    (a request's 61.52000000000001 against a split at 61.520000000000003) goes left in ONNX and right in LightGBM,
    which moved a probability by 0.1 and flipped its label. Each value becomes float32(the first threshold >= it), or
    the next float32 above the last threshold: what LightGBM decides, kept through the cast. As LightGBM does first, a
    value within `LIGHTGBM_ZERO` of 0 is 0; NaN stays NaN. Two thresholds of one column that round to the same float32
    cannot be told apart by the operator at all (the parity check's split rows find them)."""
    steps = []
    for column, values in enumerate(thresholds):
        if len(values):
            rounded = values.astype(np.float32)
            beyond = np.nextafter(rounded[-1], np.float32(np.inf))
            representatives = np.append(rounded, beyond).astype(float)
            steps.append((column, values, representatives, values.tolist(), representatives.tolist()))

    def decide(matrix: np.ndarray) -> np.ndarray:
        matrix = np.array(matrix, dtype=float, ndmin=2)  # a copy: the caller's rows are not changed
        matrix[np.abs(matrix) <= LIGHTGBM_ZERO] = 0.0
        if len(matrix) <= _ROWS_ONE_BY_ONE:  # a request's few rows: bisect on lists, ~10x faster than numpy's calls
            for row in matrix:
                cells = row.tolist()
                for column, _, _, values_list, representatives_list in steps:
                    value = cells[column]
                    if value == value:  # not NaN
                        row[column] = representatives_list[bisect.bisect_left(values_list, value)]
            return matrix
        for column, values, representatives, _, _ in steps:
            cells = matrix[:, column]
            present = ~np.isnan(cells)
            cells[present] = representatives[np.searchsorted(values, cells[present], side="left")]
        return matrix

    return decide


def onnx_predictor(data: bytes, threads: int = 1,
                   thresholds: Sequence[np.ndarray] | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """An onnxruntime session over `data` as `predict(matrix) -> P(label 1)`: the matrix is cast to float32 (what
    the operator reads), after `float32_decisions(thresholds)` when the model's split thresholds are given (what the
    service serves: the model's decisions on every value, not only on values away from a threshold). One intra-op
    thread by default, as the service predicts. ONNX Runtime's own telemetry is turned off first (below)."""
    # onnxruntime >= 1.29 sends usage events to Microsoft from Linux too, on by default: at its first session it
    # writes a device id and an upload cache under ~/.cache/Microsoft/DeveloperTools/.onnxruntime (found there after
    # the gate and warned about by every worker, whose user has no home). A service or gate must not call out;
    # ORT_DISABLE_TELEMETRY=1, set before that first session, turns all of it off. A value the caller set is kept.
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # its "output shape" warnings on every batch are about the unused label output
    session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])

    decide = float32_decisions(thresholds) if thresholds is not None else np.asarray

    def predict(matrix: np.ndarray) -> np.ndarray:
        rows = np.asarray(decide(matrix), dtype=np.float32)
        return session.run([ONNX_OUTPUT], {ONNX_INPUT: rows})[0][:, 1].astype(float)

    return predict


def _treelite_model(model: LightGBMModel) -> Any:
    import treelite

    return treelite.frontend.from_lightgbm(model.booster)


def write_c_source(model: LightGBMModel, directory: Path, quantize: bool = False) -> list[Path]:
    """TL2cgen's C for the forest (`main.c`, `header.h`, `recipe.json`) in `directory`: `predict(union Entry*,
    pred_margin, double*)` with the sigmoid applied, float64 throughout; with `quantize`, each numeric split
    compares a bin index (the compact library's form)."""
    import tl2cgen

    directory.mkdir(parents=True, exist_ok=True)
    tl2cgen.generate_c_code(_treelite_model(model), str(directory), params={"quantize": 1} if quantize else {})
    return sorted(directory.iterdir())


def c_library_predictor(model: LightGBMModel, library: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The forest built by TL2cgen into the shared library `library` (gcc), loaded as `predict(matrix)`: TL2cgen's
    C called from Python, for measuring the C code where a Python benchmark can time it."""
    import tl2cgen

    if not library.exists():
        tl2cgen.export_lib(_treelite_model(model), toolchain="gcc", libpath=str(library), params={})
    predictor = tl2cgen.Predictor(str(library), nthread=1)

    def predict(matrix: np.ndarray) -> np.ndarray:
        return predictor.predict(tl2cgen.DMatrix(np.asarray(matrix, dtype=np.float64), dtype="float64")).reshape(-1)

    return predict


# `cc` flags of the compact library: optimised for size, symbols stripped (TL2cgen's `predict` stays exported).
COMPACT_CFLAGS = ("-Os", "-s", "-shared", "-fPIC")
# TL2cgen's `union Entry {int missing; double fvalue; int qvalue;}` marks a missing value by `missing == -1`: a
# double whose low 32 bits (the int member, on a little-endian machine) are all ones. This NaN is such a double, so
# one float64 store per missing value writes the marker.
_MISSING_ENTRY = float(np.array([0x7FF80000FFFFFFFF], dtype=np.int64).view(np.float64)[0])


def compact_library(model: LightGBMModel, library: Path, compiler: str = "cc") -> Path:
    """TL2cgen's C for the forest with quantised thresholds, built by `compiler` with COMPACT_CFLAGS into `library`
    (written under a temporary name, then renamed into place)."""
    library.parent.mkdir(parents=True, exist_ok=True)
    partial = library.with_name(f".{library.name}.partial")
    with tempfile.TemporaryDirectory() as source:
        sources = [str(path) for path in write_c_source(model, Path(source), quantize=True) if path.suffix == ".c"]
        done = subprocess.run([compiler, *COMPACT_CFLAGS, "-o", str(partial), *sources, "-lm"], capture_output=True,
                              text=True)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"{compiler} could not build the compact library: {done.stderr.strip()[-1000:]}")
    partial.replace(library)
    return library


def compact_predictor(library: Path, features: int) -> Callable[[np.ndarray], np.ndarray]:
    """`predict(matrix) -> P(label 1)` through the compact library's `predict(union Entry*, int pred_margin,
    double* result)`, one row per call, its NaNs written as TL2cgen's missing marker first (as TL2cgen's own
    Predictor does) and the result zeroed (the generated code adds to it). The rows are copied first: the generated
    code quantises a row in place. One row, the service's single prediction, goes through buffers made once, so it
    allocates nothing but its answer (and one predictor is not to be shared by threads)."""
    import ctypes

    if sys.byteorder != "little":
        raise RuntimeError("the compact library's missing marker is written for a little-endian machine")
    call = ctypes.CDLL(str(library)).predict
    call.restype = None
    entries, missing, result = np.zeros(features), np.zeros(features, dtype=bool), np.zeros(1)
    entries_p, result_p = ctypes.c_void_p(entries.ctypes.data), ctypes.c_void_p(result.ctypes.data)
    pred_margin = ctypes.c_int(0)  # 0: the sigmoid applied, P(label 1)

    def predict(matrix: np.ndarray) -> np.ndarray:
        rows = np.asarray(matrix, dtype=np.float64)
        if rows.shape == (1, features):
            entries[...] = rows  # the one row, its leading axis dropped
            np.isnan(entries, out=missing)
            entries[missing] = _MISSING_ENTRY
            result[0] = 0.0
            call(entries_p, pred_margin, result_p)
            return result.copy()
        if rows.ndim != 2 or rows.shape[1] != features:
            raise ValueError(f"expected rows of {features} encoded features, got shape {rows.shape}")
        work = np.array(rows, order="C")
        work[np.isnan(work)] = _MISSING_ENTRY
        base, stride = work.ctypes.data, work.strides[0]
        out = np.empty(len(work))
        for index in range(len(work)):
            result[0] = 0.0
            call(ctypes.c_void_p(base + index * stride), pred_margin, result_p)
            out[index] = result[0]
        return out

    return predict
