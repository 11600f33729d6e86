"""The model registry: BentoML's model store holds the models, one small record says which one is the champion.

Why a pointer and not labels: BentoML model labels are fixed when a model is saved, and promotion must be atomic.
Where the pointer, the promotion journal and the models live is the store's business (`pipelines/release/store.py`):
by default `<registry_dir>/champion.json`, replaced with one rename under a lock, beside `history.jsonl`, with the
models in this machine's BentoML store; with `versioning.registry_remote` a remote every machine reads, where a
promotion is a conditional write of the journal's next generation and the models travel by BentoML export/import.
Either way a promotion names the champion it expects to replace (the one the gate compared against): if another
promotion won meanwhile it raises `PromotionConflict` and writes nothing, so two concurrent promotions cannot both
win. A model's stage is derived: the pointer's model is `champion`, models that were champion before are
`retired`, a model the gate refused is `refused` (its `gate` label, set when it is saved), a model quarantined
(trained on a table found bad after it served: `quarantine`, a journal record written through the store like a
promotion) is `quarantined`, the rest `candidate`. `prune` deletes what is none of the champion and the last N
promoted.

Every function takes the registry as a store or, as before, a registry folder (a `LocalStore`); `open_registry`
gives the store params name. The local store is BentoML's own (`$BENTOML_HOME`, default `~/bentoml`), so
`bentoml models list` and `bentoml build` see the same models.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pipelines import io
from pipelines.contracts import (
    DataVersion,
    EvaluationReport,
    GateReport,
    Lineage,
    ModelMeta,
    PromotionRecord,
    RegistryEntry,
    RegistryMetrics,
)
from pipelines.model.catalog import load_model as _load_model
from pipelines.model.seam import TrainedModel
from pipelines.release import lineage
from pipelines.release.store import (
    ANY,
    QUARANTINE_EVENT,
    SERVING_EVENTS,
    UNSET_EVENT,
    LocalStore,
    PromotionConflict,
    RegistryError,
    RegistryStore,
    StoredModel,
    open_store,
    quarantined_in,
    readable,
)

if TYPE_CHECKING:
    from pipelines.config import Params

__all__ = ["ANY", "QUARANTINE_EVENT", "SERVING_EVENTS", "UNSET_EVENT", "PromotionConflict", "RegistryError",
           "RegistryStore"]

Registry = RegistryStore | Path  # a store, or a registry folder (a LocalStore)


@dataclass(frozen=True)
class RegisteredModel:
    tag: str
    stage: str
    created: str
    entry: RegistryEntry  # what is stored with it, read whatever version stored it


GATE_LABEL = "gate"  # "passed" or "refused": the gate's verdict, a label of the stored model


def open_registry(params: Params) -> RegistryStore:
    """The registry params name: `versioning.registry_remote` when set (every machine reads it), else
    `paths.registry_dir` of the repository the run belongs to (`registry_home`) and this machine's model store."""
    return open_store(registry_home(params.paths.registry_dir), params.versioning.registry_remote)


def _store(registry: Registry | None) -> RegistryStore:
    if registry is None:
        return LocalStore(Path("."))  # the model functions' default: this machine's BentoML store only
    return LocalStore(Path(registry)) if isinstance(registry, str | os.PathLike) else registry


def save_model(model_dir: Path, entry: RegistryEntry | Mapping[str, Any], *, name: str,
               extra_files: dict[str, Callable[[Path], None]] | None = None,
               labels: dict[str, str] | None = None, registry: Registry | None = None) -> str:
    """Copy a trained model directory into the store as a new version of `name` (params' project.model_name), with
    `entry` as its metadata; returns its tag (`name:version`). (A plain mapping is stored as given: models saved by
    hand or by tests; the pipeline stores a `RegistryEntry`.) With a remote `registry` the model is published there
    too (BentoML's export), so every machine can load it.

    `extra_files` maps a file name to a writer that fills it inside the stored model (e.g. the monitoring
    reference sample), so what belongs to this model travels with it.
    """
    import shutil

    import bentoml

    # BentoML accepts plain values only, and no None
    safe = entry.to_metadata() if isinstance(entry, RegistryEntry) else io.without_nulls(io.to_jsonable(entry))
    meta = ModelMeta.load(model_dir)
    family = meta.family if meta is not None else "lightgbm"
    with bentoml.models.create(name, labels={"framework": family, **(labels or {})}, metadata=safe,
                               module="pipelines.release.registry") as stored:
        for item in model_dir.iterdir():
            shutil.copy2(item, Path(stored.path) / item.name)
        for file_name, write in (extra_files or {}).items():
            write(Path(stored.path) / file_name)
    tag = str(stored.tag)
    readable(model_path(tag))  # the folder in the store (`stored.path` was the temp folder it was written in)
    _store(registry).publish(tag)
    return tag


