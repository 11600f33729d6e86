"""DVC versions every model that ever serves, in a real temp git+DVC repo with a bare git remote and a local-folder
DVC remote: the Prefect `training` flow (against a real Prefect server) leaves the repo as `dvc repro` would; a
retrain is a DVC experiment that `dvc exp show` lists and whose data and model are in the remotes; and after the
workspace and its cache are deleted, a fresh clone rebuilds the retrained champion byte for byte from its registry
entry (`python -m pipelines reproduce <tag> --check`)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
import yaml

from pipelines.cli import REPORT_START
from support.params import SMALL_WINDOW
from support.project_copy import commit, copy_project, run

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

# Two candidates keep the search (and each rebuild) short; a retrain within 0.05 AUC (any slice, any Brier) is
# promoted so the test has a retrained champion to rebuild (the gate's own rules are tested in test_registry.py).
PROJECT = {**SMALL_WINDOW, "search.grid.lightgbm.num_leaves": [15, 31], "search.grid.lightgbm.min_data_in_leaf": [100],
           "gate.min_improvement": -0.05, "gate.max_slice_drop": 1.0, "gate.max_brier_increase": 1.0,
           "versioning.git_remote": "origin",
           # A seed no other test trains with: the gate registers a model file once per store (a byte-identical model
           # keeps its first tag and lineage), and the session's BentoML store is shared by every test.
           "train.seed": 20130615}
RETRAIN_THROUGH = "2013-06-14"  # the retrain's data ends with this day: collect.end = 2013-06-15


def _out(repo: Path, *args: str) -> str:
    done = run(repo, *args)
    return done.stdout + done.stderr


def _ran_stages(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def _metadata(tag: str) -> dict:
    from pipelines.release import registry

    return registry.model_entry(tag).to_metadata()


def _cached_out_md5(lock: dict, stage: str, path: str) -> str:
    """The md5 of a stage's cached out (dvc.lock also lists its cache: false metrics under outs)."""
    return next(out["md5"] for out in lock["stages"][stage]["outs"] if out["path"] == path)


def _remote_has(remote: Path, md5: str) -> bool:
    """DVC 3's local remote layout: files/md5/<first two>/<rest> (a directory's manifest ends in .dir)."""
    return (remote / "files" / "md5" / md5[:2] / md5[2:]).is_file()


async def _task_runs(flow_run_id) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        return {run.name: run.state.type.value for run in runs}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("versioning")
    remote = base / "dvc-remote"
    repo = copy_project(base / "project", PROJECT, remote=remote)
    run(base, "git", "init", "-q", "--bare", "origin.git")
    run(repo, "git", "remote", "add", "origin", str(base / "origin.git"))
    run(repo, "git", "push", "-q", "origin", "HEAD:main")
    return {"base": base, "repo": repo, "remote": remote, "origin": base / "origin.git"}


@pytest.fixture(scope="module")
def trained(project: dict, prefect_api: str) -> dict:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.training import training

    with temporary_settings({PREFECT_API_URL: prefect_api}):
        state = training(params_file=str(project["repo"] / "params.yaml"), return_state=True)
        assert state.is_completed(), state
        runs = asyncio.run(_task_runs(state.state_details.flow_run_id))
    return {"summary": state.result(), "runs": runs}


def test_the_training_flow_leaves_the_repo_as_dvc_repro_would(project: dict, trained: dict) -> None:
    repo, summary = project["repo"], trained["summary"]
    assert {"collect", "validate", "preprocess", "train", "evaluate", "gate"} <= set(trained["runs"])
    assert all(status == "COMPLETED" for status in trained["runs"].values()), trained["runs"]
    assert set(summary["stages"].values()) == {"ran"}
    # dvc.lock is truthful and complete, the outputs are in the cache: nothing to do.
    assert "up to date" in _out(repo, "dvc", "status")
    assert _ran_stages(_out(repo, "dvc", "repro")) == set()
    # The run is saved as an experiment whose ref holds this dvc.lock, pushed to both remotes.
    experiment = summary["experiment"]
    lock = (repo / "dvc.lock").read_text()
    assert run(repo, "git", "show", f"{experiment['ref']}:dvc.lock").stdout == lock
    assert experiment["ref"] in _out(project["origin"], "git", "for-each-ref", "refs/exps")
    model_dir_md5 = _cached_out_md5(yaml.safe_load(lock), "train", "models/candidate")
    assert model_dir_md5.endswith(".dir") and _remote_has(project["remote"], model_dir_md5)


