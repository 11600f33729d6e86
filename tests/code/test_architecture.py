"""The tree is the architecture: the import graph read from the code has no cycles, respects the layers, and is the
one docs/architecture.md shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import imports
from support.imports import ARCHITECTURE_DOC, REPO_ROOT, all_modules, cycles, documented_block, imports_of, mermaid

# Which top-level folders a layer may never import.
FORBIDDEN = {
    "pipelines": {"flows", "ops", "services", "deploy", "benchmarks", "support", "tests"},
    "flows": {"ops", "services", "deploy", "benchmarks", "support", "tests"},
    "services": {"flows", "ops", "deploy", "benchmarks", "support", "tests"},
    "deploy": {"flows", "ops", "benchmarks", "support", "tests"},
    "ops": {"benchmarks", "support", "tests"},
    "benchmarks": {"tests"},
    "support": {"tests", "benchmarks"},
}


def test_no_module_imports_another_that_imports_it_back() -> None:
    assert cycles() == []


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_import_only_downwards(layer: str) -> None:
    wrong = sorted((name, dep) for name in all_modules() if name.split(".")[0] == layer
                   for dep in imports_of(name) if dep.split(".")[0] in FORBIDDEN[layer])
    assert not wrong, f"{layer}/ imports what it must not: {wrong}"


def test_docs_architecture_shows_the_real_graph() -> None:
    assert documented_block(ARCHITECTURE_DOC.read_text()) == mermaid(), (
        "docs/architecture.md's picture is stale: run python -m support.imports --write")


def test_docs_architecture_names_every_shipped_module() -> None:
    text = ARCHITECTURE_DOC.read_text()
    shipped = [imports.module_file(name).relative_to(REPO_ROOT).as_posix() for name in all_modules()
               if name.split(".")[0] in ("pipelines", "flows", "ops", "services", "deploy")
               and imports.module_file(name).name != "__init__.py"]
    assert [path for path in shipped if f"`{path}`" not in text] == []


def test_the_walker_finds_a_cycle_through_a_lazy_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The analysis itself: a cycle closed by an import inside a function is found (else the test above could pass
    vacuously)."""
    package = tmp_path / "pipelines"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pipelines import b\n")
    (package / "b.py").write_text("def later():\n    from pipelines.a import thing\n")
    (package / "c.py").write_text("import pipelines.a\n")
    (package / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pipelines import c\n")
    monkeypatch.setattr(imports, "REPO_ROOT", tmp_path)
    imports.imports_of.cache_clear()
    try:
        assert imports.imports_of("pipelines.c") == {"pipelines", "pipelines.a"}
        assert imports.imports_of("pipelines.d") == set()  # annotations only: never run
        assert cycles(["pipelines.a", "pipelines.b", "pipelines.c"]) == [["pipelines.a", "pipelines.b"]]
    finally:
        imports.imports_of.cache_clear()
