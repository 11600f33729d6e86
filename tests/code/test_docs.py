"""The docs are tested (issue #42): every command block of README.md and docs/*.md is run by a test or says why it
cannot run here, and every command (run or not) names modules, sub-commands, options and params keys that exist.

The blocks marked `doc-test: NAME` are run by the integration tests that ask for `docs.block("NAME")`
(tests/integration/test_docs.py, test_own_data.py, test_mistakes.py, test_container.py, test_loop_e2e.py).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from support import docs
from support.params import REPO_ROOT, params_dict

COMMAND_BLOCKS = [block for block in docs.blocks() if block.is_command]
PLACEHOLDER = re.compile(r"<[^<>\s]+>")


def _test_sources() -> str:
    return "\n".join(path.read_text() for path in (REPO_ROOT / "tests").rglob("*.py"))


def test_the_docs_have_command_blocks_and_the_parser_finds_them() -> None:
    assert len(COMMAND_BLOCKS) >= 25, [block.where for block in COMMAND_BLOCKS]
    assert {block.path for block in COMMAND_BLOCKS} >= {"README.md", "docs/operations.md", "docs/versioning.md"}


@pytest.mark.parametrize("block", COMMAND_BLOCKS, ids=lambda block: block.where)
def test_every_command_block_is_run_by_a_test_or_says_why_not(block: docs.Block) -> None:
    assert block.kind in ("test", "not-run"), (
        f"{block.where}: a {block.lang} block without <!-- doc-test: NAME --> or <!-- doc-not-run: REASON --> on "
        "the line before its fence")
    if block.kind == "not-run":
        assert len(block.value or "") > 30, f"{block.where}: say why it cannot run here: {block.value!r}"


def test_every_doc_test_name_marks_one_block_and_a_test_asks_for_it() -> None:
    named = [block.value for block in docs.blocks() if block.kind == "test"]
    assert len(named) == len(set(named)), sorted(name for name in named if named.count(name) > 1)
    sources = _test_sources()
    unasked = [name for name in named if f'docs.block("{name}")' not in sources]
    assert not unasked, f"blocks marked doc-test that no test runs: {unasked}"


def _pipelines_args(words: list[str]) -> list[str]:
    return [PLACEHOLDER.sub("x", word) for word in words]


def _module_file(module: str) -> Path | None:
    base = REPO_ROOT / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__main__.py"):
        if candidate.is_file():
            return candidate
    return None


def _flat_params() -> set[str]:
    return set(docs.flat_params(__import__("yaml").safe_dump(params_dict(Path("/x")))))


def _checked(words: list[str]) -> list[str]:
    """What is wrong with one command (empty: nothing found); commands of other tools are taken as they are."""
    from pipelines.cli import build_parser

    problems = []
    while words and "=" in words[0] and not words[0].startswith("-"):
        words = words[1:]  # VAR=value prefixes
    if words[:2] == ["python", "-m"] and len(words) > 2:
        module = words[2]
        if module == "pipelines":
            try:
                build_parser().parse_args(_pipelines_args(words[3:]))
            except SystemExit:
                problems.append(f"`python -m pipelines` refuses {words[3:]}")
        elif module.split(".")[0] in ("pipelines", "flows", "ops", "deploy", "services", "benchmarks", "support"):
            source = _module_file(module)
            if source is None:
                problems.append(f"no module {module}")
            else:
                text = source.read_text()
                problems += [f"{module} has no option {word}" for word in words[3:]
                             if word.startswith("--") and f'"{word.split("=")[0]}"' not in text]
    elif words[:3] == ["dvc", "exp", "run"]:
        keys = _flat_params()
        for index, word in enumerate(words):
            if word == "-S" and index + 1 < len(words):
                key = words[index + 1].split("=")[0]
                if key not in keys:
                    problems.append(f"-S {key}: not a params key")
    elif words and words[0].startswith(("scripts/", ".venv/bin/pytest")):
        paths = [word for word in words if word.startswith(("scripts/", "tests/"))]
        problems += [f"no file {path}" for path in paths if not (REPO_ROOT / path).exists()]
    return problems


@pytest.mark.parametrize("block", [block for block in COMMAND_BLOCKS if block.lang != "python"],
                         ids=lambda block: block.where)
def test_each_command_names_what_exists(block: docs.Block) -> None:
    problems = []
    for command in docs.commands(block):
        for part in docs.chain(command):
            try:
                words = shlex.split(part)
            except ValueError as error:
                problems.append(f"{part!r}: {error}")
                continue
            if words:
                problems += _checked(words)
    assert not problems, f"{block.where}: {problems}"


def test_ci_runs_the_readmes_test_command() -> None:
    main_job = docs.commands(docs.block("main-job"))
    assert main_job == ["scripts/demo.sh", "scripts/test.sh"]
    assert 'scripts/test.sh"' in (REPO_ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("block", [block for block in COMMAND_BLOCKS if block.kind == "not-run"
                                   and (block.value or "").startswith("an excerpt of ")],
                         ids=lambda block: block.where)
def test_an_excerpt_is_in_its_source(block: docs.Block) -> None:
    source = (REPO_ROOT / block.value.removeprefix("an excerpt of ").split()[0]).read_text()
    lines = [line.split("  #")[0].strip() for line in block.text.splitlines()]
    assert [line for line in lines if line and line not in source] == []


def test_every_row_of_the_readmes_mistakes_table_has_a_case() -> None:
    from tests.integration.test_mistakes import MISTAKES

    text = (REPO_ROOT / "README.md").read_text()
    table = text[text.index("What is refused, early and by name"):]
    table = table[:table.index("\n\n", table.index("|---|"))]
    rows = [line.split(" | ")[0].lstrip("| ").strip() for line in table.splitlines() if line.startswith("|")][2:]
    assert len(rows) >= 10, rows
    assert [row for row in rows if not any(row.startswith(case.row) for case in MISTAKES)] == []


def test_a_block_is_split_into_the_commands_bash_would_run() -> None:
    block = docs.Block(path="x.md", line=1, lang="bash", kind="test", value="x", text="\n".join([
        "# a comment line", "dvc repro   # trailing comment", "curl -s x -d '{\"a\": 1,",
        "  \"b\": \"#not a comment\"}'", "python -m x \\", "  --flag 1", "echo '#' # said"]))
    assert docs.commands(block) == ["dvc repro", "curl -s x -d '{\"a\": 1, \"b\": \"#not a comment\"}'",
                                    "python -m x --flag 1", "echo '#'"]
