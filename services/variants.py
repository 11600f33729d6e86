"""The variant the service serves in place of the full champion (`serve.artifact`), as the `variant` stage made it.

The check is `pipelines.model.variants.check_variant`, the one the gate runs before a promotion: a worker serves the
variant only when its report was made from this champion's model.txt and the variant passes its parity check (a
LightGBM variant replays its probe rows exactly, an ONNX one stays within its tolerance or the quantised variant's
bound). It looks first in the folder the gate attached to the champion in the registry (`io.SERVED_VARIANT_DIR`: the
variant travels with its model, so a rolled-back or the Bento's bundled champion serves its own), then in
`paths.served_dir` (the variant stage's out: the latest candidate's). Otherwise the full champion serves and
`/metadata`'s predictor says why: a stale report after a promotion, a missing variant or runtime never takes the
service down. Imported only when a variant is asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.model.seam import TrainedModel
from pipelines.model.variants import VariantRefused, check_variant

__all__ = ["OnnxForest", "VariantRefused", "load_variant"]  # VariantRefused: what scoring catches


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


def load_variant(champion: TrainedModel, model_dir: Path, artifact: str,
                 variants_dirs: Sequence[Path]) -> tuple[TrainedModel, OnnxForest | None, Path]:
    """(the model that answers, an ONNX forest in place of the compiled one or None, the folder it came from) for
    `artifact`, from the first of `variants_dirs` whose variant was made from this champion and passes its check (a
    LightGBM variant is compiled by the caller like any champion). Raises `VariantRefused` with each folder's
    reason when none does."""
    reasons = []
    for variants_dir in variants_dirs:
        try:
            checked = check_variant(champion, model_dir, artifact, variants_dir)
        except VariantRefused as error:
            reasons.append(str(error))
            continue
        if checked.onnx is None:
            return checked.model, None, variants_dir
        return champion, OnnxForest(run=checked.onnx, name=artifact, max_difference=checked.max_difference,
                                    probe_rows=checked.probe_rows), variants_dir
    raise VariantRefused("; ".join(reasons) or "no folder to read a variant from")
