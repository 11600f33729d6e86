"""The model seam: the one interface every caller of a trained model uses, whatever its family.

Evaluate, the gate, the registry, the model card, monitoring and the service see a `TrainedModel` and nothing
else: `predict_proba(frame)` (raw rows, encoded by the training feature code), `predict_matrix(matrix, threads)`
(rows already encoded by `pipelines.features.encode`, the service's hot path), `importance(kind)`,
`save(dir)` / `TrainedModel.load(dir)`, `family`, `threshold`, `schema` and `meta`. A learner's own objects (a
LightGBM booster, a scikit-learn estimator) live inside its family's module (`pipelines/model/families/`) and
never leave it; `tests/code/test_model_seam.py` holds every other module to that.

A trained model is a directory: the family's learner file (`pipelines.io.MODEL_FILES`), `feature_schema.json`
and `model.json` (`pipelines.contracts.ModelMeta`: the family, threshold, best iteration, validation metrics,
params, and probe rows with their probabilities, which `check_parity` replays after a load: the served prediction
must be the one training made). `TrainedModel.meta` is that record's JSON view, a dict the trainers fill in.
"""

from __future__ import annotations

import importlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from pipelines.contracts import ModelMeta, model_file
from pipelines.features import FeatureSchema, encode_frame
from pipelines.io import MODEL_FILES, SCHEMA_FILE, replace_dir, to_jsonable

# Importance kinds every family answers: "weight" is how much the model relies on each feature by its own
# measure (split gain for trees, mean absolute log-odds contribution for a linear model).
WEIGHT = "weight"
# Probe rows kept in model.json for the load-time parity check.
PROBE_ROWS = 100
# A reloaded model must give the probabilities training recorded within this (float64 round trip: exact; a
# library upgrade that changes predictions is caught).
PARITY_TOLERANCE = 1e-9


class ParityError(RuntimeError):
    """A loaded model does not give the probabilities recorded for its probe rows when it was trained."""


@dataclass(kw_only=True)
class TrainedModel:
    """A trained model of some family, with everything needed to score raw rows the way training did."""

    family: ClassVar[str]
    # The family's importance kinds (besides WEIGHT, which every family answers).
    importance_kinds: ClassVar[tuple[str, ...]] = ()
    # Same data and params give the same learner file byte for byte (reproduce --check compares the md5); else the
    # family states the tolerance its probabilities are compared with.
    deterministic: ClassVar[bool] = True

    schema: FeatureSchema
    threshold: float
    meta: dict[str, Any] = field(default_factory=dict)
    # The learner file's bytes, taken where the model was fitted (`finish_training`) or read (`load`): a model that
    # crossed processes (a Dask worker's candidate) is saved as its fit wrote it, since a pickle's bytes follow its
    # objects' history (strings shared or not), not only their values.
    learner: bytes | None = field(default=None, repr=False, compare=False)
    # Wall seconds of this process's fit (the search's candidate record shows it); never saved: a model's files must be
    # the same bytes run after run, and a duration never is.
    fit_seconds: float | None = field(default=None, repr=False, compare=False)

    # --- what every family implements -------------------------------------------------------------------------

    def predict_matrix(self, matrix: np.ndarray, threads: int = 0) -> np.ndarray:
        """P(label 1) per row of an encoded matrix (`pipelines.features.encode`); `threads` 0: the library's
        default, n: at most n threads (the service predicts small requests on one)."""
        raise NotImplementedError

    def _importance(self, kind: str) -> np.ndarray:
        """One non-negative value per feature (`schema.feature_names` order) of `kind`."""
        raise NotImplementedError

    def _write_learner(self, path: Path) -> None:
        """Write the learner's own file (`model_file_name`) at `path`."""
        raise NotImplementedError

    @classmethod
    def _read_learner(cls, path: Path) -> dict[str, Any]:
        """The family's own fields (e.g. `booster`) from its learner file."""
        raise NotImplementedError

    # --- the same for every family -----------------------------------------------------------------------------

    @classmethod
    def model_file_name(cls) -> str:
        return MODEL_FILES[cls.family]

    def learner_bytes(self) -> bytes:
        """What `save` writes as the learner file (taken once, then kept)."""
        if self.learner is None:
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / self.model_file_name()
                self._write_learner(path)
                self.learner = path.read_bytes()
        return self.learner

    @property
    def family_params(self) -> Any:
        """The params of its family it was trained with (model.json's `params.<family>`), as that family's typed
        section (`pipelines.config.FamilyParams`, told apart by `family`); None for a model saved before families."""
        from pydantic import TypeAdapter

        from pipelines.config import FamilyParams

        section = (self.meta.get("params") or {}).get(self.family)
        if section is None:
            return None
        return TypeAdapter(FamilyParams).validate_python({**section, "family": self.family})

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """P(label 1) per raw row (the frame's feature and time columns), encoded as training encoded them."""
        return self.predict_matrix(encode_frame(frame, self.schema))

    def importance(self, kind: str = WEIGHT) -> pd.Series:
        """How much the model relies on each feature (named as the table names it), by `kind`: WEIGHT for every
        family, or one of the family's `importance_kinds` (LightGBM's "gain" and "split", ...)."""
        if kind != WEIGHT and kind not in self.importance_kinds:
            raise ValueError(f"{self.family} models have no {kind!r} importance; ask for one of "
                             f"{[WEIGHT, *self.importance_kinds]}")
        values = np.asarray(self._importance(kind), dtype=float)
        return pd.Series(values, index=list(self.schema.feature_names), name=kind)

    def save(self, directory: Path) -> None:
        """Write the learner file, schema and meta to a sibling temp dir, then swap it in: a crash leaves the old
        model or the new."""

        def fill(staging: Path) -> None:
            (staging / self.model_file_name()).write_bytes(self.learner_bytes())
            self.schema.save(staging / SCHEMA_FILE)
            self.record().save(staging)

        replace_dir(directory, fill)

    def record(self) -> ModelMeta:
        """Its `model.json`: the meta training filled in, with its family and threshold, as plain JSON values first
        (NumPy scalars anywhere in it, NaN as null: what the file has always held); a meta that is not a model's is
        refused here, before anything is written."""
        return ModelMeta.model_validate(to_jsonable({**self.meta, "family": self.family, "threshold": self.threshold}))

    @classmethod
    def load(cls, directory: Path) -> TrainedModel:
        """The model saved in `directory`, as its family's class (named by model.json; LightGBM's before families
        existed)."""
        record = ModelMeta.load(directory)
        if record is None:
            raise FileNotFoundError(f"no model at {directory} (run the train stage first)")
        # The catalog imports the family modules, which import this one: it is looked up when a model is loaded.
        catalog = importlib.import_module("pipelines.model.catalog")
        model_class = catalog.family_module(record.family).MODEL_CLASS
        if cls is not TrainedModel and not issubclass(model_class, cls):
            raise TypeError(f"{directory} holds a {model_class.family} model, not a {cls.family} one")
        learner_file = directory / model_class.model_file_name()
        if not learner_file.exists():
            raise FileNotFoundError(f"no model at {learner_file} (run the train stage first)")
        return model_class(**model_class._read_learner(learner_file),
                           schema=FeatureSchema.load(directory / SCHEMA_FILE), threshold=record.threshold,
                           meta=record.to_json_dict(), learner=learner_file.read_bytes())


