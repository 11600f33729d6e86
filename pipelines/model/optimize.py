"""Smaller and faster variants of a trained LightGBM model, each measured against the full model on the same rows.

`python -m pipelines optimize` (opt-in: no DVC stage, nothing in the training DAG reads its output) makes:

- `trees`: the full model cut to its first K trees, K the fewest whose validation ROC AUC is within
  `optimize.max_auc_loss` of the full model's (LightGBM's own `num_iteration`, as early stopping cuts a model).
  Boosting's later trees refine what the first ones learnt, so a prefix is a model of its own.
- `features`: refits (the training code, the model's own params) without the least important features, dropping
  one only when the refit's validation ROC AUC stays within the tolerance of the full model's; a model that reads
  fewer columns is one an edge caller has fewer inputs to send for.
- `pruned`: `features` (or the full model, when no feature could go) cut like `trees`, against the full model.
- `leaves`: refits (the model's params, early-stopped on validation like it) with each `optimize.leaf_candidates`
  num_leaves below the model's own, keeping the one with the fewest leaves in all within the tolerance: smaller
  trees, more of them, a forest whose compiled code (one branch per split) is a fraction of the full one's.
- `ordinal`: a refit (the model's params, early-stopped on validation like it) with the category columns given to
  LightGBM as the numbers their codes are, not as categories, and `use_missing: false`: the same encoding, but every
  split a numeric threshold and a missing value read as 0.0 (no learnt side), which GPU tree runtimes (Hummingbird,
  which sends every NaN the same way) take, given the matrix with NaN replaced by 0.
  Kept whatever it costs (that cost is what the report is for): benchmarks/inference_gpu.py runs it on a GPU.
- `onnx`: the full model in ONNX (float32 thresholds and leaves): what onnxruntime and other runtimes read.
- `quantised`: the same with each leaf value rounded to `optimize.leaf_precision`, held to `optimize.max_prob_diff`.

The tolerance is met on validation, where the choice is made; the test split is only reported (`test_auc_delta`),
so the choice cannot fit it. Every variant's probabilities are compared with the full model's on the same seeded
test rows. The report is `paths.variants_dir/variants.json` (`pipelines.contracts.VariantsReport`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines import contracts, io
from pipelines.config import Params, TrainParams
from pipelines.contracts import VariantRecord, VariantsReport
from pipelines.features import LABEL, FeatureSchema, encode_frame
from pipelines.model.seam import TrainedModel
from pipelines.model.variants import MODEL_VARIANTS, ONNX_VARIANTS

log = logging.getLogger(__name__)



def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of scores (probabilities or log-odds: the ranking is the same) against 0/1 labels."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def trees_within(staged_scores: Iterable[np.ndarray], labels: np.ndarray, max_auc_loss: float,
                 reference_auc: float | None = None) -> int:
    """The fewest first trees whose ROC AUC is within `max_auc_loss` of `reference_auc` (default: all the trees').

    `staged_scores` gives the scores after 1, 2, ... trees, one array each. AUC does not rise monotonically with
    the trees, so this is the first prefix that qualifies, whatever the later ones do.
    """
    aucs = np.array([roc_auc(labels, scores) for scores in staged_scores])
    reference = aucs[-1] if reference_auc is None else reference_auc
    within = np.flatnonzero(aucs >= reference - max_auc_loss)
    if not len(within):
        raise ValueError(f"no prefix of {len(aucs)} trees is within {max_auc_loss} of ROC AUC {reference:.5f} "
                         f"(best {aucs.max():.5f})")
    return int(within[0]) + 1


def without_features(schema: FeatureSchema, names: Sequence[str]) -> FeatureSchema:
    """`schema` less the features `names` (raw columns or time parts), vocabularies of the rest unchanged."""
    unknown = sorted(set(names) - set(schema.feature_names))
    if unknown:
        raise ValueError(f"not features of the model: {unknown}")
    return FeatureSchema(time_column=schema.time_column,
                         categorical={k: v for k, v in schema.categorical.items() if k not in names},
                         numeric=[name for name in schema.numeric if name not in names],
                         time_parts=[part for part in schema.time_parts if part not in names])


def training_params(model: TrainedModel, current: TrainParams) -> TrainParams:
    """The `train:` params `model` was trained with (model.json), other families' sections from `current`: a refit
    is the same learner with the same settings, only its columns change."""
    recorded = model.meta.get("params")
    if not recorded:
        raise ValueError("the model records no training params (model.json 'params'): it cannot be refitted")
    return TrainParams.model_validate({**current.model_dump(mode="json"), **recorded})


def require_lightgbm(model: TrainedModel) -> Any:
    from pipelines.model.families.lightgbm import LightGBMModel

    if not isinstance(model, LightGBMModel):
        raise ValueError(f"optimize and export work on LightGBM models; this one is {model.family}")
    return model


def cut_trees(model: TrainedModel, valid: pd.DataFrame, train_params: TrainParams, max_auc_loss: float,
              reference_auc: float) -> TrainedModel:
    """`model` cut to the fewest first trees within `max_auc_loss` of `reference_auc` on `valid`, finished as a
    trained model (threshold chosen on `valid` again, probe rows recorded) so it loads and serves like any other."""
    from pipelines.model.train import finish_training

    forest = require_lightgbm(model)
    matrix = encode_frame(valid, forest.schema)
    labels = valid[LABEL].to_numpy()
    count = trees_within(forest.staged_raw_scores(matrix), labels, max_auc_loss, reference_auc)
    cut = forest.first_trees(count)
    auc = roc_auc(labels, cut.predict_matrix(matrix))
    return finish_training(cut, count, {"auc": auc}, train_rows=int(forest.meta.get("train_rows", 0)), valid=valid,
                           schema=cut.schema, params=train_params,
                           engine={**forest.meta.get("engine", {}), "pruned_from_trees": forest.trees})


def drop_features(model: TrainedModel, train: pd.DataFrame, valid: pd.DataFrame, train_params: TrainParams,
                  max_auc_loss: float, candidates: int) -> tuple[TrainedModel | None, list[str]]:
    """Refit without the `candidates` least important features (by gain), least important first, keeping each drop
    whose refit is within `max_auc_loss` of the full model's validation ROC AUC. (None, []) when none could go."""
    from pipelines.model.train import train_model

    require_lightgbm(model)
    labels = valid[LABEL].to_numpy()
    reference = roc_auc(labels, model.predict_proba(valid))
    order = model.importance("gain").sort_values(kind="stable").index[:candidates]
    best: TrainedModel | None = None
    dropped: list[str] = []
    for name in order:
        schema = without_features(model.schema, [*dropped, name])
        refit = train_model(train, valid, schema, train_params)
        loss = reference - roc_auc(labels, refit.predict_proba(valid))
        log.info("without %s: validation ROC AUC %+.5f against the full model (%d trees)", [*dropped, name], -loss,
                 refit.meta["best_iteration"])
        if loss <= max_auc_loss:
            best, dropped = refit, [*dropped, name]
    return best, dropped


def fewer_leaves(model: TrainedModel, train: pd.DataFrame, valid: pd.DataFrame, train_params: TrainParams,
                 max_auc_loss: float, candidates: Sequence[int]) -> TrainedModel | None:
    """Refit with each of `candidates` num_leaves below the model's own (everything else as trained), keeping the
    refit with the fewest leaves in all whose validation ROC AUC is within `max_auc_loss` of the full model's; None
    when none is. Each refit is early-stopped on validation like the model: fewer leaves usually take more rounds."""
    from pipelines.model.train import train_model

    forest = require_lightgbm(model)
    labels = valid[LABEL].to_numpy()
    reference = roc_auc(labels, model.predict_proba(valid))
    best: Any = None
    for leaves in sorted(set(candidates)):
        if leaves >= train_params.lightgbm.num_leaves:
            continue
        refit = require_lightgbm(train_model(train, valid, forest.schema,
                                             train_params.with_family("lightgbm", {"num_leaves": leaves})))
        loss = reference - roc_auc(labels, refit.predict_proba(valid))
        log.info("num_leaves %d: %d trees, %d leaves, validation ROC AUC %+.5f against the full model", leaves,
                 refit.trees, refit.leaves, -loss)
        if loss <= max_auc_loss and (best is None or refit.leaves < best.leaves):
            best = refit
    return best


def ordinal_refit(model: TrainedModel, train: pd.DataFrame, valid: pd.DataFrame,
                  train_params: TrainParams) -> TrainedModel:
    """Refit with `categorical_splits: ordinal` and `use_missing: false` (everything else as trained, early-stopped on
    validation like the model): the schema, so the encoding and the service's requests, is the model's own."""
    from pipelines.model.train import train_model

    forest = require_lightgbm(model)
    numeric = train_params.with_family("lightgbm", {"categorical_splits": "ordinal", "use_missing": False})
    return train_model(train, valid, forest.schema, numeric)


@dataclass(frozen=True)
class Rows:
    """The rows every variant is measured on: the validation and test splits, and the seeded probe rows of test."""

    valid: pd.DataFrame
    test: pd.DataFrame
    probe: pd.DataFrame


def probe_rows(test: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """`rows` seeded rows of the test split, in their order there."""
    chosen = np.sort(np.random.default_rng(seed).choice(len(test), min(rows, len(test)), replace=False))
    return test.iloc[chosen]


def measure(name: str, parent: str | None, predict: Callable[[pd.DataFrame], np.ndarray], rows: Rows,
            full: Callable[[pd.DataFrame], np.ndarray], *, file: Path, root: Path, trees: int, features: list[str],
            dropped: Sequence[str] = (), bound: float | None = None, leaves: int | None = None) -> VariantRecord:
    """One variant's record: its ROC AUC on validation and test beside the full model's, and the largest difference
    of its probabilities from the full model's on the probe rows (both predicting raw rows, each its own encoding)."""
    valid_labels, test_labels = rows.valid[LABEL].to_numpy(), rows.test[LABEL].to_numpy()
    valid_auc, test_auc = roc_auc(valid_labels, predict(rows.valid)), roc_auc(test_labels, predict(rows.test))
    full_valid, full_test = roc_auc(valid_labels, full(rows.valid)), roc_auc(test_labels, full(rows.test))
    difference = float(np.max(np.abs(predict(rows.probe) - full(rows.probe))))
    return VariantRecord(name=name, parent=parent, file=str(file.relative_to(root) if file.is_relative_to(root)
                                                           else file),
                         bytes=file.stat().st_size, trees=trees, leaves=leaves, features=features,
                         dropped=list(dropped),
                         valid_roc_auc=valid_auc, test_roc_auc=test_auc, valid_auc_loss=full_valid - valid_auc,
                         test_auc_delta=test_auc - full_test, max_prob_diff=difference, bound=bound)


def onnx_variant_predict(data: bytes, schema: FeatureSchema) -> Callable[[pd.DataFrame], np.ndarray]:
    """Raw rows -> P(label 1) through an ONNX file: the service's encoding, then onnxruntime."""
    from pipelines.model.families.lightgbm_exchange import onnx_predictor

    predict = onnx_predictor(data)
    return lambda frame: predict(encode_frame(frame, schema))


# What making a variant makes first: `pruned` cuts the `features` refit (the full model when no feature could go).
DERIVED_FROM: dict[str, tuple[str, ...]] = {"pruned": ("features",)}
VARIANTS = (*MODEL_VARIANTS, *ONNX_VARIANTS)


def with_sources(names: Iterable[str]) -> set[str]:
    """`names` and the variants they are derived from (DERIVED_FROM), each checked to be a variant."""
    names = set(names)
    unknown = sorted(names - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    return names | {source for name in names for source in DERIVED_FROM.get(name, ())}


def make_variants(params: Params, names: Iterable[str], model_dir: Path, out: Path,
                  served: str | None = None) -> VariantsReport:
    """Make, save and measure the variants `names` (and what they are derived from) of the model in `model_dir` into
    `out`, and write their report there (`served`: the serve.artifact it was made for, recorded in the report).

    The one implementation of every variant: `optimize` asks for all of them, the `variant` stage for the one
    serve.artifact names. The full model's record names its file as `model_dir` spells it."""
    from pipelines.model.catalog import load_model
    from pipelines.model.families.lightgbm_exchange import onnx_bytes

    wanted = with_sources(names)
    settings = params.optimize
    model = require_lightgbm(load_model(model_dir))
    split = {name: io.read_parquet(io.prepared_path(params.paths, name), "preprocess") for name in io.SPLITS}
    rows = Rows(valid=split["valid"], test=split["test"],
                probe=probe_rows(split["test"], settings.probe_rows, params.train.seed))
    train_params = training_params(model, params.train)
    reference = roc_auc(rows.valid[LABEL].to_numpy(), model.predict_proba(rows.valid))
    out.mkdir(parents=True, exist_ok=True)
    full_file = contracts.model_file(model_dir)
    records = [measure("full", None, model.predict_proba, rows, model.predict_proba, file=full_file,
                       root=out.resolve(), trees=model.trees, features=model.schema.feature_names,
                       leaves=model.leaves)]

    def keep(name: str, parent: str, variant: TrainedModel, dropped: Sequence[str] = ()) -> None:
        variant.save(out / name)
        records.append(measure(name, parent, variant.predict_proba, rows, model.predict_proba,
                               file=contracts.model_file(out / name), root=out, trees=variant.trees,
                               features=variant.schema.feature_names, dropped=dropped,
                               leaves=require_lightgbm(variant).leaves))
        log.info("%s: %d trees, %d features, validation ROC AUC %+.5f, test %+.5f", name, variant.trees,
                 len(variant.schema.feature_names), -records[-1].valid_auc_loss, records[-1].test_auc_delta)

    if "trees" in wanted:
        keep("trees", "full", cut_trees(model, rows.valid, train_params, settings.max_auc_loss, reference))
    if "features" in wanted:
        refit, dropped = drop_features(model, split["train"], rows.valid, train_params, settings.max_auc_loss,
                                       settings.feature_candidates)
        if refit is not None:
            keep("features", "full", refit, dropped)
        if "pruned" in wanted:
            keep("pruned", "features" if refit is not None else "full",
                 cut_trees(refit or model, rows.valid, train_params, settings.max_auc_loss, reference), dropped)
    if "leaves" in wanted:
        leaner = fewer_leaves(model, split["train"], rows.valid, train_params, settings.max_auc_loss,
                              settings.leaf_candidates)
        if leaner is not None:
            keep("leaves", "full", leaner)
    if "ordinal" in wanted:
        keep("ordinal", "full", ordinal_refit(model, split["train"], rows.valid, train_params))
    for name, precision in (("onnx", "float32"), ("quantised", settings.leaf_precision)):
        if name not in wanted:
            continue
        data = onnx_bytes(model, precision)
        target = io.write_atomic(out / name / io.ONNX_FILE, lambda temp, data=data: Path(temp).write_bytes(data))
        model.schema.save(out / name / io.SCHEMA_FILE)
        records.append(measure(name, "full", onnx_variant_predict(data, model.schema), rows, model.predict_proba,
                               file=target, root=out, trees=model.trees, leaves=model.leaves,
                               features=model.schema.feature_names,
                               bound=settings.max_prob_diff if name == "quantised" else None))
        if name == "quantised" and not records[-1].max_prob_diff <= settings.max_prob_diff:
            raise ValueError(f"the quantised variant ({settings.leaf_precision} leaves) moves probabilities by "
                             f"{records[-1].max_prob_diff:.3g}, above optimize.max_prob_diff "
                             f"{settings.max_prob_diff}")
    report = VariantsReport(model_md5=io.file_md5(full_file), max_auc_loss=settings.max_auc_loss,
                            probe_rows=len(rows.probe), variants=records, settings=settings.model_dump(mode="json"),
                            served=served)
    report.save(out)
    return report


def run_optimize(params: Params, model_dir: Path | None = None) -> VariantsReport:
    """Make, save and measure every variant of the model in `model_dir` (default: `paths.model_dir`) into
    `paths.variants_dir`, for comparison, and write its report there (the full model's file: its absolute path)."""
    return make_variants(params, VARIANTS, (model_dir or params.paths.model_dir).resolve(), params.paths.variants_dir)


def make_served_variant(params: Params, out: Path) -> VariantsReport:
    """The `variant` stage's work, into `out`: the variant serve.artifact names (and what it is derived from) of the
    candidate in `paths.model_dir`, measured like `optimize`'s."""
    return make_variants(params, [params.serve.artifact], params.paths.model_dir, out, served=params.serve.artifact)


def variant_dir(params: Params, name: str) -> Path:
    """Where `optimize` saved variant `name` (a trained-model folder, or an ONNX file's)."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; known: full, {', '.join(VARIANTS)}")
    directory = params.paths.variants_dir / name
    if not directory.exists():
        raise FileNotFoundError(f"no variant {name!r} at {directory}: run `python -m pipelines optimize` first")
    return directory
