"""The registry reuses a stored version of a model file only when its lineage holds in this repository.

The BentoML store is the machine's, shared by every clone: the same deterministic model file trained in two clones
must not carry the first clone's experiment ref into the second, where `reproduce` cannot find it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from pipelines.release import registry
from pipelines.release.lineage import Lineage, built_at, experiment_ref, rebuildable_here


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@localhost", *args], cwd=root, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture
def clones(tmp_path: Path) -> tuple[Path, Path, str, str]:
    """Clone `a` with an experiment commit and ref of its own, clone `b` of the shared base only."""
    origin = tmp_path / "origin"
    origin.mkdir()
    (origin / "params.yaml").write_text("train: {seed: 1}\n")
    _git(origin, "init", "-q")
    _git(origin, "add", "-A")
    _git(origin, "commit", "-qm", "base")
    base = _git(origin, "rev-parse", "HEAD")
    a, b = tmp_path / "a", tmp_path / "b"
    for clone in (a, b):
        _git(tmp_path, "clone", "-q", "--no-local", str(origin), str(clone))
    (a / "params.yaml").write_text("train: {seed: 2}\n")
    _git(a, "commit", "-qam", "experiment")
    ref = experiment_ref(base, "retrain-until-20130923-x")
    _git(a, "update-ref", ref, "HEAD")
    _git(a, "reset", "-q", "--hard", base)  # the workspace is back on the baseline, as after `dvc exp run`
    return a, b, base, ref


def _register(model_dir: Path, name: str, md5: str, recorded: Lineage | dict | str) -> str:
    shown = recorded.model_dump(mode="json") if isinstance(recorded, Lineage) else recorded
    return registry.save_model(model_dir, {"model_md5": md5, "lineage": shown}, name=name)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.txt").write_text("the same bytes in every clone\n")
    return folder


def _name(tmp_path: Path) -> str:
    return f"lineage-{tmp_path.name[-10:].lower().replace('_', '-')}"


def test_a_version_from_another_clones_experiment_is_not_reused(clones, model_dir: Path, tmp_path: Path) -> None:
    a, b, base, ref = clones
    name = _name(tmp_path)
    from_a = _register(model_dir, name, "m1", Lineage(git_commit=base, git_dirty=False, experiment="x", ref=ref))
    assert rebuildable_here(a, Lineage(git_commit=base, git_dirty=False, ref=ref))
    assert not rebuildable_here(b, Lineage(git_commit=base, git_dirty=False, ref=ref))
    assert registry.find_by_model_hash("m1", name=name, root=a) == from_a
    assert registry.find_by_model_hash("m1", name=name, root=b) is None  # b registers its own version
    assert registry.find_by_model_hash("other", name=name, root=a) is None


def test_a_clean_commit_both_clones_hold_is_reused_and_the_newest_wins(clones, model_dir: Path,
                                                                       tmp_path: Path) -> None:
    a, b, base, _ = clones
    name = _name(tmp_path)
    plain = Lineage(git_commit=base, git_dirty=False)
    older = _register(model_dir, name, "m2", plain)
    newer = _register(model_dir, name, "m2", plain)
    assert registry.find_by_model_hash("m2", name=name, root=b) == newer != older
    missing = Lineage(git_commit="f" * 40, git_dirty=False)  # a commit no clone here holds
    _register(model_dir, name, "m3", missing)
    assert registry.find_by_model_hash("m3", name=name, root=a) is None


def test_a_dirty_run_reuses_only_its_own_version(clones, model_dir: Path, tmp_path: Path) -> None:
    a, _, base, _ = clones
    name = _name(tmp_path)
    dirty = Lineage(git_commit=base, git_dirty=True, dirty_files=["pipelines/model/train.py"])
    tag = _register(model_dir, name, "m4", dirty)
    assert registry.find_by_model_hash("m4", name=name, root=a) is None  # no revision rebuilds it
    assert registry.find_by_model_hash("m4", name=name, root=a, current=dirty) == tag  # re-gated, same run
    other = Lineage(git_commit=base, git_dirty=True, dirty_files=["pipelines/features.py"])
    assert registry.find_by_model_hash("m4", name=name, root=a, current=other) is None


def test_the_same_bytes_keep_one_tag_in_one_repository(clones, model_dir: Path, tmp_path: Path) -> None:
    """A re-gate after an uncommitted params change (its lineage differs: params_diff) registered the same model
    under a second tag and refused it against itself (#36). In one repository the bytes keep their tag; another
    repository (another clone) still registers its own, rebuildable there."""
    a, b, base, _ = clones
    name = _name(tmp_path)
    first = Lineage(git_commit=base, git_dirty=True, dirty_files=["params.yaml"], repository=str(a),
                    params_diff={"monitor.min_window_rows": {"repo": 1000, "run": 500}})
    tag = _register(model_dir, name, "m7", first)
    later = first.model_copy(update={"params_diff": {"gate.min_improvement": {"repo": 0.002, "run": 0.0}}})
    assert registry.find_by_model_hash("m7", name=name, root=a, current=later) == tag
    elsewhere = later.model_copy(update={"repository": str(b)})
    assert registry.find_by_model_hash("m7", name=name, root=b, current=elsewhere) is None


def test_versions_without_usable_lineage_are_skipped_not_fatal(clones, model_dir: Path, tmp_path: Path) -> None:
    a, _, base, _ = clones
    name = _name(tmp_path)
    _register(model_dir, name, "m5", "no")  # saved by hand or by an older pipeline
    _register(model_dir, name, "m5", {"git_dirty": False})  # no commit recorded
    assert registry.find_by_model_hash("m5", name=name, root=a) is None
    good = _register(model_dir, name, "m5", Lineage(git_commit=base, git_dirty=False))
    assert registry.find_by_model_hash("m5", name=name, root=a) == good


def _lock(data_md5: str) -> str:
    return yaml.safe_dump({"schema": "2.0", "stages": {
        "collect": {"cmd": "python -m pipelines collect", "deps": [{"path": "pipelines/data/collect.py", "md5": "c0"}],
                    "outs": [{"path": "data/raw/table.parquet", "md5": data_md5}]},
        "train": {"cmd": "python -m pipelines train", "deps": [{"path": "pipelines", "md5": "p0.dir"}],
                  "outs": [{"path": "models/candidate", "md5": "m0.dir"}]},
        # A later stage reads an earlier one's outs (metrics git tracks): results of the run, not its code.
        "evaluate": {"cmd": "python -m pipelines evaluate", "deps": [{"path": "models/candidate", "md5": "m0.dir"}],
                     "outs": [{"path": "metrics/evaluate.json", "md5": "e0"}]},
        "gate": {"cmd": "python -m pipelines gate", "deps": [{"path": "metrics/evaluate.json", "md5": "e0"}],
                 "outs": [{"path": "metrics/gate.json", "md5": "g0"}]}}})


@pytest.fixture
def plain_runs(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """`dvc repro` runs on a branch, each committed after it ran, as a user does; the workspace ends on `main`.

    base (lock: data A) -> locked (lock: data B, metrics, docs: the run at base committed) -> coded (train.py
    changed, lock: data C) -> tuned (params seed 2 and lock: data D, committed together).
    """
    repo = tmp_path / "runs"
    (repo / "pipelines").mkdir(parents=True)
    (repo / "pipelines" / "train.py").write_text("v1\n")
    (repo / "params.yaml").write_text("train: {seed: 1}\n")
    (repo / "dvc.lock").write_text(_lock("A"))
    (repo / "README.md").write_text("a\n")
    _git(repo, "init", "-q", "-b", "main")
    commits = {}

    def commit(name: str, files: dict[str, str]) -> None:
        for path, text in files.items():
            (repo / path).parent.mkdir(parents=True, exist_ok=True)
            (repo / path).write_text(text)
        _git(repo, "add", "-A")
        _git(repo, "commit", "-qm", name)
        commits[name] = _git(repo, "rev-parse", "HEAD")

    commit("base", {})
    _git(repo, "checkout", "-q", "-b", "work")
    commit("locked", {"dvc.lock": _lock("B"), "metrics/evaluate.json": "{}\n", "metrics/gate.json": "{}\n",
                      "README.md": "b\n"})
    commit("coded", {"pipelines/model/train.py": "v2\n", "dvc.lock": _lock("C")})
    commit("tuned", {"params.yaml": "train: {seed: 2}\n", "dvc.lock": _lock("D")})
    _git(repo, "checkout", "-q", "main")
    return repo, commits


def test_a_plain_runs_model_is_built_at_the_commit_that_holds_its_dvc_lock(plain_runs) -> None:
    repo, commits = plain_runs
    base = commits["base"]
    # Its own commit's dvc.lock records the data: that commit.
    assert built_at(repo, Lineage(git_commit=base, git_dirty=False, data_md5="A")) == base
    # Run at base, dvc.lock committed next (with metrics and docs, no code): the later commit, found on any branch.
    assert built_at(repo, Lineage(git_commit=base, git_dirty=False, data_md5="B")) == commits["locked"]
    # A later dvc.lock with the same code but other data is not it; one with other code never is.
    assert built_at(repo, Lineage(git_commit=base, git_dirty=False, data_md5="C")) is None
    assert built_at(repo, Lineage(git_commit=commits["locked"], git_dirty=False, data_md5="C")) is None
    assert built_at(repo, Lineage(git_commit=commits["coded"], git_dirty=False, data_md5="C")) == commits["coded"]
    # Uncommitted params at the run: the commit whose params.yaml holds the run's values, and no other.
    tuned = Lineage(git_commit=commits["coded"], git_dirty=True, dirty_files=["params.yaml"], data_md5="D",
                    params_diff={"train.seed": {"repo": 1, "run": 2}})
    assert built_at(repo, tuned) == commits["tuned"]
    assert built_at(repo, tuned.model_copy(update={"params_diff": {"train.seed": {"repo": 1, "run": 3}}})) is None
    # Uncommitted code: no commit holds what ran.
    assert built_at(repo, Lineage(git_commit=base, git_dirty=True, dirty_files=["pipelines/model/train.py"],
                                  data_md5="B")) is None
    # An experiment's ref holds its own dvc.lock; lineages from before data_md5 name their clean commit.
    _git(repo, "update-ref", "refs/exps/x", commits["coded"])
    assert built_at(repo, Lineage(git_commit=base, git_dirty=True, dirty_files=["pipelines/model/train.py"],
                                  ref="refs/exps/x")) == "refs/exps/x"
    assert built_at(repo, Lineage(git_commit=base, git_dirty=True, ref="refs/exps/gone")) is None
    assert built_at(repo, Lineage(git_commit=base, git_dirty=False)) == base
    assert built_at(repo, Lineage(git_commit="f" * 40, git_dirty=False, data_md5="A")) is None
    assert Lineage(git_commit="unknown", git_dirty=True).uncommitted_code() == ["(not a git repository)"]


def test_a_stored_version_is_reused_only_where_its_dvc_lock_is_committed(plain_runs, model_dir: Path,
                                                                          tmp_path: Path) -> None:
    repo, commits = plain_runs
    name = _name(tmp_path)
    run = Lineage(git_commit=commits["base"], git_dirty=False, data_md5="B")
    tag = _register(model_dir, name, "m6", run)
    assert registry.find_by_model_hash("m6", name=name, root=repo) == tag
    _git(repo, "branch", "-q", "-D", "work")  # the commit of its dvc.lock is gone from this clone
    assert registry.find_by_model_hash("m6", name=name, root=repo) is None
    assert registry.find_by_model_hash("m6", name=name, root=repo, current=run) == tag  # the run itself, re-gated
