"""Where the registry keeps the champion pointer, the promotion journal and the models: the seam between the
registry's rules (pipelines/release/registry.py) and the storage that every machine of a deployment reads.

Two stores, one interface (`RegistryStore`):

- `LocalStore` (`versioning.registry_remote: null`, the default): `paths.registry_dir` holds `champion.json`, replaced
  with one rename, and `history.jsonl`, appended; the models are this machine's BentoML store (`$BENTOML_HOME`).
  A journal write holds an exclusive `flock` on `<registry_dir>/.promote.lock` while it compares the champion with
  the one its caller expected and writes: the lock a local (or NFS) folder supports.
- `RemoteStore` (`versioning.registry_remote: <fsspec URL>`: `s3://bucket/prefix`, or a folder standing for one):
  the journal is one object per record, `journal/<generation>.json`; the champion is the newest complete promotion
  or rollback, unless an `unset` came after it.
  A journal write creates generation N+1 *only if it does not exist* (fsspec's exclusive create, `open(..., "xb")`:
  O_CREAT|O_EXCL on a local or NFS folder, a conditional PUT with `If-None-Match: *` on S3 and S3-compatible
  stores), so of two promotions that read the same champion exactly one can write the next generation: the other
  gets `PromotionConflict`. The store checks once per process that the remote really refuses a second exclusive
  create (some S3-compatible servers ignore the header) and refuses to promote where it does not. Models travel with
  BentoML's own export/import (`bentoml.models.export_model` to `models/<name>/<version>.bentomodel`, imported into
  the local store of whichever machine needs one), with an index entry beside each (`<version>.json`: tag,
  creation time, labels, metadata) so listing and reading an entry need no download. Files computed after
  registration (the `reference` stage's monitoring reference and calibration, `attach`) are uploaded beside the
  archive (`<version>.files/<name>`) and named with their MD5 in the index entry; `fetch` brings any that this
  machine's copy lacks or holds in another version, so a machine that imported the model at its promotion, before
  the reference stage ran, gets them at its next `fetch`.

Every change of the registry's state is one journal record written by `append`, and the pointer follows its event:
`promote` and `rollback` make its tag the champion, `unset` leaves no champion (the champion was quarantined and no
clean model had served before it), `quarantine` marks a model that must never serve again and moves nothing. So a
quarantine and a promotion are ordered like two promotions (the lock, or the exclusive create of the same
generation), and `append` refuses, under that order, to make a quarantined model champion: no promotion that read
the journal before a quarantine can land after it.

A record that is not valid JSON is either being written (a local file between its exclusive create and its one
write) or torn by a crash: readers skip it as the journal skips a torn line; a promotion waits for a young one
(`PENDING_S`) and passes over an old one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
import uuid
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from pipelines import io
from pipelines.contracts import PromotionRecord
from pipelines.io import CHAMPION_FILE, HISTORY_FILE

log = logging.getLogger(__name__)

# A journal object that is not valid JSON this long after it was created is torn (its writer died), not pending.
PENDING_S = 30.0
# Protocols whose exclusive create fsspec maps onto a conditional write the backend enforces.
EXCLUSIVE_PROTOCOLS = {"file", "local", "s3", "s3a"}
ANY = object()  # `append(expected=ANY)`: no precondition on the champion (a rollback by an operator)
# Journal events: a champion set by the gate or by hand, a model quarantined, the pointer removed (no clean model).
SERVING_EVENTS = ("promote", "rollback")
QUARANTINE_EVENT = "quarantine"
UNSET_EVENT = "unset"


class RegistryError(RuntimeError):
    """The registry cannot do what was asked (no champion yet, unknown tag, a remote it cannot use)."""


class PromotionConflict(RegistryError):
    """The champion changed between the moment a promotion read it and the moment it wrote: another promotion won.
    Nothing was written by the loser; it gates again against the new champion or gives up."""


@dataclass(frozen=True)
class StoredModel:
    """One registered model as the store lists it: enough to list, prune and match without loading it."""

    tag: str
    created: datetime
    labels: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


class RegistryStore(Protocol):
    """What the registry needs from where it lives."""

    location: str

    def champion(self) -> PromotionRecord | None: ...
    def history(self) -> list[PromotionRecord]: ...
    def append(self, record: PromotionRecord, expected: Any = ANY) -> PromotionRecord: ...
    def marker(self) -> Hashable | None: ...
    def models(self, name: str) -> list[StoredModel]: ...
    def has(self, tag: str) -> bool: ...
    def metadata(self, tag: str) -> dict[str, Any]: ...
    def publish(self, tag: str) -> None: ...
    def attach(self, tag: str, names: list[str]) -> None: ...
    def fetch(self, tag: str) -> Path: ...
    def delete(self, tag: str) -> None: ...


# --- this machine's BentoML store -----------------------------------------------------------------------------------

def _bentoml_get(tag: str) -> Any | None:
    import bentoml

    try:
        return bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        return None


def _not_in_store(tag: str, folder: Path) -> RegistryError:
    """A model the registry's record names but this machine's BentoML store does not hold: most often the store
    changed under the project (BENTOML_HOME set, or unset, after the model was registered), so say which store is
    read and the two ways back."""
    store = Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml")
    return RegistryError(
        f"model {tag!r} is not in the BentoML model store {store} (BENTOML_HOME), but the registry's record in "
        f"{folder} names it: it was registered in another store. Set BENTOML_HOME to the store it was registered "
        f"in, or copy it into this one: BENTOML_HOME=<that store> bentoml models export {tag} /tmp/model.bentomodel "
        f"&& bentoml models import /tmp/model.bentomodel && chmod -R a+rX <this store>/models (import makes the "
        f"model's folder 0700; the service's workers read it as another user)")


def _local_models(name: str) -> list[StoredModel]:
    import bentoml

    try:
        stored = list(bentoml.models.list(name))
    except bentoml.exceptions.NotFound:  # a name with no versions yet
        return []
    return [StoredModel(tag=str(model.tag), created=model.info.creation_time, labels=dict(model.info.labels or {}),
                        metadata=dict(model.info.metadata)) for model in stored]


def readable(path: Path) -> Path:
    """BentoML keeps each model in a 0700 folder (a mkdtemp). A serving container that mounts the store reads it as
    another user (deploy/container.py), and a model is no secret: readable like the 0644 files inside it."""
    path.chmod(0o755)
    return path


def quarantined_in(records: list[PromotionRecord]) -> dict[str, PromotionRecord]:
    """The quarantined tags of a journal, each with its record (why, which table, when)."""
    return {record.tag: record for record in records if record.event == QUARANTINE_EVENT and record.tag}


def _pointer(records: list[PromotionRecord]) -> PromotionRecord | None:
    """The champion a journal leaves: its newest promotion or rollback, or none after an `unset`."""
    for record in reversed(records):
        if record.event in SERVING_EVENTS:
            return record
        if record.event == UNSET_EVENT:
            return None
    return None


def _admit(record: PromotionRecord, current: PromotionRecord | None, records: list[PromotionRecord],
           expected: Any) -> PromotionRecord:
    """`record` as it may be written after the journal `records` (the champion being `current`), with `previous`
    set when it moves the pointer; raises, writing nothing, when it must not be.

    A quarantined model is never made champion. `expected` is the champion the caller decided against (ANY: none);
    a quarantined champion still on the pointer (a crash between a quarantine and its rollback, or a hand edit)
    also counts as no champion, the one a gate compares with in its place."""
    banned = quarantined_in(records)
    if record.event in SERVING_EVENTS and record.tag in banned:
        raise RegistryError(f"model {record.tag!r} is quarantined ({banned[record.tag].reason}): it cannot serve "
                            "again")
    now = current.tag if current else None
    if expected is not ANY and expected != now and not (expected is None and now in banned):
        raise PromotionConflict(f"{record.event} of {record.tag or 'no model'} lost: the champion is {now}, not "
                                f"{expected} as when it was decided (another promotion won meanwhile)")
    if record.event in (*SERVING_EVENTS, UNSET_EVENT):
        return record.model_copy(update={"previous": now})
    return record


def _parse(text: str | bytes) -> PromotionRecord | None:
    try:
        return PromotionRecord.model_validate_json(text)
    except ValidationError:
        return None


class LocalStore:
    """`paths.registry_dir` (pointer + journal) and this machine's BentoML store."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.location = str(self.folder)

    def champion(self) -> PromotionRecord | None:
        pointer = self.folder / CHAMPION_FILE
        if not pointer.exists():
            return None
        return PromotionRecord.model_validate_json(pointer.read_text())

    def history(self) -> list[PromotionRecord]:
        """The journal's complete lines; a line torn by a crash mid-append (no trailing newline) is skipped."""
        path = self.folder / HISTORY_FILE
        if not path.exists():
            return []
        # The text after the last newline is incomplete or empty; a torn line followed by a later append is never a
        # promotion that happened.
        return [record for line in path.read_text().split("\n")[:-1] if (record := _parse(line)) is not None]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / io.PROMOTE_LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def append(self, record: PromotionRecord, expected: Any = ANY) -> PromotionRecord:
        """Under the folder's lock: check the champion is still `expected`, append the journal line (fsynced), then
        replace the pointer in one rename (or remove it for `unset`). A crash leaves the old champion or the new
        one."""
        with self._locked():
            record = _admit(record, self.champion(), self.history(), expected)
            journal_path = self.folder / HISTORY_FILE
            torn = (journal_path.exists() and journal_path.stat().st_size > 0
                    and not journal_path.read_bytes().endswith(b"\n"))
            with open(journal_path, "a") as journal:
                journal.write(("\n" if torn else "") + record.model_dump_json() + "\n")
                journal.flush()
                os.fsync(journal.fileno())
            if record.event in SERVING_EVENTS:
                io.write_json(self.folder / CHAMPION_FILE, record.to_json_dict(), durable=True)
            elif record.event == UNSET_EVENT:
                (self.folder / CHAMPION_FILE).unlink(missing_ok=True)
        return record

    def marker(self) -> Hashable | None:
        try:
            stat = (self.folder / CHAMPION_FILE).stat()
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_size, stat.st_ino

    def models(self, name: str) -> list[StoredModel]:
        return _local_models(name)

    def has(self, tag: str) -> bool:
        return _bentoml_get(tag) is not None

    def metadata(self, tag: str) -> dict[str, Any]:
        stored = _bentoml_get(tag)
        if stored is None:
            raise _not_in_store(tag, self.folder)
        return dict(stored.info.metadata)

    def publish(self, tag: str) -> None:
        """Nothing to do: the local store is the registry."""

    def attach(self, tag: str, names: list[str]) -> None:
        """Nothing to do: the files were written into the local store's copy, the only one."""

    def fetch(self, tag: str) -> Path:
        stored = _bentoml_get(tag)
        if stored is None:
            raise _not_in_store(tag, self.folder)
        return Path(stored.path)

    def delete(self, tag: str) -> None:
        import bentoml

        bentoml.models.delete(tag)


