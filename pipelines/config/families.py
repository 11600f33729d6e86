"""The model families' own sections of params.yaml: `train.<family>` and the search's `grid` / `space` per family.

Each family's params are a section of their own (unknown keys refused by name); a search candidate's or a trained
model's params are one of them, told apart by `family` (`FamilyParams`, a discriminated union). The learners are
`pipelines/model/families/<family>.py`; adding one is its module, a section here and its search space
(docs/model-selection.md).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import Field

from pipelines.config.types import AtLeast1, Fraction, NonNegative, Section, doc

# The model families, by the name `train.family` and `search.families` use.
Family = Literal["lightgbm", "logistic", "histgb"]
FAMILIES: tuple[str, ...] = get_args(Family)


class LightGBMParams(Section):
    """`train.lightgbm`: LightGBM's own parameters (pipelines/model/families/lightgbm.py)."""

    # The discriminator of `FamilyParams`: never written in params.yaml (the section's key names the family).
    family: Literal["lightgbm"] = Field("lightgbm", exclude=True, description="Not written in params.yaml: tells a "
                                      "candidate's or a model's params apart (FamilyParams).")
    num_boost_round: AtLeast1 = doc("Most boosting rounds; early stopping usually ends sooner.")
    early_stopping_rounds: AtLeast1 = doc("Stop after this many rounds without a better validation metric.")
    learning_rate: Fraction = doc("LightGBM's shrinkage.")
    num_leaves: Annotated[int, Field(ge=2)] = doc("Leaves per tree (set by the search where search.grid.lightgbm "
                                                  "or search.space.lightgbm names it).")
    min_data_in_leaf: AtLeast1 = doc("Fewest training rows in a leaf.")
    feature_fraction: Fraction = doc("Share of features each tree sees.")
    bagging_fraction: Fraction = doc("Share of rows each bagging round sees.")
    bagging_freq: Annotated[int, Field(ge=0)] = doc("Re-draw the bag every this many rounds (0: no bagging).")
    lambda_l2: NonNegative = doc("L2 regularisation of leaf values.")
    categorical_splits: Literal["native", "ordinal"] = doc(
        "native: LightGBM's own set-valued splits on the category columns; ordinal: the same integer codes split "
        "as numbers (every split a numeric threshold, what GPU tree runtimes such as Hummingbird take; optimize's "
        "`ordinal` variant). The encoding is the same either way.", default="native")
    use_missing: bool = doc(
        "LightGBM's use_missing. true: each split learns which side a missing value (NaN) takes; false: a missing "
        "value is read as 0.0 at every split, so a runtime that sends NaN one fixed way (Hummingbird) gives the same "
        "answers on the matrix with NaN replaced by 0 (optimize's `ordinal` variant).", default=True)


class LogisticParams(Section):
    """`train.logistic`: scikit-learn's LogisticRegression on one-hot (or target-encoded) categoricals, standardised
    numerics and missing-value indicators (pipelines/model/families/logistic.py)."""

    family: Literal["logistic"] = Field("logistic", exclude=True, description="Not written in params.yaml: tells a "
                                      "candidate's or a model's params apart (FamilyParams).")
    C: Annotated[float, Field(gt=0)] = doc("Inverse L2 regularisation strength (smaller: simpler model).")
    max_iter: AtLeast1 = doc("Most L-BFGS iterations.")
    tol: Annotated[float, Field(gt=0)] = doc("L-BFGS stopping tolerance.")
    categorical_encoding: Literal["onehot", "target"] = doc(
        "onehot: a column per training-vocabulary value (unknown or missing: all zero); target: scikit-learn's "
        "TargetEncoder (cross-fitted category means, one column per feature).")


class HistGBParams(Section):
    """`train.histgb`: scikit-learn's HistGradientBoostingClassifier with native categorical splits
    (pipelines/model/families/histgb.py)."""

    family: Literal["histgb"] = Field("histgb", exclude=True, description="Not written in params.yaml: tells a "
                                      "candidate's or a model's params apart (FamilyParams).")
    max_iter: AtLeast1 = doc("Most boosting rounds; early stopping on the validation split usually ends sooner.")
    early_stopping_rounds: AtLeast1 = doc("Stop after this many rounds without a better validation loss.")
    learning_rate: Fraction = doc("Shrinkage per round.")
    max_leaf_nodes: Annotated[int, Field(ge=2)] = doc("Leaves per tree.")
    min_samples_leaf: AtLeast1 = doc("Fewest training rows in a leaf.")
    l2_regularization: NonNegative = doc("L2 regularisation of leaf values.")
    max_features: Fraction = doc("Share of features each split considers.")


# One family's section, told apart by `family`: a search candidate's params and a trained model's (model.json).
FamilyParams = Annotated[LightGBMParams | LogisticParams | HistGBParams, Field(discriminator="family")]
# What a search may vary, per family: every key of its section (num_threads comes from search.threads_per_worker).
SEARCHABLE = {model.model_fields["family"].default: tuple(key for key in model.model_fields if key != "family")
              for model in get_args(get_args(FamilyParams)[0])}


class FamilySpaces(Section):
    """`search.grid` / `search.space`: per family, `{key of train.<family>: [values]}` (a grid) or `[low, high]`
    (an Optuna range); a key the family's section lacks is refused by name."""

    lightgbm: dict[str, list[int | float | str]] = doc("LightGBM's: keys of train.lightgbm.")
    logistic: dict[str, list[int | float | str]] = doc("The linear family's: keys of train.logistic.")
    histgb: dict[str, list[int | float | str]] = doc("HistGradientBoosting's: keys of train.histgb.")

    def of(self, family: str) -> dict[str, list[Any]]:
        return getattr(self, family)
