"""The command blocks of README.md and docs/*.md, as the tests that run them read them.

Every fenced block in a shell or Python language carries a marker on the line just before its fence:

    <!-- doc-test: NAME -->            run by a test that asks for `block("NAME")` (tests/code/test_docs.py checks
                                       that one does, and that NAME is on one block only)
    <!-- doc-not-run: REASON -->       not runnable here (a GPU, other machines, an hour-long benchmark): the
                                       reason is said; the commands are still checked statically (modules,
                                       sub-commands, options and params keys exist)

Other blocks (diagrams, YAML, sample output) may carry a `doc-test` marker too when a test uses their text (the
own-data walkthrough's params). A test runs a block's commands through `commands(block)`, so the doc and what CI
runs cannot drift apart.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
COMMAND_LANGUAGES = {"bash", "sh", "shell", "console", "python"}
_FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w+-]*)\s*$")
_MARKER = re.compile(r"^\s*<!--\s*doc-(?P<kind>test|not-run):\s*(?P<value>.+?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language, its marker and its text (indentation removed)."""

    path: str
    line: int
    lang: str
    kind: str | None  # "test", "not-run" or None
    value: str | None  # the test name or the reason
    text: str

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def is_command(self) -> bool:
        return self.lang in COMMAND_LANGUAGES


def doc_files(root: Path = REPO_ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def parse(path: Path, root: Path = REPO_ROOT) -> list[Block]:
    lines = path.read_text().splitlines()
    found, index = [], 0
    while index < len(lines):
        fence = _FENCE.match(lines[index])
        if not fence:
            index += 1
            continue
        indent = len(fence["indent"])
        end = next((j for j in range(index + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise ValueError(f"{path}:{index + 1}: a fenced block that never ends")
        previous = next((lines[j] for j in range(index - 1, -1, -1) if lines[j].strip()), "")
        marker = _MARKER.match(previous)
        text = "\n".join(line[indent:] if line[:indent].strip() == "" else line for line in lines[index + 1:end])
        found.append(Block(path=path.relative_to(root).as_posix(), line=index + 1, lang=fence["lang"],
                           kind=marker["kind"] if marker else None, value=marker["value"] if marker else None,
                           text=text))
        index = end + 1
    return found


@cache
def blocks(root: Path = REPO_ROOT) -> tuple[Block, ...]:
    return tuple(block for path in doc_files(root) for block in parse(path, root))


def block(name: str, root: Path = REPO_ROOT) -> Block:
    """The one block marked `doc-test: name`."""
    named = [item for item in blocks(root) if item.kind == "test" and item.value == name]
    if len(named) != 1:
        raise LookupError(f"{len(named)} blocks are marked doc-test: {name}")
    return named[0]


def commands(item: Block) -> list[str]:
    """A shell block's commands: comment lines dropped, each command on one line (a line ending in a backslash or
    inside an open quote continues), its trailing `# comment` removed."""
    result: list[str] = []
    pending = ""
    for line in item.text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending = f"{pending} {line.strip()}" if pending else line.strip()
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # an open quote: the command goes on on the next line
            continue
        result.append(_without_comment(pending))
        pending = ""
    if pending:
        raise ValueError(f"{item.where}: the block ends inside a command: {pending!r}")
    return result


def chain(command: str) -> list[str]:
    """The simple commands of `a && b || c; d`, split outside quotes (for checks that read each one's words)."""
    parts, quote, start, index = [], None, 0, 0
    while index < len(command):
        char = command[index]
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif command.startswith(("&&", "||"), index) or char == ";":
            parts.append(command[start:index].strip())
            index += 1 if char == ";" else 2
            start = index
            continue
        index += 1
    parts.append(command[start:].strip())
    return [part for part in parts if part]


def _without_comment(line: str) -> str:
    """The command up to its trailing comment: a `#` after whitespace, outside quotes, as bash reads it."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip()
    return line.rstrip()


def flat_params(text: str) -> dict[str, Any]:
    """A YAML block of params (the own-data walkthrough's) as dotted keys -> values, for `set_params`."""
    def walk(node: Any, prefix: str) -> dict[str, Any]:
        if not isinstance(node, dict):
            return {prefix: node}
        found: dict[str, Any] = {}
        for key, value in node.items():
            found.update(walk(value, f"{prefix}.{key}" if prefix else str(key)))
        return found

    return walk(yaml.safe_load(text) or {}, "")


def substitute(command: str, replacements: dict[str, str]) -> str:
    """The command with the doc's placeholders (`<version>`) and fixed ports replaced by the test's values."""
    for old, new in replacements.items():
        command = command.replace(old, new)
    return command


def shell(repo: Path, command: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """One command of a doc block, run by bash in `repo` as a reader would type it."""
    return subprocess.run(["bash", "-c", command], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=timeout)


def start(repo: Path, command: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    """A command that serves until stopped (`bentoml serve`, `evidently ui`), in its own process group."""
    handle = open(log, "w")  # noqa: SIM115 - the child writes it; closed with the process (`stop`)
    return subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=repo, env=env, stdout=handle,
                            stderr=subprocess.STDOUT, start_new_session=True)
