"""The `prefect:` params and what the stack plans from them, before anything starts: the PostgreSQL component and
its secret, the workers instead of the serve process, the deployments on the pool, the crash Automations."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from pipelines.config import Params, ParamsError
from support.params import params_dict


def _params_file(tmp_path: Path, overrides: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params_dict(tmp_path, overrides)))
    return path


@pytest.mark.parametrize(("key", "value", "message"), [
    ("prefect.database", "mysql", r"prefect\.database"),
    ("prefect.runner", "agent", r"prefect\.runner"),
    ("prefect.heartbeat_s", 10, r"prefect\.heartbeat_s must be >= 30"),
    ("prefect.workers", 0, r"prefect\.workers must be >= 1"),
    ("prefect.work_pool", "My Pool", r"prefect\.work_pool must be lowercase"),
])
def test_bad_prefect_values_are_refused_naming_the_key(make_params: Callable[..., Params], key: str, value: object,
                                                       message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        make_params({key: value})


def test_a_run_cannot_be_declared_crashed_between_two_of_its_heartbeats(make_params: Callable[..., Params]) -> None:
    with pytest.raises(ParamsError, match=r"crashed_after_s \(30\) must be longer than prefect\.heartbeat_s \(45\)"):
        make_params({"prefect.heartbeat_s": 45, "prefect.crashed_after_s": 30})


def test_sqlite_and_serve_by_default_plan_what_they_did_before(tmp_path: Path) -> None:
    from ops.stack import plan
    from pipelines.config import load_params

    params_file = _params_file(tmp_path, {})
    components, _ = plan(load_params(params_file), params_file)
    assert [c.name for c in components] == ["prefect", "deployments", "evidently"]
    # No database URL to hide; only the server's auth string (issue 37) goes to the environment, not stack.json.
    assert components[0].setup == [] and set(components[0].secret_env) == {"PREFECT_SERVER_API_AUTH_STRING"}
    assert components[1].env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "30"


def test_postgres_and_workers_plan_the_database_first_and_keep_its_password_out_of_the_state(tmp_path: Path) -> None:
    from ops.stack import plan
    from pipelines.config import load_params

    params_file = _params_file(tmp_path, {"prefect.database": "postgres", "prefect.runner": "workers",
                                          "prefect.workers": 3, "deployments.limit": 2})
    params = load_params(params_file)
    components, _ = plan(params, params_file)
    assert [c.name for c in components] == ["postgres", "prefect", "worker-1", "worker-2", "worker-3", "evidently"]
    database, server, first, second = components[:4]
    assert database.health_url == f"tcp://127.0.0.1:{database.port}"
    assert server.setup == [[*server.setup[0][:3], "ensure-database", "--params", str(params_file),
                             "--port", str(database.port)]]
    password_file = tmp_path / "var" / "stack" / "postgres" / "password"
    password = password_file.read_text().strip()
    assert password_file.stat().st_mode & 0o777 == 0o600 and len(password) >= 32
    url = server.secret_env["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert url.startswith(f"postgresql+asyncpg://prefect:{password}@127.0.0.1:{database.port}/prefect")
    assert password not in json.dumps([c.record().to_json_dict() for c in components])
    assert password not in json.dumps(server.env)
    # Registration once, before the first worker; every worker on the pool, with a health port of its own.
    assert first.setup == [[*first.setup[0][:3], "--params", str(params_file), "--register-only"]] and not second.setup
    assert first.argv[1:9] == ["worker", "start", "--pool", "flightops", "--type", "process", "--name",
                               first.argv[8]] and first.argv[8].endswith("-1")
    assert first.argv[first.argv.index("--limit") + 1] == "2"
    assert first.port != second.port and first.env["PREFECT_WORKER_WEBSERVER_HOST"] == "127.0.0.1"
    # The same password on the next `up`.
    again, _ = plan(params, params_file)
    assert password in again[1].secret_env["PREFECT_API_DATABASE_CONNECTION_URL"]


def test_a_password_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    from ops import postgres

    postgres.ensure_password(tmp_path)
    (tmp_path / "password").chmod(0o644)
    with pytest.raises(postgres.PostgresError, match="readable by others"):
        postgres.ensure_password(tmp_path)


def test_connection_url_quotes_the_password() -> None:
    from ops.postgres import connection_url

    assert connection_url("127.0.0.1", 5433, "a/b@c:d") == \
        "postgresql+asyncpg://prefect:a%2Fb%40c%3Ad@127.0.0.1:5433/prefect"


def test_missing_postgresql_is_refused_with_the_apt_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ops import postgres

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(postgres, "DEBIAN_BIN", tmp_path / "nothing")
    with pytest.raises(postgres.PostgresError, match="apt-get install postgresql"):
        postgres.binaries()


def test_deployments_go_to_the_pool_with_the_checkout_and_heartbeats(tmp_path: Path) -> None:
    from flows.deployments import build_deployments
    from ops.workers import REPO_ROOT

    params_file = _params_file(tmp_path, {"prefect.runner": "workers", "prefect.heartbeat_s": 40,
                                          "prefect.crashed_after_s": 120})
    for deployment in build_deployments(params_file):
        assert deployment.work_pool_name == "flightops"
        assert deployment.job_variables["working_dir"] == str(REPO_ROOT)
        env = deployment.job_variables["env"]
        assert env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "40"
        assert env["FLIGHTOPS_PARAMS"] == str(params_file.resolve())
    assert all(d.work_pool_name is None for d in build_deployments(_params_file(tmp_path, {})))


def test_crash_automations_follow_params(make_params: Callable[..., Params]) -> None:
    from flows.automations import crash_silent_runs, retry_crashed_runs

    params = make_params({"prefect.crashed_after_s": 75, "prefect.crash_retries": 2})
    silent = crash_silent_runs(params)
    assert silent.trigger.within.total_seconds() == 75
    assert silent.trigger.after == {"prefect.flow-run.heartbeat"}
    assert silent.actions[0].state.value == "CRASHED"
    retry = retry_crashed_runs(params)
    assert retry.enabled and retry.trigger.expect == {"prefect.flow-run.Crashed"}
    assert retry.trigger.match.model_dump()["prefect.run-count"] == ["1", "2"]
    assert (retry.actions[0].state.value, retry.actions[0].name) == ("SCHEDULED", "AwaitingRetry")
    assert retry_crashed_runs(make_params({"prefect.crash_retries": 0})).enabled is False


def test_code_source_git_needs_workers_a_git_remote_and_a_registry_remote(make_params: Callable[..., Params]) -> None:
    with pytest.raises(ParamsError, match=r"prefect\.code_source: git needs prefect\.runner: workers, "
                                          r"versioning\.git_remote, versioning\.registry_remote"):
        make_params({"prefect.code_source": "git"})
    made = make_params({"prefect.code_source": "git", "prefect.runner": "workers", "versioning.git_remote": "origin",
                        "versioning.registry_remote": "/srv/registry"})
    assert made.prefect.code_source == "git"


def _git_project(tmp_path: Path, overrides: dict) -> tuple[Path, Path]:
    """A committed project (params.yaml, dvc.yaml) with a bare remote `origin` that holds its commit."""
    import subprocess

    origin, repo = tmp_path / "origin.git", tmp_path / "repo"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(origin)], check=True)
    repo.mkdir()
    (repo / "params.yaml").write_text(yaml.safe_dump(params_dict(repo, overrides)))
    (repo / "dvc.yaml").write_text("stages: {}\n")
    for args in (["init", "-q", "--initial-branch=main"], ["remote", "add", "origin", str(origin)], ["add", "-A"],
                 ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "project"],
                 ["push", "-q", "origin", "main"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    return repo, origin


GIT_MODE = {"prefect.code_source": "git", "prefect.runner": "workers", "versioning.git_remote": "origin",
            "versioning.registry_remote": "/srv/registry"}


def test_git_runs_clone_the_registered_commit_and_name_no_path_of_this_machine(tmp_path: Path) -> None:
    import subprocess

    from flows.deployments import CLONED_PARAMS, deployment_parameters, git_source, job_variables
    from pipelines.config import load_params

    repo, origin = _git_project(tmp_path, GIT_MODE)
    params = load_params(repo / "params.yaml")
    step = git_source(params, repo).to_pull_step()["prefect.deployments.steps.git_clone"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    assert step["repository"] == str(origin) and step["commit_sha"] == head
    variables = job_variables(params, repo / "params.yaml")
    assert "working_dir" not in variables and "PYTHONPATH" not in variables["env"]
    assert variables["env"]["FLIGHTOPS_PARAMS"] == CLONED_PARAMS
    assert deployment_parameters("training", repo / "params.yaml", "git") == {"params_file": CLONED_PARAMS}


def test_git_registration_refuses_a_commit_the_remote_lacks_or_uncommitted_params(tmp_path: Path) -> None:
    import subprocess

    from flows.deployments import SourceError, git_source
    from pipelines.config import load_params

    repo, _ = _git_project(tmp_path, GIT_MODE)
    params = load_params(repo / "params.yaml")
    (repo / "params.yaml").write_text((repo / "params.yaml").read_text().replace("seed: 42", "seed: 43"))
    with pytest.raises(SourceError, match=r"params\.yaml"):
        git_source(params, repo)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "local only"], cwd=repo,
                   check=True)
    with pytest.raises(SourceError, match="is not on origin.*git push origin HEAD"):
        git_source(params, repo)


def test_postgres_stays_on_loopback_whatever_stack_host_is(tmp_path: Path) -> None:
    from ops.stack import plan
    from pipelines.config import load_params

    params_file = _params_file(tmp_path, {"prefect.database": "postgres", "prefect.runner": "workers",
                                          "stack.host": "0.0.0.0"})
    components, _ = plan(load_params(params_file), params_file)
    by_name = {c.name: c for c in components}
    assert by_name["postgres"].host == "127.0.0.1" and "127.0.0.1" in by_name["prefect"].secret_env[
        "PREFECT_API_DATABASE_CONNECTION_URL"]
    assert by_name["worker-1"].host == "127.0.0.1" and by_name["worker-1"].health_url.startswith("http://127.0.0.1:")
    assert by_name["worker-1"].env["PREFECT_WORKER_WEBSERVER_HOST"] == "127.0.0.1"
