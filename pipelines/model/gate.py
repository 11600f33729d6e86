"""The promotion gate: may the challenger replace the champion? A pure decision over predictions on one holdout.

Both models score the SAME rows (the current test split); every number behind the decision is kept in the
`GateReport` (pipelines/contracts.py), which the stage writes as `metrics/gate.json`. A refused challenger is a
normal outcome, not an
error: `decide` returns `promote=False` with the reasons, and only the stage shell raises (`GateRefused`) when
`gate.fail_on_refusal` asks for a blocking gate. Errors (a missing model, a broken split) always raise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipelines.config import GateParams
from pipelines.contracts import Check, GateMetrics, GateReport, GateScores, SliceComparison
from pipelines.features import LABEL
from pipelines.model.evaluate import score, skip_reason
from pipelines.model.significance import AucLead, auc_lead

if TYPE_CHECKING:
    from pipelines.model.variants import CheckedVariant

REPORTED = ("roc_auc", "pr_auc", "brier", "log_loss", "rows")


class GateRefused(RuntimeError):
    """Raised by the blocking gate (gate.fail_on_refusal: true); the message lists every failed check."""


def _summary(y_true: np.ndarray, proba: np.ndarray) -> GateScores:
    # The gate uses threshold-free metrics only, so the threshold passed to `score` does not matter.
    full = score(y_true, proba, 0.5)
    return GateScores(**{name: full[name] for name in REPORTED})


def slice_comparison(test: pd.DataFrame, challenger: np.ndarray, champion: np.ndarray, columns: list[str],
                     metric: str, min_rows: int) -> list[SliceComparison]:
    """Per slice value: both models' metric and the drop; compared only with enough rows and both classes."""
    y_true = test[LABEL].to_numpy()
    rows = []
    for column in columns:
        for value, index in test.groupby(column, observed=True, sort=True).indices.items():
            ours = score(y_true[index], challenger[index], 0.5)[metric]
            theirs = score(y_true[index], champion[index], 0.5)[metric]
            skipped = skip_reason(y_true[index], min_rows)
            if skipped is None and (math.isnan(ours) or math.isnan(theirs)):
                skipped = f"{metric} undefined"
            compared = skipped is None
            rows.append(SliceComparison(column=column, value=str(value), rows=int(len(index)), challenger=ours,
                                        champion=theirs, drop=theirs - ours if compared else None,
                                        compared=compared, skipped=skipped))
    return rows


