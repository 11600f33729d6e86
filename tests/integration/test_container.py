"""The Bento as an OCI image, built and run with no Docker daemon (buildah, chroot isolation, vfs storage).

Builds the Bento and its image through `bentoml containerize --backend buildah` from the locally built base image
(built once and kept in buildah's store: the cache a later test or run reuses), serves it on a loopback port and
checks readiness, parity with the in-process model, the prediction log on a mounted volume, the non-root user and,
with the registry mounted, that a promotion reaches the container. The images and containers it made are removed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from pipelines.config import load_params
from pipelines.credentials import admin_token, bearer
from pipelines.monitor.prediction_log import logged_id
from support import docs
from support.params import REPO_ROOT
from support.servers import free_port, ready_timeout_s, wait_for, work_timeout_s
from tests.integration.test_serving import _records, trained  # noqa: F401 - the same tiny real champion

pytestmark = [pytest.mark.integration, pytest.mark.container]


@pytest.fixture(scope="module")
def image(trained: dict[str, Any]) -> Iterator[str]:  # noqa: F811
    """The image built by the documented command (README and docs/operations.md: `python -m deploy.package
    --containerize`), from the repo root with the test's params (FLIGHTOPS_PARAMS, as the command reads them)."""
    from deploy import container

    missing = [tool for tool in ("buildah", "debootstrap") if shutil.which(tool) is None]
    assert not missing, f"{missing} not installed: apt-get install buildah debootstrap (scripts/test.sh does)"
    build = docs.commands(docs.block("container"))[0]
    assert docs.commands(docs.block("container-build")) == [build]
    env = {**os.environ, "FLIGHTOPS_PARAMS": str(trained["params_file"]), "BENTOML_DO_NOT_TRACK": "true"}
    done = subprocess.run(["bash", "-c", build], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=3 * work_timeout_s())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    built = re.search(r"^image (\S+): built in", done.stdout, re.MULTILINE)
    assert built, done.stdout
    try:
        yield built.group(1)
    finally:
        container.remove_images(built.group(1))
        assert not container.image_exists(built.group(1))


def _containers_of(image_name: str) -> list[str]:
    from deploy.container import buildah

    return [entry["containername"] for entry in json.loads(buildah("containers", "--all", "--json") or "[]") or []
            if entry.get("imagename") == image_name]


def _workers(root: int) -> list[psutil.Process]:
    """The service's worker processes under the container's process `root` (they are host processes)."""
    found = []
    for proc in psutil.Process(root).children(recursive=True):
        try:
            if "_bentoml_impl.worker.service" in proc.cmdline():
                found.append(proc)
        except psutil.NoSuchProcess:
            continue
    return found


def test_the_image_is_bentomls_build_on_the_local_base(image: str) -> None:
    from deploy.container import base_image_name, buildah, image_config

    config = image_config(image)
    assert config["User"] == "bentoml"
    assert config["Entrypoint"] == ["/home/bentoml/bento/env/docker/entrypoint.sh"]
    history = json.loads(buildah("inspect", "--type", "image", image))["Docker"]["history"]
    assert any(base_image_name().split(":")[0].split("/")[-1] in json.dumps(step) or "uv venv" in json.dumps(step)
               for step in history)


