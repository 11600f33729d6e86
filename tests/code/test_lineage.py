"""Lineage captured in a real (tiny) git repo: commit, dirty files (the DAG's own outputs excepted), the experiment
ref DVC will give the run, the data hash from dvc.lock, the params diff, the package lock hash."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
import yaml

from pipelines.contracts import RegistryEntry
from pipelines.release.lineage import Lineage, capture, experiment_ref, params_diff


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"collect": {"end": "2013-06-01"}, "train": {"seed": 42}}))
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "uv.lock").write_text("lock v1\n")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "evaluate.json").write_text("{}\n")
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(
        {"stages": {"collect": {"outs": [{"path": "data/raw/table.parquet", "md5": "abc123"}]}}}))
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-qm", "base")
    return tmp_path


def test_a_clean_workspace_run(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.delenv("DVC_EXP_BASELINE_REV", raising=False)
    # The run itself rewrites its metrics and dvc.lock: a result, not a dirty tree.
    (repo / "metrics" / "evaluate.json").write_text('{"auc": 0.7}\n')
    (repo / "dvc.lock").write_text((repo / "dvc.lock").read_text() + "# rewritten\n")
    lineage = capture(repo, [Path("metrics")])
    assert lineage.git_commit == _git(repo, "rev-parse", "HEAD")
    assert not lineage.git_dirty and lineage.dirty_files == []
    assert lineage.experiment is None and lineage.ref is None
    assert lineage.data_md5 == "abc123"
    assert lineage.params_diff == {}
    assert lineage.uv_lock_md5 == hashlib.md5(b"lock v1\n").hexdigest()  # noqa: S324


def test_an_experiment_with_overrides_and_changed_code(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    baseline = _git(repo, "rev-parse", "HEAD")
    monkeypatch.setenv("DVC_EXP_NAME", "retrain-until-20130615-x")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", baseline)
    (repo / "params.yaml").write_text(yaml.safe_dump({"collect": {"end": "2013-06-15"}, "train": {"seed": 42}}))
    (repo / "code.py").write_text("x = 2\n")
    (repo / "new_step.py").write_text("y = 1\n")  # new code git would commit: the commit lacks it too
    (repo / "data").mkdir()
    (repo / "data" / ".gitignore").write_text("/table.parquet\n")  # what DVC writes beside a new out
    lineage = capture(repo, [Path("metrics")])
    assert lineage.ref == f"refs/exps/{baseline[:2]}/{baseline[2:]}/retrain-until-20130615-x"
    assert lineage.experiment == "retrain-until-20130615-x"
    assert lineage.git_dirty and lineage.dirty_files == ["code.py", "new_step.py"]
    assert lineage.params_diff == {"collect.end": {"repo": "2013-06-01", "run": "2013-06-15"}}
    # Through the registry's metadata and back (BentoML drops nulls): the same record.
    assert RegistryEntry.from_metadata(RegistryEntry(lineage=lineage).to_metadata()).lineage == lineage


def test_outside_git_the_lineage_says_so(tmp_path: Path) -> None:
    lineage = capture(tmp_path, [])
    assert lineage.git_commit == "unknown" and lineage.git_dirty


def test_a_plain_run_with_edited_params_is_dirty_an_experiment_is_not(repo: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.delenv("DVC_EXP_BASELINE_REV", raising=False)
    params = repo / "params.yaml"
    params.write_text("# a comment, the same values\n" + params.read_text())
    assert not capture(repo, [Path("metrics")]).git_dirty  # text, not values: nothing the run used changed
    params.write_text(yaml.safe_dump({"collect": {"end": "2013-06-01"}, "train": {"seed": 7}}))
    plain = capture(repo, [Path("metrics")])
    assert plain.git_dirty and plain.dirty_files == ["params.yaml"]
    assert plain.params_diff == {"train.seed": {"repo": 42, "run": 7}}
    assert plain.uncommitted_code() == []  # params alone: a later commit of params.yaml and dvc.lock can hold it
    monkeypatch.setenv("DVC_EXP_NAME", "exp-x")  # `dvc exp run -S train.seed=7`: the experiment commits them
    assert not capture(repo, [Path("metrics")]).git_dirty


def test_params_diff_and_refs() -> None:
    before = yaml.safe_dump({"a": {"b": 1, "c": [1, 2]}, "gone": 1})
    after = yaml.safe_dump({"a": {"b": 2, "c": [1, 2]}, "new": True})
    assert params_diff(before, after) == {"a.b": {"repo": 1, "run": 2}, "gone": {"repo": 1, "run": None},
                                          "new": {"repo": None, "run": True}}
    assert experiment_ref("0123456789abcdef", "n") == "refs/exps/01/23456789abcdef/n"
    assert RegistryEntry.from_metadata({}).lineage is None
    command = Lineage(git_commit="c", git_dirty=False).reproduce_command("m:1")
    assert command == "python -m pipelines reproduce m:1 --check"


def test_reproduce_is_told_what_differs_in_each_commit_that_could_hold_the_run(repo: Path) -> None:
    """`reproduce --check` of a plain `dvc repro` model whose dvc.lock no commit holds names, per commit checked,
    what differs from the run: the data its dvc.lock records, the params, or the code since the run's commit."""
    from pipelines.release.lineage import built_at, not_built_at

    head = _git(repo, "rev-parse", "HEAD")
    edited = Lineage(git_commit=head, git_dirty=True, dirty_files=["params.yaml"], data_md5="abc123",
                     params_diff={"train.seed": {"repo": 42, "run": 7}})
    assert built_at(repo, edited) is None
    assert not_built_at(repo, edited) == [
        f"{head[:12]}: params: its params.yaml differs from the run's in train.seed (run: train.seed=7)"]
    other_data = Lineage(git_commit=head, git_dirty=False, data_md5="fff000")
    assert not_built_at(repo, other_data) == [
        f"{head[:12]}: lock: its dvc.lock records data abc123, the model was trained on fff000"]
    # A later commit with the run's data in its dvc.lock, but other code than the run's: named as code.
    (repo / "dvc.lock").write_text(yaml.safe_dump({"stages": {"collect": {
        "deps": [{"path": "code.py", "md5": "c0"}], "outs": [{"path": "data/raw/table.parquet", "md5": "fff000"}]}}}))
    (repo / "code.py").write_text("x = 3\n")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-qm", "later")
    later = _git(repo, "rev-parse", "HEAD")
    assert not_built_at(repo, other_data)[1] == f"{later[:12]}: code: code.py changed since {head[:12]}"
