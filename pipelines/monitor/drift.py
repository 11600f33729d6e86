"""One window against the reference, judged by the champion's calibration: importance-weighted data drift,
prediction drift, data-quality faults (unit change, values out of range, missing surge, unknown categories), live
quality once outcomes arrive, and the alarm's reasons in words.

Distances come from Evidently (`DataDriftPreset` with the test fixed per column type and the calibrated
per-column thresholds, `ValueDrift` on the probability) on a seeded sample of the window, the reference's
missing-value shares from its `MissingValueCount`; results are read by metric type and column name, never by
position. Counts are exact, over every row of the window: rows, missing shares, categories outside the champion's
vocabulary, values out of range; means estimated on the sample: the missing share the other columns explain and
the column-relation residuals (`pipelines.monitor.consistency`). Thresholds are learned from the reference period
(`pipelines.monitor.calibration`). The verdict is a `WindowSummary`: the typed form every reader uses (alarm
reasons, the retrain decision, the history); the monitoring flow stores it, with its bookkeeping, as the window's
`WindowRecord` (pipelines/contracts.py). Each alarm is a `Reason`: its kind for code and tables, its sentence for
people.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from pipelines.config import FeaturesParams, MonitorParams
from pipelines.contracts import (
    ACTUAL,
    PROBABILITY,
    REQUEST_ID,
    ColumnDrift,
    Integrity,
    LabelCheck,
    LiveQuality,
    MissingShare,
    NewCategories,
    PredictionDrift,
    RangeCheck,
    Reason,
    RefusedTraffic,
    Relation,
    WindowSummary,
)
from pipelines.monitor.calibration import (
    Calibration,
    beyond_band,
    drift_index,
    out_of_range_share,
    quality_limit,
    range_band,
    sample_window,
)
from pipelines.monitor.consistency import expected_missing, mean_residuals
from pipelines.monitor.labels import ALARM_CHECKS, departures, label_figures


@dataclass
class WindowResult:
    """`report` is the typed verdict, `snapshot` Evidently's run (HTML, workspace)."""

    report: WindowSummary
    snapshot: Any


