"""What the registry records about how a model was built, so any model that ever served can be rebuilt.

One contract (`Lineage`), written by the gate stage when it registers a model and read by `python -m pipelines
reproduce`, the model card and the loop's summary. It is captured inside the DVC stage, where the facts are:

- `git_commit`: the commit the run started from (`DVC_EXP_BASELINE_REV` inside `dvc exp run`, else HEAD);
- `git_dirty` / `dirty_files`: files that differ from that commit (changed, or new and not git-ignored), *except*
  what the DAG itself writes (dvc.lock, the stages' outs, metrics and plots, and the .gitignore files DVC writes
  beside new outs). params.yaml counts only outside an experiment: an experiment's commit holds its params (see
  `params_diff`), a plain `dvc repro` commits nothing;
- `experiment` / `ref`: the DVC experiment whose commit holds this run's dvc.lock. DVC names an experiment's ref
  `refs/exps/<baseline[:2]>/<baseline[2:]>/<name>` (`ExpRefInfo`), so the stage knows it before DVC commits it:
  `dvc exp run` passes the name in `DVC_EXP_NAME`, the Prefect training flow passes the name it will
  `dvc exp save` under. A plain `dvc repro` has neither: its model is reproducible once its dvc.lock (and
  params.yaml, if edited) is committed, in `git_commit` or a later commit (`built_at` finds it);
- `data_md5`: the collect stage's out in dvc.lock (DVC 3's md5 of the raw table's bytes);
- `params_diff`: every params key whose value differs from `params.yaml` at `git_commit` (`-S` overrides);
- `uv_lock_md5`: the package lock, the environment the code ran in.

Nothing here imports DVC, LightGBM or BentoML: it runs in the stage and in the CLI.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from pipelines import io
from pipelines.contracts import Lineage
from pipelines.io import DVC_FILE, PACKAGE_LOCK, PARAMS_FILE
from pipelines.io import DVC_LOCK_FILE as LOCK_FILE

EXPS_NAMESPACE = "refs/exps"
# Set by the Prefect training flow for the stages it runs in the workspace: the experiment name it will save.
EXPERIMENT_ENV = "DVC_EXP_NAME"
BASELINE_ENV = "DVC_EXP_BASELINE_REV"


def experiment_ref(baseline: str, name: str) -> str:
    """The git ref DVC gives experiment `name` on `baseline` (dvc.repo.experiments.refs.ExpRefInfo)."""
    return f"{EXPS_NAMESPACE}/{baseline[:2]}/{baseline[2:]}/{name}"


def has_commit(root: Path, rev: str) -> bool:
    """Whether `rev` (a commit or a ref) names a commit in the git repository at `root`."""
    return bool(git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False))


def rebuildable_here(root: Path, recorded: Lineage | None) -> bool:
    """Whether the repository at `root` holds the revision that built the model (`built_at`; no remote asked).

    The BentoML store is the machine's, shared by every clone and project: a model file another clone registered
    first carries that clone's experiment ref, which this repository may not hold.
    """
    return recorded is not None and built_at(root, recorded) is not None


def built_at(root: Path, recorded: Lineage) -> str | None:
    """The revision in the repository at `root` whose dvc.lock built the model, or None where none here does.

    An experiment's ref holds its own dvc.lock. A plain `dvc repro` commits nothing: at `git_commit` (its HEAD)
    dvc.lock is the previous run's until someone commits the new one, usually in the next commit. So the revision
    is the first of `git_commit` and the later commits that changed dvc.lock (oldest first) whose dvc.lock
    records the model's data (`data_md5`), whose params.yaml is the run's (`git_commit`'s plus `params_diff`),
    and whose stage dependencies (every dep dvc.lock lists, dvc.yaml) are `git_commit`'s: the code that ran, with
    its outputs committed. A run from uncommitted code has none.
    """
    if recorded.ref:
        return recorded.ref if has_commit(root, recorded.ref) else None
    base = recorded.git_commit
    if recorded.uncommitted_code() or not has_commit(root, base):
        return None
    if recorded.data_md5 is None:  # registered before the data hash was recorded: the commit is all there is
        return None if recorded.git_dirty else base
    return next((commit for commit, mismatch in _candidates(root, recorded) if mismatch is None), None)


def not_built_at(root: Path, recorded: Lineage) -> list[str]:
    """Why no revision here holds the run's dvc.lock: per commit checked, what differs from the run (data, params,
    code), for `reproduce` to say instead of only that none does."""
    if recorded.ref or recorded.uncommitted_code() or not has_commit(root, recorded.git_commit):
        return []
    return [f"{commit[:12]}: {mismatch}" for commit, mismatch in _candidates(root, recorded) if mismatch]


def _candidates(root: Path, recorded: Lineage) -> Iterator[tuple[str, str | None]]:
    """`git_commit` and the later commits that changed dvc.lock (oldest first), each with what differs from the
    run (None: its dvc.lock is the run's)."""
    base = recorded.git_commit
    later = git(root, "rev-list", "--reverse", "--ancestry-path", "--branches", "--remotes", "--tags", f"^{base}",
                "--", LOCK_FILE, check=False).split()
    base_params = git(root, "show", f"{base}:{PARAMS_FILE}", check=False) or None
    for commit in [base, *later]:
        lock = yaml.safe_load(git(root, "show", f"{commit}:{LOCK_FILE}", check=False) or "{}") or {}
        locked = locked_out_md5(lock, "collect")
        if locked != recorded.data_md5:
            yield commit, f"lock: its dvc.lock records data {locked}, the model was trained on {recorded.data_md5}"
            continue
        params = params_diff(base_params, git(root, "show", f"{commit}:{PARAMS_FILE}", check=False))
        if params != recorded.params_diff:
            keys = sorted(key for key in params.keys() | recorded.params_diff.keys()
                          if params.get(key) != recorded.params_diff.get(key))
            yield commit, (f"params: its params.yaml differs from the run's in {', '.join(keys)} (run: "
                           + ", ".join(f"{key}={(recorded.params_diff.get(key) or {}).get('run', '(as committed)')}"
                                       for key in keys) + ")")
            continue
        changed = git(root, "diff", "--name-only", base, commit).splitlines() if commit != base else []
        code = sorted(path for path in changed if _touches([path], _deps(lock)))
        if code:
            yield commit, f"code: {', '.join(code[:5])}{' ...' if len(code) > 5 else ''} changed since {base[:12]}"
            continue
        yield commit, None


def _deps(lock: dict[str, Any]) -> set[str]:
    """What the run read that no stage writes (code, the source, uv.lock), and dvc.yaml itself.

    A stage's deps include the outs of the stages before it (the splits, the model, metrics git tracks): those
    change with the run's results, not with the code.
    """
    stages = list((lock.get("stages") or {}).values())
    written = {str(out["path"]) for stage in stages for out in stage.get("outs") or []}
    read = {str(dep["path"]) for stage in stages for dep in stage.get("deps") or []}
    return {DVC_FILE, *(path for path in read if not _touches([path], written))}


def _touches(changed: list[str], deps: set[str]) -> bool:
    return any(path == dep or path.startswith(dep.rstrip("/") + "/") for path in changed for dep in deps)


def git(root: Path, *args: str, check: bool = True) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {root}: {done.stderr.strip()}")
    return done.stdout.strip()


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values."""
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def params_diff(baseline_text: str | None, current_text: str) -> dict[str, dict[str, Any]]:
    """Keys whose values differ between two params files: {key: {"repo": old, "run": new}}."""
    before = flatten(yaml.safe_load(baseline_text) or {}) if baseline_text else {}
    after = flatten(yaml.safe_load(current_text) or {})
    return {key: {"repo": before.get(key), "run": after.get(key)}
            for key in sorted(before.keys() | after.keys()) if before.get(key) != after.get(key)}


def changed_params(params_file: Path) -> dict[str, Any]:
    """Keys of `params_file` whose values differ from its committed version (the experiment's baseline inside `dvc
    exp run`, else HEAD), with their new values: what `-S` or an edit changed. {} outside git or for a new file."""
    params_file = Path(params_file).resolve()
    root = git(params_file.parent, "rev-parse", "--show-toplevel", check=False)
    if not root:
        return {}
    baseline = os.environ.get(BASELINE_ENV) or "HEAD"
    committed = git(Path(root), "show", f"{baseline}:{params_file.relative_to(Path(root).resolve()).as_posix()}",
                    check=False) or None
    if committed is None:
        return {}
    return {key: values["run"] for key, values in params_diff(committed, params_file.read_text()).items()}


def locked_out_md5(lock: dict[str, Any], stage: str) -> str | None:
    """The md5 of a stage's first out in a parsed dvc.lock (a directory's md5 ends in `.dir`)."""
    outs = ((lock.get("stages") or {}).get(stage) or {}).get("outs") or []
    return outs[0].get("md5") if outs else None


def capture(root: Path, written_by_dag: list[Path]) -> Lineage:
    """The lineage of the model being registered by a stage running in `root` (the workspace or DVC's temp dir).

    `written_by_dag` are the paths the DAG's stages write (dvc.yaml's outs, metrics and plots), which are not
    a dirty tree when git tracks them.
    """
    try:
        head = git(root, "rev-parse", "HEAD")
    except (OSError, RuntimeError):
        return Lineage(git_commit="unknown", git_dirty=True, dirty_files=["(not a git repository)"])
    baseline = os.environ.get(BASELINE_ENV) or head
    name = os.environ.get(EXPERIMENT_ENV) or None
    ignored = {LOCK_FILE, PARAMS_FILE}
    written = {str(_relative(path, root)) for path in written_by_dag}
    changed = git(root, "diff", "--name-only", baseline, check=False).splitlines()
    # New files git would commit (not ignored) are code the commit lacks too; the .gitignore files DVC writes
    # beside new outs are not.
    changed += [path for path in git(root, "ls-files", "--others", "--exclude-standard", check=False).splitlines()
                if Path(path).name != ".gitignore"]
    dirty = [path for path in set(changed) if path not in ignored and not _touches([path], written)]
    baseline_params = git(root, "show", f"{baseline}:{PARAMS_FILE}", check=False) or None
    changed_params = params_diff(baseline_params, (root / PARAMS_FILE).read_text())
    if changed_params and not name:  # an experiment's commit holds its params; a plain `dvc repro` commits nothing
        dirty.append(PARAMS_FILE)
    lock_path = root / LOCK_FILE
    lock = yaml.safe_load(lock_path.read_text()) if lock_path.exists() else {}
    return Lineage(
        git_commit=baseline,
        git_dirty=bool(dirty),
        dirty_files=sorted(dirty),
        experiment=name,
        ref=experiment_ref(baseline, name) if name else None,
        data_md5=locked_out_md5(lock or {}, "collect"),
        params_diff=changed_params,
        uv_lock_md5=io.file_md5(root / PACKAGE_LOCK) if (root / PACKAGE_LOCK).exists() else None,
        repository=str(Path(os.environ.get("DVC_ROOT") or root).resolve()),
    )


def _relative(path: Path, root: Path) -> Path:
    try:
        return path.resolve().relative_to(root.resolve()) if path.is_absolute() else path
    except ValueError:
        return path
