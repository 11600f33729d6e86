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


def _model(tmp_path: Path, name: str, store, table_md5: str | None = None) -> str:
    folder = tmp_path / f"model-{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    (folder / io.MODEL_FILE).write_text("not a real model: the registry moves files, it does not read them\n")
    metadata = {"model_md5": "x", **({"data_version": {"raw_table_md5": table_md5}} if table_md5 else {})}
    return registry.save_model(folder, metadata, name=name, registry=store)


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


@pytest.mark.parametrize("kind", ["local", "remote"])
def test_quarantine_goes_through_the_store_and_moves_the_champion_for_every_reader(kind: str, tmp_path: Path) -> None:
    """`models quarantine --table MD5` on either store: the quarantine records and the champion's replacement are
    journal records of the store (on a remote, generations every machine lists), so a reader opened afresh (another
    machine) sees the clean champion, then none once the clean one is quarantined too; a quarantined model is never
    promoted or rolled back to again, and a pointer left on one counts as no champion for a gate's promotion."""
    store = _store(kind, tmp_path)
    (tmp_path / "m").mkdir()
    name = f"quarantine-{kind}-{os.getpid()}"
    clean = _model(tmp_path / "m", name, store, table_md5="good")
    bad, worse, unserved = (_model(tmp_path / "m", name, store, table_md5="bad") for _ in range(3))
    later = _model(tmp_path / "m", name, store, table_md5="later")
    registry.set_champion(store, clean, reason="first", expected=None)
    registry.set_champion(store, bad, reason="second", expected=clean)
    registry.set_champion(store, worse, reason="third", expected=bad)

    def reader():  # another machine: nothing cached, the folder or the remote read afresh
        return LocalStore(store.folder) if kind == "local" else RemoteStore(store.location)

    outcome = registry.quarantine(store, name=name, table_md5="bad", reason="the April table failed the suite")
    assert outcome == {"quarantined": [bad, worse, unserved], "table_md5": "bad", "champion": clean,
                       "previous": worse}
    assert registry.champion_tag(reader()) == clean
    journal = registry.history(reader())
    assert [(r.event, r.tag) for r in journal[3:]] == [("quarantine", bad), ("quarantine", worse),
                                                       ("quarantine", unserved), ("rollback", clean)]
    assert journal[-1].previous == worse and {r.table_md5 for r in journal[3:6]} == {"bad"}
    assert set(registry.quarantined(reader())) == {bad, worse, unserved}
    stages = {m.tag: m.stage for m in registry.list_models(reader(), name=name)}
    assert stages == {clean: "champion", bad: "quarantined", worse: "quarantined", unserved: "quarantined",
                      later: "candidate"}
    with pytest.raises(RegistryError, match="is quarantined"):
        registry.set_champion(store, worse, reason="by hand", expected=clean)
    with pytest.raises(RegistryError, match="is quarantined"):
        registry.rollback(store, bad)
    with pytest.raises(RegistryError, match="no earlier champion"):
        registry.rollback(store)  # every former champion but the current one is quarantined
    assert len(registry.history(reader())) == len(journal)  # the refusals wrote nothing
    # Again: a no-op. Then the clean champion by its tag: no clean model served before it, so the pointer goes.
    assert registry.quarantine(store, name=name, table_md5="bad", reason="again")["champion"] == clean
    assert len(registry.history(reader())) == len(journal)
    marker = reader().marker()
    outcome = registry.quarantine(store, name=name, tag=clean, reason="found bad by hand")
    assert outcome["champion"] is None and outcome["previous"] == clean and outcome["table_md5"] == "good"
    assert registry.champion_tag(reader()) is None and reader().marker() != marker
    last = registry.history(reader())[-1]
    assert (last.event, last.tag, last.previous) == ("unset", None, clean)
    with pytest.raises(RegistryError, match="no champion yet"):
        registry.require_champion(reader())
    # The next challenger is judged against no champion and promoted over none.
    registry.set_champion(store, later, reason="clean challenger", expected=None)
    assert registry.champion_tag(reader()) == later
    assert sorted(registry.prune(store, 0, name=name, dry_run=True)) == sorted([clean, bad, worse, unserved])


@pytest.mark.parametrize("kind", ["local", "remote"])
def test_a_quarantined_champion_left_on_the_pointer_counts_as_none(kind: str, tmp_path: Path) -> None:
    """A quarantine interrupted between its record and the champion's replacement (or a pointer edited by hand)
    leaves a quarantined champion: the gate compares with no champion (`expected=None`) and its promotion lands; a
    second quarantine call finishes the move."""
    from datetime import UTC, datetime

    from pipelines.contracts import PromotionRecord

    store = _store(kind, tmp_path)
    (tmp_path / "m").mkdir()
    name = f"interrupted-{kind}-{os.getpid()}"
    first, second, third = (_model(tmp_path / "m", name, store, table_md5=f"t{i}") for i in range(3))
    registry.set_champion(store, first, reason="first", expected=None)
    registry.set_champion(store, second, reason="second", expected=first)
    store.append(PromotionRecord(event="quarantine", tag=second, table_md5="t1", reason="crash after this",
                                 at=datetime.now(UTC).isoformat()))
    assert registry.champion_tag(store) == second  # the quarantine record moves nothing by itself
    assert registry.quarantine(store, name=name, table_md5="t1", reason="finish")["champion"] == first
    store.append(PromotionRecord(event="quarantine", tag=first, table_md5="t0", reason="crash after this",
                                 at=datetime.now(UTC).isoformat()))
    with pytest.raises(PromotionConflict, match=f"the champion is {first}, not {third}"):
        registry.set_champion(store, third, reason="stale", expected=third)
    record = registry.set_champion(store, third, reason="judged against no champion", expected=None)
    assert record.previous == first and registry.champion_tag(store) == third


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


