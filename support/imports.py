"""The project's import graph, read from the code (nothing is imported): for the architecture tests, the Bento's
file list and docs/architecture.md's generated picture.

Every import counts, at module level or inside a function (a lazy import is still a dependency: it fails the same
way when the module moves). `python -m support.imports` prints the package-level graph that docs/architecture.md
holds between its markers; `--write` rewrites that block.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipelines", "flows", "ops", "services", "deploy", "benchmarks", "support", "tests")
ARCHITECTURE_DOC = REPO_ROOT / "docs" / "architecture.md"
BEGIN, END = "<!-- import-graph:begin (python -m support.imports --write) -->", "<!-- import-graph:end -->"


def module_file(name: str) -> Path | None:
    """The file of project module `name` (a module or a package's __init__), or None."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = REPO_ROOT / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path) -> str:
    parts = path.resolve().relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> list[str]:
    return sorted(module_name(path) for package in PACKAGES for path in (REPO_ROOT / package).rglob("*.py")
                  if "__pycache__" not in path.parts)


@cache
def imports_of(name: str) -> frozenset[str]:
    """Project modules `name` imports anywhere in its file but under `if TYPE_CHECKING:` (never run); `from a.b
    import c` names a.b.c when c is a module, and every package on the way (importing a.b.c runs a/__init__ and
    a/b/__init__)."""
    path = module_file(name)
    assert path is not None, name
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _run_imports(path):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        for target in targets:
            parts = target.split(".")
            found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1) if module_file(".".join(parts[:i]))}
    return frozenset(found - {name})


def third_party_of(names: Iterable[str]) -> dict[str, set[str]]:
    """The top-level outside packages (neither the standard library nor this project) that modules `names` import
    anywhere but under `if TYPE_CHECKING:`, each with the modules that import it: what an environment running
    those modules must hold (the Bento's requirements, for the service's closure)."""
    found: dict[str, set[str]] = defaultdict(set)
    for name in names:
        path = module_file(name)
        assert path is not None, name
        for node in _run_imports(path):
            if isinstance(node, ast.Import):
                tops = [alias.name.split(".")[0] for alias in node.names]
            elif not node.level and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top not in sys.stdlib_module_names and top not in PACKAGES and top != "__future__":
                    found[top].add(name)
    return dict(found)


def _run_imports(path: Path) -> list[ast.Import | ast.ImportFrom]:
    """The import statements of the file at `path` that can run: anywhere (a function's lazy import included) but
    under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text())
    typing_only = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node.test)
                   for statement in node.body for inner in ast.walk(statement)}
    return [node for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in typing_only]


def _is_type_checking(test: ast.expr) -> bool:
    """`if TYPE_CHECKING:` (or `typing.TYPE_CHECKING`): imports for annotations only, never run."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def closure(roots: Iterable[str]) -> set[str]:
    """Every project module the roots import, transitively, the roots included."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += imports_of(name)
    return seen


def cycles(modules: Sequence[str] | None = None) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), ignoring a module's import of its own package
    (`pipelines.monitor.store` importing `pipelines.monitor` runs the package's __init__, not a cycle of code)."""
    modules = list(modules or all_modules())
    edges = {name: [dep for dep in imports_of(name) if not name.startswith(dep + ".")] for name in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in edges.get(node, ()):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for name in modules:
        if name not in index:
            visit(name)
    return found


def layer(name: str) -> str:
    """The architectural layer of a module: `pipelines` (the ground floor), `pipelines.<package>` for the lifecycle
    packages, else its top-level folder."""
    parts = name.split(".")
    if parts[0] == "pipelines" and len(parts) > 1 and module_file(f"pipelines.{parts[1]}") is not None and (
            REPO_ROOT / "pipelines" / parts[1]).is_dir():
        return f"pipelines.{parts[1]}"
    return parts[0]


def layer_edges(exclude: Iterable[str] = ("tests", "benchmarks", "support")) -> dict[str, set[str]]:
    """Which layer imports which (self-edges dropped), over the shipped code."""
    skip = set(exclude)
    edges: dict[str, set[str]] = defaultdict(set)
    for name in all_modules():
        source = layer(name)
        if source in skip:
            continue
        edges[source] |= {layer(dep) for dep in imports_of(name)} - {source} - skip
    return edges


def mermaid() -> str:
    """The package-level picture for docs/architecture.md: an arrow A --> B means code in A imports code in B."""
    edges = layer_edges()
    layers = sorted(set(edges) | {target for targets in edges.values() for target in targets})
    lines = ["```mermaid", "flowchart TB"]
    lines += [f'  {_node_id(name)}["{_label(name)}"]' for name in layers]
    lines += [f"  {_node_id(source)} --> {_node_id(target)}" for source in sorted(edges)
              for target in sorted(edges[source])]
    lines.append("```")
    return "\n".join(lines)


def _node_id(layer_name: str) -> str:
    return layer_name.replace(".", "_")


def _label(layer_name: str) -> str:
    return "pipelines/ (ground floor)" if layer_name == "pipelines" else layer_name.replace(".", "/") + "/"


def documented_block(text: str) -> str | None:
    if BEGIN not in text or END not in text:
        return None
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m support.imports", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite docs/architecture.md's generated block")
    args = parser.parse_args(argv)
    picture = mermaid()
    if not args.write:
        print(picture)
        return 0
    text = ARCHITECTURE_DOC.read_text()
    if documented_block(text) is None:
        raise SystemExit(f"{ARCHITECTURE_DOC} has no {BEGIN} ... {END} block")
    head, rest = text.split(BEGIN, 1)
    ARCHITECTURE_DOC.write_text(f"{head}{BEGIN}\n{picture}\n{END}{rest.split(END, 1)[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