def decide(test: pd.DataFrame, challenger: np.ndarray, champion: np.ndarray | None,
           baselines: dict[str, np.ndarray], latency_ms: float, gate: GateParams, slices: list[str],
           min_slice_rows: int, champion_tag: str | None = None,
           variant: Sequence[Check] = ()) -> GateReport:
    """Every check of the gate; `promote` is true only if all pass.

    With a champion: primary metric + `min_improvement`, no compared slice dropping more than `max_slice_drop`,
    Brier not worse by more than `max_brier_increase`, latency within `max_latency_ms`. Without one: the
    challenger must beat the best naive baseline by `min_improvement` and the prior's Brier, within latency.
    `variant`: the served variant's checks (`variant_checks`, when serve.artifact names one), after the others.
    """
    y_true = test[LABEL].to_numpy()
    metric = gate.metric
    ours = _summary(y_true, challenger)
    base = {name: _summary(y_true, p) for name, p in baselines.items()}
    theirs = _summary(y_true, champion) if champion is not None else None
    checks: list[Check] = []
    slice_rows: list[SliceComparison] = []
    if theirs is not None:
        gain = ours.metric(metric) - theirs.metric(metric)
        lead = _lead(y_true, challenger, champion, metric)
        checks.append(_check(
            f"{metric}_improvement", gain >= gate.min_improvement, gain, gate.min_improvement,
            f"{metric} {ours.metric(metric):.4f} vs champion {theirs.metric(metric):.4f}: {gain:+.4f}"
            f"{_lead_text(lead)} ({'meets' if gain >= gate.min_improvement else 'below'} the required "
            f"+{gate.min_improvement:.4f})"))
        checks += _significance(lead, gate, "the champion")
        slice_rows = slice_comparison(test, challenger, champion, slices, metric, min_slice_rows)
        compared = [row for row in slice_rows if row.compared]
        one_class = [f"{r.column}={r.value}" for r in slice_rows if r.skipped and "one class" in r.skipped]
        skipped_note = f"; skipped (one class): {', '.join(one_class)}" if one_class else ""
        worst = max(compared, key=lambda row: row.drop, default=None)
        if worst is None:
            checks.append(_check("slice_drop", True, None, gate.max_slice_drop,
                                 f"no slice of {slices} has {min_slice_rows}+ rows with both classes: "
                                 f"nothing to compare{skipped_note}"))
        else:
            losers = [f"{r.column}={r.value} ({r.drop:+.4f})" for r in compared if r.drop > gate.max_slice_drop]
            checks.append(_check(
                "slice_drop", not losers, worst.drop, gate.max_slice_drop,
                f"slices losing more than {gate.max_slice_drop:.4f} {metric}: {', '.join(losers)}{skipped_note}"
                if losers else
                f"worst slice {worst.column}={worst.value} changes {metric} by {-worst.drop:+.4f} "
                f"(within {gate.max_slice_drop:.4f}; {len(compared)} slices compared){skipped_note}"))
        brier_up = ours.metric("brier") - theirs.metric("brier")
        checks.append(_check(
            "brier_increase", brier_up <= gate.max_brier_increase, brier_up, gate.max_brier_increase,
            f"Brier {ours.metric('brier'):.4f} vs champion {theirs.metric('brier'):.4f}: {brier_up:+.4f} "
            f"({'within' if brier_up <= gate.max_brier_increase else 'beyond'} +{gate.max_brier_increase:.4f})"))
    else:
        valid = {name: m.metric(metric) for name, m in base.items() if not math.isnan(m.metric(metric))}
        best_name = max(valid, key=valid.get) if valid else None
        best = valid[best_name] if best_name else 0.5
        gain = ours.metric(metric) - best
        lead = _lead(y_true, challenger, baselines[best_name], metric) if best_name else None
        checks.append(_check(
            f"{metric}_over_baseline", gain >= gate.min_improvement, gain, gate.min_improvement,
            f"no champion yet: {metric} {ours.metric(metric):.4f} vs best naive baseline {best_name} {best:.4f}: "
            f"{gain:+.4f}{_lead_text(lead)} (required +{gate.min_improvement:.4f})"))
        checks += _significance(lead, gate, f"the baseline {best_name}")
        prior = min(m.metric("brier") for m in base.values())
        brier_up = ours.metric("brier") - prior
        checks.append(_check(
            "brier_vs_baseline", brier_up <= gate.max_brier_increase, brier_up, gate.max_brier_increase,
            f"no champion yet: Brier {ours.metric('brier'):.4f} vs best baseline {prior:.4f}: {brier_up:+.4f}"))
    checks.append(_check(
        "latency", latency_ms <= gate.max_latency_ms, latency_ms, gate.max_latency_ms,
        f"predict on {gate.latency_batch_rows} rows: fastest {latency_ms:.2f} ms "
        f"({'within' if latency_ms <= gate.max_latency_ms else 'over'} the {gate.max_latency_ms:.0f} ms budget)"))
    checks.extend(variant)
    return GateReport(promote=all(c.passed for c in checks),
                      compared_with="champion" if champion is not None else "baselines",
                      champion=champion_tag, metric=metric, checks=checks,
                      metrics=GateMetrics(challenger=ours, latency_ms=latency_ms, baselines=base, champion=theirs),
                      slices=slice_rows)


VARIANT_PARITY = "variant_parity"  # the check a variant must pass to be attached to its model and served