# --- machines with their own BentoML stores, sharing only the registry remote --------------------------------------

def _on_machine(home: str, remote: str, steps: list[tuple], results) -> None:
    """A process standing for another machine: its own BentoML store (`BENTOML_HOME`, set before BentoML is
    imported), the registry remote shared. `steps`: ("save", folder), ("promote", tag, expected) (tag None: the
    model the previous step saved), ("champion",), ("marker",), ("fetch", tag), ("attach", tag, name, text),
    ("attach_served", tag, folder) (tag None: the previous step's); each answer goes to `results` (a lost
    promotion answers "conflict: ...")."""
    os.environ["BENTOML_HOME"] = home
    store = RemoteStore(remote)
    answers: list = []
    for step in steps:
        kind = step[0]
        if kind == "save":
            answers.append(registry.save_model(Path(step[1]), {"model_md5": step[1]}, name="machines", registry=store))
        elif kind == "promote":
            try:
                answers.append(registry.set_champion(store, step[1] or answers[-1], reason="test",
                                                     expected=step[2]).tag)
            except PromotionConflict as conflict:
                answers.append(f"conflict: {conflict}")
        elif kind == "champion":
            answers.append(registry.champion_tag(store))
        elif kind == "marker":
            answers.append(repr(store.marker()))
        elif kind == "fetch":
            folder = registry.model_path(step[1], store)
            answers.append({"folder": str(folder), "files": {p.relative_to(folder).as_posix(): p.read_text()
                                                             for p in sorted(folder.rglob("*")) if p.is_file()}})
        elif kind == "attach":
            registry.attach_files(step[1], {step[2]: lambda path, text=step[3]: path.write_text(text)}, store)
            answers.append(None)
        elif kind == "attach_served":
            answers.append(str(registry.attach_served_variant(step[1] or answers[-1], Path(step[2]), store)))
    results.put(answers)


def _machine(context, home: Path, remote: Path, *steps: tuple) -> list:
    results = context.Queue()
    process = context.Process(target=_on_machine, args=(str(home), str(remote), list(steps), results))
    process.start()
    answers = results.get(timeout=180)
    process.join(timeout=60)
    assert process.exitcode == 0
    return answers


def test_a_promotion_from_one_machine_is_seen_by_another_with_its_own_store(tmp_path: Path) -> None:
    """Worker A saves and promotes; worker B, with an empty store of its own, sees the new champion at once (the
    journal is listed afresh at each read: no stale pointer), imports the model, and sees the next promotion's
    marker change (what the service's watcher compares). Files the reference stage attaches after B imported the
    model reach B's copy at its next fetch. B's promotion decided against the old champion loses."""
    context = multiprocessing.get_context("spawn")  # BENTOML_HOME is read when BentoML is first imported
    remote, home_a, home_b = tmp_path / "remote", tmp_path / "a" / "bentoml", tmp_path / "b" / "bentoml"
    models = []
    for index in range(2):
        folder = tmp_path / f"model-{index}"
        folder.mkdir()
        (folder / io.MODEL_FILE).write_text(f"model {index}\n")
        models.append(str(folder))
    first, promoted = _machine(context, home_a, remote, ("save", models[0]), ("promote", None, None))
    assert promoted == first
    champion, marker, fetched = _machine(context, home_b, remote, ("champion",), ("marker",), ("fetch", first))
    assert champion == first
    assert Path(fetched["folder"]).is_relative_to(home_b) and fetched["files"][io.MODEL_FILE] == "model 0\n"
    assert io.REFERENCE_FILE not in fetched["files"]
    # A attaches the reference after B imported the model, then promotes a second model over the first.
    _, second, promoted = _machine(context, home_a, remote, ("attach", first, io.REFERENCE_FILE, "reference of 0"),
                                   ("save", models[1]), ("promote", None, first))
    assert promoted == second
    champion, new_marker, refetched, lost = _machine(context, home_b, remote, ("champion",), ("marker",),
                                                     ("fetch", first), ("promote", first, first))
    assert champion == second and new_marker != marker
    assert refetched["folder"] == fetched["folder"] and refetched["files"][io.REFERENCE_FILE] == "reference of 0"
    assert lost.startswith("conflict:") and f"the champion is {second}, not {first}" in lost
    assert [r.tag for r in registry.history(RemoteStore(str(remote)))] == [first, second]