def attach_files(tag: str, files: dict[str, Callable[[Path], None]], registry: Registry | None = None) -> Path:
    """Write `files` (name -> writer) into the stored model `tag`, each atomically (temp file + rename): what is
    computed after registration and belongs to the model (its monitoring reference and calibration, by the
    `reference` stage) travels with it. A reader sees the old file or the new one, never half of one. With a remote
    `registry` the files are uploaded beside the model's archive too, and every machine's `model_path` brings them
    into its own store (a machine that imported the model before they were attached included)."""
    store = _store(registry)
    folder = store.fetch(tag)
    for name, write in files.items():
        io.write_atomic(folder / name, write)
        (folder / name).chmod(0o644)
    store.attach(tag, list(files))
    return folder


def attach_served_variant(tag: str, served_dir: Path, registry: Registry | None = None) -> Path:
    """Attach the `variant` stage's folder (`served_dir`: its report and the variant serve.artifact names) to the
    registered model `tag`, under `io.SERVED_VARIANT_DIR`; returns that folder in the store.

    Why: the workspace's folder holds the variant of the latest candidate only. Attached, the variant the gate
    checked travels with its model, so the service serves it whenever that model is champion: after a rollback, a
    promotion on another machine (a registry remote), or as the Bento's bundled model. The report goes last, so a
    reader that finds the new report finds the files it names.
    """
    import shutil

    report = served_dir / io.VARIANTS_REPORT_FILE
    if not report.is_file():
        raise RegistryError(f"no {io.VARIANTS_REPORT_FILE} in {served_dir}: run the variant stage (dvc repro "
                            "variant) before attaching its variant")
    files = [path for path in sorted(served_dir.rglob("*")) if path.is_file() and path != report] + [report]
    names = [f"{io.SERVED_VARIANT_DIR}/{path.relative_to(served_dir).as_posix()}" for path in files]
    folder = attach_files(tag, {name: (lambda out, source=path: shutil.copyfile(source, out))
                                for name, path in zip(names, files, strict=True)}, registry)
    attached = folder / io.SERVED_VARIANT_DIR
    # What an earlier attachment (another serve.artifact) left: gone once the new report no longer names it.
    for path in sorted(attached.rglob("*"), reverse=True):
        if path.is_file() and path.relative_to(folder).as_posix() not in names:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    for directory in [attached, *attached.rglob("*")]:
        if directory.is_dir():
            readable(directory)  # the served workers read it as their own user, whatever this process's umask
    return attached


def model_path(tag: str, registry: Registry | None = None) -> Path:
    """The model's folder in this machine's store; with a remote `registry`, imported from it when missing (and its
    attached files brought up to date)."""
    return _store(registry).fetch(tag)


def has_model(tag: str, registry: Registry | None = None) -> bool:
    return _store(registry).has(tag)


def load_model(tag: str, registry: Registry | None = None) -> TrainedModel:
    """The registered model `tag`, through the model seam (whatever its family)."""
    return _load_model(model_path(tag, registry))


def model_entry(tag: str, registry: Registry | None = None) -> RegistryEntry:
    """What `save_model` stored with `tag` (metrics, params, data version, lineage, schema, gate), typed; from a
    remote registry's index without downloading the model."""
    return RegistryEntry.from_metadata(_store(registry).metadata(tag))