# --- a remote every machine reads ------------------------------------------------------------------------------------

class RemoteStore:
    """The journal, the index and the models under an fsspec URL; this machine's BentoML store is its cache."""

    def __init__(self, url: str) -> None:
        import fsspec

        self.location = url.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.location)
        protocols = {self.fs.protocol} if isinstance(self.fs.protocol, str) else set(self.fs.protocol)
        if not protocols & EXCLUSIVE_PROTOCOLS:
            raise RegistryError(f"versioning.registry_remote {url!r}: no conditional create is known for "
                                f"{sorted(protocols)}, so two promotions could both win; use a folder or "
                                f"an S3(-compatible) URL ({', '.join(sorted(EXCLUSIVE_PROTOCOLS))})")
        self._exclusive_checked = False
        self._complete: dict[str, PromotionRecord] = {}  # journal objects read whole: never written again

    # paths under the root
    def _path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def _model_paths(self, tag: str) -> tuple[str, str]:
        base = self._model_base(tag)
        return base + io.MODEL_ARCHIVE_SUFFIX, base + io.REMOTE_RECORD_SUFFIX

    def _model_base(self, tag: str) -> str:
        name, _, version = tag.partition(":")
        if not version:
            raise RegistryError(f"{tag!r} is not a model tag (name:version)")
        return self._path(io.REMOTE_MODELS_DIR, name, version)

    def _put_atomic(self, path: str, data: bytes) -> None:
        """Write `path` whole or not at all for a reader: a temp object beside it, then moved over it (a rename on a
        folder; on S3 a single PUT is already atomic and the move is a server-side copy)."""
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        temp = f"{path}.{uuid.uuid4().hex}.tmp"
        self.fs.pipe_file(temp, data)
        self.fs.mv(temp, path)

    def _url(self, path: str) -> str:
        """`path` as a URL BentoML's export/import (fsspec) opens."""
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return path if protocol in ("file", "local") else self.fs.unstrip_protocol(path)

    # --- the journal ---
    def _generations(self) -> list[tuple[int, str]]:
        folder = self._path(io.REMOTE_JOURNAL_DIR)
        try:
            names = self.fs.ls(folder, detail=False, refresh=True)
        except FileNotFoundError:
            return []
        found = []
        for path in names:
            stem = path.rstrip("/").rsplit("/", 1)[-1].removesuffix(io.REMOTE_RECORD_SUFFIX)
            if stem.isdigit():
                found.append((int(stem), path))
        return sorted(found)

    def _read(self, path: str) -> PromotionRecord | None:
        """A journal object's record; None while it is being written or when torn. A complete one never changes
        (exclusive create, one write), so each is read once per process."""
        if path in self._complete:
            return self._complete[path]
        try:
            record = _parse(self.fs.cat_file(path))
        except FileNotFoundError:
            return None
        if record is not None:
            self._complete[path] = record
        return record

    def _age_s(self, path: str) -> float:
        try:
            modified = self.fs.modified(path)
        except (FileNotFoundError, NotImplementedError):
            return 0.0
        if modified.tzinfo is None:
            modified = modified.astimezone(UTC)
        return (datetime.now(UTC) - modified).total_seconds()

    def champion(self) -> PromotionRecord | None:
        for _, path in reversed(self._generations()):
            record = self._read(path)
            if record is None or record.event == QUARANTINE_EVENT:
                continue
            return record if record.event in SERVING_EVENTS else None  # unset: no champion
        return None

    def history(self) -> list[PromotionRecord]:
        return [record for _, path in self._generations() if (record := self._read(path)) is not None]

    def _create(self, path: str, data: bytes) -> None:
        """Write `path` only if it does not exist (FileExistsError otherwise): fsspec's exclusive create."""
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)  # a folder needs its parents; a bucket ignores this
        with self.fs.open(path, "xb") as out:
            out.write(data)

    def _check_exclusive(self) -> None:
        """Create a probe object twice, exclusively: a store that lets the second through ignores conditional writes
        (an older S3-compatible server), and promoting there could let two promotions win."""
        if self._exclusive_checked:
            return
        probe = self._path(".exclusive-probe", uuid.uuid4().hex)
        self._create(probe, b"probe")
        try:
            self._create(probe, b"again")
        except FileExistsError:
            self._exclusive_checked = True
        finally:
            with contextlib.suppress(OSError):
                self.fs.rm(probe)
        if not self._exclusive_checked:
            raise RegistryError(f"the registry remote {self.location} accepted a second exclusive create of the same "
                                "object: it ignores conditional writes (If-None-Match), so two promotions could both "
                                "win. Use a store that enforces them (AWS S3, MinIO >= 2024-11, a local or NFS folder)")

    def append(self, record: PromotionRecord, expected: Any = ANY) -> PromotionRecord:
        """Write the next journal generation only if no one else has: the conditional write is the promotion (or
        quarantine, or unset), decided on the journal up to the generation before it."""
        self._check_exclusive()
        deadline = time.monotonic() + PENDING_S
        while True:
            generations = self._generations()
            newest = generations[-1] if generations else None
            if newest is not None and self._read(newest[1]) is None and self._age_s(newest[1]) < PENDING_S:
                if time.monotonic() > deadline:  # pragma: no cover - a writer stuck between create and write
                    raise PromotionConflict(f"journal object {newest[1]} is still incomplete after {PENDING_S:.0f}s")
                time.sleep(0.1)  # another promotion is writing its record
                continue
            break
        records = [written for _, path in generations if (written := self._read(path)) is not None]
        record = _admit(record, _pointer(records), records, expected)
        generation = (newest[0] if newest else 0) + 1
        path = self._path(io.REMOTE_JOURNAL_DIR, io.journal_record_name(generation))
        try:
            self._create(path, record.model_dump_json().encode())
        except FileExistsError:
            raise PromotionConflict(f"{record.event} of {record.tag or 'no model'} lost: journal generation "
                                    f"{generation} was written by another promotion first") from None
        return record

    def marker(self) -> Hashable | None:
        """Changes whenever a promotion lands: the newest generation's name (one listing request)."""
        generations = self._generations()
        return (len(generations), generations[-1][1]) if generations else None

    # --- the models ---
    def models(self, name: str) -> list[StoredModel]:
        folder = self._path(io.REMOTE_MODELS_DIR, name)
        try:
            paths = [p for p in self.fs.ls(folder, detail=False, refresh=True) if p.endswith(io.REMOTE_RECORD_SUFFIX)]
        except FileNotFoundError:
            return []
        models = []
        for path in paths:
            with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
                entry = json.loads(self.fs.cat_file(path))
                models.append(StoredModel(tag=entry["tag"], created=datetime.fromisoformat(entry["created"]),
                                          labels=entry.get("labels") or {}, metadata=entry.get("metadata") or {}))
        return models

    def _index(self, tag: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.fs.cat_file(self._model_paths(tag)[1]))
        except FileNotFoundError:
            return None

    def has(self, tag: str) -> bool:
        return self._index(tag) is not None

    def metadata(self, tag: str) -> dict[str, Any]:
        entry = self._index(tag)
        if entry is None:
            raise RegistryError(f"model {tag!r} is not in the registry remote {self.location}")
        return dict(entry.get("metadata") or {})

    def publish(self, tag: str) -> None:
        """Export the model from the local store (BentoML's archive), then its index entry: an entry in the index
        means a complete archive beside it."""
        import bentoml

        stored = _bentoml_get(tag)
        if stored is None:
            raise RegistryError(f"model {tag!r} is not in the BentoML model store: nothing to publish")
        archive, index = self._model_paths(str(stored.tag))
        if self.fs.exists(index):
            return
        self.fs.makedirs(archive.rsplit("/", 1)[0], exist_ok=True)
        bentoml.models.export_model(str(stored.tag), self._url(archive))
        entry = {"tag": str(stored.tag), "created": stored.info.creation_time.isoformat(),
                 "labels": dict(stored.info.labels or {}), "metadata": dict(stored.info.metadata)}
        self._put_atomic(index, json.dumps(io.to_jsonable(entry)).encode())
        log.info("published %s to %s", tag, self.location)

    def attach(self, tag: str, names: list[str]) -> None:
        """Upload the files `names` of the local copy of `tag` beside its archive, then name them (with their MD5)
        in its index entry: an entry names only files already uploaded whole."""
        entry = self._index(tag)
        stored = _bentoml_get(tag)
        if entry is None or stored is None:
            raise RegistryError(f"model {tag!r} is not in the registry remote {self.location} and this machine's "
                                "store: nothing to attach to")
        attached = dict(entry.get("files") or {})
        for name in names:
            local = Path(stored.path) / name
            self._put_atomic(f"{self._model_base(tag)}{io.REMOTE_ATTACHED_SUFFIX}/{name}", local.read_bytes())
            attached[name] = io.file_md5(local)
        self._put_atomic(self._model_paths(tag)[1], json.dumps(io.to_jsonable({**entry, "files": attached})).encode())
        log.info("attached %s to %s in %s", ", ".join(names), tag, self.location)

    def _sync_attached(self, tag: str, folder: Path) -> None:
        """Bring the attached files the index names into the local copy where it lacks them or holds another
        version (each written atomically: a reader sees the old file or the new one)."""
        entry = self._index(tag) or {}
        for name, md5 in (entry.get("files") or {}).items():
            local = folder / name
            if local.exists() and io.file_md5(local) == md5:
                continue
            data = self.fs.cat_file(f"{self._model_base(tag)}{io.REMOTE_ATTACHED_SUFFIX}/{name}")
            io.write_atomic(local, lambda path, data=data: path.write_bytes(data))
            local.chmod(0o644)
            log.info("brought %s of %s from %s", name, tag, self.location)

    def fetch(self, tag: str) -> Path:
        """The model's folder in this machine's store, imported from the remote the first time it is needed."""
        import bentoml

        stored = _bentoml_get(tag)
        if stored is None:
            if not self.has(tag):
                raise RegistryError(f"model {tag!r} is not in the registry remote {self.location}")
            try:
                bentoml.models.import_model(self._url(self._model_paths(tag)[0]))
            except bentoml.exceptions.BentoMLException:
                if _bentoml_get(tag) is None:  # not another process importing the same model at once
                    raise
            stored = _bentoml_get(tag)
            if stored is None:
                raise RegistryError(f"model {tag!r} could not be imported from {self.location}")
            readable(Path(stored.path))
            log.info("imported %s from %s", tag, self.location)
        self._sync_attached(str(stored.tag), Path(stored.path))
        return Path(stored.path)

    def delete(self, tag: str) -> None:
        import bentoml

        archive, index = self._model_paths(tag)
        for path in (index, archive):  # the index entry first: never an entry without its archive
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(path)
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self._model_base(tag) + io.REMOTE_ATTACHED_SUFFIX, recursive=True)
        if _bentoml_get(tag) is not None:
            bentoml.models.delete(tag)


def open_store(registry_dir: Path, remote: str | None) -> RegistryStore:
    """The store for a registry folder and an optional remote URL (params: paths.registry_dir,
    versioning.registry_remote)."""
    return RemoteStore(remote) if remote else LocalStore(registry_dir)
