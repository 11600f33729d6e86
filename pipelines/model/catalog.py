"""The model families by name (`train.family`, `search.families`), and loading a saved model as its family's class.

Adding a family: its module in `pipelines/model/families/`, one line here, its section `train.<family>` and
search space in pipelines/config.py and params.yaml, its file name in `pipelines.io.MODEL_FILES`, its
dependency in pyproject.toml (docs/model-selection.md).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from pipelines.model.families import histgb, lightgbm, logistic
from pipelines.model.seam import TrainedModel

FAMILY_MODULES: dict[str, ModuleType] = {module.FAMILY: module for module in (lightgbm, logistic, histgb)}


def family_module(family: str) -> ModuleType:
    """The module of `family`: its `MODEL_CLASS` and `fit`."""
    if family not in FAMILY_MODULES:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(FAMILY_MODULES)}")
    return FAMILY_MODULES[family]


def load_model(directory: Path) -> TrainedModel:
    """The trained model saved in `directory`, as its family's class (model.json names the family; a model saved
    before families existed is LightGBM's)."""
    return TrainedModel.load(directory)