def _evidently_results(snapshot: Any, columns: list[str], missing_columns: list[str]
                       ) -> tuple[dict[str, dict[str, Any]], dict[str, tuple]]:
    """Per-column drift (score, method) of `columns` and missing shares (reference, current) of `missing_columns`,
    found by metric type and column name."""
    as_dict = snapshot.dict()
    drift: dict[str, dict[str, Any]] = {}
    for metric in as_dict["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith(":ValueDrift") and config.get("column") in columns:
            drift[config["column"]] = {"score": float(metric["value"]), "method": config.get("method")}
    absent = [name for name in columns if name not in drift]
    if absent:
        raise RuntimeError(f"Evidently returned no drift result for column(s) {absent}")
    missing: dict[str, tuple] = {}
    for metric_id, result in snapshot.metric_results.items():
        config = result.metric_value_location.metric.params
        if config.get("type", "").endswith(":MissingValueCount") and config.get("column") in missing_columns:
            reference = snapshot.context.get_reference_metric_result(metric_id)
            missing[config["column"]] = (float(reference.share.value), float(result.share.value))
    return drift, missing


def _new_categories(current: pd.DataFrame, calibration: Calibration, features: FeaturesParams,
                    monitor: MonitorParams) -> dict[str, NewCategories]:
    """Values outside the champion's own category vocabulary (what the model treats as unknown), per column."""
    new = {}
    for name in features.categorical:
        known = set(calibration.vocabulary.get(name, []))
        values = current[name].dropna()
        unseen = values[~values.isin(known)]
        share = float(len(unseen) / len(current)) if len(current) else 0.0
        limit = quality_limit(calibration.new_categories.get(name), monitor.new_category_surge, monitor)
        new[name] = NewCategories(share=round(share, 5), examples=sorted(unseen.unique().tolist())[:5],
                                  threshold=round(limit, 5), surge=share > limit)
    return new


def _range_faults(current: pd.DataFrame, reference: pd.DataFrame, calibration: Calibration,
                  features: FeaturesParams, monitor: MonitorParams) -> dict[str, RangeCheck]:
    """Per numeric column: the share far outside the reference's range, the share beyond the range the reference
    period observed (values the model never saw), and the mean against every reference window's mean (a unit change
    moves it `monitor.unit_margin` standard deviations or more beyond all of them; a real shift of a column that
    barely varies week to week, like the departure hour, does not)."""
    checks = {}
    for name in features.numeric:
        values = pd.to_numeric(reference[name], errors="coerce")
        if values.notna().sum() == 0:
            continue
        outside = out_of_range_share(current[name], *range_band(values, monitor.unit_margin))
        limit = quality_limit(calibration.out_of_range.get(name), monitor.out_of_range_surge, monitor)
        mean = pd.to_numeric(current[name], errors="coerce").mean()
        low, high = calibration.means.get(name, [float("nan"), float("nan")])
        margin = monitor.unit_margin * calibration.spreads.get(name, float("nan"))
        unit = not pd.isna(mean) and not math.isnan(low) and beyond_band(float(mean), low, high, margin)
        observed = calibration.observed.get(name)
        beyond = beyond_limit = None
        if observed is not None:
            beyond = out_of_range_share(current[name], *observed)
            beyond_limit = quality_limit(calibration.outside_observed.get(name), monitor.out_of_range_surge, monitor)
        checks[name] = RangeCheck(outside=round(outside, 5), outside_threshold=round(limit, 5),
                                  mean=None if pd.isna(mean) else round(float(mean), 5),
                                  mean_band=[round(low - margin, 5), round(high + margin, 5)],
                                  out_of_range=outside > limit, unit_change=unit,
                                  beyond=None if beyond is None else round(beyond, 5),
                                  beyond_threshold=None if beyond_limit is None else round(beyond_limit, 5),
                                  observed=observed, beyond_range=beyond is not None and beyond > beyond_limit)
    return checks


def _relations(current: pd.DataFrame, calibration: Calibration, monitor: MonitorParams) -> dict[str, Relation]:
    """Each column the others determine, against its calibrated residual threshold (times quality_factor)."""
    consistency = calibration.consistency
    if consistency is None:
        return {}
    residuals = mean_residuals(current, consistency)
    relations = {}
    for name, model in consistency.values.items():
        if name not in calibration.residuals:
            continue
        residual = residuals.get(name, float("nan"))
        limit = monitor.quality_factor * calibration.residuals[name]
        known = not math.isnan(residual)
        relations[name] = Relation(residual=round(residual, 4) if known else None, threshold=round(limit, 4),
                                   r2=model.r2, predictors=model.main, broken=known and abs(residual) > limit)
    return relations


def live_quality(window: pd.DataFrame, outcomes: pd.DataFrame, expected: Mapping[str, float] | None,
                 monitor: MonitorParams, calibrated_drop: float | None = None,
                 calibration: Calibration | None = None) -> LiveQuality:
    """The model's quality on the window's flights whose outcomes arrived, against its evaluation figures.

    Decay is a drop of live ROC AUC below the champion's test AUC by more than `monitor.auc_drop`, or than the
    bound the champion's own week-to-week drops on its held-out splits give (`calibrated_drop`, the calibration's
    `prediction_bound`) if larger: a week's AUC varies by several hundredths when nothing changed. With a
    calibration holding label limits (`pipelines.monitor.labels`), the window's log loss, Brier score and
    calibration gap are checked against the champion's held-out figures."""
    from pipelines.model.evaluate import score

    joined = window[[REQUEST_ID, PROBABILITY, "threshold"]].merge(outcomes, on=REQUEST_ID, how="inner")
    labelled_share = len(joined) / len(window) if len(window) else 0.0
    quality = LiveQuality(labelled=len(joined), labelled_share=round(labelled_share, 4),
                          complete=labelled_share >= monitor.min_labelled_share)
    if not quality.complete:
        return quality
    figures = score(joined[ACTUAL].to_numpy(), joined[PROBABILITY].to_numpy(), float(joined["threshold"].iloc[0]))
    metrics: dict[str, float | None] = {k: figures[k] for k in ("roc_auc", "log_loss", "brier", "f1", "positive_rate")}
    # Calibration in one number: mean predicted minus observed rate (positive = the model over-predicts delays).
    metrics["calibration_gap"] = float(joined[PROBABILITY].mean() - joined[ACTUAL].mean())
    quality.metrics = metrics
    if expected:
        quality.expected = {k: expected[k] for k in ("roc_auc", "log_loss", "brier") if k in expected}
        if "roc_auc" in expected and not math.isnan(metrics["roc_auc"]):
            quality.auc_drop = float(expected["roc_auc"]) - metrics["roc_auc"]
            quality.auc_drop_limit = max(monitor.auc_drop, calibrated_drop or 0.0)
            quality.decayed = quality.auc_drop > quality.auc_drop_limit
    labels = calibration.labels if calibration is not None else None
    if labels is not None:
        live = label_figures(joined[ACTUAL].to_numpy(), joined[PROBABILITY].to_numpy())
        gone = departures(live, labels.reference)
        quality.labels = {name: LabelCheck(value=round(live[name], 5), reference=labels.reference[name],
                                           departure=round(gone[name], 5), limit=labels.limits[name],
                                           beyond=gone[name] > labels.limits[name], alarms=name in ALARM_CHECKS)
                          for name in labels.limits if name in live and not math.isnan(gone[name])}
    return quality


def refused_traffic(refused: pd.DataFrame | None, served_rows: int, monitor: MonitorParams) -> RefusedTraffic | None:
    """The window's refused rows (one per row, with the `fields` at fault) against every row sent for the window.

    The reference period's rows all passed validation, so the service would have refused none of them: the
    calibrated share is 0, and `monitor.refused_surge` is the limit."""
    if refused is None:
        return None
    rows = len(refused)
    total = rows + served_rows
    share = rows / total if total else 0.0
    fields: dict[str, int] = {}
    for named in refused["fields"] if rows else []:
        for name in named or ["(batch)"]:
            fields[name] = fields.get(name, 0) + 1
    return RefusedTraffic(rows=rows, share=round(share, 5), threshold=monitor.refused_surge,
                          fields=dict(sorted(fields.items(), key=lambda kv: -kv[1])),
                          surge=share > monitor.refused_surge)


# Served and re-scored probabilities of the same inputs agree to ~1e-6 (the service's compiled forest vs the
# booster); a difference above this is another model or another feature pipeline.
RESCORE_TOLERANCE = 1e-3


def integrity(current: pd.DataFrame, champion: Any, champion_tag: str | None, monitor: MonitorParams
              ) -> Integrity | None:
    """Re-score the logged inputs of the rows the champion served (by model tag) and compare with what was served.

    A prediction-only change (features as before, probabilities not) is invisible to drift statistics whenever it
    stays inside the reference's week-to-week spread; this check sees it exactly. None when no row was served by
    the champion (e.g. a window served by the previous model)."""
    rows = current if champion_tag is None or "model_tag" not in current else \
        current[current["model_tag"] == champion_tag]
    if rows.empty:
        return None
    difference = rows[PROBABILITY].to_numpy(dtype=float) - champion.predict_proba(rows)
    share = float((abs(difference) > RESCORE_TOLERANCE).mean())
    return Integrity(rows=len(rows), mismatch_share=round(share, 5), mean_difference=round(float(difference.mean()), 5),
                     fault=share > monitor.prediction_mismatch_share)


def analyse_window(current: pd.DataFrame, reference: pd.DataFrame, features: FeaturesParams, time_column: str,
                   monitor: MonitorParams, calibration: Calibration, outcomes: pd.DataFrame | None = None,
                   expected: Mapping[str, float] | None = None, name: str | None = None,
                   champion: Any = None, champion_tag: str | None = None,
                   refused: pd.DataFrame | None = None) -> WindowResult:
    """One window against the champion's reference, judged by the champion's calibration.

    `current` is a window of the prediction frame (raw inputs + probability); `reference` the sampled reference
    rows with the champion's probability on them; `calibration` the thresholds learned from the reference period
    (`pipelines.monitor.calibration`); `champion` (a `TrainedModel`, tag `champion_tag`), when given, re-scores the
    rows it served (`integrity`); `refused` (one row per refused row, its `fields` at fault), when given, is the
    window's refused traffic. Evidently computes the distances on the window sampled to
    `monitor.window_sample_rows` (the size calibration used), with the calibrated thresholds in its report; the
    data-quality counts use every row, the relation residuals and explained missing shares (means) the sample. The
    reasons list says in words which threshold each alarm passed.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import MissingValueCount, ValueDrift
    from evidently.presets import DataDriftPreset

    columns = features.raw_columns
    definition = DataDefinition(numerical_columns=[*features.numeric, PROBABILITY],
                                categorical_columns=list(features.categorical))
    keep = [*columns, PROBABILITY]
    sampled = sample_window(current, monitor.window_sample_rows, monitor.seed)
    # A column with no value on one side has no distance (Evidently raises on it): a feed that stopped sending it is
    # the missing-value check's alarm, a data-quality fault, not a crash of the whole window.
    measured = [column for column in columns if sampled[column].notna().any() and reference[column].notna().any()]
    thresholds = {column: calibration.columns[column] for column in measured if column in calibration.columns}
    report = Report(
        [DataDriftPreset(columns=measured, cat_method="jensenshannon", num_method="wasserstein",
                         per_column_threshold=thresholds),
         ValueDrift(column=PROBABILITY, method="wasserstein", threshold=calibration.prediction),
         *[MissingValueCount(column=column) for column in columns]],
        include_tests=True,
    )
    snapshot = report.run(current_data=Dataset.from_pandas(sampled[keep], data_definition=definition),
                          reference_data=Dataset.from_pandas(reference[keep], data_definition=definition),
                          name=name)
    drift, missing = _evidently_results(snapshot, [*measured, PROBABILITY], [*columns, PROBABILITY])
    exact_missing = {column: float(share) for column, share in current[list(columns)].isna().mean().items()}
    explained = {} if calibration.consistency is None else \
        expected_missing(sampled, features.numeric, calibration.consistency)
    prediction = drift.pop(PROBABILITY)
    column_drift = {}
    for column, result in drift.items():
        limit = thresholds.get(column)
        column_drift[column] = ColumnDrift(score=round(result["score"], 5), method=result["method"],
                                           threshold=None if limit is None else round(limit, 5),
                                           drifted=bool(limit is not None and result["score"] > limit),
                                           weight=round(calibration.weights.get(column, 0.0), 5))
    drifted = sorted(column for column, r in column_drift.items() if r.drifted)
    index = drift_index({c: r["score"] for c, r in drift.items()}, thresholds, calibration.weights)
    stamps = current[time_column]
    summary = WindowSummary(
        rows=len(current),
        first=stamps.min().isoformat(),
        last=stamps.max().isoformat(),
        model_tags=sorted(current["model_tag"].dropna().unique().tolist()) if "model_tag" in current else [],
        drift_share=round(len(drifted) / len(columns), 4),
        drifted_columns=drifted,
        drift_index=round(index, 5),
        drift_index_threshold=round(calibration.drift_index, 5),
        columns=column_drift,
        prediction_drift=PredictionDrift(score=round(prediction["score"], 5), method=prediction["method"],
                                         threshold=round(calibration.prediction, 5),
                                         drifted=prediction["score"] > calibration.prediction,
                                         mean_current=float(current[PROBABILITY].mean()),
                                         mean_reference=float(reference[PROBABILITY].mean())),
        missing={column: _missing_share(ref, cur, quality_limit(calibration.missing_rise.get(column),
                                                                monitor.missing_surge, monitor), explained.get(column))
                 for column, (ref, cur) in ((c, (missing[c][0], exact_missing[c])) for c in columns)},
        new_categories=_new_categories(current, calibration, features, monitor),
        ranges=_range_faults(current, reference, calibration, features, monitor),
        relations=_relations(sampled, calibration, monitor),
        integrity=integrity(current, champion, champion_tag, monitor) if champion is not None else None,
        quality=live_quality(current, outcomes, expected, monitor, calibration.auc_drop, calibration)
        if outcomes is not None else None,
        refused=refused_traffic(refused, len(current), monitor),
    )
    summary.reasons = alarm_reasons(summary, monitor, calibration)
    return WindowResult(report=summary, snapshot=snapshot)


def _missing_share(reference: float, current: float, limit: float, expected: float | None = None) -> MissingShare:
    base = reference if expected is None else expected
    return MissingShare(reference=round(reference, 5), current=round(current, 5), threshold=round(limit, 5),
                        surge=current - base > limit, expected=None if expected is None else round(expected, 5))


def consistent_columns(summary: WindowSummary, calibration: Calibration | None) -> dict[str, str]:
    """Columns that moved past the reference *together with a column they are bound to*, the relation between them
    intact: the world moved (a warm spell moves temperature and dew point, humidity with them), not a unit.

    A column moved when its mean is far outside every reference window's, or many of its values lie far outside or
    beyond the observed range. It counts as consistent when it belongs to a checked relation (`Relation`: the
    column the others determine and its main predictors) in which another column moved too and no relation it
    belongs to is broken. A unit change of one column breaks its relations, or moves it alone. Returns each such
    column with the relation that vouches for it, in words."""
    if calibration is None or calibration.consistency is None:
        return {}
    moved = {name for name, r in summary.ranges.items() if r.unit_change or r.out_of_range or r.beyond_range}
    groups = {target: {target, *relation.predictors} for target, relation in summary.relations.items()}
    consistent: dict[str, str] = {}
    for name in moved:
        member_of = [target for target, group in groups.items() if name in group]
        if not member_of or any(summary.relations[target].broken or summary.relations[target].residual is None
                                for target in member_of):
            continue
        partners = sorted((set().union(*(groups[t] for t in member_of)) & moved) - {name})
        if partners:
            held = ", ".join(f"{t} residual {summary.relations[t].residual:+.2f} sd (limit "
                             f"{summary.relations[t].threshold:.2f})" for t in member_of)
            consistent[name] = f"with {', '.join(partners)}; {held}"
    return consistent


def data_quality_reasons(summary: WindowSummary, consistent: Mapping[str, str] | None = None) -> list[Reason]:
    """Faults of the data itself (a unit change, a missing surge, unknown categories on many rows, refused
    requests): they alarm as data quality and never ask for a retrain (a model retrained on corrupted data learns
    the corruption) unless an operator accepts them (`Acknowledgement`).

    Each limit is `monitor.quality_factor` times the calibrated threshold, never below its floor: a window has ~60
    data-quality statistics, each passing its own calibrated threshold about once in (windows + 1) windows by
    chance, so "just beyond" is noise somewhere most weeks; a fault is far beyond. Columns in `consistent`
    (`consistent_columns`) moved with the columns they are bound to: theirs is drift, not a fault."""
    consistent = consistent or {}
    reasons = []
    surging = {name: m for name, m in summary.missing.items() if m.surge}
    if surging:
        reasons.append(Reason(kind="missing_surge", columns=sorted(surging), text="data quality: missing-value surge "
                              "in " + ", ".join(_missing_words(name, m) for name, m in surging.items())))
    unseen = {name: m for name, m in summary.new_categories.items() if m.surge}
    if unseen:
        reasons.append(Reason(kind="new_category", columns=sorted(unseen), text=(
            "data quality: categories outside the champion's vocabulary in " + ", ".join(
                f"{name} {m.share:.1%} of rows (limit {m.threshold:.1%}; e.g. {', '.join(map(str, m.examples[:3]))})"
                for name, m in unseen.items()))))
    units = {name: r for name, r in summary.ranges.items() if r.unit_change and name not in consistent}
    if units:
        reasons.append(Reason(kind="mean_outside", columns=sorted(units), text=(
            "data quality: mean far outside every reference window (a unit change?) in " + ", ".join(
                f"{name} mean {r.mean:.4g} outside [{r.mean_band[0]:.4g}, {r.mean_band[1]:.4g}]"
                for name, r in units.items()))))
    broken = {name: r for name, r in summary.relations.items() if r.broken}
    if broken:
        reasons.append(Reason(kind="relation_broken", columns=sorted(broken), text=(
            "data quality: values no longer fit the other columns (a unit change or an upstream fault inside the "
            "column's own range?) in " + ", ".join(
                f"{name} (mean residual {r.residual:+.1f} sd from its fit on {', '.join(r.predictors)}, ...: "
                f"R2 {r.r2:.3f}; limit {r.threshold:.2f})" for name, r in broken.items()))))
    check = summary.integrity
    if check is not None and check.fault:
        reasons.append(Reason(kind="rescoring", text=(
            f"data quality: served probabilities differ from the champion's own scores of the logged inputs on "
            f"{check.mismatch_share:.1%} of {check.rows} rows (mean {check.mean_difference:+.3f}): another model or "
            f"feature pipeline is serving, not drift")))
    outside = {name: r for name, r in summary.ranges.items()
               if r.out_of_range and not r.unit_change and name not in consistent}
    if outside:
        reasons.append(Reason(kind="out_of_range", columns=sorted(outside), text=(
            "data quality: values outside the reference's range in " + ", ".join(
                f"{name} {r.outside:.1%} (limit {r.outside_threshold:.1%})" for name, r in outside.items()))))
    refused = summary.refused
    if refused is not None and refused.surge:
        fields = ", ".join(f"{name} {count}" for name, count in list(refused.fields.items())[:5])
        reasons.append(Reason(kind="refused", columns=sorted(f for f in refused.fields if f != "(batch)"), text=(
            f"data quality: the service refused {refused.rows} of the window's rows ({refused.share:.1%}, limit "
            f"{refused.threshold:.1%}; fields at fault: {fields}): a sender's fault the model never sees")))
    return reasons


def _missing_words(name: str, m: Any) -> str:
    text = f"{name} {m.reference:.1%} -> {m.current:.1%} (limit +{m.threshold:.1%}"
    if m.expected is not None:
        text += f" over the {m.expected:.1%} its other columns explain"
    return text + ")"


def retrain_reasons(summary: WindowSummary, monitor: MonitorParams,
                    consistent: Mapping[str, str] | None = None) -> list[Reason]:
    """The alarms a retrain can answer: calibrated data drift weighted by the model's reliance, prediction drift,
    a consistent shift of related columns, performance decay. Columns beyond their own threshold are named even when
    the index stays under its own."""
    reasons = []
    if summary.drift_index > summary.drift_index_threshold:
        ratios = {name: c.score / max(c.threshold or 0.0, 1e-9) for name, c in summary.columns.items() if c.drifted}
        top = sorted(ratios, key=lambda name: summary.columns[name].weight * ratios[name], reverse=True)[:5]
        named = ", ".join(f"{name} (x{ratios[name]:.1f} its threshold, gain share {summary.columns[name].weight:.0%})"
                          for name in top)
        reasons.append(Reason(kind="data_drift", columns=top, text=(
            f"data drift: importance-weighted drift index {summary.drift_index:.2f} > calibrated "
            f"{summary.drift_index_threshold:.2f}; beyond their reference spread: {named or 'none alone'}")))
    if consistent:
        moved = []
        for name, why in sorted(consistent.items()):
            r = summary.ranges[name]
            where = (f"mean {r.mean:.4g} outside [{r.mean_band[0]:.4g}, {r.mean_band[1]:.4g}]" if r.unit_change
                     else f"{max(r.beyond or 0.0, r.outside):.1%} of rows beyond the observed range")
            moved.append(f"{name} ({where}; {why})")
        reasons.append(Reason(kind="consistent_shift", columns=sorted(consistent), text=(
            "consistent shift: related columns moved together past the reference, their relation intact: "
            + "; ".join(moved))))
    beyond = {name: r for name, r in summary.ranges.items()
              if r.beyond_range and not r.out_of_range and not r.unit_change and name not in (consistent or {})}
    if beyond:
        reasons.append(Reason(kind="beyond_range", columns=sorted(beyond), text=(
            "new values: beyond the range the reference observed (the model never saw them; a retrain on this data "
            "learns them) in " + ", ".join(
                f"{name} {r.beyond:.1%} of rows outside [{r.observed[0]:.4g}, {r.observed[1]:.4g}] (limit "
                f"{r.beyond_threshold:.1%})" for name, r in beyond.items() if r.observed))))
    prediction = summary.prediction_drift
    if prediction.drifted and not quality_intact(summary):
        reasons.append(Reason(kind="prediction_drift", text=(
            f"prediction drift: {prediction.method} {prediction.score:.3f} > calibrated {prediction.threshold:.3f} "
            f"(mean probability {prediction.mean_reference:.3f} -> {prediction.mean_current:.3f})")))
    quality = summary.quality
    if quality is not None and quality.decayed:
        reasons.append(Reason(kind="performance_decay", text=(
            f"performance decay: live ROC AUC {quality.metrics['roc_auc']:.3f} is {quality.auc_drop:.3f} below the "
            f"champion's {quality.expected['roc_auc']:.3f} (> {quality.auc_drop_limit:.3f}: monitor.auc_drop "
            f"{monitor.auc_drop} or the champion's own calibrated window-to-window drop, whichever is larger)")))
    return reasons


def quality_intact(summary: WindowSummary) -> bool:
    """The window's outcomes are in and show the model's quality intact: no AUC decay, no label alarm.

    Prediction drift stands in for the outcomes until they arrive. Once they are in and the model ranks and fits
    them as it did on its held-out weeks, a moved prediction distribution is the model following its inputs (the
    stormiest week of June 2013, held out of training: mean probability 0.22 -> 0.35, live AUC 0.77): reported in
    the record (`prediction_drift.drifted`), not an alarm."""
    quality = summary.quality
    if quality is None or not quality.complete or quality.decayed is not False:
        return False
    return not any(check.beyond and check.alarms for check in quality.labels.values())


def label_reason(summary: WindowSummary, inputs_moved: bool) -> Reason | None:
    """The outcomes fit the model's probabilities worse than any held-out week did (log loss, Brier, calibration
    gap past their calibrated limits). With the inputs unmoved (no drift, no input fault), the outcomes changed on
    their own: a label shift, a data-quality fault (relabelled outcomes, a changed label definition, or a change the
    inputs do not show); with the inputs moved, calibration decay a retrain answers."""
    quality = summary.quality
    if quality is None or not any(check.beyond and check.alarms for check in quality.labels.values()):
        return None
    words = {"log_loss_excess": "log loss over what its probabilities expect",
             "brier_excess": "Brier score over what its probabilities expect", "calibration_gap": "calibration gap"}
    beyond = [f"{words.get(name, name)} {c.value:+.3f} (held-out {c.reference:+.3f}, limit "
              f"{'+' if name != 'calibration_gap' else 'distance '}{c.limit:.3f})"
              for name, c in quality.labels.items() if c.beyond]
    metrics = quality.metrics or {}
    if metrics.get("log_loss") is not None:
        beyond.append(f"log loss {metrics['log_loss']:.3f}")
    rate = metrics.get("positive_rate")
    mean = summary.prediction_drift.mean_current
    observed = f"; observed positive rate {rate:.3f} against {mean:.3f} predicted" if rate is not None else ""
    if inputs_moved:
        return Reason(kind="calibration_decay", text="calibration decay: the probabilities fit the outcomes worse "
                                                     "than on any held-out window: " + "; ".join(beyond) + observed)
    return Reason(kind="label_shift", text=(
        "data quality: label shift: the outcomes moved while the inputs did not (no drift, no input fault): "
        + "; ".join(beyond) + observed + ": relabelled outcomes or a changed label definition, or a change the "
        "inputs do not show"))


def alarm_reasons(summary: WindowSummary, monitor: MonitorParams, calibration: Calibration | None = None
                  ) -> list[Reason]:
    """Every reason a window alarmed, data quality first; empty means no alarm."""
    consistent = consistent_columns(summary, calibration)
    quality = data_quality_reasons(summary, consistent)
    drift = retrain_reasons(summary, monitor, consistent)
    inputs_moved = bool(quality) or any(r.kind in ("data_drift", "prediction_drift", "consistent_shift",
                                                   "beyond_range") for r in drift)
    label = label_reason(summary, inputs_moved)
    if label is not None and label.quality:
        quality.append(label)
    elif label is not None:
        drift.append(label)
    return [*quality, *drift]
