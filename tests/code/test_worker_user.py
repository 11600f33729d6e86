"""`bentoml serve` started as root over a model store its workers' user cannot read (the own-data walkthrough's
`dvc repro` as root, with BentoML's default store in root's 0700 home): the refusal is one line naming the path and
the fix, not a traceback through click and BentoML with the message at its end."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
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


def test_the_champions_own_folder_is_among_what_the_workers_must_read(tmp_path: Path) -> None:
    """A model copied into the store by `bentoml models import` sits in a 0700 folder: the preflight check names it
    (with the chmod that fixes it) instead of every worker failing to open its model.yaml in a restart loop."""
    from pipelines import io
    from pipelines.contracts import PromotionRecord
    from services.service import _champion_files

    registry = tmp_path / "registry"
    registry.mkdir()
    models = tmp_path / "store" / "models"
    assert _champion_files(models, registry) == []  # no champion yet: nothing more to check
    (registry / io.CHAMPION_FILE).write_text(PromotionRecord(tag="covid-positive:j3k3").model_dump_json())
    folder = models / "covid-positive" / "j3k3"
    assert _champion_files(models, registry) == [folder, folder / "model.yaml"]
    if os.geteuid() != 0:
        return
    open_store = Path(tempfile.mkdtemp(prefix="worker-user-"))  # pytest's base temp folder is 0700: not this one
    try:
        open_store.chmod(0o755)
        models = open_store / "models"
        folder = models / "covid-positive" / "j3k3"
        folder.mkdir(parents=True)
        (folder / "model.yaml").write_text("name: covid-positive\n")
        (folder / "model.yaml").chmod(0o644)
        folder.parent.chmod(0o755)
        models.chmod(0o755)
        folder.chmod(0o700)  # as `bentoml models import` leaves it
        with pytest.raises(WorkerUserError, match=r"cannot reach: .*covid-positive/j3k3, .*j3k3/model\.yaml\. "
                                                  r".*chmod -R a\+rX") as raised:
            unprivileged_workers([], WorkerUser(name="nobody", readable=(models, *_champion_files(models, registry))))
        assert f"{models}," not in str(raised.value)  # the store itself is readable: only the model's folder is not
    finally:
        shutil.rmtree(open_store)
