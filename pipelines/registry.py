"""The model registry: BentoML's model store holds the models, one small file says which one is the champion.

Why a pointer file: BentoML model labels are fixed when a model is saved, and promotion must be atomic. The
champion is `<registry_dir>/champion.json`, replaced with one `os.replace`, so a crash at any point leaves either
the old champion or the new one. Every promotion and rollback is appended to `history.jsonl`. A model's stage is
derived: the pointer's model is `champion`, models that were champion before are `retired`, the rest `candidate`.

The store is BentoML's own (`$BENTOML_HOME`, default `~/bentoml`), so `bentoml models list` and `bentoml build`
see the same models.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.train import TrainedModel

MODEL_NAME = "delay-classifier"
CHAMPION_FILE = "champion.json"
HISTORY_FILE = "history.jsonl"


class RegistryError(RuntimeError):
    """The registry cannot do what was asked (no champion yet, unknown tag)."""


@dataclass(frozen=True)
class RegisteredModel:
    tag: str
    stage: str
    created: str
    metadata: dict[str, Any]


def save_model(model_dir: Path, metadata: dict[str, Any], name: str = MODEL_NAME) -> str:
    """Copy a trained model directory into the store as a new version; returns its tag (`name:version`)."""
    import shutil

    import bentoml

    safe = json.loads(json.dumps(metadata, default=str))  # BentoML metadata must be plain JSON values
    with bentoml.models.create(name, labels={"framework": "lightgbm"}, metadata=safe,
                               module="pipelines.registry") as stored:
        for item in model_dir.iterdir():
            shutil.copy2(item, Path(stored.path) / item.name)
    return str(stored.tag)


def model_path(tag: str) -> Path:
    import bentoml

    try:
        return Path(bentoml.models.get(tag).path)
    except bentoml.exceptions.NotFound as error:
        raise RegistryError(f"model {tag!r} is not in the BentoML model store") from error


def load_model(tag: str) -> TrainedModel:
    return TrainedModel.load(model_path(tag))


def champion_tag(registry_dir: Path) -> str | None:
    pointer = registry_dir / CHAMPION_FILE
    if not pointer.exists():
        return None
    return json.loads(pointer.read_text())["tag"]


def require_champion(registry_dir: Path) -> str:
    tag = champion_tag(registry_dir)
    if tag is None:
        raise RegistryError(f"no champion yet in {registry_dir}: run the training DAG so the gate can promote one")
    return tag


def history(registry_dir: Path) -> list[dict[str, Any]]:
    path = registry_dir / HISTORY_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def set_champion(registry_dir: Path, tag: str, reason: str, event: str = "promote") -> None:
    """Make `tag` the champion in one atomic rename; the journal line is written first and is idempotent."""
    model_path(tag)  # refuse a tag the store does not hold
    registry_dir.mkdir(parents=True, exist_ok=True)
    record = {"event": event, "tag": tag, "previous": champion_tag(registry_dir), "reason": reason,
              "at": datetime.now(UTC).isoformat()}
    with open(registry_dir / HISTORY_FILE, "a") as journal:
        journal.write(json.dumps(record) + "\n")
        journal.flush()
        os.fsync(journal.fileno())
    handle, temp = tempfile.mkstemp(prefix=".champion.", dir=registry_dir)
    with os.fdopen(handle, "w") as staged:
        json.dump(record, staged)
        staged.flush()
        os.fsync(staged.fileno())
    os.replace(temp, registry_dir / CHAMPION_FILE)


def rollback(registry_dir: Path, to_tag: str | None = None) -> str:
    """Make the previous champion (or `to_tag`) the champion again; returns the restored tag."""
    current = require_champion(registry_dir)
    if to_tag is None:
        earlier = [r["tag"] for r in history(registry_dir) if r["tag"] != current]
        if not earlier:
            raise RegistryError("no earlier champion to roll back to")
        to_tag = earlier[-1]
    set_champion(registry_dir, to_tag, reason=f"rollback from {current}", event="rollback")
    return to_tag


def list_models(registry_dir: Path, name: str = MODEL_NAME) -> list[RegisteredModel]:
    import bentoml

    champion = champion_tag(registry_dir)
    former = {r["tag"] for r in history(registry_dir)}
    models = []
    for stored in bentoml.models.list(name):
        tag = str(stored.tag)
        stage = "champion" if tag == champion else "retired" if tag in former else "candidate"
        models.append(RegisteredModel(tag=tag, stage=stage, created=stored.info.creation_time.isoformat(),
                                      metadata=dict(stored.info.metadata)))
    return sorted(models, key=lambda m: m.created)
