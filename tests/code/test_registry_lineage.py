"""The registry reuses a stored version of a model file only when its lineage holds in this repository.

The BentoML store is the machine's, shared by every clone: the same deterministic model file trained in two clones
must not carry the first clone's experiment ref into the second, where `reproduce` cannot find it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipelines import registry
from pipelines.lineage import Lineage, experiment_ref, rebuildable_here


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
    dirty = Lineage(git_commit=base, git_dirty=True, dirty_files=["pipelines/train.py"])
    tag = _register(model_dir, name, "m4", dirty)
    assert registry.find_by_model_hash("m4", name=name, root=a) is None  # no revision rebuilds it
    assert registry.find_by_model_hash("m4", name=name, root=a, current=dirty) == tag  # re-gated, same run
    other = Lineage(git_commit=base, git_dirty=True, dirty_files=["pipelines/features.py"])
    assert registry.find_by_model_hash("m4", name=name, root=a, current=other) is None


def test_versions_without_usable_lineage_are_skipped_not_fatal(clones, model_dir: Path, tmp_path: Path) -> None:
    a, _, base, _ = clones
    name = _name(tmp_path)
    _register(model_dir, name, "m5", "no")  # saved by hand or by an older pipeline
    _register(model_dir, name, "m5", {"git_dirty": False})  # no commit recorded
    assert registry.find_by_model_hash("m5", name=name, root=a) is None
    good = _register(model_dir, name, "m5", Lineage(git_commit=base, git_dirty=False))
    assert registry.find_by_model_hash("m5", name=name, root=a) == good


def test_the_revision_a_lineage_names() -> None:
    assert Lineage(git_commit="c" * 40, git_dirty=True, ref="refs/exps/x").revision() == "refs/exps/x"
    assert Lineage(git_commit="c" * 40, git_dirty=False).revision() == "c" * 40
    assert Lineage(git_commit="c" * 40, git_dirty=True).revision() is None
    assert Lineage(git_commit="unknown", git_dirty=False).revision() is None