@dataclass
class Fitted:
    """What a family's `fit` returns: the model (threshold not chosen yet), the rounds or iterations it kept, its
    validation metrics (`auc`, `binary_logloss`), the rows it learnt from and the engine that fitted it."""

    model: TrainedModel
    best_iteration: int
    valid_metrics: dict[str, float]
    train_rows: int
    engine: dict[str, Any]


def probe_record(model: TrainedModel, matrix: np.ndarray, seed: int) -> dict[str, Any]:
    """Up to PROBE_ROWS seeded rows of `matrix` (validation rows, missing values and all) and the model's
    probabilities for them, for model.json: what `check_parity` replays after every load."""
    rows = np.random.default_rng(seed).choice(len(matrix), min(PROBE_ROWS, len(matrix)), replace=False)
    probe = matrix[np.sort(rows)]
    return {"matrix": probe.tolist(), "proba": model.predict_matrix(probe).tolist()}


def check_parity(model: TrainedModel, predict: Any = None) -> tuple[float, int]:
    """(max difference, rows) between `predict` (default: the model's own `predict_matrix`) on the probe rows
    recorded at training and the probabilities recorded then; raises `ParityError` beyond PARITY_TOLERANCE.
    A model saved before probes were recorded has none: (0.0, 0)."""
    probe = model.meta.get("probe")
    if not probe:
        return 0.0, 0
    matrix = np.array([[np.nan if v is None else v for v in row] for row in probe["matrix"]], dtype=float)
    expected = np.asarray(probe["proba"], dtype=float)
    got = np.asarray((predict or model.predict_matrix)(matrix), dtype=float)
    difference = float(np.max(np.abs(got - expected))) if len(expected) else 0.0
    if not difference <= PARITY_TOLERANCE:
        raise ParityError(f"{model.family} model predicts probe rows {difference:.3g} away from the probabilities "
                          f"recorded at training (tolerance {PARITY_TOLERANCE:g}): another library version?")
    return difference, len(expected)


def measure_latency_ms(model: TrainedModel, matrix: np.ndarray, repeats: int, threads: int = 0) -> float:
    """Fastest of `repeats` timed `predict_matrix` calls on one fixed encoded batch (one warm-up call first).

    The minimum, not the median: the gate judges the model's cost, and anything else running on the machine
    (a busy CI box, another training) only ever adds time to a run, so the fastest run is the least disturbed
    estimate (the reasoning of Python's `timeit` docs). A median refused good models on a loaded machine.
    """
    return fastest_call_ms(lambda: model.predict_matrix(matrix, threads), repeats)


def fastest_call_ms(call: Callable[[], Any], repeats: int) -> float:
    """Fastest of `repeats` timed calls of `call`, after one warm-up call (`measure_latency_ms`'s reasoning): also
    what the gate times a served variant with, whatever runtime answers for it."""
    call()
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        timings.append((time.perf_counter() - start) * 1000.0)
    return float(min(timings))


def model_bytes(directory: Path) -> int:
    """The learner file's size: what a model costs to store and ship."""
    return model_file(directory).stat().st_size
