"""dvc.yaml's deps are complete and stay complete: each stage depends on every project module its command imports
and on every params key it reads, or `dvc repro` would call a stale cache up to date.

Both are derived from the code, not listed here:
- imports: the stage command's entry (`pipelines.cli.STAGE_FUNCTIONS` -> a `pipelines.stages` function) and the
  stages-module functions it calls, their imports (module level and inside functions), then every import, anywhere,
  of each project module reached, transitively. Conservative on purpose: a spare dep re-runs a stage, a missing
  one serves a stale model.
- params: `params.<section>.<key>` reads in those functions; where a whole section is passed to a function, that
  function's reads of its argument (followed through further calls); a section used any other way (dumped,
  stored) counts as read whole. A section's `model_copy(update=...)` (monitor windows sized from the data) reads
  nothing itself; the copy's uses are counted where the caller rebinds and passes it on.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest
import yaml

from pipelines.cli import STAGE_FUNCTIONS
from pipelines.config import Params
from support.params import REPO_ROOT

PACKAGE = "pipelines"
# Keys that change where a stage runs, never what it produces (dvc.yaml says so beside the stage).
NOT_OUTPUT_AFFECTING = {"search.dask_address", "search.n_workers"}
# Sections whose keys are DVC deps/outs already (dvc.yaml interpolates them), not params.
NOT_PARAMS = {"paths"}
SECTION_ALIASES = {"validate_": "validate"}


def _dvc_stages() -> dict[str, dict]:
    return yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]


def _module_path(name: str) -> Path | None:
    """The project file of module `name` (found on disk: nothing is imported), or None if it is not one."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    base = REPO_ROOT / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def _tree(module: str) -> ast.Module:
    path = _module_path(module)
    assert path is not None, module
    return ast.parse(path.read_text())


def _module_file(module: str) -> str:
    return _module_path(module).relative_to(REPO_ROOT).as_posix()


def _is_project_module(name: str) -> bool:
    return _module_path(name) is not None


def _imported_modules(node: ast.AST) -> set[str]:
    """Project modules imported anywhere under `node` (`from pipelines import registry` names a module too)."""
    found: set[str] = set()
    for item in ast.walk(node):
        if isinstance(item, ast.Import):
            found |= {alias.name for alias in item.names if _is_project_module(alias.name)}
        elif isinstance(item, ast.ImportFrom) and item.module and item.level == 0:
            if _is_project_module(item.module):
                found.add(item.module)
            found |= {f"{item.module}.{alias.name}" for alias in item.names
                      if _is_project_module(f"{item.module}.{alias.name}")}
    return found


def _functions(module: str) -> dict[str, ast.FunctionDef]:
    return {node.name: node for node in _tree(module).body if isinstance(node, ast.FunctionDef)}


def _stage_functions(entry: str, module: str = f"{PACKAGE}.stages") -> list[ast.FunctionDef]:
    """The entry function and the same-module functions it calls, transitively (also when passed as a callable)."""
    functions = _functions(module)
    seen, todo = [], [entry]
    while todo:
        name = todo.pop()
        if name in {f.name for f in seen} or name not in functions:
            continue
        seen.append(functions[name])
        referenced = {n.id for n in ast.walk(functions[name]) if isinstance(n, ast.Name)}
        todo += sorted(referenced & functions.keys())
    return seen


def _module_level(module: str) -> ast.Module:
    return ast.Module(body=[node for node in _tree(module).body
                            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)],
                      type_ignores=[])


def import_closure(command: str) -> set[str]:
    """Files of the project modules `python -m pipelines <command>` imports."""
    stages_module = f"{PACKAGE}.stages"
    # The dispatch layer (package, __main__, cli): what it imports at module level. Its functions' lazy imports
    # belong to its other commands; the stage commands reach `pipelines.stages` through STAGE_FUNCTIONS.
    dispatch = {PACKAGE, f"{PACKAGE}.__main__", f"{PACKAGE}.cli", stages_module}
    modules = set(dispatch)
    for module in sorted(dispatch):
        modules |= _imported_modules(_module_level(module))
    for function in _stage_functions(STAGE_FUNCTIONS[command]):
        modules |= _imported_modules(function)
    todo = sorted(modules - dispatch)
    while todo:
        module = todo.pop()
        new = _imported_modules(_tree(module)) - modules
        modules |= new
        todo += sorted(new)
    return {_module_file(module) for module in modules}


# --- params reads ---------------------------------------------------------------------------------------------

