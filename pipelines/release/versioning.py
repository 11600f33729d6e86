"""Every run that can produce a model goes through DVC: the one versioned path behind both front doors.

Why the Prefect flows drive DVC rather than call the step functions themselves: caching, locking and hashing
stay DVC's. A Prefect task runs its stage with `Repo.reproduce(stage, single_item=True)`, the call `dvc repro`
makes for each stage, so dvc.lock records what actually ran, the outputs land in DVC's cache, an unchanged stage
is skipped exactly as `dvc repro` would skip it, and the next `dvc repro` is a no-op. Prefect adds what DVC does
not have: schedules, retries, logs, artifacts and the UI. The alternative (tasks call `pipelines.stages` and then
`dvc commit`) would make dvc.lock claim whatever is on disk, with no proof the stage ran on those deps.

A retrain is a DVC experiment (`dvc exp run --temp -S collect.end=...`): it runs in DVC's own copy of the repo, so
it never rewrites the workspace's tracked outputs and two retrains cannot corrupt each other; its commit
(`refs/exps/...`) holds its params, metrics and dvc.lock, and `dvc exp push` sends that ref to the git remote and
its data and model to the DVC remote. A `training` flow run in the workspace is saved the same way
(`dvc exp save`), so every registered model's dvc.lock is held by a ref (see `pipelines.release.lineage`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines import io
from pipelines.release.lineage import BASELINE_ENV, EXPERIMENT_ENV, experiment_ref, git

log = logging.getLogger(__name__)

# dvc.yaml's stages in DAG order (the Prefect training flow runs one task per stage).
STAGES = ("collect", "validate", "preprocess", "train", "evaluate", "variant", "gate", "reference")
OUTPUT_TAIL_LINES = 40


class StageFailed(RuntimeError):
    """A DVC stage's command failed; the message ends with the tail of what it printed."""


@dataclass(frozen=True)
class StageRun:
    stage: str
    ran: bool        # false: DVC found it up to date and skipped it, as `dvc repro` would
    seconds: float
    output: str = ""  # what DVC and the stage's command printed (its last lines), for the orchestrator's log


@dataclass(frozen=True)
class Experiment:
    name: str
    ref: str
    commit: str
    baseline: str


class SourceNotVersioned(RuntimeError):
    """A retrain would learn from a table that neither git nor DVC holds as it is: `dvc exp run --temp` copies only
    what they track, so the experiment would not find it, or would train on an older copy than the one validated."""


def require_versioned_source(root: Path, source_path: Path) -> str:
    """How the source table at `source_path` is versioned ("dvc" or "git"), or `SourceNotVersioned` naming the exact
    commands that version it.

    DVC: a `<table>.dvc` file committed to git whose recorded md5 is the table's now (`dvc add`); git: the table
    committed and unchanged. A table DVC tracks but that changed since (`dvc status` would say "modified") is
    refused too: the experiment would check out the older bytes.
    """
    import yaml

    relative = Path(source_path)
    if relative.is_absolute():
        try:
            relative = relative.resolve().relative_to(Path(root).resolve())
        except ValueError:
            raise SourceNotVersioned(
                f"source.path {source_path} is outside the project {root}: a retrain runs in a copy of the project "
                "(dvc exp run --temp), which holds only what git or DVC tracks; move the table into the project, "
                "point source.path at it and track it with DVC (dvc add)") from None
    table = Path(root) / relative
    pointer = relative.with_name(relative.name + ".dvc")
    add = (f"dvc add {relative} && git add {pointer} {relative.parent / '.gitignore'} && "
           f"git commit -m 'track {relative} with DVC'")
    if (Path(root) / pointer).exists():
        committed = git(root, "ls-files", "--error-unmatch", str(pointer), check=False)
        changed = git(root, "status", "--porcelain", "--", str(pointer), check=False)
        recorded = ((yaml.safe_load((Path(root) / pointer).read_text()) or {}).get("outs") or [{}])[0].get("md5")
        from pipelines.io import file_md5

        if table.exists() and recorded == file_md5(table) and committed and not changed:
            return "dvc"
        if table.exists() and recorded != file_md5(table):
            raise SourceNotVersioned(f"the source table {relative} changed since DVC recorded it in {pointer} (dvc "
                                     "status: modified): a retrain would learn from the older copy. Record the "
                                     f"new one: dvc add {relative} && git add {pointer} && git commit -m "
                                     f"'{relative}: new rows'")
        raise SourceNotVersioned(f"{pointer} is not committed: a retrain runs in a copy of the last commit (dvc exp "
                                 f"run --temp). Commit it: git add {pointer} && git commit -m 'track {relative} "
                                 "with DVC'")
    if git(root, "ls-files", "--error-unmatch", str(relative), check=False):
        if not git(root, "status", "--porcelain", "--", str(relative), check=False):
            return "git"
        raise SourceNotVersioned(f"the source table {relative} has changes git has not committed: a retrain runs in "
                                 f"a copy of the last commit (dvc exp run --temp) and would learn from the older "
                                 f"table. Commit it (git add {relative} && git commit), or better track it with "
                                 f"DVC: git rm --cached {relative} && {add}")
    raise SourceNotVersioned(f"the source table {relative} (source.path) is tracked by neither git nor DVC: a "
                             "retrain runs in DVC's copy of the project (dvc exp run --temp), which holds only "
                             f"what they track, and would not find it. Track it with DVC: {add}")