def registry_home(registry_dir: Path) -> Path:
    """The registry a DVC stage must use: `registry_dir` of the repository the run belongs to.

    `dvc exp run --temp` runs the stages in a copy of the repo under .dvc/tmp/exps and tells them the parent
    repository in `DVC_ROOT`: the champion pointer and journal are that repository's, or a retrain would gate
    against no champion and promote into a folder deleted with the copy. Outside DVC (or in the workspace,
    where DVC_ROOT is the working directory) the path is used as given.
    """
    root = os.environ.get("DVC_ROOT")
    return Path(root) / registry_dir if root and not registry_dir.is_absolute() else registry_dir


def champion_record(registry: Registry) -> PromotionRecord | None:
    return _store(registry).champion()


def champion_tag(registry: Registry) -> str | None:
    record = champion_record(registry)
    return record.tag if record else None


def require_champion(registry: Registry) -> str:
    tag = champion_tag(registry)
    if tag is None:
        raise RegistryError(f"no champion yet in {_store(registry).location}: run the training DAG so the gate can "
                            "promote one")
    return tag


def history(registry: Registry) -> list[PromotionRecord]:
    """Every journal record (promotions, rollbacks, quarantines, unsets), oldest first (a record torn by a crash is
    skipped)."""
    return _store(registry).history()


def set_champion(registry: Registry, tag: str, reason: str, event: Literal["promote", "rollback"] = "promote",
                 expected: Any = ANY) -> PromotionRecord:
    """Make `tag` the champion atomically; `expected`: the champion tag (or None) the caller decided against.

    Raises `PromotionConflict`, having written nothing, when the champion is no longer `expected` or another
    promotion wrote first, and `RegistryError` for a quarantined model (it never serves again: the store checks it
    in the same step as the write); returns the record written (with `previous`).
    """
    store = _store(registry)
    if not store.has(tag):
        raise RegistryError(f"model {tag!r} is not in the registry ({store.location})")
    record = PromotionRecord(event=event, tag=tag, reason=reason, at=datetime.now(UTC).isoformat())
    return store.append(record, expected)


def former_champions(registry: Registry) -> list[str]:
    """Every tag that served, in the order it last became champion (promotions and rollbacks)."""
    order: list[str] = []
    for record in history(registry):
        if record.event in SERVING_EVENTS and record.tag:
            if record.tag in order:
                order.remove(record.tag)
            order.append(record.tag)
    return order


def rollback(registry: Registry, to_tag: str | None = None, *, force: bool = False) -> str:
    """Make the previous champion (or `to_tag`) the champion again; returns the restored tag. Refused with
    `PromotionConflict` if a promotion lands while it runs. A quarantined model is never rolled back to.

    A `to_tag` the gate refused (and that never served) is served only with `force`: the gate is the one way a
    model starts serving, and going around it should be a decision, not a slip of the tag.
    """
    store = _store(registry)
    current = require_champion(store)
    if to_tag is None:
        banned = quarantined(store)
        earlier = [tag for tag in former_champions(store) if tag != current and tag not in banned]
        if not earlier:
            raise RegistryError("no earlier champion to roll back to")
        to_tag = earlier[-1]
    gate = model_entry(to_tag, store).gate
    served = set(former_champions(store))
    refused = _labels(to_tag, store).get(GATE_LABEL) == "refused" and to_tag not in served  # as `models list` says
    if refused and not force:
        failed = "; ".join(gate.failed) if gate is not None else ""
        raise RegistryError(f"{to_tag} was refused by the gate ({failed or 'see its gate record'}) and never served: "
                            "pass --force to make it champion anyway")
    reason = f"rollback from {current}" + (" (forced: the gate had refused it)" if refused else "")
    set_champion(store, to_tag, reason=reason, event="rollback", expected=current)
    return to_tag


def quarantined(registry: Registry) -> dict[str, PromotionRecord]:
    """The quarantined tags, each with its journal record (why, which table, when)."""
    return quarantined_in(history(registry))


def trained_on(table_md5: str, *, name: str, registry: Registry | None = None) -> list[str]:
    """The stored models of `name` whose training table (data_version.raw_table_md5) has this MD5."""
    found = []
    for stored in sorted(_stored(name, registry), key=lambda stored: stored.created):
        version = RegistryEntry.from_metadata(stored.metadata).data_version
        if version is not None and version.raw_table_md5 == table_md5:
            found.append(stored.tag)
    return found


QUARANTINE_ATTEMPTS = 3  # a champion's replacement that lost to a promotion landing meanwhile looks again


