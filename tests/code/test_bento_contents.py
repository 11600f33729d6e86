"""The Bento packs exactly the code serving imports: the bentofile's module list is the service's import closure,
read from the code, so a new import cannot be missing from the image and nothing else rides along."""

from __future__ import annotations

import fnmatch

import yaml

from pipelines import io
from support.imports import REPO_ROOT, closure, module_file
from support.params import PARAMS_FILE

BENTOFILE = REPO_ROOT / "services" / "bentofile.yaml"


def _included_python_files() -> set[str]:
    patterns = yaml.safe_load(BENTOFILE.read_text())["include"]
    files = {path.relative_to(REPO_ROOT).as_posix() for path in REPO_ROOT.rglob("*.py")
             if ".venv" not in path.parts}
    return {name for name in files if any(fnmatch.fnmatch(name, pattern) for pattern in patterns)}


def test_the_bento_packs_the_service_import_closure_and_nothing_else() -> None:
    served = {module_file(name).relative_to(REPO_ROOT).as_posix() for name in closure(["services.service"])}
    assert _included_python_files() == served


def test_the_bento_packs_the_variant_the_variant_stage_made() -> None:
    """paths.served_dir (where the `variant` stage puts the variant serve.artifact names and the service reads it)
    is packed, its report and a variant's files alike: a Bento built after `dvc repro` serves what the gate checked."""
    patterns = yaml.safe_load(BENTOFILE.read_text())["include"]
    served = yaml.safe_load(PARAMS_FILE.read_text())["paths"]["served_dir"]
    for name in (io.VARIANTS_REPORT_FILE, f"trees/{io.MODEL_FILE}", f"onnx/{io.ONNX_FILE}"):
        assert any(fnmatch.fnmatch(f"{served}/{name}", pattern) for pattern in patterns), name


def test_the_served_code_leaves_out_the_orchestration_and_validation_runner() -> None:
    served = closure(["services.service"])
    assert not {name for name in served if name.split(".")[0] in ("flows", "ops", "deploy")}
    assert not served & {"pipelines.data.validate", "pipelines.data.explain", "pipelines.release.versioning",
                         "pipelines.stages", "pipelines.cli"}
