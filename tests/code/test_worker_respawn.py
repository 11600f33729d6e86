"""services/hardening.py: circus replaces a dead worker inside BentoML's image too. BentoML creates its watchers with
respawn off when `BENTOML_CONTAINERIZED` is set (its Dockerfile sets it): a worker killed with `kill -9` in the
image was never replaced (one of two left serving, /readyz 200), where `bentoml serve` outside respawned it in ~5 s."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.hardening import _private


@pytest.fixture
def containerized(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from bentoml import serving

    monkeypatch.setenv("BENTOML_CONTAINERIZED", "true")
    serving.running_inside_container.cache_clear()
    yield
    serving.running_inside_container.cache_clear()  # the next caller reads the environment again


def test_the_arbiter_respawns_workers_bentoml_made_for_a_container(containerized: None) -> None:
    from bentoml import serving
    from bentoml._internal.utils import circus as bentoml_circus

    watcher = serving.create_watcher(name="service", args=["-c", "pass"], use_sockets=False)
    assert watcher.respawn is False  # what BentoML does inside its image
    arbiter = _private(bentoml_circus.Arbiter, None)([watcher], endpoint="tcp://127.0.0.1:0",
                                                      pubsub_endpoint="tcp://127.0.0.1:0")
    try:
        assert [w.respawn for w in arbiter.watchers] == [True]
        assert arbiter.endpoint.startswith("ipc://")  # the private control socket, as before
    finally:
        arbiter.exit_stack.close()  # removes its control folder
    assert not arbiter.control_dir.exists()