def quarantine(registry: Registry, *, name: str, tag: str | None = None, table_md5: str | None = None,
               reason: str) -> dict[str, Any]:
    """Mark `tag`, or every model trained on the table with MD5 `table_md5`, as quarantined (journal records), and
    when the champion is among them roll it back to the newest former champion that is not, or, with none, remove
    the pointer (the gate then compares the next challenger with the naive baselines). Returns what was done.

    Why: a table that trained a served model can fail the suite later (the suite grew, or a fault was found by
    hand); the model is then unfit to serve or to be compared with, and nothing but the journal says so. Every
    record goes through the store (a local folder or a remote every machine reads): once a quarantine is written no
    promotion of the model can land, and the champion's replacement names the champion it replaces, so a promotion
    landing meanwhile is never overwritten (it cannot be of a quarantined model)."""
    if (tag is None) == (table_md5 is None):
        raise RegistryError("quarantine takes a model tag or a table MD5 (--table), one of them")
    store = _store(registry)
    if tag is not None:
        if not store.has(tag):
            raise RegistryError(f"model {tag!r} is not in the registry ({store.location})")
        version = model_entry(tag, store).data_version
        table_md5 = version.raw_table_md5 if version is not None else None
        tags = [tag]
    else:
        tags = trained_on(str(table_md5), name=name, registry=store)
        if not tags:
            raise RegistryError(f"no stored model of {name!r} was trained on table {table_md5} (data_version."
                                f"raw_table_md5 in `python -m pipelines models list`)")
    already = quarantined(store)
    now = datetime.now(UTC).isoformat()
    for each in tags:
        if each not in already:
            store.append(PromotionRecord(event=QUARANTINE_EVENT, tag=each, table_md5=table_md5, reason=reason,
                                         at=now))
    champion = champion_tag(store)
    outcome: dict[str, Any] = {"quarantined": tags, "table_md5": table_md5, "champion": champion,
                               "previous": champion}
    for attempt in range(1, QUARANTINE_ATTEMPTS + 1):
        banned = quarantined(store)  # these tags, and any an interrupted quarantine left on the pointer
        if champion is None or champion not in banned:
            break
        clean = [each for each in former_champions(store) if each not in banned and store.has(each)]
        why = f"quarantine of {champion}: {reason}"
        try:
            if clean:
                set_champion(store, clean[-1], reason=why, event="rollback", expected=champion)
            else:
                store.append(PromotionRecord(event=UNSET_EVENT, at=now,
                                             reason=f"{why}; no clean model served before"), expected=champion)
        except PromotionConflict:
            if attempt == QUARANTINE_ATTEMPTS:
                raise
        champion = champion_tag(store)
    outcome["champion"] = champion
    return outcome


def _labels(tag: str, registry: Registry | None = None) -> dict[str, str]:
    """The labels `tag` was saved with (its gate verdict); empty for a tag the registry does not hold."""
    name = tag.partition(":")[0]
    return next((stored.labels for stored in _stored(name, registry) if stored.tag == tag), {})


def _stored(name: str, registry: Registry | None = None) -> list[StoredModel]:
    """Every stored version of `name` in the registry."""
    return _store(registry).models(name)


def list_models(registry: Registry, *, name: str) -> list[RegisteredModel]:
    champion = champion_tag(registry)
    former = set(former_champions(registry))
    banned = quarantined(registry)
    models = []
    for stored in _stored(name, registry):
        refused = stored.labels.get(GATE_LABEL) == "refused"
        stage = ("quarantined" if stored.tag in banned else "champion" if stored.tag == champion
                 else "retired" if stored.tag in former
                 else "refused" if refused else "candidate")
        models.append(RegisteredModel(tag=stored.tag, stage=stage, created=stored.created.isoformat(),
                                      entry=RegistryEntry.from_metadata(stored.metadata)))
    return sorted(models, key=lambda m: m.created)


