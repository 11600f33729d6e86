"""Operators accepting a data-quality alarm as the new normal: a unit change, a new category, a +1 F offset.

A data-quality alarm blocks retraining for as long as it lasts (a model retrained on corrupted data learns the
corruption). When the change is real — a new airline, a sensor replaced, a label definition changed on purpose —
an operator says so: `python -m pipelines monitor ack --kind new_category --column carrier --why "..."`, or the
`acknowledge` deployment in the Prefect UI. Each acknowledgement is one line of `acknowledgements.jsonl` in the
monitoring folder (`pipelines.contracts.Acknowledgement`: what, from which window on, who, when, why); a revocation
is a line too, so the journal is the audit trail. The monitoring flow applies the active ones to every window it
judges (`apply`): a covered reason stays in the window's record, marked with who accepted it, stops blocking a
retrain and counts as a change a retrain answers (the model should learn the new normal); the latest window is
judged again on the next run (`pipelines.monitor.bookkeeping.reconsider`), the dashboard lists them.
"""

from __future__ import annotations

import getpass
import os
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from pipelines import io
from pipelines.contracts import RETRAIN_KINDS, Acknowledgement, Reason, WindowSummary

# The kinds an operator may accept: the data-quality ones (a retrain-kind alarm does not block anything).
ACKNOWLEDGEABLE = ("missing_surge", "new_category", "mean_outside", "relation_broken", "rescoring", "out_of_range",
                   "refused", "label_shift")


def journal(monitoring_dir: Path) -> Path:
    return Path(monitoring_dir) / io.ACKNOWLEDGEMENTS_FILE


def read_all(monitoring_dir: Path) -> list[Acknowledgement]:
    """Every line of the journal, oldest first (a torn or foreign line is skipped)."""
    records = []
    for line in io.read_lines(journal(monitoring_dir)):
        try:
            records.append(Acknowledgement.model_validate_json(line))
        except ValidationError:
            continue
    return records


def active(monitoring_dir: Path) -> list[Acknowledgement]:
    """The acknowledgements in force: every one no later line revoked."""
    records = read_all(monitoring_dir)
    revoked = {record.revokes for record in records if record.revokes}
    return [record for record in records if record.revokes is None and record.id not in revoked]


def acknowledge(monitoring_dir: Path, kind: str, why: str, columns: Sequence[str] = (), since: str | None = None,
                by: str | None = None, known_columns: Sequence[str] | None = None) -> Acknowledgement:
    """Record that alarms of `kind` naming only `columns` (every column when empty), in windows from `since` on
    (every window when None), are accepted; returns the record. Refuses, naming the value, a kind that is not a
    data-quality one, an unknown column (when `known_columns` is given), an empty reason or a bad date."""
    if kind not in ACKNOWLEDGEABLE:
        retrain = " (it does not block retraining: nothing to accept)" if kind in RETRAIN_KINDS else ""
        raise ValueError(f"kind {kind!r} cannot be acknowledged{retrain}; the data-quality kinds are "
                         f"{', '.join(ACKNOWLEDGEABLE)}")
    unknown = sorted(set(columns) - set(known_columns)) if known_columns is not None else []
    if unknown:
        raise ValueError(f"unknown column(s) {unknown}: acknowledge feature columns ({', '.join(known_columns)})")
    if not why.strip():
        raise ValueError("an acknowledgement needs a reason (--why): it is the audit trail")
    record = Acknowledgement(id=_new_id(), kind=kind, columns=sorted(set(columns)), since=_start(since),
                             by=by or _operator(), at=datetime.now(UTC).isoformat(timespec="seconds"), why=why.strip())
    io.append_line(journal(monitoring_dir), record.model_dump_json())
    return record


def revoke(monitoring_dir: Path, ack_id: str, why: str, by: str | None = None) -> Acknowledgement:
    """Withdraw an acknowledgement in force (its alarms block retraining again from the next judged window)."""
    found = next((record for record in active(monitoring_dir) if record.id == ack_id), None)
    if found is None:
        known = ", ".join(record.id for record in active(monitoring_dir)) or "none"
        raise ValueError(f"no acknowledgement {ack_id!r} in force (in force: {known})")
    record = found.model_copy(update={"id": _new_id(), "revokes": ack_id, "by": by or _operator(),
                                      "at": datetime.now(UTC).isoformat(timespec="seconds"),
                                      "why": why.strip() or "revoked"})
    io.append_line(journal(monitoring_dir), record.model_dump_json())
    return record


def apply(summary: WindowSummary, acknowledgements: Sequence[Acknowledgement], window_start: str) -> WindowSummary:
    """The summary with each data-quality reason an acknowledgement covers marked with who accepted it (the latest
    covering one); the input is not changed."""
    reasons = []
    for reason in summary.reasons:
        covering = [ack for ack in acknowledgements if ack.covers(reason, window_start)]
        reasons.append(reason.model_copy(update={"acknowledged": covering[-1].sentence()}) if covering else
                       reason.model_copy(update={"acknowledged": None}))
    return summary.model_copy(update={"reasons": reasons})


def newly_unblocked(summary: WindowSummary, acknowledgements: Sequence[Acknowledgement], window_start: str
                    ) -> bool:
    """Whether acknowledgements now cover every data-quality reason that blocked this (stored) window's retrain."""
    blocking: list[Reason] = summary.quality_reasons
    return bool(blocking) and all(any(ack.covers(reason, window_start) for ack in acknowledgements)
                                  for reason in blocking)


def _start(since: str | None) -> str | None:
    if since is None:
        return None
    try:
        stamp = datetime.fromisoformat(since)
    except ValueError:
        raise ValueError(f"--since {since!r} is not a date (YYYY-MM-DD) or ISO time") from None
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).isoformat()


def _operator() -> str:
    """Who is acknowledging: $FLIGHTOPS_OPERATOR, else the login name."""
    try:
        return os.environ.get("FLIGHTOPS_OPERATOR") or getpass.getuser()
    except OSError:
        return "unknown"


def _new_id() -> str:
    return f"ack-{secrets.token_hex(3)}"
