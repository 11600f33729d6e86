"""`bentoml serve` started as root over a model store its workers' user cannot read (the own-data walkthrough's
`dvc repro` as root, with BentoML's default store in root's 0700 home): the refusal is one line naming the path and
the fix, not a traceback through click and BentoML with the message at its end."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from services.hardening import WorkerUser, WorkerUserError, unprivileged_workers


def test_a_worker_user_error_is_printed_by_a_click_cli_as_one_line_without_a_traceback() -> None:
    @click.command()
    def serve() -> None:
        raise WorkerUserError("serve.worker_user 'nobody' cannot reach: /root/bentoml/models")

    result = CliRunner().invoke(serve, [])
    assert result.exit_code == 1
    assert result.output == "Error: serve.worker_user 'nobody' cannot reach: /root/bentoml/models\n"
    assert isinstance(WorkerUserError("x"), RuntimeError) and str(WorkerUserError("x")) == "x"


@pytest.mark.skipif(os.geteuid() != 0, reason="the workers' user is checked only when the server starts as root")
def test_a_store_in_a_private_folder_is_named_with_the_fix(tmp_path: Path) -> None:
    store = tmp_path / "home" / "bentoml"
    (store / "models").mkdir(parents=True)
    (tmp_path / "home").chmod(0o700)  # root's home: the workers' user cannot enter it
    pwd.getpwnam("nobody")
    with pytest.raises(WorkerUserError, match=r"cannot reach: .*home/bentoml/models\. .*BENTOML_HOME=\$PWD/var/"
                                              r"bentoml") as raised:
        unprivileged_workers([], WorkerUser(name="nobody", readable=(store / "models",)))
    assert isinstance(raised.value, click.ClickException)