def _chain(node: ast.AST) -> list[str] | None:
    """`a.b.c` -> ["a", "b", "c"]; None when the chain is not rooted at a plain name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return [node.id, *reversed(parts)] if isinstance(node, ast.Name) else None


def _resolve_callee(call: ast.Call, module: str, function: ast.FunctionDef) -> tuple[str, ast.FunctionDef] | None:
    """The project function a call reaches: a same-module function or one imported by name in the caller."""
    if not isinstance(call.func, ast.Name):
        return None
    name = call.func.id
    if name in _functions(module):
        return module, _functions(module)[name]
    for node in [*ast.walk(function), *_tree(module).body]:
        if isinstance(node, ast.ImportFrom) and node.module and _is_project_module(node.module):
            for alias in node.names:
                if (alias.asname or alias.name) == name and alias.name in _functions(node.module):
                    return node.module, _functions(node.module)[alias.name]
    return None


def _argument_name(call: ast.Call, callee: ast.FunctionDef, value: ast.AST) -> str | None:
    positional = [a.arg for a in [*callee.args.posonlyargs, *callee.args.args]]
    for index, argument in enumerate(call.args):
        if argument is value and index < len(positional):
            return positional[index]
    for keyword in call.keywords:
        if keyword.value is value:
            return keyword.arg
    return None


def _reads_of(name: str, section: str, module: str, function: ast.FunctionDef, depth: int = 0) -> set[str]:
    """Keys of `section` read through the variable `name` inside `function` ("section" alone: read whole)."""
    fields = Params.model_fields[section].annotation.model_fields
    parents = {child: parent for parent in ast.walk(function) for child in ast.iter_child_nodes(parent)}
    reads: set[str] = set()
    for node in ast.walk(function):
        if not (isinstance(node, ast.Name) and node.id == name and isinstance(node.ctx, ast.Load)):
            continue
        parent = parents.get(node)
        if isinstance(parent, ast.Attribute) and parent.attr in fields:
            reads.add(f"{SECTION_ALIASES.get(section, section)}.{parent.attr}")
            continue
        if isinstance(parent, ast.Attribute) and parent.attr == "model_copy":
            continue  # a copy reads nothing itself: the caller's uses of what it returns (same name) are counted
        if isinstance(parent, ast.Call) and depth < 5 and node is not parent.func:
            callee = _resolve_callee(parent, module, function)
            argument = _argument_name(parent, callee[1], node) if callee else None
            if callee and argument:
                reads |= _reads_of(argument, section, callee[0], callee[1], depth + 1)
                continue
        reads.add(SECTION_ALIASES.get(section, section))  # any other use: the whole section
    return reads


def _params_functions(entry: str) -> list[tuple[str, ast.FunctionDef]]:
    """The stage's functions (`_stage_functions`) and, in other project modules, every function the whole `params`
    is handed to (the search driver), with the functions of its module it calls or passes on, transitively."""
    found: list[tuple[str, ast.FunctionDef]] = []
    todo = [(f"{PACKAGE}.stages", function) for function in _stage_functions(entry)]
    while todo:
        module, function = todo.pop(0)
        if any(function is seen for _, seen in found):
            continue
        found.append((module, function))
        if module != f"{PACKAGE}.stages":
            todo += [(module, f) for f in _stage_functions(function.name, module) if f is not function]
        for call in (node for node in ast.walk(function) if isinstance(node, ast.Call)):
            if not any(isinstance(arg, ast.Name) and arg.id == "params" for arg in call.args):
                continue
            callee = _resolve_callee(call, module, function)
            if callee and callee[0] != module and _argument_name(
                    call, callee[1], next(a for a in call.args if isinstance(a, ast.Name) and a.id == "params")) \
                    == "params":
                todo.append(callee)
    return found


def params_reads(command: str) -> set[str]:
    """The params keys (or whole sections) `python -m pipelines <command>` reads."""
    reads: set[str] = set()
    for module, function in _params_functions(STAGE_FUNCTIONS[command]):
        parents = {child: parent for parent in ast.walk(function) for child in ast.iter_child_nodes(parent)}
        for node in ast.walk(function):
            chain = _chain(node) if isinstance(node, ast.Attribute) else None
            if not chain or chain[0] != "params" or len(chain) != 2 or chain[1] in NOT_PARAMS:
                continue
            section = chain[1]
            parent = parents.get(node)
            fields = Params.model_fields[section].annotation.model_fields
            if isinstance(parent, ast.Attribute) and parent.attr in fields:
                reads.add(f"{SECTION_ALIASES.get(section, section)}.{parent.attr}")
            elif isinstance(parent, ast.Call) and node is not parent.func:
                callee = _resolve_callee(parent, module, function)
                argument = _argument_name(parent, callee[1], node) if callee else None
                reads |= (_reads_of(argument, section, *callee) if callee and argument
                          else {SECTION_ALIASES.get(section, section)})
            else:
                reads.add(SECTION_ALIASES.get(section, section))
    return reads - NOT_OUTPUT_AFFECTING


def _command(stage: dict) -> str:
    words = stage["cmd"].split()
    assert words[:3] == ["python", "-m", PACKAGE], f"not a `python -m pipelines` stage: {stage['cmd']}"
    return words[3]


def _covered(key: str, listed: set[str]) -> bool:
    """`source.target` is covered by `source.target` or `source`; a whole section only by the section."""
    return key in listed or key.split(".")[0] in listed


def missing_modules(spec: dict) -> list[str]:
    deps = {str(dep) for dep in spec.get("deps", [])}
    return sorted(path for path in import_closure(_command(spec))
                  if path not in deps and not any(path.startswith(d.rstrip("/") + "/") for d in deps))


def missing_params(spec: dict) -> list[str]:
    listed = {str(key) for key in spec.get("params", [])}
    return sorted(key for key in params_reads(_command(spec)) if not _covered(key, listed))


@pytest.mark.parametrize("stage", sorted(_dvc_stages()))
def test_every_imported_project_module_is_a_dep(stage: str) -> None:
    missing = missing_modules(_dvc_stages()[stage])
    assert not missing, f"dvc.yaml stage {stage!r} imports {missing} but does not depend on them"


@pytest.mark.parametrize("stage", sorted(_dvc_stages()))
def test_every_params_key_read_is_listed(stage: str) -> None:
    missing = missing_params(_dvc_stages()[stage])
    assert not missing, f"dvc.yaml stage {stage!r} reads params {missing} but does not list them"


def test_the_derivation_finds_what_it_must() -> None:
    """The analysis itself: known imports and reads are found (else the tests above could pass vacuously)."""
    assert {"pipelines/data/collect.py", "pipelines/stages.py",
            "pipelines/config/__init__.py"} <= import_closure("collect")
    assert {"pipelines/model/gate.py", "pipelines/release/registry.py",
            "pipelines/model/evaluate.py"} <= import_closure("gate")
    assert "pipelines/release/model_card.py" not in import_closure("gate")  # the CLI's other commands are not followed
    gate = params_reads("gate")
    assert "source.time_column" in gate and any(key.startswith("gate.") for key in gate), gate
    assert not any(key.startswith(("paths", "monitor")) for key in gate)  # the reference is its own stage's
    reference = params_reads("reference")
    assert {"monitor.reference_rows", "monitor.seed", "monitor.window_days", "monitor.min_window_rows",
            "monitor.calibration_quantile"} <= reference, reference
    # Monitoring-only keys re-run no stage: no stage reads them.
    assert not {"monitor.cooldown_days", "monitor.auc_drop", "monitor.key_features"} & reference
    search = params_reads("train")
    assert "search.dask_address" not in search and any(key.startswith("search.") for key in search), search


@pytest.mark.parametrize(("stage", "drop", "expected"), [
    ("evaluate", {"deps": "pipelines/model/"}, "pipelines/model/evaluate.py"),
    ("gate", {"deps": "pipelines/data/suite.py"}, "pipelines/data/suite.py"),
    ("reference", {"params": "monitor.seed"}, "monitor.seed"),
    ("preprocess", {"params": "source.time_column"}, "source.time_column"),
])
def test_a_dropped_dep_or_param_is_reported(stage: str, drop: dict[str, str], expected: str) -> None:
    spec = dict(_dvc_stages()[stage])
    for field, value in drop.items():
        spec[field] = [item for item in spec[field] if item != value]
    assert expected in missing_modules(spec) + missing_params(spec)


VALIDATION_RUNNER = {"pipelines/data/validate.py", "pipelines/data/explain.py", "pipelines/data/chunks.py",
                     "pipelines/data/draft.py"}


@pytest.mark.parametrize("stage", sorted(set(_dvc_stages()) - {"validate"}))
def test_no_stage_after_validate_depends_on_the_validation_runner(stage: str) -> None:
    """Rewording a validation message (or changing how GX is run) re-runs validate alone: every later stage
    reaches the guard through pipelines/data/suite.py, which imports none of the runner."""
    spec = _dvc_stages()[stage]
    command = _command(spec)
    assert not import_closure(command) & VALIDATION_RUNNER, command
    deps = {str(dep).rstrip("/") for dep in spec.get("deps", [])}
    assert not deps & VALIDATION_RUNNER and "pipelines/data" not in deps, (stage, deps)
