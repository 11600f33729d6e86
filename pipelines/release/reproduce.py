"""Rebuild a registered model from its registry entry and say whether it came out the same, and if not, why.

`python -m pipelines reproduce <tag> [--check]`: the entry's lineage (pipelines.release.lineage) names the experiment
ref (or commit) holding the dvc.lock that built the model. That revision is checked out in a temporary git worktree
(fetched from the git remote when this clone lacks it), the raw table it was trained on is restored from the DVC
remote (`dvc pull collect`: the exact rows, even if the source has changed since), and the stages from validate to
evaluate are re-run with `dvc repro --force`. The gate is not re-run: the registry and the champion are left alone.

Identical means: the rebuilt learner file (`model.txt`; `model.pkl` for the scikit-learn families, whose fits
are deterministic too) has the md5 the registry recorded, and `metrics/evaluate.json` equals the one committed
with the experiment; and where the entry carries the inference variants `python -m pipelines optimize --tag` made of
it (`variants.json`), optimize rerun on the rebuilt model (this checkout's code, the settings that report records)
gives the same variants: same trees, features, file sizes, ROC AUCs and probability differences, exactly.
Otherwise the report names each difference and its likely cause: the data (md5 vs the lineage), the packages
(uv.lock md5 of this environment vs the one recorded), a dirty tree at training time, and the first stage whose
outputs differ from the recorded dvc.lock.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from pipelines.config import Params
from pipelines.contracts import EvaluationReport, Lineage, ModelMeta, VariantsReport, model_file
from pipelines.io import DVC_LOCK_FILE as LOCK_FILE
from pipelines.io import EVALUATE_FILE, PACKAGE_LOCK, PARAMS_FILE
from pipelines.io import file_md5 as _file_md5
from pipelines.release import versioning
from pipelines.release.lineage import built_at, git, has_commit, locked_out_md5, not_built_at

log = logging.getLogger(__name__)

# Re-run with --force on the restored raw table: everything that turns data into the model and its metrics.
REBUILT_STAGES = ("validate", "preprocess", "train", "evaluate")


class ReproduceError(RuntimeError):
    """The model cannot be rebuilt (no lineage, ref or data not found); the message says what is missing."""


def _remotes(root: Path, preferred: str | None) -> list[str]:
    known = git(root, "remote", check=False).split()
    return [r for r in dict.fromkeys([preferred, "origin", *known]) if r and r in known]


def resolve_revision(root: Path, lineage: Lineage, git_remote: str | None) -> tuple[str, str]:
    """(commit, where it came from) holding the dvc.lock that built the model; fetched from a git remote if needed.

    An experiment's ref, or for a plain `dvc repro` the commit it ran on or the later one that committed its
    dvc.lock (`lineage.built_at`).
    """
    code = lineage.uncommitted_code()
    if code:
        raise ReproduceError(f"the model was trained from a tree with uncommitted changes ({code}) "
                             "and no experiment ref holds that code: it cannot be rebuilt")
    wanted = lineage.ref or lineage.git_commit
    commit = built_at(root, lineage)
    for remote in ([] if commit else _remotes(root, git_remote)):
        git(root, "fetch", "--quiet", remote, check=False)  # its branches: a later commit may hold the dvc.lock
        if not has_commit(root, wanted):
            refspec = f"+{wanted}:{wanted}" if wanted.startswith("refs/") else wanted
            git(root, "fetch", "--quiet", remote, refspec, check=False)
        commit = built_at(root, lineage)
        if commit:
            break
    if commit is None and not has_commit(root, wanted):
        what = f"experiment ref {wanted}" if lineage.ref else f"commit {wanted}"
        raise ReproduceError(f"{what} is not in this repository nor its git remotes "
                             f"({_remotes(root, git_remote) or 'none configured'}): was it pushed "
                             "(`dvc exp push`, versioning.git_remote)?")
    if commit is None:
        edited = (" with params " + ", ".join(f"{key}={change['run']}" for key, change in lineage.params_diff.items())
                  if lineage.params_diff else "")
        checked = "\n".join(f"  {line}" for line in not_built_at(root, lineage))
        raise ReproduceError(
            f"no commit here holds the dvc.lock that built the model: it was trained by a plain `dvc repro` at "
            f"commit {wanted[:12]} on data {lineage.data_md5}{edited}, and each commit that could hold the run's "
            f"dvc.lock differs from the run:\n{checked}\nCommit the dvc.lock (and params.yaml) that run wrote, then "
            f"reproduce again; if a later run has rewritten them, run `dvc repro` at {wanted[:12]} again and commit "
            f"its dvc.lock")
    if lineage.ref:
        what = f"experiment ref {commit}"
    elif commit == lineage.git_commit:
        what = f"commit {commit} (no experiment ref: a plain `dvc repro`)"
    else:
        what = f"commit {commit}, which committed the dvc.lock of the plain `dvc repro` run at {lineage.git_commit}"
    return git(root, "rev-parse", f"{commit}^{{commit}}"), what


def _prepare_worktree(root: Path, worktree: Path, commit: str) -> None:
    """A detached worktree at `commit` whose DVC uses this repository's cache and remotes (config.local)."""
    git(root, "worktree", "add", "--quiet", "--detach", str(worktree), commit)
    local = root / ".dvc" / "config.local"
    text = local.read_text() if local.exists() else ""
    if "[cache]" not in text:
        text += f"\n[cache]\n    dir = {(root / '.dvc' / 'cache').resolve()}\n"
    (worktree / ".dvc" / "config.local").write_text(text)


