"""Every readiness wait has one bound, stack.start_timeout_s, and says what it waited for and how long."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from pipelines.config import load_params
from support.params import REPO_ROOT
from support.servers import free_port, ready_timeout_s, wait_for


def test_prefect_ephemeral_server_waits_as_long_as_the_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    """prefect.toml's start-up bound for the ephemeral API server is the project's readiness bound, and Prefect
    reads it (the default 20 s failed here at load average 10-12)."""
    from prefect.settings import Settings

    bound = load_params().stack.start_timeout_s
    declared = tomllib.loads((REPO_ROOT / "prefect.toml").read_text())["server"]["ephemeral"]
    assert declared["startup_timeout_seconds"] == bound
    monkeypatch.delenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", raising=False)
    monkeypatch.chdir(REPO_ROOT)
    assert Settings().server.ephemeral.startup_timeout_seconds == bound
    assert ready_timeout_s() == bound


@pytest.mark.integration
def test_wait_for_names_the_url_the_bound_and_the_setting(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("listening soon\n")
    silent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        url = f"http://127.0.0.1:{free_port()}/health"
        with pytest.raises(TimeoutError, match=r"did not answer 200 within 1s \(stack.start_timeout_s") as caught:
            wait_for(url, silent, 1.0, log)
        assert url in str(caught.value) and "listening soon" in str(caught.value)
    finally:
        silent.kill()
        silent.wait()


@pytest.mark.integration
def test_wait_for_fails_at_once_when_the_server_exits(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("address already in use\n")
    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    dead.wait()
    with pytest.raises(RuntimeError, match="server exited with 3") as caught:
        wait_for(f"http://127.0.0.1:{free_port()}/health", dead, 600.0, log)
    assert "address already in use" in str(caught.value)