def test_the_image_serves_its_bundled_champion_as_a_non_root_user(image: str, trained: dict[str, Any],  # noqa: F811
                                                                  tmp_path: Path) -> None:
    from bentoml._internal.container.generate import BENTO_UID_GID  # the image's `bentoml` user

    from deploy.container import served
    from pipelines.monitor.prediction_log import read_prediction_log
    from pipelines.release.registry import load_model

    # The test's params with its own log and cache folders, and no registry: the image serves what it was built with.
    data = yaml.safe_load(trained["params_file"].read_text())
    data["paths"].update(prediction_log_dir=str(tmp_path / "predictions"), compiled_dir=str(tmp_path / "compiled"),
                         registry_dir=str(tmp_path / "no-registry"))
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(data))
    # The host's own service (root here) compiled this champion into the shared cache first: its lock, object and
    # checksum files are the host user's, and the container's user must still start (it once died on the lock).
    from bentoml.models import get as stored_model

    from pipelines.io import MODEL_FILE
    from services.compiled import ensure_compiled
    host_compiled = ensure_compiled(Path(stored_model(trained["tag"]).path) / MODEL_FILE, tmp_path / "compiled")
    compiled_at = host_compiled.stat().st_mtime_ns
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with served(image, host="127.0.0.1", port=port, params_file=params_file, follow_registry=False,
                state_dir=tmp_path / "state", log=tmp_path / "container.log") as running:
        wait_for(f"{url}/readyz", running.process, ready_timeout_s(), tmp_path / "container.log")
        name = running.container
        assert name in _containers_of(image)
        test = trained["test"].head(3)
        expected = load_model(trained["tag"]).predict_proba(test)
        rows = _records(test, trained["params"])
        for i, row in enumerate(rows):
            answer = httpx.post(f"{url}/predict", json={"flight": {**row, "request_id": f"c{i}"}}, timeout=30)
            assert answer.status_code == 200, answer.text
            assert abs(answer.json()["probability"] - expected[i]) <= 1e-9
            assert answer.json()["model_tag"] == trained["tag"]
        admin = bearer(admin_token(load_params(params_file)))
        assert httpx.get(f"{url}/metadata").status_code == 401
        metadata = httpx.get(f"{url}/metadata", headers=admin).json()
        assert metadata["follows_registry"] is False and metadata["model_tag"] == trained["tag"]
        # `bentoml serve` and its workers run as the image's user, not root (chroot isolation: they are host
        # processes; only buildah's own chroot runtime above them is root).
        server = [proc for proc in psutil.Process(running.process.pid).children(recursive=True)
                  if "bentoml" in " ".join(proc.cmdline()[:2])]
        serving = server + [child for proc in server for child in proc.children(recursive=True)]
        assert len(serving) > trained["params"].serve.workers, [proc.cmdline() for proc in serving]
        assert {proc.uids().real for proc in serving} == {BENTO_UID_GID}
        # A worker killed with -9 is replaced inside the image too (BentoML's image turns circus's respawn off;
        # services/hardening.py turns it back on), and the service answers through the new one.
        workers = _workers(running.process.pid)
        assert len(workers) == trained["params"].serve.workers, [proc.cmdline() for proc in workers]
        workers[0].kill()
        deadline = time.monotonic() + work_timeout_s()
        while time.monotonic() < deadline:
            now = _workers(running.process.pid)
            if len(now) == len(workers) and workers[0].pid not in {proc.pid for proc in now}:
                break
            time.sleep(0.5)
        assert len(now) == len(workers) and workers[0].pid not in {proc.pid for proc in now}, \
            f"the killed worker {workers[0].pid} was not replaced: {[proc.pid for proc in now]}"
        wait_for(f"{url}/readyz", running.process, ready_timeout_s(), tmp_path / "container.log")
        for _ in range(4):  # both workers (the kernel spreads connections), the new one included
            again = httpx.post(f"{url}/predict", json={"flight": rows[0]}, timeout=30)
            assert again.status_code == 200 and abs(again.json()["probability"] - expected[0]) <= 1e-9, again.text
    assert name not in _containers_of(image), "the working container must be removed when serving stops"
    read = read_prediction_log(tmp_path / "predictions")
    assert read.skipped_total == 0
    logged = {record.request_id: record.model_dump() for record in read.records}
    assert {logged_id("peer:127.0.0.1", f"c{i}") for i in range(3)} <= set(logged)
    assert logged[logged_id("peer:127.0.0.1", "c0")]["model_tag"] == trained["tag"]
    assert host_compiled.stat().st_mtime_ns == compiled_at, \
        "the container reuses the host's compiled forest (same model, same target), not a recompile"
    files = list((tmp_path / "predictions").glob("*.jsonl"))
    assert files and {path.stat().st_uid for path in files} == {BENTO_UID_GID}  # written inside, by that user


