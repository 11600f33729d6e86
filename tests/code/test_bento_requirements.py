"""The Bento's requirements are uv.lock's `serve` group: a lock change cannot leave the container behind."""

from __future__ import annotations

from importlib.metadata import packages_distributions

import yaml

from deploy.package import REQUIREMENTS, SKLEARN_FAMILIES, locked_requirements
from pipelines.model.variants import FULL, ONNX_VARIANTS
from support.imports import closure, third_party_of
from support.params import PARAMS_FILE

# Outside packages the served modules import only in functions serving never calls, so the image goes without:
# the converters of `python -m pipelines export` / `optimize` (lightgbm_exchange holds both those and the ONNX
# runtime a served variant uses) and Parquet I/O (the pipeline's tables; the service logs JSON lines).
NOT_SERVED = {"onnxmltools", "treelite", "tl2cgen", "pyarrow"}
# Packed only when serve.artifact, or the families that may be champion, ask for what needs it (deploy/package.py):
# the default image goes without.
ONLY_FOR = {"onnxruntime": ONNX_VARIANTS}
# threadpoolctl (scikit-learn's dependency) is what the scikit-learn families limit their threads with.
ONLY_FOR_FAMILIES = {"sklearn": SKLEARN_FAMILIES, "threadpoolctl": SKLEARN_FAMILIES}
FAMILY_SETS = (frozenset({"lightgbm"}), frozenset({"lightgbm", "logistic"}), frozenset({"histgb"}))


def _pins(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.lstrip().startswith("#")]


def test_committed_requirements_match_the_lock() -> None:
    params = yaml.safe_load(PARAMS_FILE.read_text())
    families = frozenset(params["search"]["families"] or [params["train"]["family"]])
    assert _pins(REQUIREMENTS.read_text()) == _pins(locked_requirements(params["serve"]["artifact"], families)), (
        "services/requirements.txt is stale: run python -m deploy.package (or commit its refreshed file)")


def test_serving_requirements_leave_out_the_orchestration_stack() -> None:
    names = {pin.split("==")[0].lower() for pin in _pins(REQUIREMENTS.read_text())}
    assert {"bentoml", "lightgbm", "pandas", "pydantic", "pyyaml", "orjson"} <= names
    assert not names & {"prefect", "dvc", "great-expectations", "evidently", "dask", "optuna"}


def _pinned(artifact: str, families: frozenset[str] = FAMILY_SETS[0]) -> set[str]:
    return {pin.split("==")[0].lower() for pin in _pins(locked_requirements(artifact, families))}


def test_every_package_the_served_code_imports_is_in_the_image() -> None:
    """What the service's import closure imports, at module level or lazily (the compiled forest's lleaves, a
    family's scikit-learn, an ONNX variant's onnxruntime), is pinned in the Bento's requirements for the
    serve.artifact that needs it: a variant or family that serves on this machine serves in the image too, not in
    full there with an ImportError as the reason. The default image holds no onnxruntime."""
    distributions = packages_distributions()
    imported = third_party_of(closure(["services.service"]))

    def missing(artifact: str, families: frozenset[str]) -> dict[str, list[str]]:
        pinned = _pinned(artifact, families)
        return {top: sorted(importers) for top, importers in imported.items()
                if top not in NOT_SERVED and artifact in ONLY_FOR.get(top, [artifact])
                and families & ONLY_FOR_FAMILIES.get(top, families)
                and not {name.lower().replace("_", "-") for name in distributions.get(top, [top])} & pinned}

    for artifact in (FULL, *ONNX_VARIANTS):
        for families in FAMILY_SETS:
            assert not missing(artifact, families), (
                f"serve.artifact {artifact}, families {sorted(families)}: imported by served code, not in the "
                f"Bento's requirements (pyproject.toml's serve groups): {missing(artifact, families)}")
    assert "onnxruntime" not in _pinned(FULL) and "onnxruntime" in _pinned("quantised")
    assert "scikit-learn" not in _pinned(FULL) and "scikit-learn" in _pinned(FULL, FAMILY_SETS[2])
    assert {"onnxruntime", "lleaves", "sklearn", "lightgbm"} <= set(imported)
    assert set(imported) >= NOT_SERVED | set(ONLY_FOR) | set(ONLY_FOR_FAMILIES), (
        "an exception no served module imports any more: drop it")


def test_the_image_packs_the_families_the_params_let_compete_and_the_champions_own(tmp_path) -> None:
    """A histgb champion made under other params is still served by the image built now (its family is packed);
    a LightGBM champion under the default params brings no scikit-learn; search.families decides for the next ones
    a container following the registry may load."""
    from deploy.package import serving_families
    from pipelines.config import parse_params
    from pipelines.release import registry
    from support.params import params_dict

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.txt").write_text("not a real model: only its entry is read\n")
    name = f"families-{tmp_path.name[-8:].lower().replace('_', '-')}"
    histgb = registry.save_model(model_dir, {"family": "histgb"}, name=name)
    lightgbm = registry.save_model(model_dir, {"family": "lightgbm"}, name=name)
    default = parse_params(params_dict(tmp_path))
    assert serving_families(default, lightgbm) == {"lightgbm"}
    assert serving_families(default, histgb) == {"lightgbm", "histgb"}
    competing = parse_params(params_dict(tmp_path, {"search.families": ["lightgbm", "logistic"]}))
    assert serving_families(competing, lightgbm) == {"lightgbm", "logistic"}
    assert "scikit-learn" in _pinned(FULL, serving_families(competing, lightgbm))
