"""dvc.yaml's deps: each stage depends on every project module its command imports, so editing a module re-runs
exactly the stages that run its code (read from the code, not from a list kept by hand)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

SHELL = ("pipelines/__main__.py", "pipelines/cli.py", "pipelines/stages.py")
# `python -m pipelines <command>` runs `stages.run_<function>`.
FUNCTION = {"search": "run_search", "gate": "run_gate_and_promote"}


def _file(module: str) -> Path | None:
    for candidate in (REPO_ROOT / f"{module.replace('.', '/')}.py", REPO_ROOT / module.replace(".", "/") /
                      "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _imported(nodes: list[ast.AST]) -> set[str]:
    """Project modules imported anywhere under `nodes` (`from pipelines.x import y` counts y when it is a module)."""
    found = set()
    for node in (n for root in nodes for n in ast.walk(root)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipelines"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names if _file(f"{node.module}.{a.name}")}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("pipelines")}
    return found


def _closure(modules: set[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        module = todo.pop()
        path = _file(module)
        if module in seen or path is None:
            continue
        seen.add(module)
        tree = ast.parse(path.read_text())
        # The shell's modules import each step lazily, inside the function that runs it: only their top level here.
        top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        todo += _imported(top if str(path.relative_to(REPO_ROOT)) in SHELL else [tree])
        if "." in module:
            todo.append(module.rsplit(".", 1)[0])
    return seen


def _stage_modules(function: str) -> set[str]:
    """Files the stage's command imports: the shell's top level, plus what its run function (and the stages
    functions it calls) import."""
    stages = {f.name: f for f in ast.parse((REPO_ROOT / "pipelines/stages.py").read_text()).body
              if isinstance(f, ast.FunctionDef)}
    calls, todo = set(), [function]
    while todo:
        name = todo.pop()
        if name not in calls:
            calls.add(name)
            todo += [n.id for n in ast.walk(stages[name]) if isinstance(n, ast.Name) and n.id in stages]
    modules = _closure({"pipelines.__main__", "pipelines.cli", "pipelines.stages"} | _imported(
        [stages[name] for name in calls]))
    files = {_file(m) for m in modules}
    return {str(f.relative_to(REPO_ROOT)) for f in files if f is not None and f.stat().st_size}


DVC = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", sorted(DVC))
def test_each_stage_depends_on_every_module_its_command_imports(stage: str) -> None:
    command = DVC[stage]["cmd"].split()
    assert command[:3] == ["python", "-m", "pipelines"], DVC[stage]["cmd"]
    needed = _stage_modules(FUNCTION.get(command[3], f"run_{command[3]}"))
    listed = {dep for dep in DVC[stage]["deps"] if isinstance(dep, str) and dep.startswith("pipelines/")}
    assert needed - listed == set(), f"{stage}: imported but not a dep"
    assert listed - needed == set(), f"{stage}: a dep it does not import"