def _pull_raw_table(worktree: Path) -> None:
    from dvc.config import NoRemoteError
    from dvc.exceptions import DvcException

    target = versioning.stage_target(worktree, "collect")
    try:
        with versioning.open_repo(worktree) as repo:
            try:
                repo.pull(targets=[target])
            except NoRemoteError:
                repo.checkout(targets=[target])  # no DVC remote: this machine's cache must hold the data
    except DvcException as error:
        raise ReproduceError(f"the training data could not be restored from the DVC remote: {error}") from error


def _differences(recorded: Any, rebuilt: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two JSON documents."""
    if isinstance(recorded, dict) and isinstance(rebuilt, dict):
        out: list[str] = []
        for key in sorted(recorded.keys() | rebuilt.keys()):
            out += _differences(recorded.get(key), rebuilt.get(key), f"{prefix}.{key}" if prefix else str(key))
        return out
    return [] if recorded == rebuilt else [f"{prefix}: {recorded} -> {rebuilt}"]


def _stage_differences(recorded_lock: dict[str, Any], rebuilt_lock: dict[str, Any]) -> list[str]:
    """Stages (DAG order) whose out hashes differ between the recorded dvc.lock and the rebuild's."""
    return [stage for stage in versioning.STAGES
            if stage in (recorded_lock.get("stages") or {}) and stage in (rebuilt_lock.get("stages") or {})
            and _outs(recorded_lock, stage) != _outs(rebuilt_lock, stage)]


def _outs(lock: dict[str, Any], stage: str) -> dict[str, str | None]:
    return {out["path"]: out.get("md5") for out in lock["stages"][stage].get("outs") or []}


def file_md5(path: Path) -> str | None:
    """The file's MD5 (pipelines.io), or None where the rebuild did not produce it: the report says what is missing."""
    return _file_md5(path) if path.exists() else None


def _comparable_variants(report: VariantsReport) -> dict[str, Any]:
    """What a rerun of optimize must give again: each variant by name, without where the full model's file lay (an
    absolute path, another one in the rebuild's worktree) nor the settings, which are the rerun's input."""
    data = report.to_json_dict()
    data.pop("settings", None)
    data["variants"] = {record["name"]: {key: value for key, value in record.items()
                                         if not (key == "file" and record["parent"] is None)}
                        for record in data["variants"]}
    return data


def reproduce_variants(recorded: VariantsReport, params: Params, model_dir: Path) -> dict[str, Any]:
    """Rerun `optimize` on the model in `model_dir` (paths and training seed from `params`, optimize's settings from
    the `recorded` report, `params`' own where it records none) and compare it with `recorded`, field by field.

    Exact, no tolerance: the refits train with the model's recorded params (threads included) on the same rows, the
    cuts and conversions are deterministic, and the figures are stored as computed, so any difference is a real one
    (another package version, other data)."""
    from pipelines.config import OptimizeParams
    from pipelines.model.optimize import run_optimize

    settings = OptimizeParams.model_validate(recorded.settings) if recorded.settings else params.optimize
    rebuilt = run_optimize(params.model_copy(update={"optimize": settings}), model_dir)
    differences = _differences(_comparable_variants(recorded), _comparable_variants(rebuilt))
    return {"identical": not differences, "variants": [record.name for record in recorded.variants],
            "settings": "recorded" if recorded.settings else "the revision's params.yaml (none recorded)",
            "differences": differences[:20]}


def _rooted(params: Params, root: Path) -> Params:
    """`params` with its relative paths taken under `root` (the rebuild's worktree), for steps run in this process."""
    paths = {name: root / value for name, value in params.paths if isinstance(value, Path)}
    return params.model_copy(update={"paths": params.paths.model_copy(update=paths)})


def reproduce(tag: str, root: Path, git_remote: str | None = None, keep: Path | None = None,
              store: Any = None) -> dict[str, Any]:
    """Rebuild `tag` from its lineage in a temporary worktree of the repository at `root`; returns the report.

    `store`: the registry holding the entry (a remote's index, read without downloading the model); default: this
    machine's BentoML store."""
    from pipelines.config import load_params
    from pipelines.release import registry

    started = time.perf_counter()
    entry = registry.model_entry(tag, store)
    lineage = entry.lineage
    if lineage is None:
        raise ReproduceError(f"{tag} has no lineage in its registry entry (registered before lineage was "
                             "recorded): its commit, data and params are unknown")
    commit, source = resolve_revision(root, lineage, git_remote)
    temp = Path(tempfile.mkdtemp(prefix="reproduce-"))
    worktree = temp / "worktree"
    try:
        _prepare_worktree(root, worktree, commit)
        _pull_raw_table(worktree)
        recorded_lock = yaml.safe_load(versioning.show_file(root, commit, LOCK_FILE) or "{}") or {}
        params = load_params(worktree / PARAMS_FILE)
        data_md5 = file_md5(worktree / params.paths.raw_table)
        for stage in REBUILT_STAGES:
            versioning.run_stage(worktree, stage, force=True)
        rebuilt_lock = yaml.safe_load((worktree / LOCK_FILE).read_text()) or {}
        rebuilt_dir = worktree / params.paths.model_dir
        model_md5 = file_md5(model_file(rebuilt_dir)) if ModelMeta.path(rebuilt_dir).exists() else None
        # The evaluation committed with the model's dvc.lock, else the one its registry entry holds.
        evaluate_file = params.paths.metrics_dir / EVALUATE_FILE
        recorded_text = versioning.show_file(root, commit, evaluate_file)
        recorded = (EvaluationReport.parse(json.loads(recorded_text), f"{commit}:{evaluate_file}") if recorded_text
                    else entry.metrics.evaluate)
        recorded_metrics = None if recorded is None else recorded.to_json_dict()
        rebuilt = EvaluationReport.load(worktree / params.paths.metrics_dir)
        rebuilt_metrics = None if rebuilt is None else rebuilt.to_json_dict()
        recorded_variants = VariantsReport.load(registry.model_path(tag, store))
        if recorded_variants is None:
            variants = None
        elif model_md5 != entry.model_md5:
            variants = {"identical": False, "variants": [record.name for record in recorded_variants.variants],
                        "differences": ["not rerun: the rebuilt model itself differs"]}
        else:
            variants = reproduce_variants(recorded_variants, _rooted(params, worktree), rebuilt_dir)
        if keep is not None:
            shutil.copytree(worktree, keep, ignore=shutil.ignore_patterns(".git"), dirs_exist_ok=True)
    finally:
        git(root, "worktree", "remove", "--force", str(worktree), check=False)
        shutil.rmtree(temp, ignore_errors=True)
    metric_changes = _differences(recorded_metrics, rebuilt_metrics) if recorded_metrics is not None else [
        "no recorded metrics to compare with"]
    report = {
        "tag": tag, "source": source, "commit": commit,
        "identical": (model_md5 == entry.model_md5 and not metric_changes
                      and (variants is None or variants["identical"])),
        "model_md5": {"registry": entry.model_md5, "rebuilt": model_md5},
        "metrics_identical": not metric_changes, "metric_differences": metric_changes[:20],
        "variants": variants,  # None: the entry carries no variants.json (optimize --tag was not run on it)
        # Informational: outs also hold run-specific bytes (model.json's and candidates.json's timings), so a stage
        # can differ here while the model file and the metrics, what a rebuild must match, are identical.
        "stages_with_different_outputs": _stage_differences(recorded_lock, rebuilt_lock),
        "why": _causes(lineage, data_md5, root, recorded_lock),
        "seconds": round(time.perf_counter() - started, 1),
        "command": lineage.reproduce_command(tag),
    }
    if report["identical"]:
        report["why"] = []
    return report


def _causes(lineage: Lineage, data_md5: str | None, root: Path, recorded_lock: dict[str, Any]) -> list[str]:
    """What differs between the model's recorded inputs and the rebuild's: the usual reasons a rebuild differs."""
    causes = []
    if lineage.data_md5 and data_md5 != lineage.data_md5:
        causes.append(f"data: the restored raw table has md5 {data_md5}, the model was trained on {lineage.data_md5}")
    locked = locked_out_md5(recorded_lock, "collect")
    if locked and lineage.data_md5 and locked != lineage.data_md5:
        causes.append(f"the revision's dvc.lock records data {locked}, not the model's {lineage.data_md5}: "
                      "it is not the run that built the model")
    here = file_md5(root / PACKAGE_LOCK)
    if lineage.uv_lock_md5 and here != lineage.uv_lock_md5:
        causes.append(f"packages: this environment's {PACKAGE_LOCK} (md5 {here}) is not the one the model was built "
                      f"with ({lineage.uv_lock_md5}); `uv sync --frozen` at commit {lineage.git_commit} first")
    dirty = [path for path in lineage.dirty_files if path != PARAMS_FILE]  # params: the revision holds the run's
    if dirty:
        causes.append(f"the tree was dirty at training time: {', '.join(dirty)}")
    return causes or ["no recorded input differs: the stages are not deterministic (threads, Dask worker count?)"]