def variant_checks(artifact: str, checked: CheckedVariant | str, latency_ms: float | None,
                   gate: GateParams) -> list[Check]:
    """The checks of the variant `serve.artifact` names, which the service would serve in the challenger's place:
    its parity (`checked`: what `pipelines.model.variants.check_variant` accepted, or why it refused it: missing,
    made from another model.txt, beyond its bound) and its latency on the same batch and budget as the model's."""
    if isinstance(checked, str):
        return [_check(VARIANT_PARITY, False, None, None, f"serve.artifact {artifact}: {checked}")]
    assert latency_ms is not None, "a checked variant is timed"
    return [
        _check(VARIANT_PARITY, True, checked.max_difference, checked.tolerance,
               f"serve.artifact {artifact}: {checked.describe()}"),
        _check("variant_latency", latency_ms <= gate.max_latency_ms, latency_ms, gate.max_latency_ms,
               f"{artifact} variant: predict on {gate.latency_batch_rows} rows: fastest {latency_ms:.2f} ms "
               f"({'within' if latency_ms <= gate.max_latency_ms else 'over'} the {gate.max_latency_ms:.0f} ms "
               f"budget)")]


def _lead(y_true: np.ndarray, ours: np.ndarray, theirs: np.ndarray, metric: str) -> AucLead | None:
    """DeLong's paired test of the ROC AUC lead (None for another metric: it is a test of ROC AUCs)."""
    return auc_lead(y_true, ours, theirs) if metric == "roc_auc" else None


def _lead_text(lead: AucLead | None) -> str:
    if lead is None:
        return ""
    return f" ± {lead.standard_error:.4f} (DeLong's paired standard error; one-sided p {lead.p_value:.3g})"


def _significance(lead: AucLead | None, gate: GateParams, other: str) -> list[Check]:
    """The `significance` check when gate.max_p_value asks for one (the loader allows it with roc_auc only)."""
    if gate.max_p_value is None or lead is None:
        return []
    passed = lead.p_value <= gate.max_p_value
    return [_check("significance", passed, lead.p_value, gate.max_p_value,
                   f"lead over {other} {lead.difference:+.4f} ± {lead.standard_error:.4f}: one-sided p "
                   f"{lead.p_value:.3g} ({'within' if passed else 'above'} gate.max_p_value {gate.max_p_value:g}"
                   f"{'' if passed else ': it may be noise of this test split'})")]


def _check(name: str, passed: bool, value: float | None, limit: float | None, reason: str) -> Check:
    return Check(name=name, passed=bool(passed), value=value, limit=limit, reason=reason)


def decision_markdown(report: GateReport | Mapping[str, Any], level: int = 1) -> str:
    """The gate report (or its stored JSON form: a committed gate.json) as markdown.

    The one renderer of a decision: the Prefect artifact, the model card and the CLI all show this, so what a
    reviewer reads is what the gate wrote. `level` is the heading level (the card nests it under its own).
    """
    report = GateReport.coerce(report)
    verdict = "PROMOTED" if report.promote else "REFUSED"
    champion = f" (`{report.champion}`)" if report.champion else ""
    lines = [f"{'#' * level} Gate: challenger {verdict}", "",
             f"- decision: **{'promote' if report.promote else 'refuse'}** on `{report.metric}`, "
             f"compared with: {report.compared_with}{champion}"]
    if report.registered_tag:
        lines.append(f"- registered as `{report.registered_tag}`")
    if report.promoted_tag:
        lines.append(f"- new champion: `{report.promoted_tag}`")
    lines += [f"- failed: {reason}" for reason in report.failed]
    lines += ["", "| check | passed | value | limit | reason |", "|---|---|---|---|---|"]
    for check in report.checks:
        value = "n/a" if check.value is None else f"{check.value:.4f}"
        lines.append(f"| {check.name} | {'yes' if check.passed else '**no**'} | {value} | "
                     f"{check.limit} | {check.reason} |")
    return "\n".join(lines)


def enforce(report: GateReport, gate: GateParams) -> None:
    """The blocking gate: raise `GateRefused` with every failed check when `gate.fail_on_refusal` asks for it.

    The one place a refusal becomes an error, for the DVC stage and the Prefect flow alike.
    """
    if not report.promote and gate.fail_on_refusal:
        raise GateRefused("challenger refused by the gate: " + "; ".join(report.failed))
