"""A retrain learns only from a table git or DVC holds as it is (`dvc exp run --temp` copies nothing else): an
unversioned or changed table is refused before anything is set up, naming the exact commands, and those commands,
run as written, make it pass."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.release.versioning import SourceNotVersioned, require_versioned_source


def _sh(repo: Path, command: str) -> None:
    bin_dir = Path(sys.executable).parent
    subprocess.run(command, shell=True, cwd=repo, check=True, capture_output=True, timeout=120,
                   env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(repo), "DVC_NO_ANALYTICS": "1",
                        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t"})


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    _sh(tmp_path, "git init -q -b main && dvc init -q && git commit -qm init")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "hotel.csv").write_text("day,y\n2016-07-02,0\n")
    return tmp_path


def _commands(error: SourceNotVersioned) -> str:
    return re.search(r"(dvc add .*|git add .*)$", str(error)).group(1)


def test_an_untracked_table_is_refused_and_the_named_commands_track_it(repo: Path) -> None:
    table = Path("data/hotel.csv")
    with pytest.raises(SourceNotVersioned, match=r"data/hotel.csv \(source.path\) is tracked by neither git nor DVC"
                                                 r".*Track it with DVC: dvc add data/hotel.csv && git add "
                                                 r"data/hotel.csv.dvc data/.gitignore && git commit") as refused:
        require_versioned_source(repo, table)
    _sh(repo, _commands(refused.value))
    assert require_versioned_source(repo, table) == "dvc"
    # New rows appended after `dvc add`: the experiment would check out the old bytes.
    with (repo / table).open("a") as handle:
        handle.write("2016-07-03,1\n")
    with pytest.raises(SourceNotVersioned, match=r"changed since DVC recorded it in data/hotel.csv.dvc") as changed:
        require_versioned_source(repo, table)
    _sh(repo, re.search(r"dvc add .*'$", str(changed.value)).group(0))
    assert require_versioned_source(repo, table) == "dvc"


def test_a_table_committed_to_git_counts_until_it_changes(repo: Path) -> None:
    _sh(repo, "git add data/hotel.csv && git commit -qm table")
    assert require_versioned_source(repo, Path("data/hotel.csv")) == "git"
    (repo / "data" / "hotel.csv").write_text("day,y\n2016-07-02,1\n")
    with pytest.raises(SourceNotVersioned, match=r"has changes git has not committed.*git rm --cached "
                                                 r"data/hotel.csv && dvc add data/hotel.csv"):
        require_versioned_source(repo, Path("data/hotel.csv"))


def test_a_table_outside_the_project_is_refused(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("elsewhere") / "hotel.csv"
    outside.write_text("day,y\n")
    with pytest.raises(SourceNotVersioned, match="is outside the project"):
        require_versioned_source(repo, outside)
