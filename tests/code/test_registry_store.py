"""The registry's stores (pipelines/release/store.py): a promotion is conditional on the champion its caller
compared with, so of concurrent promotions exactly one wins, on the local folder (flock) and on a registry remote
(exclusive create of the journal's next generation; a local folder standing for the bucket)."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from pipelines import io
from pipelines.release import registry
from pipelines.release.store import LocalStore, PromotionConflict, RegistryError, RemoteStore

CONTENDERS = 4
ROUNDS = 4


def _model(tmp_path: Path, name: str, store) -> str:
    folder = tmp_path / f"model-{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    (folder / io.MODEL_FILE).write_text("not a real model: the registry moves files, it does not read them\n")
    return registry.save_model(folder, {"model_md5": "x"}, name=name, registry=store)


def _store(kind: str, tmp_path: Path):
    return LocalStore(tmp_path / "registry") if kind == "local" else RemoteStore(str(tmp_path / "remote"))


def _contend(kind: str, location: str, tag: str, expected: str | None, barrier, results) -> None:
    """One contender (a process of its own, as on another machine): promote `tag` over `expected`."""
    store = LocalStore(Path(location)) if kind == "local" else RemoteStore(location)
    barrier.wait()
    try:
        registry.set_champion(store, tag, reason="race", expected=expected)
        results.put(("won", tag))
    except PromotionConflict as conflict:
        results.put(("lost", str(conflict)))


@pytest.mark.parametrize("kind", ["local", "remote"])
def test_concurrent_promotions_cannot_both_win(kind: str, tmp_path: Path) -> None:
    store = _store(kind, tmp_path)
    models = tmp_path / "models"
    models.mkdir()
    name = f"race-{kind}-{os.getpid()}"
    champion = _model(models, name, store)
    registry.set_champion(store, champion, reason="first", expected=None)
    context = multiprocessing.get_context("fork")
    for _ in range(ROUNDS):
        tags = [_model(models, name, store) for _ in range(CONTENDERS)]
        barrier, results = context.Barrier(CONTENDERS), context.Queue()
        location = str(store.folder) if kind == "local" else store.location
        workers = [context.Process(target=_contend, args=(kind, location, tag, champion, barrier, results))
                   for tag in tags]
        for worker in workers:
            worker.start()
        outcomes = [results.get(timeout=60) for _ in workers]
        for worker in workers:
            worker.join(timeout=60)
        winners = [tag for verdict, tag in outcomes if verdict == "won"]
        assert len(winners) == 1, outcomes
        assert all("lost" in text for verdict, text in outcomes if verdict == "lost"), outcomes
        assert registry.champion_tag(store) == winners[0]
        journal = registry.history(store)
        assert journal[-1].tag == winners[0] and journal[-1].previous == champion
        assert [r.tag for r in journal].count(winners[0]) == 1 and not set(tags) - {winners[0]} & {
            r.tag for r in journal}
        champion = winners[0]


@pytest.mark.parametrize("kind", ["local", "remote"])
def test_a_promotion_over_a_stale_champion_writes_nothing(kind: str, tmp_path: Path) -> None:
    store = _store(kind, tmp_path)
    (tmp_path / "m").mkdir()
    name = f"stale-{kind}-{os.getpid()}"
    first, second, third = (_model(tmp_path / "m", name, store) for _ in range(3))
    registry.set_champion(store, first, reason="first", expected=None)
    registry.set_champion(store, second, reason="second", expected=first)
    with pytest.raises(PromotionConflict, match=f"the champion is {second}, not {first}"):
        registry.set_champion(store, third, reason="judged against the first", expected=first)
    assert registry.champion_tag(store) == second
    assert [r.tag for r in registry.history(store)] == [first, second]
    # A rollback names the champion it replaces too; with no precondition (ANY) an operator's promotion goes in.
    assert registry.rollback(store) == first
    registry.set_champion(store, third, reason="operator")
    assert [r.tag for r in registry.history(store)] == [first, second, first, third]


def test_the_remote_journal_skips_a_torn_record_and_promotes_past_it(tmp_path: Path) -> None:
    store = RemoteStore(str(tmp_path / "remote"))
    (tmp_path / "m").mkdir()
    name = f"torn-{os.getpid()}"
    first, second = (_model(tmp_path / "m", name, store) for _ in range(2))
    registry.set_champion(store, first, reason="first", expected=None)
    torn = tmp_path / "remote" / io.REMOTE_JOURNAL_DIR / io.journal_record_name(2)
    torn.write_text('{"event": "promote", "ta')  # a writer that died between its create and its write
    old = 120
    os.utime(torn, (torn.stat().st_atime - old, torn.stat().st_mtime - old))
    assert registry.champion_tag(store) == first
    registry.set_champion(store, second, reason="second", expected=first)
    assert registry.champion_tag(store) == second
    assert (tmp_path / "remote" / io.REMOTE_JOURNAL_DIR / io.journal_record_name(3)).exists()


def test_the_remote_holds_models_and_entries_for_every_machine(tmp_path: Path) -> None:
    store = RemoteStore(str(tmp_path / "remote"))
    (tmp_path / "m").mkdir()
    name = f"shared-{os.getpid()}"
    tag = _model(tmp_path / "m", name, store)
    archive = tmp_path / "remote" / io.REMOTE_MODELS_DIR / name / (tag.split(":")[1] + io.MODEL_ARCHIVE_SUFFIX)
    assert archive.is_file() and store.has(tag) and store.metadata(tag) == {"model_md5": "x"}
    assert [m.tag for m in store.models(name)] == [tag]
    with pytest.raises(RegistryError, match="is not in the registry"):
        registry.set_champion(store, f"{name}:missing", reason="unknown")
    assert registry.prune(store, 0, name=name) == [tag]
    assert not archive.exists() and store.models(name) == []


def test_a_remote_without_a_known_conditional_create_is_refused() -> None:
    with pytest.raises(RegistryError, match="no conditional create"):
        RemoteStore("memory://registry")


def test_a_remote_that_ignores_conditional_writes_is_refused_before_promoting(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """An S3-compatible server that ignores If-None-Match behaves like a plain overwrite: the probe sees its second
    exclusive create go through and nothing is promoted."""
    store = RemoteStore(str(tmp_path / "remote"))
    (tmp_path / "m").mkdir()
    tag = _model(tmp_path / "m", f"ignored-{os.getpid()}", store)

    def overwrite(self, path: str, data: bytes) -> None:
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        self.fs.pipe_file(path, data)

    monkeypatch.setattr(RemoteStore, "_create", overwrite)
    with pytest.raises(RegistryError, match="ignores conditional writes"):
        registry.set_champion(store, tag, reason="first", expected=None)
    assert registry.champion_tag(store) is None