def test_a_promotion_and_a_rollback_reach_the_container_through_the_mounted_registry(
        image: str, trained: dict[str, Any], tmp_path: Path) -> None:  # noqa: F811
    """The command `ops.stack up --bento-image` runs: the registry and the model store mounted read-only; SIGTERM
    stops it and removes its working container."""
    from pipelines.release import registry

    params = trained["params"]
    first = registry.require_champion(params.paths.registry_dir)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "run.log"
    # docs/operations.md's second `run` command, on this test's image and port, with its params (FLIGHTOPS_PARAMS).
    command = docs.substitute(docs.commands(docs.block("container-run"))[1], {
        "localhost/flight-delay:<version>": image, "--port 3100": f"--port {port}"})
    env = {**os.environ, "FLIGHTOPS_PARAMS": str(trained["params_file"])}
    with open(log, "wb") as output:
        process = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=REPO_ROOT, env=env, stdout=output,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(f"{url}/readyz", process, ready_timeout_s(), log)
        assert len(_containers_of(image)) == 1
        admin = bearer(admin_token(params))
        assert httpx.get(f"{url}/metadata", headers=admin).json()["follows_registry"] is True
        row = _records(trained["test"].head(1), params)[0]

        def served_tag_becomes(tag: str) -> None:
            deadline = time.monotonic() + 90  # the new model is compiled once (~7-10 s) before it is swapped in
            seen = None
            while time.monotonic() < deadline and seen != tag:
                httpx.post(f"{url}/reload", timeout=30, headers=admin).raise_for_status()
                seen = httpx.post(f"{url}/predict", json={"flight": row}, timeout=30).json()["model_tag"]
                time.sleep(0.5)
            assert seen == tag, (seen, tag, log.read_text()[-2000:])

        promoted = registry.save_model(params.paths.model_dir, {"data_version": "test-window"},
                                       name=params.project.model_name)  # a new tag
        registry.set_champion(params.paths.registry_dir, promoted, reason="container promotion test")
        served_tag_becomes(promoted)
        assert registry.rollback(params.paths.registry_dir) == first
        served_tag_becomes(first)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=90) == 0, log.read_text()[-2000:]
    assert _containers_of(image) == [], "SIGTERM must remove the working container"


def test_the_documented_run_command_serves_the_image_on_serve_port(image: str, trained: dict[str, Any],  # noqa: F811
                                                                   tmp_path: Path) -> None:
    """README's and docs/operations.md's first `run` command: the image on serve.host/serve.port of the params."""
    command = docs.commands(docs.block("container-run"))[0]
    assert docs.commands(docs.block("container"))[1] == command
    port = free_port()
    data = yaml.safe_load(trained["params_file"].read_text())
    data["serve"]["port"] = port
    data["paths"].update(prediction_log_dir=str(tmp_path / "predictions"), compiled_dir=str(tmp_path / "compiled"))
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(data))
    log = tmp_path / "run.log"
    env = {**os.environ, "FLIGHTOPS_PARAMS": str(params_file)}
    with open(log, "wb") as output:
        process = subprocess.Popen(["bash", "-c", "exec " + command.replace("localhost/flight-delay:<version>", image)],
                                   cwd=REPO_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz", process, ready_timeout_s(), log)
        metadata = f"http://127.0.0.1:{port}/metadata"  # an admin route: the token of the params' stack folder
        assert httpx.get(metadata, timeout=30).status_code == 401
        admin = bearer(admin_token(load_params(params_file)))
        assert httpx.get(metadata, timeout=30, headers=admin).json()["model_tag"] == trained["tag"]
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=90) == 0, log.read_text()[-2000:]
    assert _containers_of(image) == []