def test_the_registry_entry_records_the_lineage(project: dict, trained: dict) -> None:
    repo = project["repo"]
    tag = trained["summary"]["gate"]["registered_tag"]
    lineage = _metadata(tag)["lineage"]
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert lineage["git_commit"] == run(repo, "git", "rev-parse", "HEAD").stdout.strip()
    assert lineage["git_dirty"] is False, lineage.get("dirty_files")
    assert lineage["ref"] == trained["summary"]["experiment"]["ref"]
    assert lineage["data_md5"] == lock["stages"]["collect"]["outs"][0]["md5"]
    assert lineage["uv_lock_md5"] == run(repo, "md5sum", "uv.lock").stdout.split()[0]
    assert not lineage.get("params_diff")  # params.yaml as committed


@pytest.fixture(scope="module")
def retrained(project: dict, trained: dict, prefect_api: str) -> dict:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.retraining import cli_parameters, retraining

    repo = project["repo"]
    commit(repo, "first champion")  # dvc.lock and metrics of the training run
    before = {path: (repo / path).read_bytes() for path in ("dvc.lock", "models/candidate/model.txt",
                                                             "metrics/evaluate.json", "data/raw/table.parquet")}
    with temporary_settings({PREFECT_API_URL: prefect_api}):
        # As `python -m flows.retraining --through <day>` runs it: data through the 14th, collect.end the 15th.
        result = retraining(**cli_parameters(["--params", str(repo / "params.yaml"), "--through", RETRAIN_THROUGH,
                                              "--reason", "test"]))
    return {"result": result, "before": before}


def test_a_retrain_is_a_dvc_experiment_in_the_remotes(project: dict, retrained: dict) -> None:
    repo, experiment = project["repo"], retrained["result"]["experiment"]
    # The workspace's tracked outputs are untouched and still up to date.
    for path, content in retrained["before"].items():
        assert (repo / path).read_bytes() == content, path
    assert "up to date" in _out(repo, "dvc", "status")
    # dvc exp show lists it with its params and metrics beside the baseline.
    shown = _out(repo, "dvc", "exp", "show", "--no-pager", "--csv")
    row = next(line for line in shown.splitlines() if experiment["name"] in line)
    assert "2013-06-15" in row and "collect.end" in shown.splitlines()[0]
    assert "model.roc_auc" in shown.splitlines()[0]
    # Its ref is on the git remote; its data and model are in the DVC remote.
    assert experiment["ref"] in _out(project["origin"], "git", "for-each-ref", "refs/exps")
    lock = yaml.safe_load(run(repo, "git", "show", f"{experiment['commit']}:dvc.lock").stdout)
    for stage, path in (("collect", "data/raw/table.parquet"), ("train", "models/candidate")):
        assert _remote_has(project["remote"], _cached_out_md5(lock, stage, path)), stage
    gate = retrained["result"]["gate"]
    assert gate["promote"] and gate["promoted_tag"] == gate["registered_tag"]
    lineage = _metadata(gate["registered_tag"])["lineage"]
    assert lineage["ref"] == experiment["ref"] and lineage["experiment"] == experiment["name"]
    assert lineage["params_diff"]["collect.end"]["run"].startswith("2013-06-15")


def test_a_fresh_clone_rebuilds_the_retrained_champion_byte_for_byte(project: dict, retrained: dict) -> None:
    tag = retrained["result"]["gate"]["promoted_tag"]
    registered_md5 = _metadata(tag)["model_md5"]
    # Only the remotes and the registry entry survive: the workspace and its DVC cache are gone.
    shutil.rmtree(project["repo"])
    clone = project["base"] / "clone"
    run(project["base"], "git", "clone", "-q", "-b", "main", str(project["origin"]), str(clone))
    done = run(clone, "python", "-m", "pipelines", "reproduce", tag, "--check", check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    report = json.loads(done.stdout[done.stdout.rindex(REPORT_START):])
    assert report["identical"] and report["model_md5"] == {"registry": registered_md5, "rebuilt": registered_md5}
    assert report["metrics_identical"] and report["source"].startswith("experiment ref")
