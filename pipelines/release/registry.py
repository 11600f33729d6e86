"""The model registry: BentoML's model store holds the models, one small file says which one is the champion.

Why a pointer file: BentoML model labels are fixed when a model is saved, and promotion must be atomic. The
champion is `<registry_dir>/champion.json`, replaced with one `os.replace`, so a crash at any point leaves either
the old champion or the new one. Every promotion and rollback is appended to `history.jsonl`. A model's stage is
derived: the pointer's model is `champion`, models that were champion before are `retired`, a model the gate
refused is `refused` (its `gate` label, set when it is saved), a model quarantined (trained on a table found bad
after it served: `quarantine`) is `quarantined`, the rest `candidate`. `prune` deletes what is none of the champion
and the last N promoted.

The store is BentoML's own (`$BENTOML_HOME`, default `~/bentoml`), so `bentoml models list` and `bentoml build`
see the same models.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from pipelines import io
from pipelines.contracts import (
    DataVersion,
    GateReport,
    Lineage,
    PromotionRecord,
    RegistryEntry,
    RegistryMetrics,
)
from pipelines.io import CHAMPION_FILE, HISTORY_FILE
from pipelines.model.catalog import load_model as _load_model
from pipelines.model.seam import TrainedModel
from pipelines.release import lineage

if TYPE_CHECKING:
    from pipelines.config import Params


class RegistryError(RuntimeError):
    """The registry cannot do what was asked (no champion yet, unknown tag)."""


@dataclass(frozen=True)
class RegisteredModel:
    tag: str
    stage: str
    created: str
    entry: RegistryEntry  # what is stored with it, read whatever version stored it


GATE_LABEL = "gate"  # "passed" or "refused": the gate's verdict, a label of the stored model
# Journal events: a champion set by the gate or by hand, a model quarantined, the pointer removed (no clean model).
SERVING_EVENTS = ("promote", "rollback")
QUARANTINE_EVENT = "quarantine"
UNSET_EVENT = "unset"


def save_model(model_dir: Path, entry: RegistryEntry | Mapping[str, Any], *, name: str,
               extra_files: dict[str, Callable[[Path], None]] | None = None,
               labels: dict[str, str] | None = None) -> str:
    """Copy a trained model directory into the store as a new version of `name` (params' project.model_name), with
    `entry` as its metadata; returns its tag (`name:version`). (A plain mapping is stored as given: models saved by
    hand or by tests; the pipeline stores a `RegistryEntry`.)

    `extra_files` maps a file name to a writer that fills it inside the stored model (e.g. the monitoring
    reference sample), so what belongs to this model travels with it.
    """
    import shutil

    import bentoml

    # BentoML accepts plain values only, and no None
    safe = entry.to_metadata() if isinstance(entry, RegistryEntry) else io.without_nulls(io.to_jsonable(entry))
    family = (io.read_json(model_dir / io.META_FILE) or {}).get("family", "lightgbm")
    with bentoml.models.create(name, labels={"framework": family, **(labels or {})}, metadata=safe,
                               module="pipelines.release.registry") as stored:
        for item in model_dir.iterdir():
            shutil.copy2(item, Path(stored.path) / item.name)
        for file_name, write in (extra_files or {}).items():
            write(Path(stored.path) / file_name)
    tag = str(stored.tag)
    # BentoML keeps each model in a 0700 folder (a mkdtemp). A serving container that mounts the store reads it as
    # another user (deploy/container.py), and a model is no secret: readable like the 0644 files inside it.
    model_path(tag).chmod(0o755)
    return tag


def attach_files(tag: str, files: dict[str, Callable[[Path], None]]) -> Path:
    """Write `files` (name -> writer) into the stored model `tag`, each atomically (temp file + rename): what is
    computed after registration and belongs to the model (its monitoring reference and calibration, by the
    `reference` stage) travels with it. A reader sees the old file or the new one, never half of one."""
    folder = model_path(tag)
    for name, write in files.items():
        io.write_atomic(folder / name, write)
        (folder / name).chmod(0o644)
    return folder


def model_path(tag: str) -> Path:
    import bentoml

    try:
        return Path(bentoml.models.get(tag).path)
    except bentoml.exceptions.NotFound as error:
        raise RegistryError(f"model {tag!r} is not in the BentoML model store") from error


def has_model(tag: str) -> bool:
    try:
        model_path(tag)
    except RegistryError:
        return False
    return True


def load_model(tag: str) -> TrainedModel:
    """The registered model `tag`, through the model seam (whatever its family)."""
    return _load_model(model_path(tag))


def model_entry(tag: str) -> RegistryEntry:
    """What `save_model` stored with `tag` (metrics, params, data version, lineage, schema, gate), typed."""
    import bentoml

    try:
        return RegistryEntry.from_metadata(bentoml.models.get(tag).info.metadata)
    except bentoml.exceptions.NotFound as error:
        raise RegistryError(f"model {tag!r} is not in the BentoML model store") from error


def registry_home(registry_dir: Path) -> Path:
    """The registry a DVC stage must use: `registry_dir` of the repository the run belongs to.

    `dvc exp run --temp` runs the stages in a copy of the repo under .dvc/tmp/exps and tells them the parent
    repository in `DVC_ROOT`: the champion pointer and journal are that repository's, or a retrain would gate
    against no champion and promote into a folder deleted with the copy. Outside DVC (or in the workspace,
    where DVC_ROOT is the working directory) the path is used as given.
    """
    root = os.environ.get("DVC_ROOT")
    return Path(root) / registry_dir if root and not registry_dir.is_absolute() else registry_dir


def champion_tag(registry_dir: Path) -> str | None:
    pointer = registry_dir / CHAMPION_FILE
    if not pointer.exists():
        return None
    return PromotionRecord.model_validate_json(pointer.read_text()).tag


def require_champion(registry_dir: Path) -> str:
    tag = champion_tag(registry_dir)
    if tag is None:
        raise RegistryError(f"no champion yet in {registry_dir}: run the training DAG so the gate can promote one")
    return tag


def history(registry_dir: Path) -> list[PromotionRecord]:
    """The journal's complete lines; a line torn by a crash mid-append (no trailing newline) is skipped."""
    path = registry_dir / HISTORY_FILE
    if not path.exists():
        return []
    records = []
    for line in path.read_text().split("\n")[:-1]:  # the text after the last newline is incomplete or empty
        try:
            records.append(PromotionRecord.model_validate_json(line))
        except ValidationError:
            continue  # a torn line followed by a later append: never a promotion that happened
    return records


def _journal(registry_dir: Path, record: PromotionRecord) -> None:
    """Append one line to the journal, durably (after a torn last line, on a line of its own)."""
    registry_dir.mkdir(parents=True, exist_ok=True)
    journal_path = registry_dir / HISTORY_FILE
    torn = journal_path.exists() and journal_path.stat().st_size > 0 and not journal_path.read_bytes().endswith(b"\n")
    with open(journal_path, "a") as journal:
        journal.write(("\n" if torn else "") + record.model_dump_json() + "\n")
        journal.flush()
        os.fsync(journal.fileno())


def set_champion(registry_dir: Path, tag: str, reason: str, event: Literal["promote", "rollback"] = "promote"
                 ) -> None:
    """Make `tag` the champion in one atomic rename; the journal line is written first and is idempotent. A
    quarantined model is refused: it never serves again."""
    model_path(tag)  # refuse a tag the store does not hold
    banned = quarantined(registry_dir)
    if tag in banned:
        raise RegistryError(f"model {tag!r} is quarantined ({banned[tag].reason}): it cannot serve again")
    record = PromotionRecord(event=event, tag=tag, previous=champion_tag(registry_dir), reason=reason,
                             at=datetime.now(UTC).isoformat())
    _journal(registry_dir, record)
    io.write_json(registry_dir / CHAMPION_FILE, record.to_json_dict(), durable=True)


def former_champions(registry_dir: Path) -> list[str]:
    """Every tag that served, in the order it last became champion (promotions and rollbacks)."""
    order: list[str] = []
    for record in history(registry_dir):
        if record.event in SERVING_EVENTS and record.tag:
            if record.tag in order:
                order.remove(record.tag)
            order.append(record.tag)
    return order


def rollback(registry_dir: Path, to_tag: str | None = None, *, force: bool = False) -> str:
    """Make the previous champion (or `to_tag`) the champion again; returns the restored tag. A quarantined model
    is never rolled back to.

    A `to_tag` the gate refused (and that never served) is served only with `force`: the gate is the one way a
    model starts serving, and going around it should be a decision, not a slip of the tag.
    """
    current = require_champion(registry_dir)
    if to_tag is None:
        banned = quarantined(registry_dir)
        earlier = [tag for tag in former_champions(registry_dir) if tag != current and tag not in banned]
        if not earlier:
            raise RegistryError("no earlier champion to roll back to")
        to_tag = earlier[-1]
    gate = model_entry(to_tag).gate
    served = set(former_champions(registry_dir))
    refused = _labels(to_tag).get(GATE_LABEL) == "refused" and to_tag not in served  # as `models list` says
    if refused and not force:
        failed = "; ".join(gate.failed) if gate is not None else ""
        raise RegistryError(f"{to_tag} was refused by the gate ({failed or 'see its gate record'}) and never served: "
                            "pass --force to make it champion anyway")
    reason = f"rollback from {current}" + (" (forced: the gate had refused it)" if refused else "")
    set_champion(registry_dir, to_tag, reason=reason, event="rollback")
    return to_tag


def quarantined(registry_dir: Path) -> dict[str, PromotionRecord]:
    """The quarantined tags, each with its journal record (why, which table, when)."""
    return {record.tag: record for record in history(registry_dir)
            if record.event == QUARANTINE_EVENT and record.tag}


def trained_on(table_md5: str, *, name: str) -> list[str]:
    """The stored models of `name` whose training table (data_version.raw_table_md5) has this MD5."""
    found = []
    for stored in sorted(_stored(name), key=lambda stored: stored.info.creation_time):
        version = RegistryEntry.from_metadata(stored.info.metadata).data_version
        if version is not None and version.raw_table_md5 == table_md5:
            found.append(str(stored.tag))
    return found


def quarantine(registry_dir: Path, *, name: str, tag: str | None = None, table_md5: str | None = None,
               reason: str) -> dict[str, Any]:
    """Mark `tag`, or every model trained on the table with MD5 `table_md5`, as quarantined (journal lines), and when
    the champion is among them roll it back to the newest former champion that is not, or, with none, remove the
    pointer (the gate then compares the next challenger with the naive baselines). Returns what was done.

    Why: a table that trained a served model can fail the suite later (the suite grew, or a fault was found by
    hand); the model is then unfit to serve or to be compared with, and nothing but the journal says so."""
    if (tag is None) == (table_md5 is None):
        raise RegistryError("quarantine takes a model tag or a table MD5 (--table), one of them")
    if tag is not None:
        model_path(tag)  # refuse a tag the store does not hold
        version = model_entry(tag).data_version
        table_md5 = version.raw_table_md5 if version is not None else None
        tags = [tag]
    else:
        tags = trained_on(str(table_md5), name=name)
        if not tags:
            raise RegistryError(f"no stored model of {name!r} was trained on table {table_md5} (data_version."
                                f"raw_table_md5 in `python -m pipelines models list`)")
    already = quarantined(registry_dir)
    now = datetime.now(UTC).isoformat()
    for each in tags:
        if each not in already:
            _journal(registry_dir, PromotionRecord(event=QUARANTINE_EVENT, tag=each, table_md5=table_md5,
                                                   reason=reason, at=now))
    champion = champion_tag(registry_dir)
    outcome: dict[str, Any] = {"quarantined": tags, "table_md5": table_md5, "champion": champion,
                               "previous": champion}
    if champion in tags:
        banned = quarantined(registry_dir)
        clean = [each for each in former_champions(registry_dir) if each not in banned and has_model(each)]
        if clean:
            set_champion(registry_dir, clean[-1], reason=f"quarantine of {champion}: {reason}", event="rollback")
            outcome["champion"] = clean[-1]
        else:
            _journal(registry_dir, PromotionRecord(
                event=UNSET_EVENT, previous=champion, at=now,
                reason=f"quarantine of {champion}: {reason}; no clean model served before"))
            (registry_dir / CHAMPION_FILE).unlink(missing_ok=True)
            outcome["champion"] = None
    return outcome


def _labels(tag: str) -> dict[str, str]:
    import bentoml

    return dict(bentoml.models.get(tag).info.labels or {})


def _stored(name: str) -> list[Any]:
    """Every stored version of `name` (BentoML raises NotFound for a name with no versions yet)."""
    import bentoml

    try:
        return list(bentoml.models.list(name))
    except bentoml.exceptions.NotFound:
        return []


def list_models(registry_dir: Path, *, name: str) -> list[RegisteredModel]:
    champion = champion_tag(registry_dir)
    former = set(former_champions(registry_dir))
    banned = quarantined(registry_dir)
    models = []
    for stored in _stored(name):
        tag = str(stored.tag)
        refused = (stored.info.labels or {}).get(GATE_LABEL) == "refused"
        stage = ("quarantined" if tag in banned else "champion" if tag == champion else "retired" if tag in former
                 else "refused" if refused else "candidate")
        models.append(RegisteredModel(tag=tag, stage=stage, created=stored.info.creation_time.isoformat(),
                                      entry=RegistryEntry.from_metadata(stored.info.metadata)))
    return sorted(models, key=lambda m: m.created)


def prune(registry_dir: Path, keep: int, *, name: str, dry_run: bool = False) -> list[str]:
    """Delete stored models other than the champion and the last `keep` promoted ones; returns the deleted tags.

    "Promoted" reads the journal (promotions and rollbacks), so a model that served is kept until `keep` newer
    ones have; the champion is kept whatever `keep` is. Refused and never-promoted candidates go.
    """
    import bentoml

    if keep < 0:
        raise RegistryError(f"--keep must be >= 0, got {keep}")
    champion = champion_tag(registry_dir)
    promoted = list(reversed(former_champions(registry_dir)))
    kept = {champion, *promoted[:keep]} - {None}
    doomed = [str(stored.tag) for stored in _stored(name) if str(stored.tag) not in kept]
    if not dry_run:
        for tag in doomed:
            bentoml.models.delete(tag)
    return doomed


# --- metadata stored with each model -------------------------------------------------------------------------------


def dag_outputs(paths: Any) -> list[Path]:
    """What the DAG's stages write (dvc.yaml's outs, metrics and plots lie under these): a run's result, never a
    dirty tree in its lineage."""
    return [paths.raw_table, paths.validation_dir, paths.prepared_dir, paths.model_dir, paths.metrics_dir,
            paths.plots_dir, paths.registry_dir]


def registration_entry(params: Params, gate_report: GateReport, built: Lineage) -> RegistryEntry:
    """What the registry stores with a model: metrics, params, data version, lineage (`built`, captured by the
    caller in the stage's directory), feature schema, gate."""
    paths = params.paths
    meta = io.read_json(paths.model_dir / io.META_FILE) or {}
    window = [params.collect.start.isoformat(), params.collect.end.isoformat()]
    return RegistryEntry(
        model_md5=gate_report.challenger_md5,
        family=meta.get("family", "lightgbm"),
        metrics=RegistryMetrics(test=gate_report.metrics.challenger, valid=meta.get("valid_metrics"),
                                evaluate=io.read_json(paths.metrics_dir / io.EVALUATE_FILE)),
        params=meta.get("params"),
        search=meta.get("search"),
        threshold=meta.get("threshold"),
        # What it was trained on (recorded by preprocess and train): the validated raw table's MD5 (DVC 3 records a
        # file out's MD5 of its bytes, so this equals dvc.lock's collect out) and the MD5s of the train/valid splits.
        data_version=DataVersion.model_validate({**(meta.get("data") or {}), "window": window}),
        # How to rebuild it: the commit and whether files differed from it (then the commit alone cannot rebuild
        # it, and which files), experiment ref, data hash, params diff, package lock.
        lineage=built,
        feature_schema=io.read_json(paths.model_dir / io.SCHEMA_FILE),
        gate=gate_report.verdict(),
    )


def find_by_model_hash(model_md5: str, *, name: str, root: Path, current: Lineage | None = None) -> str | None:
    """The newest stored model with this model-file hash whose lineage is true for the repository at `root`.

    Re-gating the same model adds no new version. But the store is the machine's, and a model file is the same
    whichever clone trained it (training is deterministic): a version registered from another clone names that
    clone's experiment ref or commit, which `reproduce` cannot find here. So a stored version counts only when the
    revision that built it (`lineage.built_at`: its ref, or the commit holding its dvc.lock) is in this repository,
    or its lineage is `current` (this very run, e.g. re-gated from a tree with uncommitted changes or an
    uncommitted dvc.lock), or it was registered from this repository (`Lineage.repository`: the same bytes never get
    a second tag here). Otherwise None: the caller registers a new version with its own lineage.
    """
    entries = [(stored, RegistryEntry.from_metadata(stored.info.metadata)) for stored in _stored(name)]
    matches = sorted(((stored, entry) for stored, entry in entries if entry.model_md5 == model_md5),
                     key=lambda pair: pair[0].info.creation_time, reverse=True)
    for stored, entry in matches:
        recorded = entry.lineage
        if recorded is None:  # hand-saved or older metadata: no lineage this run can vouch for
            continue
        if (current is not None and recorded == current) or lineage.rebuildable_here(root, recorded):
            return str(stored.tag)
        # This repository registered these bytes before (a re-gate after an uncommitted params change, a retrain
        # that learned the same trees): the same model keeps its one tag, whatever changed around it.
        if (current is not None and recorded is not None and current.repository is not None
                and recorded.repository == current.repository):
            return str(stored.tag)
    return None
