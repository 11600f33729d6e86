"""The README's and docs/'s command blocks, run as written in one throwaway copy of the project.

One copy (git + DVC, three months of flights, a folder DVC remote as the demo configures it, ports and stores of
its own) serves every block below, in the order a reader meets them: the DAG and its front doors, the results and
an experiment, a fresh clone, model selection and the registry, retraining and reproducing, serving, the Bento,
the stack, replay and the Evidently UI. Each test takes its block's commands from the doc (`support.docs`), so
the docs and what CI runs cannot drift apart; a fixed port or a placeholder (`<version>`) is replaced by the
copy's own. This copy's gate promotes a challenger within 0.05 ROC AUC of the champion (and lets slices and Brier
slip), so the rollback commands have champions to go back to (the gate's rules are tested in test_registry.py).

tests/code/test_docs.py checks that every block marked `doc-test: NAME` is asked for by a test.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from support import docs
from support.params import SMALL_WINDOW
from support.project_copy import commit, copy_project, venv_env
from support.servers import free_port, ready_timeout_s, stop, wait_for, work_timeout_s

pytestmark = pytest.mark.integration

RUNS = re.compile(r"^Running stage '([^']+)'", re.MULTILINE)
# The doc's ports (params.yaml's defaults) -> the copy's free ones.
DOC_PORTS = {"prefect": 4200, "serve": 3000, "evidently": 8000}


class Project:
    """The copy, its environment and the doc-port -> copy-port map; `sh` runs one doc command there."""

    def __init__(self, repo: Path, remote: Path, ports: dict[str, int]) -> None:
        self.repo, self.remote, self.ports = repo, remote, ports
        # The store the serving doc exports (`BENTOML_HOME=$PWD/var/bentoml`: as root, one the workers' unprivileged
        # user can read), for every command of the copy, so the models its DAG registers are the ones it serves.
        self.env = {**venv_env(DVC_REMOTE_DIR=str(remote), COLUMNS="120", BENTOML_HOME=str(repo / "var" / "bentoml")),
                    "PYTHONUNBUFFERED": "1"}
        self.env.pop("FLIGHTOPS_PARAMS", None)

    def replacements(self, **more: str) -> dict[str, str]:
        ports = {f"{host}:{DOC_PORTS[name]}": f"{host}:{self.ports[name]}"
                 for name in DOC_PORTS for host in ("localhost", "127.0.0.1")}
        # The test's own values first: a placeholder may hold a doc port (the flow's PREFECT_API_URL).
        return {**more, **ports, f"--port {DOC_PORTS['evidently']}": f"--port {self.ports['evidently']}",
                ".venv/bin/": f"{Path(sys.executable).parent}/"}

    def run(self, command: str, *, ok: bool | None = True, timeout: float | None = None,
            **more: str) -> subprocess.CompletedProcess:
        """The command with the copy's ports and `more` placeholders; `ok`: it must succeed (False: fail)."""
        command = docs.substitute(command, self.replacements(**more))
        done = docs.shell(self.repo, command, self.env, timeout or work_timeout_s())
        if ok is not None:
            output = done.stdout + done.stderr
            assert (done.returncode == 0) == ok, f"{command!r} exited {done.returncode}:\n{output[-5000:]}"
        return done

    def sh(self, command: str, *, ok: bool | None = True, timeout: float | None = None, **more: str) -> str:
        done = self.run(command, ok=ok, timeout=timeout, **more)
        return done.stdout + done.stderr

    def locked_model_md5(self) -> str:
        lock = yaml.safe_load((self.repo / "dvc.lock").read_text())
        return next(out["md5"] for out in lock["stages"]["train"]["outs"] if out["path"] == "models/candidate")

    def model_md5(self) -> str:
        from pipelines.io import file_md5

        return file_md5(self.repo / "models" / "candidate" / "model.txt")

    def champion(self) -> str:
        return json.loads((self.repo / "var" / "registry" / "champion.json").read_text())["tag"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    from ops.plots_template import point_dvc_at, template_path, write_template

    ports = {"prefect": free_port(), "serve": free_port(), "evidently": free_port()}
    repo = copy_project(tmp_path_factory.mktemp("docs-project"), {
        **SMALL_WINDOW, "gate.min_improvement": -0.05, "gate.max_slice_drop": 0.2, "gate.max_brier_increase": 0.05,
        "stack.prefect_port": ports["prefect"],
        "serve.port": ports["serve"], "stack.evidently_port": ports["evidently"],
        "replay.start": "2013-06-01", "replay.end": "2013-06-03"})
    remote = tmp_path_factory.mktemp("docs-remote")
    project = Project(repo, remote, ports)
    # What scripts/demo.sh and scripts/bootstrap.sh set up in a checkout: the folder remote and the plots page.
    project.sh(f'dvc remote add --local --default localfolder "{remote}"')
    point_dvc_at(repo, template_path() if template_path().exists() else write_template())
    return project


def _ran(output: str) -> set[str]:
    return set(RUNS.findall(output))


def _trained(project: Project) -> Project:
    """The copy after the DAG block's first `dvc repro`, committed: what the later blocks start from (run alone with
    -k, a test gets it here)."""
    if not (project.repo / "var" / "registry" / "champion.json").exists():
        project.sh("dvc repro")
        commit(project.repo, "first run")
    return project


def test_the_dag_runs_from_dvc_the_flow_and_by_hand(project: Project, prefect_api: str) -> None:
    dvc_repro, flow, flow_on_server, by_hand, status, repro_again = docs.commands(docs.block("dag"))
    ran = _ran(project.sh(dvc_repro))
    assert {"collect", "validate", "preprocess", "train", "evaluate", "gate"} <= ran, ran
    commit(project.repo, "first run")
    locked = project.locked_model_md5()
    # The flow runs the same stages through DVC: all up to date, nothing written.
    project.sh(flow)
    project.sh(flow_on_server, **{"http://127.0.0.1:4200/api": prefect_api})
    assert "up to date" in project.sh("dvc status")
    # By hand with --set: a different model, which DVC sees; `dvc repro` puts the recorded one back.
    project.sh(by_hand)
    assert f"{project.model_md5()}.dir" != locked
    said = project.sh(status)
    assert "train" in said and "models/candidate" in said, said
    project.sh(repro_again)
    assert project.locked_model_md5() == locked and "up to date" in project.sh("dvc status")


def test_the_results_an_experiment_and_the_remote(project: Project) -> None:
    _trained(project)
    (activate, store, summary, plots, params_diff, experiment, metrics_diff, exp_show, push, pull) = docs.commands(
        docs.block("look"))
    assert activate == "source .venv/bin/activate" and Path(sys.prefix).name == ".venv"  # the tests' own env
    # The store scripts/demo.sh used; the project's shell already has the tests' own BENTOML_HOME, which it keeps.
    assert store == "export BENTOML_HOME=${BENTOML_HOME:-$PWD/var/bentoml}", store
    said = project.sh(summary)
    assert "ROC AUC" in said and "baseline: hour_of_day_rate" in said and "gate: PROMOTED" in said, said
    assert "next:" in said
    project.sh(plots)
    page = (project.repo / "dvc_plots" / "index.html").read_text()
    assert "vegaEmbed" in page and "Precision-recall" in page
    assert not re.findall(r"<script[^>]+src=", page), "the page loads a script from elsewhere: blank offline"
    assert "dvc_plots" not in project.sh("git status --porcelain")  # git-ignored
    project.sh(params_diff)
    before = project.model_md5()
    project.sh(experiment)
    assert project.model_md5() != before  # the param changed the model
    assert "model.roc_auc" in project.sh(metrics_diff)
    table = project.sh(exp_show)
    assert "train.lightgbm.learning_rate" in table and "model.roc_auc" in table and "…" not in table, table
    project.sh("git checkout -- . && dvc checkout -q")
    # A key the search sets in every candidate: the train stage warns, naming the setting, and indeed the model is
    # the one HEAD's dvc.lock records (`--set` of it is refused: tests/integration/test_mistakes.py).
    warned = " ".join(project.sh("dvc exp run -S train.lightgbm.num_leaves=31").split())
    assert "train.lightgbm.num_leaves=31 changes nothing" in warned, warned
    assert "search.grid.lightgbm.num_leaves ([31, 63])" in warned, warned
    assert f"{project.model_md5()}" == before
    project.sh("git checkout -- . && dvc checkout -q")
    project.sh(push)
    assert any(project.remote.rglob("*")), "dvc push sent nothing"
    project.sh(pull)


def test_a_fresh_clone_pulls_everything_and_repro_only_registers_the_model(project: Project,
                                                                        tmp_path: Path) -> None:
    """Item 2 of #42: every DVC out of the committed dvc.lock is in the remote (validate's result.json is the same
    bytes run after run); only the gate and the reference stage re-run, to register the model in this machine's
    registry and attach its monitoring reference (their receipts live in the registry, not in git)."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(project.repo), str(clone)], check=True)
    fresh = Project(clone, project.remote, project.ports)
    fresh.sh(f'dvc remote add --local --default localfolder "{project.remote}"')
    pulled = fresh.sh("dvc pull")
    assert "failed" not in pulled.lower(), pulled
    status = fresh.sh("dvc status")
    changed = {line.rstrip(":").strip() for line in status.splitlines() if line and not line.startswith("\t")
               and line.rstrip().endswith(":") and not line.startswith(" ")}
    assert changed == {"gate", "reference"}, status
    assert "var/registry/dvc-gate.json" in status, status
    assert _ran(fresh.sh("dvc repro")) == {"gate", "reference"}
    assert _ran(fresh.sh("dvc repro")) == set()
    assert fresh.model_md5() == project.model_md5()


def test_model_selection_and_the_registry(project: Project) -> None:
    _trained(project)
    one_model, optuna, families, forced, exp_show = docs.commands(docs.block("experiments"))
    first = project.champion()

    def candidates() -> dict[str, Any]:
        return json.loads((project.repo / "metrics" / "candidates.json").read_text())

    project.sh(one_model)
    assert len(candidates()["candidates"]) == 1
    project.sh(optuna)
    assert len(candidates()["candidates"]) == 8
    project.sh(families)
    assert {c["family"] for c in candidates()["candidates"]} == {"lightgbm", "logistic", "histgb"}
    project.sh(forced)
    assert [c["family"] for c in candidates()["candidates"]] == ["histgb"] and candidates()["winner_family"] == "histgb"
    table = project.sh(exp_show)
    assert "search.strategy" in table and "train.family" in table and "model.roc_auc" in table, table
    assert "…" not in table, table
    listing, rollback, rollback_to = docs.commands(docs.block("models"))
    listed = project.sh(listing)
    assert "champion" in listed and first.split(":")[1][:8] in listed, listed
    current = project.champion()
    assert current != first, "the experiments promoted nothing: the rollback commands have nothing to do"
    project.sh(rollback)
    assert project.champion() != current
    project.sh(rollback_to, **{"delay-classifier:abc123": first})
    assert project.champion() == first
    project.sh("git checkout -- . && dvc checkout -q")


def test_retraining_and_reproducing(project: Project) -> None:
    _trained(project)
    (retrain,) = docs.commands(docs.block("retrain"))
    project.sh(retrain, **{"<YYYYMMDD>-<time>": "20130515-0000", "<data_end>": "2013-05-15"})
    assert "retrain-until-20130515-0000" in project.sh("dvc exp list --name-only")
    (reproduce,) = docs.commands(docs.block("reproduce"))
    first = json.loads((project.repo / "var" / "registry" / "history.jsonl").read_text().splitlines()[0])["tag"]
    said = project.sh(reproduce, **{"delay-classifier:<version>": first})
    assert '"identical": true' in said, said[-3000:]


class Background:
    """A doc command that serves until stopped, on the copy's port."""

    def __init__(self, project: Project, command: str, ready: str) -> None:
        self.log = project.repo / f".background-{free_port()}.log"
        self.process = docs.start(project.repo, docs.substitute(command, project.replacements()), project.env,
                                  self.log)
        try:
            wait_for(ready, self.process, ready_timeout_s(), self.log)
        except (TimeoutError, RuntimeError):
            stop(self.process)
            raise

    def __enter__(self) -> Background:
        return self

    def __exit__(self, *exc: Any) -> None:
        stop(self.process)


def test_serving_the_champion_and_the_bento(project: Project) -> None:
    _trained(project)
    store, serve, metadata, predict = docs.commands(docs.block("serve"))
    assert project.sh(f'{store} && echo "$BENTOML_HOME"').strip() == project.env["BENTOML_HOME"]
    url = f"http://127.0.0.1:{project.ports['serve']}"
    with Background(project, serve, f"{url}/readyz"):
        # /metadata is an admin route: 401 without the token the service made, the champion with it (the doc's curl).
        assert httpx.get(f"{url}/metadata", timeout=30).status_code == 401
        assert project.champion() in project.sh(metadata)
        answer = json.loads(project.sh(predict).strip().splitlines()[-1])
        assert 0 < answer["probability"] < 1 and answer["model_tag"] == project.champion(), answer
    package, serve_bento, bento_metadata = docs.commands(docs.block("bento"))
    built = re.findall(r"^(flight-delay:\w+)$", project.sh(package, timeout=work_timeout_s()), re.MULTILINE)
    assert built, "deploy.package printed no Bento tag"
    version = built[-1].split(":")[1]
    with Background(project, serve_bento.replace("flight-delay:<version>", built[-1]), f"{url}/readyz"):
        assert httpx.get(f"{url}/metadata", timeout=30).status_code == 401
        assert project.champion() in project.sh(bento_metadata, **{"<version>": version})


@pytest.fixture
def stack_down(project: Project) -> Iterator[None]:
    yield
    project.sh("python -m ops.stack down", ok=None)


def test_the_stack_replay_and_the_evidently_ui(project: Project, stack_down: None) -> None:
    _trained(project)
    up, status, where, down = docs.commands(docs.block("stack"))
    project.sh(up, timeout=work_timeout_s())
    assert str(project.ports["serve"]) in project.sh(status)
    said = project.sh(where)
    secret = (project.repo / "var" / "stack" / "credentials" / "prefect-auth").read_text().strip()
    assert "credentials/prefect-auth" in said and "credentials/admin-token" in said and secret not in said, said
    # docs/operations.md's Prefect client of one's own: with the stack's auth string it lists the deployments;
    # without it the API answers 401.
    client = docs.commands(docs.block("prefect-client"))
    assert "training" in project.sh(" && ".join(client))
    assert project.run(" && ".join(line for line in client if "AUTH_STRING" not in line), ok=False).returncode
    project.sh(down)
    assert "the stack is not up" in project.sh(status, ok=None)
    up, status, down = docs.commands(docs.block("operations-stack"))
    project.sh(up, timeout=work_timeout_s())
    assert str(project.ports["prefect"]) in project.sh(status)
    sent = []
    for command in docs.commands(docs.block("replay")):
        result = json.loads(project.run(command, timeout=work_timeout_s()).stdout)
        assert result["sent"] == result["predicted"] > 0, result
        sent.append(result["sent"])
    assert sent[1] > sent[0]  # October's month vs the copy's two days of replay.start .. replay.end
    project.sh(down)
    (evidently,) = docs.commands(docs.block("evidently-ui"))
    with Background(project, evidently, f"http://127.0.0.1:{project.ports['evidently']}/api/projects"):
        projects = httpx.get(f"http://127.0.0.1:{project.ports['evidently']}/api/projects", timeout=30).json()
        assert any(item.get("name") == "flightops monitoring" for item in projects), projects


@pytest.mark.browser
def test_the_plots_page_draws_every_plot_offline(project: Project) -> None:
    """`dvc plots show`'s page in headless chromium with every request that is not the page itself refused: the
    four plots still draw (Vega renders each into a canvas or an SVG), as on a machine without internet."""
    from playwright.sync_api import sync_playwright

    from tests.integration.test_ui import CHROMIUM, CHROMIUM_ARGS

    page_file = project.repo / "dvc_plots" / "index.html"
    if not page_file.exists():
        project.sh(docs.commands(docs.block("look"))[3])
    assert CHROMIUM.exists(), f"{CHROMIUM} not found: apt-get install -y chromium (scripts/test.sh does)"
    refused: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file://")
                       else (refused.append(route.request.url), route.abort()))
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(page_file.as_uri())
            page.wait_for_function("document.querySelectorAll('canvas, svg.marks').length >= 4", timeout=60_000)
            assert errors == [], errors
        finally:
            browser.close()
    assert refused == [], f"the page asked for {refused}"
