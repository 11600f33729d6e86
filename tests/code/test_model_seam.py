"""The model seam holds: no module outside a family's own touches a learner's objects (a booster, an estimator),
imports a learner library, or builds a learner; every caller goes through `pipelines.model.seam.TrainedModel`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from support.imports import REPO_ROOT

# Where a learner's own objects may be touched: the family modules, LightGBM's Dask learner, the compiled
# predictor, which checks the compiled forest against the booster it was compiled from, and the GPU benchmark's
# device side, which runs on a GPU machine without the project's environment (only numpy, lightgbm, torch).
ALLOWED = {"pipelines/model/families", "pipelines/model/distributed.py", "services/compiled.py",
           "benchmarks/inference_gpu.py"}
# The code that runs the product and its measurements (the tests of a family may reach into it).
SCANNED = ("pipelines", "services", "flows", "ops", "deploy", "support", "benchmarks")
LEARNER_ATTRIBUTES = {"booster", "booster_", "estimator", "_predictors"}
LEARNER_LIBRARIES = ("lightgbm", "sklearn.ensemble", "sklearn.linear_model", "xgboost", "catboost")


def _modules() -> list[Path]:
    return sorted(path for top in SCANNED for path in (REPO_ROOT / top).rglob("*.py")
                  if not any(path.relative_to(REPO_ROOT).as_posix().startswith(allowed) for allowed in ALLOWED))


def _violations(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        where = f"{path.relative_to(REPO_ROOT)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Attribute) and node.attr in LEARNER_ATTRIBUTES:
            found.append(f"{where} reaches .{node.attr}")
        elif isinstance(node, ast.Import):
            found += [f"{where} imports {alias.name}" for alias in node.names
                      if alias.name.startswith(LEARNER_LIBRARIES)]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(LEARNER_LIBRARIES):
            found.append(f"{where} imports from {node.module}")
    return found


def test_no_module_outside_the_families_touches_a_learner() -> None:
    scanned = _modules()
    assert len(scanned) > 50  # the scan sees the tree
    violations = [line for path in scanned for line in _violations(path)]
    assert not violations, "a learner's own objects outside its family module:\n" + "\n".join(violations)


def test_the_scan_finds_what_it_looks_for(tmp_path: Path) -> None:
    """The check can fail: each kind of reach-through is found."""
    sample = REPO_ROOT / "support" / "_seam_sample.py"
    sample.write_text("import lightgbm\nfrom sklearn.linear_model import LogisticRegression\n"
                      "def f(model):\n    return model.booster.predict(1), model.estimator\n")
    try:
        found = _violations(sample)
    finally:
        sample.unlink()
    assert len(found) == 4, found


@pytest.mark.parametrize("family", ["lightgbm", "logistic", "histgb"])
def test_every_family_is_a_seam_model_with_its_file_in_the_catalog(family: str) -> None:
    from pipelines import io
    from pipelines.config import FAMILIES, SEARCHABLE
    from pipelines.model.catalog import family_module
    from pipelines.model.seam import TrainedModel

    module = family_module(family)
    assert family in FAMILIES and SEARCHABLE[family]
    assert family == module.FAMILY and issubclass(module.MODEL_CLASS, TrainedModel)
    assert module.MODEL_CLASS.family == family
    assert module.MODEL_CLASS.model_file_name() == io.MODEL_FILES[family]
    assert callable(module.fit)
