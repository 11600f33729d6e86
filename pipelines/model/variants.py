"""The variant serve.artifact names, which the `variant` stage made, checked against the model it was made from
before it answers.

One implementation for the two places a variant is judged: the gate, before a challenger is promoted with
`serve.artifact` naming a variant (pipelines/stages.py `run_gate`), and the service, when a worker loads the champion
(services/variants.py); both read `paths.served_dir`, the `variant` stage's out. A variant is accepted only when the
report there was made from this very `model.txt` (its MD5, `VariantsReport.model_md5`) and it gives what it promises
on probe rows:
- a LightGBM variant (trees, features, pruned, leaves, ordinal) is a trained model of its own: its probe rows,
  recorded when optimize finished it, must replay exactly (`check_parity`), and its own threshold and schema answer;
- an ONNX variant (onnx, quantised) must give the model's probabilities on the model's probe rows within ONNX's
  tolerance, or the quantised variant's documented bound (`VariantRecord.bound`).
Anything else raises `VariantRefused` with the reason: a missing report or variant, a stale one (made from another
model.txt, or for another serve.artifact: run the variant stage again), a runtime that is not installed, or parity
beyond the bound.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines import contracts, io
from pipelines.contracts import VariantsReport
from pipelines.model.seam import TrainedModel

FULL = "full"  # serve.artifact's default: the model itself, no variant
# The variants kept as trained-model folders (LightGBM's own file), loadable by `TrainedModel.load`, and those kept as
# ONNX files. Declared here, not in optimize: the service imports this module, not the refits.
REMAKE = "run the variant stage (dvc repro variant)"  # what makes the served variant again
MODEL_VARIANTS = ("trees", "features", "pruned", "leaves", "ordinal")
ONNX_VARIANTS = ("onnx", "quantised")


class VariantRefused(RuntimeError):
    """The asked-for variant cannot stand in for this model; the message says why."""


@dataclass(frozen=True)
class CheckedVariant:
    """A variant that passed its parity check: what answers for it, and how close it came."""

    name: str
    model: TrainedModel  # the model whose threshold and schema answer (an ONNX variant: the model it was made from)
    onnx: Callable[[np.ndarray], np.ndarray] | None  # onnxruntime on the encoded rows; None: `model` predicts
    max_difference: float
    tolerance: float
    probe_rows: int

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """P(label 1) for rows encoded by `model.schema`, on one thread, as the service calls it."""
        return self.onnx(matrix) if self.onnx is not None else self.model.predict_matrix(matrix, 1)

    def describe(self) -> str:
        what = "onnxruntime" if self.onnx is not None else f"{self.model.trees} trees, " \
                                                            f"{len(self.model.schema.feature_names)} features"
        return (f"{self.name} variant ({what}): max difference {self.max_difference:.1e} on {self.probe_rows} probe "
                f"rows (tolerance {self.tolerance:g})")


def report_for(model_dir: Path, variants_dir: Path) -> VariantsReport:
    """The variants report in `variants_dir`, refused unless it was made from the model in `model_dir`."""
    report = VariantsReport.load(variants_dir)
    if report is None:
        raise VariantRefused(f"no {io.VARIANTS_REPORT_FILE} in {variants_dir}: {REMAKE}")
    md5 = io.file_md5(contracts.model_file(model_dir))
    if report.model_md5 != md5:
        raise VariantRefused(f"the variants in {variants_dir} were made from model {report.model_md5[:8]}, not this "
                             f"one ({md5[:8]}): {REMAKE}")
    return report


def probe_matrix(model: TrainedModel) -> np.ndarray:
    """The encoded probe rows training recorded in model.json (what `check_parity` replays)."""
    probe = model.meta.get("probe") or {}
    return np.array([[np.nan if v is None else v for v in row] for row in probe.get("matrix", [])], dtype=float)


def split_rows(row: np.ndarray, thresholds: list[np.ndarray]) -> np.ndarray:
    """Copies of `row` with one column on a threshold of its numeric splits or the next double either side of it,
    for every threshold: where float32 and float64 comparisons could part (a request may send any such value)."""
    from pipelines.model.families.lightgbm import on_and_beside

    blocks = [np.empty((0, len(row)))]
    for column, values in enumerate(thresholds):
        block = np.repeat(row[None, :], 3 * len(values), axis=0)
        block[:, column] = on_and_beside(values)
        blocks.append(block)
    return np.vstack(blocks)


def check_variant(model: TrainedModel, model_dir: Path, artifact: str, variants_dir: Path) -> CheckedVariant:
    """Variant `artifact` of `model` (saved in `model_dir`) from `variants_dir`, once its parity check passed."""
    from pipelines.model.catalog import load_model
    from pipelines.model.families.lightgbm_exchange import ONNX_TOLERANCE
    from pipelines.model.seam import PARITY_TOLERANCE, ParityError, check_parity

    report = report_for(model_dir, variants_dir)
    if report.served not in (None, artifact):
        raise VariantRefused(f"{variants_dir} holds what serve.artifact {report.served} asks for, not {artifact}: "
                             f"{REMAKE}")
    try:
        record = report.variant(artifact)
    except KeyError as error:
        raise VariantRefused(str(error)) from None
    directory = variants_dir / artifact
    if artifact not in ONNX_VARIANTS:
        try:
            variant = load_model(directory)
        except (FileNotFoundError, ValueError) as error:
            raise VariantRefused(f"{artifact} variant cannot load: {error}") from None
        try:
            difference, rows = check_parity(variant, lambda matrix: variant.predict_matrix(matrix, 1))
        except ParityError as error:
            raise VariantRefused(f"{artifact} variant: {error}") from None
        if not rows:
            raise VariantRefused(f"{artifact} variant records no probe rows to check it on")
        return CheckedVariant(name=artifact, model=variant, onnx=None, max_difference=difference,
                              tolerance=PARITY_TOLERANCE, probe_rows=rows)
    if not hasattr(model, "booster"):
        raise VariantRefused(f"the {artifact} variant is made from a LightGBM model, not a {model.family} one")
    try:
        from pipelines.model.families.lightgbm_exchange import onnx_predictor, split_thresholds

        thresholds = split_thresholds(model)
        run = onnx_predictor((directory / io.ONNX_FILE).read_bytes(), thresholds=thresholds)
    except (ImportError, OSError) as error:
        raise VariantRefused(f"{artifact} variant cannot load: {error}") from None
    matrix = probe_matrix(model)
    if not len(matrix):
        raise VariantRefused(f"the model records no probe rows to check the {artifact} variant on")
    matrix = np.vstack([matrix, split_rows(matrix[0], thresholds)])
    difference = float(np.max(np.abs(run(matrix) - model.predict_matrix(matrix, 1))))
    tolerance = record.bound if record.bound is not None else ONNX_TOLERANCE
    if not difference <= tolerance:
        raise VariantRefused(f"{artifact} variant differs from the model by {difference:.3g} on probe rows "
                             f"(tolerance {tolerance:g})")
    return CheckedVariant(name=artifact, model=model, onnx=run, max_difference=difference, tolerance=tolerance,
                          probe_rows=len(matrix))