def test_a_served_variant_attached_on_one_machine_reaches_another_whole(tmp_path: Path) -> None:
    """The gate attaches the variant stage's folder (a report and a variant's own folder) to the model it registers;
    another machine's store gets the same tree under `served/` at its next fetch, and an attachment for another
    serve.artifact replaces it there without what the old report named."""
    context = multiprocessing.get_context("spawn")
    remote, home_a, home_b = tmp_path / "remote", tmp_path / "a" / "bentoml", tmp_path / "b" / "bentoml"
    model, served = tmp_path / "model", tmp_path / "served"
    model.mkdir()
    (model / io.MODEL_FILE).write_text("model\n")
    (served / "trees").mkdir(parents=True)
    (served / "trees" / io.MODEL_FILE).write_text("trees variant\n")
    (served / io.VARIANTS_REPORT_FILE).write_text('{"served": "trees"}')
    tag, _, attached = _machine(context, home_a, remote, ("save", str(model)), ("promote", None, None),
                                ("attach_served", None, str(served)))
    assert attached == str(Path(_machine(context, home_a, remote, ("fetch", tag))[0]["folder"]) / "served")
    [fetched] = _machine(context, home_b, remote, ("fetch", tag))
    assert Path(fetched["folder"]).is_relative_to(home_b)
    assert {name: text for name, text in fetched["files"].items() if name.startswith("served/")} == {
        f"served/trees/{io.MODEL_FILE}": "trees variant\n", f"served/{io.VARIANTS_REPORT_FILE}": '{"served": "trees"}'}
    with pytest.raises(RegistryError, match="no variants.json in"):
        registry.attach_served_variant(tag, tmp_path / "nothing", RemoteStore(str(remote)))
    (served / "trees" / io.MODEL_FILE).unlink()
    (served / "trees").rmdir()
    (served / "onnx").mkdir()
    (served / "onnx" / io.ONNX_FILE).write_text("onnx variant\n")
    (served / io.VARIANTS_REPORT_FILE).write_text('{"served": "onnx"}')
    [local] = _machine(context, home_a, remote, ("attach_served", tag, str(served)))
    assert sorted(p.relative_to(local).as_posix() for p in Path(local).rglob("*")) == [
        "onnx", f"onnx/{io.ONNX_FILE}", io.VARIANTS_REPORT_FILE]


def test_s3_urls_reach_the_s3_filesystems_of_dvc_and_the_registry(tmp_path: Path) -> None:
    """The S3 set-up docs/scale-out.md shows, as far as it goes without an endpoint: `dvc remote add` with an s3://
    URL resolves to DVC's S3 plugin (dvc-s3), and `versioning.registry_remote: s3://...` opens on s3fs (whose
    exclusive create is the conditional PUT); no request is sent."""
    import subprocess
    import sys

    from dvc.repo import Repo

    def dvc(*args: str) -> None:
        subprocess.run([sys.executable, "-m", "dvc", *args], cwd=tmp_path, check=True, capture_output=True)

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    dvc("init", "-q")
    dvc("remote", "add", "-d", "storage", "s3://my-bucket/flightops-dvc")
    dvc("remote", "modify", "storage", "endpointurl", "https://minio.internal:9000")
    remote = Repo(str(tmp_path)).cloud.get_remote()
    assert type(remote.fs).__module__.startswith("dvc_s3") and remote.path == "my-bucket/flightops-dvc"
    store = RemoteStore("s3://my-bucket/flightops-registry/")
    assert "s3" in store.fs.protocol and store.root == "my-bucket/flightops-registry"


@pytest.mark.parametrize("kind", ["local", "remote"])
def test_a_saved_model_is_readable_by_the_serving_workers_user(kind: str, tmp_path: Path) -> None:
    """BentoML writes each model in a 0700 temp folder: the folder in the store must be opened up (0755), or the
    service's workers (another user when `bentoml serve` runs as root) and a serving container cannot load it."""
    import stat

    store = LocalStore(tmp_path / "registry") if kind == "local" else RemoteStore(str(tmp_path / "remote"))
    (tmp_path / "m").mkdir()
    tag = _model(tmp_path / "m", f"readable-{kind}-{os.getpid()}", store)
    assert stat.S_IMODE(registry.model_path(tag).stat().st_mode) == 0o755


def test_a_model_the_record_names_but_the_store_lacks_names_the_store_and_the_way_back(tmp_path: Path) -> None:
    """The own-data walkthrough as root: `dvc repro` registered in ~/bentoml, `bentoml serve` asked for
    BENTOML_HOME=$PWD/var/bentoml, and the next `dvc repro` (gate, reference) looks for the champion in the new
    store. The error says which store was read and how to get the model there, not only that it is missing."""
    store = LocalStore(tmp_path / "registry")
    home = os.environ.get("BENTOML_HOME") or str(Path.home() / "bentoml")
    for read in (store.metadata, store.fetch):
        with pytest.raises(RegistryError) as raised:
            read("ghost-classifier:abc123")
        message = str(raised.value)
        assert f"model 'ghost-classifier:abc123' is not in the BentoML model store {home} (BENTOML_HOME)" in message
        assert str(tmp_path / "registry") in message
        assert "bentoml models export ghost-classifier:abc123 /tmp/model.bentomodel" in message