def rooted(params: Any, root: Path) -> Any:
    """`params` with its relative paths made absolute under the project root: what the flow's own tasks (reports,
    summaries) read must be the project's files, whatever the process's working directory."""
    paths = {key: value if value.is_absolute() else root / value
             for key, value in params.paths.model_dump().items()}
    return params.model_copy(update={"paths": params.paths.model_copy(update=paths)})


def project_root(params_file: str | Path) -> Path:
    """The DVC project a params file belongs to (dvc.yaml beside it)."""
    root = Path(params_file).resolve().parent
    if not (root / io.DVC_FILE).exists():
        raise FileNotFoundError(f"no dvc.yaml beside {params_file}: the flows run the DVC project's stages, so the "
                                f"params file must be the project's params.yaml")
    return root


def _venv_path() -> str:
    """PATH with this interpreter's bin first: dvc.yaml's `python` and `dvc` must be the project's."""
    return f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


def experiment_name(kind: str, when: datetime | None = None, data_end: str | None = None) -> str:
    """A unique, git-ref-safe experiment name: `<kind>[-until-YYYYMMDD]-<UTC time>`."""
    stamp = (when or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    until = f"-until-{datetime.fromisoformat(data_end):%Y%m%d}" if data_end else ""
    return f"{kind}{until}-{stamp}"


def workspace_run_env(root: Path, name: str) -> dict[str, str]:
    """Environment for the stages of a workspace run that will be saved as experiment `name` (see lineage)."""
    return {EXPERIMENT_ENV: name, BASELINE_ENV: git(root, "rev-parse", "HEAD")}


@contextlib.contextmanager
def _captured_output() -> Iterator[list[str]]:
    """Capture what this process and its children write to fd 1/2 (DVC runs stage commands with inherited
    descriptors), echo it to stderr afterwards, and hand it to the caller as one string in the yielded list."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        text: list[str] = []
        try:
            yield text
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            sink.seek(0)
            captured = sink.read().decode(errors="replace")
            text.append(captured)
            sys.stderr.write(captured)  # a log, not a result: a command's stdout stays its own answer
            sys.stderr.flush()


def _tail(text: str, lines: int = OUTPUT_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


@contextlib.contextmanager
def open_repo(root: Path) -> Iterator[Any]:
    """`dvc.repo.Repo(root)` with the process in `root`, as the `dvc` command runs it.

    DVC's API resolves some paths (untracked metrics, .gitignore checks) against the working directory: from
    elsewhere a stage with a `cache: false` metric fails with "path ... is outside of DVC repo". The flow's tasks
    and the CLI run one DVC call at a time, so the change of directory is seen by no one else.
    """
    from dvc.repo import Repo

    with contextlib.chdir(root), Repo(str(root)) as repo:
        yield repo


def stage_target(root: Path, stage: str) -> str:
    """`<root>/dvc.yaml:<stage>`: DVC resolves a bare stage name against the process's working directory, which
    need not be the project (a Prefect worker, a test runner, the reproduce command's clone)."""
    return f"{Path(root).resolve() / io.DVC_FILE}:{stage}"


def run_stage(root: Path, stage: str, env: dict[str, str] | None = None, force: bool = False,
              pull: bool = False) -> StageRun:
    """`dvc repro --single-item <stage>` through DVC's Python API: DVC decides whether it runs, runs its command,
    caches its outputs and writes its dvc.lock entry. Raises StageFailed with the command's last output lines.

    `pull` is `dvc repro --pull`: a stage whose only change is that its outputs are not here (a run's fresh clone)
    has them pulled from the DVC remote instead of running again; a changed stage runs."""
    from dvc.exceptions import DvcException

    started = time.perf_counter()
    with _captured_output() as output:
        try:
            with open_repo(root) as repo:
                done = repo.reproduce(stage_target(root, stage), single_item=True, force=force, pull=pull,
                                      run_env={"PATH": _venv_path(), **(env or {})})
        except DvcException as error:
            failure = error
        else:
            failure = None
    if failure is not None:
        cause = f" ({failure.__cause__})" if failure.__cause__ else ""
        raise StageFailed(f"stage {stage!r} failed: {failure}{cause}\n{_tail(output[0])}") from failure
    return StageRun(stage=stage, ran=bool(done), seconds=round(time.perf_counter() - started, 2),
                    output=_tail(output[0], 200))


def save_experiment(root: Path, name: str) -> Experiment:
    """`dvc exp save`: the workspace's params, metrics and dvc.lock committed to an experiment ref (the workspace
    and its branch are left as they are)."""
    baseline = git(root, "rev-parse", "HEAD")
    # Files git does not track yet but does not ignore either: the stages' metrics and plots (cache: false), the
    # .gitignore files DVC writes for new outs, and any new code. Left out, the ref could not rebuild the model.
    untracked = git(root, "ls-files", "--others", "--exclude-standard").splitlines()
    with open_repo(root) as repo:
        repo.experiments.save(name=name, force=True, include_untracked=untracked or None)
    ref = experiment_ref(baseline, name)
    return Experiment(name=name, ref=ref, commit=git(root, "rev-parse", ref), baseline=baseline)


def run_experiment(root: Path, name: str, overrides: dict[str, Any],
                   echo: Callable[[str], Any] | None = None) -> Experiment:
    """`dvc exp run --temp -S key=value ...`: the whole DAG in DVC's temporary copy of the repo.

    A subprocess, not the Python API: DVC's temp executor changes the working directory of the process it runs
    in, which a Prefect worker (or any caller) must not see. Its output goes line by line to `echo` (the Prefect
    task's logger) or this module's logger.
    """
    baseline = git(root, "rev-parse", "HEAD")
    command = [_dvc(), "exp", "run", "--temp", "--name", name]
    for key, value in overrides.items():
        command += ["-S", f"{key}={value}"]
    log.info("experiment %s: %s", name, " ".join(command))
    _stream(command, root, echo or log.info)
    ref = experiment_ref(baseline, name)
    return Experiment(name=name, ref=ref, commit=git(root, "rev-parse", ref), baseline=baseline)


def _dvc() -> str:
    local = Path(sys.executable).parent / "dvc"
    return str(local) if local.exists() else "dvc"


def _stream(command: list[str], cwd: Path, echo: Callable[[str], Any]) -> str:
    env = {**os.environ, "PATH": _venv_path()}
    lines: list[str] = []
    with subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace") as process:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            echo(line.rstrip("\n"))
    if process.returncode != 0:
        raise StageFailed(f"{' '.join(command[:3])} failed (exit {process.returncode}):\n"
                          + "\n".join(lines[-OUTPUT_TAIL_LINES:]))
    return "\n".join(lines)


def default_dvc_remote(root: Path) -> str | None:
    with open_repo(root) as repo:
        return repo.config["core"].get("remote")


def push_experiment(root: Path, experiment: Experiment, git_remote: str | None) -> dict[str, Any]:
    """Send the experiment's data and model to the DVC remote, and its ref to `git_remote` (`dvc exp push`).

    Without a git remote the ref stays in this repository (reproducible here, not from a fresh clone); without a
    DVC default remote nothing can be sent and the result says so.
    """
    remote = default_dvc_remote(root)
    with open_repo(root) as repo:
        if git_remote:
            repo.experiments.push(git_remote, [experiment.name], push_cache=remote is not None)
        elif remote is not None:
            repo.push(revs=[experiment.commit], workspace=False)
    if remote is None:
        return {"git_remote": git_remote, "dvc_remote": None,
                "note": "no DVC default remote: data and model stay in this machine's DVC cache"}
    return {"git_remote": git_remote, "dvc_remote": remote,
            "note": "" if git_remote else "versioning.git_remote is null: the ref stays in this repository"}


def push_outputs(root: Path) -> dict[str, Any]:
    """`dvc push` of the workspace's outputs (and the run cache) to the default remote: what a run in a throwaway
    clone made, so the next run on any machine pulls it instead of making it again."""
    remote = default_dvc_remote(root)
    if remote is None:
        return {"dvc_remote": None, "note": "no DVC default remote: nothing pushed"}
    with open_repo(root) as repo:
        pushed = repo.push(run_cache=True)
    return {"dvc_remote": remote, "files": pushed}


def show_file(root: Path, commit: str, path: Path | str) -> str | None:
    """A git-tracked file (metrics, params, dvc.lock) as it is in `commit`; None if it is not there."""
    done = subprocess.run(["git", "show", f"{commit}:{Path(path).as_posix()}"], cwd=root, capture_output=True,
                          text=True, timeout=60)
    return done.stdout if done.returncode == 0 else None


def experiment_record(experiment: Experiment, pushed: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**asdict(experiment), **({"pushed": pushed} if pushed is not None else {})}


def read_run_summary(params: Any, root: Path) -> dict[str, Any]:
    """What a run of the DAG left in `root` (the stages' files), in the shape of `training_summary_markdown`:
    the stages ran as DVC commands, so their results are read back from their outputs, not returned."""
    import pyarrow.parquet as pq

    from pipelines.contracts import CandidatesReport, EvaluationReport, GateReport, ModelMeta

    paths = params.paths

    def here(path: Path) -> Path:
        return path if path.is_absolute() else root / path

    validation = io.read_json(here(paths.validation_dir / io.VALIDATION_SUMMARY_FILE)) or {}
    splits = {split: pq.ParquetFile(here(io.prepared_path(paths, split))).metadata.num_rows
              for split in io.SPLITS if here(io.prepared_path(paths, split)).exists()}
    model = ModelMeta.load(here(paths.model_dir))
    return {
        "collect": {"rows": validation.get("rows", 0)},
        "validate": validation,
        "splits": splits,
        "train": {"family": model.family, "best_iteration": model.best_iteration, "threshold": model.threshold,
                  "valid_metrics": model.valid_metrics, "search": model.search} if model is not None else
                 {"family": "lightgbm", "best_iteration": None, "threshold": float("nan"), "valid_metrics": None,
                  "search": None},
        "evaluate": _stored_json(EvaluationReport, here(paths.metrics_dir)),
        "candidates": _stored_json(CandidatesReport, here(paths.metrics_dir)),
        "gate": _stored_json(GateReport, here(paths.metrics_dir)),
    }


def _stored_json(record: Any, metrics_dir: Path) -> Any:
    """A stage's report in `metrics_dir` (a contract with `load`) in its JSON form, or None when it did not run."""
    report = record.load(metrics_dir)
    return None if report is None else report.to_json_dict()