def prune(registry: Registry, keep: int, *, name: str, dry_run: bool = False) -> list[str]:
    """Delete stored models other than the champion and the last `keep` promoted ones; returns the deleted tags.

    "Promoted" reads the journal (promotions and rollbacks), so a model that served is kept until `keep` newer
    ones have; the champion is kept whatever `keep` is. Refused and never-promoted candidates go.
    """
    if keep < 0:
        raise RegistryError(f"--keep must be >= 0, got {keep}")
    store = _store(registry)
    champion = champion_tag(store)
    promoted = list(reversed(former_champions(store)))
    kept = {champion, *promoted[:keep]} - {None}
    doomed = [stored.tag for stored in _stored(name, store) if stored.tag not in kept]
    if not dry_run:
        for tag in doomed:
            store.delete(tag)
    return doomed


# --- metadata stored with each model -------------------------------------------------------------------------------


def dag_outputs(paths: Any) -> list[Path]:
    """What the DAG's stages write (dvc.yaml's outs, metrics and plots lie under these): a run's result, never a
    dirty tree in its lineage."""
    return [paths.raw_table, paths.validation_dir, paths.prepared_dir, paths.model_dir, paths.served_dir,
            paths.metrics_dir, paths.plots_dir, paths.registry_dir]


def registration_entry(params: Params, gate_report: GateReport, built: Lineage) -> RegistryEntry:
    """What the registry stores with a model: metrics, params, data version, lineage (`built`, captured by the
    caller in the stage's directory), feature schema, gate."""
    paths = params.paths
    meta = ModelMeta.load(paths.model_dir)
    if meta is None:
        raise FileNotFoundError(f"no model at {paths.model_dir} to register: run the train stage first")
    window = [params.collect.start.isoformat(), params.collect.end.isoformat()]
    return RegistryEntry(
        model_md5=gate_report.challenger_md5,
        family=meta.family,
        metrics=RegistryMetrics(test=gate_report.metrics.challenger, valid=meta.valid_metrics,
                                evaluate=EvaluationReport.load(paths.metrics_dir)),
        params=meta.params,
        search=meta.search,
        threshold=meta.threshold,
        # What it was trained on (recorded by preprocess and train): the validated raw table's MD5 (DVC 3 records a
        # file out's MD5 of its bytes, so this equals dvc.lock's collect out) and the MD5s of the train/valid splits.
        data_version=DataVersion.model_validate({**(meta.data or {}), "window": window}),
        # How to rebuild it: the commit and whether files differed from it (then the commit alone cannot rebuild
        # it, and which files), experiment ref, data hash, params diff, package lock.
        lineage=built,
        feature_schema=io.read_json(paths.model_dir / io.SCHEMA_FILE),
        gate=gate_report.verdict(),
    )


def find_by_model_hash(model_md5: str, *, name: str, root: Path, current: Lineage | None = None,
                       registry: Registry | None = None) -> str | None:
    """The newest stored model with this model-file hash whose lineage is true for the repository at `root`.

    Re-gating the same model adds no new version. But the store is shared (the machine's, or the remote's), and a
    model file is the same
    whichever clone trained it (training is deterministic): a version registered from another clone names that
    clone's experiment ref or commit, which `reproduce` cannot find here. So a stored version counts only when the
    revision that built it (`lineage.built_at`: its ref, or the commit holding its dvc.lock) is in this repository,
    or its lineage is `current` (this very run, e.g. re-gated from a tree with uncommitted changes or an
    uncommitted dvc.lock), or it was registered from this repository (`Lineage.repository`: the same bytes never get
    a second tag here). Otherwise None: the caller registers a new version with its own lineage.
    """
    entries = [(stored, RegistryEntry.from_metadata(stored.metadata)) for stored in _stored(name, registry)]
    matches = sorted(((stored, entry) for stored, entry in entries if entry.model_md5 == model_md5),
                     key=lambda pair: pair[0].created, reverse=True)
    for stored, entry in matches:
        recorded = entry.lineage
        if recorded is None:  # hand-saved or older metadata: no lineage this run can vouch for
            continue
        if (current is not None and recorded == current) or lineage.rebuildable_here(root, recorded):
            return stored.tag
        # This repository registered these bytes before (a re-gate after an uncommitted params change, a retrain
        # that learned the same trees): the same model keeps its one tag, whatever changed around it.
        if (current is not None and recorded is not None and current.repository is not None
                and recorded.repository == current.repository):
            return stored.tag
    return None
