"""The variant the service serves in place of the full champion (`serve.artifact`), when `optimize` made it.

`python -m pipelines optimize` writes variants of a model to `paths.variants_dir` with a report naming the model
they were made from (`VariantsReport.model_md5`). A worker that loads a champion and is asked for a variant serves
it only when that report is of this champion and the variant gives what it promises on the probe rows training
recorded:
- a LightGBM variant (trees, features, pruned) is a trained model of its own: its probe rows must replay exactly
  (`check_parity`), and its own threshold and schema answer;
- an ONNX variant (onnx, quantised) must give the champion's probabilities within ONNX's tolerance, or the
  quantised variant's documented bound (`VariantRecord.bound`).
Otherwise the full champion serves and `/metadata`'s predictor says why: a stale report after a promotion, a
missing variant or runtime never takes the service down. Imported only when a variant is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines import contracts, io
from pipelines.contracts import VariantsReport
from pipelines.model.seam import TrainedModel

FULL = "full"
ONNX_VARIANTS = ("onnx", "quantised")


class VariantRefused(RuntimeError):
    """The asked-for variant cannot serve this champion; the message says why."""


@dataclass(frozen=True)
class OnnxForest:
    """An ONNX variant in the compiled forest's place: `predict(matrix)` on the champion's encoded rows."""

    run: Callable[[np.ndarray], np.ndarray]
    name: str
    max_difference: float
    probe_rows: int

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        return self.run(matrix)

    def describe(self) -> str:
        return (f"{self.name} variant (onnxruntime, max difference from the champion {self.max_difference:.1e} on "
                f"{self.probe_rows} probe rows)")


def report_for(model_dir: Path, variants_dir: Path) -> VariantsReport:
    """The variants report in `variants_dir`, refused unless it was made from the model in `model_dir`."""
    report = VariantsReport.load(variants_dir)
    if report is None:
        raise VariantRefused(f"no {io.VARIANTS_REPORT_FILE} in {variants_dir} (python -m pipelines optimize)")
    md5 = io.file_md5(contracts.model_file(model_dir))
    if report.model_md5 != md5:
        raise VariantRefused(f"the variants in {variants_dir} were made from model {report.model_md5[:8]}, not this "
                             f"champion ({md5[:8]}): run python -m pipelines optimize again")
    return report


def probe_matrix(model: TrainedModel) -> np.ndarray:
    """The encoded probe rows training recorded in model.json (what `check_parity` replays)."""
    probe = model.meta.get("probe") or {}
    return np.array([[np.nan if v is None else v for v in row] for row in probe.get("matrix", [])], dtype=float)


def load_variant(champion: TrainedModel, model_dir: Path, artifact: str,
                 variants_dir: Path) -> tuple[TrainedModel, OnnxForest | None]:
    """(the model that answers, an ONNX forest in place of the compiled one or None) for `artifact`."""
    from pipelines.model.catalog import load_model
    from pipelines.model.families.lightgbm_exchange import ONNX_TOLERANCE
    from pipelines.model.seam import ParityError, check_parity

    report = report_for(model_dir, variants_dir)
    try:
        record = report.variant(artifact)
    except KeyError as error:
        raise VariantRefused(str(error)) from None
    directory = variants_dir / artifact
    if artifact not in ONNX_VARIANTS:
        variant = load_model(directory)
        try:
            check_parity(variant, lambda matrix: variant.predict_matrix(matrix, 1))
        except ParityError as error:
            raise VariantRefused(f"{artifact} variant: {error}") from None
        return variant, None
    try:
        from pipelines.model.families.lightgbm_exchange import onnx_predictor

        run = onnx_predictor((directory / io.ONNX_FILE).read_bytes())
    except (ImportError, OSError) as error:
        raise VariantRefused(f"{artifact} variant cannot load: {error}") from None
    matrix = probe_matrix(champion)
    if not len(matrix):
        raise VariantRefused("the champion records no probe rows to check an ONNX variant on")
    difference = float(np.max(np.abs(run(matrix) - champion.predict_matrix(matrix, 1))))
    tolerance = record.bound if record.bound is not None else ONNX_TOLERANCE
    if not difference <= tolerance:
        raise VariantRefused(f"{artifact} variant differs from the champion by {difference:.3g} on probe rows "
                             f"(tolerance {tolerance:g})")
    return champion, OnnxForest(run=run, name=artifact, max_difference=difference, probe_rows=len(matrix))
