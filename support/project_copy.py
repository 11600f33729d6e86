"""A throwaway copy of the project as a fresh git+DVC repo: for the integration tests, and the benchmarks that
time `dvc repro` (they import it from here; tests never import benchmarks)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from support.params import PARAMS_FILE

REPO_ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ["pipelines", "flows", "ops", "services", "deploy", "expectations", "scripts", "dvc.yaml",
                 "prefect.toml", "uv.lock", "pyproject.toml", "README.md", ".dvcignore", ".gitignore", ".dvc/config"]


def venv_env(**extra: str) -> dict[str, str]:
    """The environment with this interpreter's bin first, so dvc.yaml's `python` is the project's."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "GX_ANALYTICS_ENABLED": "false", "PYTHONDONTWRITEBYTECODE": "1", **extra}


def run(cwd: Path, *args: str, check: bool = True, timeout: float | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a command in the project copy (`env`: variables added to venv_env()'s); bounded by `timeout`, else by
    support.servers.work_timeout_s()."""
    from support.servers import work_timeout_s

    done = subprocess.run(args, cwd=cwd, env=venv_env(**(env or {})), capture_output=True, text=True,
                          timeout=timeout or work_timeout_s())
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed in {cwd}:\n{done.stdout}\n{done.stderr}")
    return done


def set_params(repo: Path, overrides: dict[str, Any]) -> None:
    data = yaml.safe_load((repo / "params.yaml").read_text())
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def copy_project(dest: Path, overrides: dict[str, Any] | None = None, remote: Path | None = None) -> Path:
    """A fresh git+DVC repo holding the project's code, params and DVC config, committed."""
    for name in PROJECT_FILES:
        source, target = REPO_ROOT / name, dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    # The tests' frozen flights params, not the live params.yaml a user may have pointed at their own table.
    shutil.copy2(PARAMS_FILE, dest / "params.yaml")
    if overrides:
        set_params(dest, overrides)
    run(dest, "git", "init", "-q")
    if remote is not None:
        run(dest, "dvc", "remote", "add", "--default", "local", str(remote))
    commit(dest, "project")
    return dest


def commit(repo: Path, message: str) -> None:
    run(repo, "git", "add", "-A")
    run(repo, "git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", message)
