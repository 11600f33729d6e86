"""One command line for every action: `python -m pipelines <command>`.

dvc.yaml's stages, the README and people call this; the Prefect flows call the same `pipelines.stages` functions
directly. Heavy libraries are imported inside the commands so `--help` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipelines.io import DVC_FILE, PARAMS_FILE

# The commands dvc.yaml's stages run -> the `pipelines.stages` function each calls (tests/code/test_dvc_deps.py
# derives every stage's imports and params reads from this map).
# One command per stage, named as the stage: `python -m pipelines train` is what `dvc repro train` runs.
STAGE_FUNCTIONS = {
    "collect": "run_collect",
    "validate": "run_validate",
    "preprocess": "run_preprocess",
    "train": "run_search",
    "evaluate": "run_evaluate",
    "variant": "run_variant",
    "gate": "run_gate_and_promote",
    "reference": "run_reference",
}
STAGE_HELP = {"train": "model selection: train the search's candidates on Dask and keep the best on the validation "
                       "split (search.strategy none: `train:` alone)",
              "variant": "make the variant serve.artifact names of the trained model (full: none), for the gate "
                         "and the service",
              "gate": "gate the trained model against the champion; promote if it passes",
              "reference": "attach the monitoring reference and drift calibration to the model the gate registered"}


def _parse_override(text: str) -> tuple[str, Any]:
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set expects key=value, got {text!r}")
    return key, yaml.safe_load(value)


def _setup_logging(verbose: bool) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    # Logs on stderr: stdout carries the command's JSON result, for a script or a test to read.
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", datefmt="[%X]",
                        handlers=[RichHandler(console=Console(stderr=True), rich_tracebacks=False, show_path=False)])
    # httpx logs every request at INFO: a replay of thousands of batches would bury its own lines.
    for noisy in ("great_expectations", "py.warnings", "numexpr", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _load(args: argparse.Namespace) -> Any:
    from pipelines.config import load_params

    return load_params(args.params, dict(args.set or []))


def _run_stage(function: str) -> Callable[[argparse.Namespace], Any]:
    def command(args: argparse.Namespace) -> Any:
        from pipelines import stages

        params = _load(args)
        if function == STAGE_FUNCTIONS["train"]:
            _refuse_lost_changes(args, params)
        return getattr(stages, function)(params)

    return command


def _refuse_lost_changes(args: argparse.Namespace, params: Any) -> None:
    """A change to a `train:` key the search sets in every candidate would train the same model without a word: a
    `--set` of one is refused, params.yaml differing from its commit in one (`dvc exp run -S`, an edit, an earlier
    experiment's values) is warned of, each naming the search setting (`pipelines.model.overrides`).
    Not in the stage's function: it decides whether the stage runs, never what it writes (no DVC dep)."""
    from pipelines.model.overrides import refuse_lost_changes, warn_lost_changes
    from pipelines.release.lineage import changed_params

    refuse_lost_changes(dict(args.set or []), params.search, params.train.family)
    warn_lost_changes(changed_params(Path(args.params)), params.search, params.train.family)


def _draft_suite(args: argparse.Namespace) -> Any:
    """Draft from what validate will see: the collected table (source read, columns checked, time column parsed to
    UTC, window cut, through Parquet as the collect stage writes it), or `--table` as it is read from disk."""
    import io

    import pandas as pd

    from pipelines import io as catalog
    from pipelines.data.behaviour import write_behaviour
    from pipelines.data.collect import TimeFormat, collect, params_columns, parse_time, read_table
    from pipelines.data.draft import draft_suite
    from pipelines.data.suite import write_suite

    params = _load(args)
    source = params.source
    if args.table:
        frame, origin = read_table(Path(args.table), reading=source.read, times=TimeFormat.of(source)), args.table
        if source.time_column in frame.columns:
            frame = parse_time(frame, source.time_column, TimeFormat.of(source))
    else:
        collected = collect(params.source, params.collect, expected_columns=params_columns(
            params.source, params.features, params.evaluate.slices))
        frame = pd.read_parquet(io.BytesIO(collected.to_parquet(index=False)))
        origin = (f"the collected table ({params.source.path}, {params.collect.start:%Y-%m-%d} .. "
                  f"{params.collect.end:%Y-%m-%d})")
    time_column = source.time_column if source.time_column in frame.columns else None
    label = source.target if source.target in frame.columns else None
    keys = [name for name in source.key_columns if name in frame.columns]
    result: dict[str, Any] = {"drafted_from": origin, "rows": len(frame)}
    suite_name = args.name or Path(args.out).stem
    if args.calibration_only:  # beside a reviewed suite: the calibration names it
        from pipelines.data.suite import read_suite

        suite_name = str(read_suite(Path(args.out))["name"])
    else:
        suite = draft_suite(frame, suite_name, label_column=label,
                            positive_above=source.positive_above if label else None,
                            positive_class=source.positive_class if label else None, key_columns=keys,
                            time_column=time_column, period=params.validate_.period)
        if not args.table and time_column is not None and suite.get("per_period"):
            _refuse_a_window_wider_than_the_table(frame, suite["per_period"], params)
        write_suite(suite, Path(args.out))
        result.update({"suite": args.out, "expectations": len(suite.get("expectations", [])),
                       "per_period": len((suite.get("per_period") or {}).get("expectations", []))})
    calibration = Path(args.calibration) if args.calibration else Path(args.out).with_name(
        Path(args.out).stem + catalog.BEHAVIOUR_SUFFIX)
    if time_column is not None:
        behaviour = _draft_behaviour(frame, params, keys, suite_name)
        write_behaviour(behaviour, calibration)
        result.update({"calibration": str(calibration), "segments": behaviour.segments,
                       "dependencies": [dependency.describe() for dependency in behaviour.dependencies],
                       "time_parts": [f"{part.column} = {part.part} in {part.zone}" for part in behaviour.time_parts],
                       "relations": sorted(behaviour.relations.values if behaviour.relations else {}),
                       "bands": len(behaviour.bands)})
    steps = ["review the drafted bounds, then commit the file(s)"]
    if not args.calibration_only and Path(args.out) != params.validate_.suite:
        steps.append(f"set validate.suite: {args.out}")
    if time_column is not None and calibration != params.validate_.calibration:
        steps.append(f"set validate.calibration: {calibration}")
    result["next"] = "; ".join(steps)
    return result


def _refuse_a_window_wider_than_the_table(frame: Any, section: dict[str, Any], params: Any) -> None:
    """validate holds every period of collect.start .. collect.end to the drafted rows per day: a window wider than
    the table (or a period with no rows inside it) would fail on the table drafted from. Refused before writing."""
    import pandas as pd

    from pipelines.data.draft import window_shortfalls

    time_column = params.source.time_column
    window = (params.collect.start, params.collect.end)
    shortfalls = window_shortfalls(frame, section, time_column=time_column, window=window)
    if not shortfalls:
        return
    first, last = frame[time_column].min(), frame[time_column].max()
    start, end = first.floor("D"), last.floor("D") + pd.Timedelta(days=1)
    fits = not window_shortfalls(frame, section, time_column=time_column, window=(start, end))
    advice = (f"set collect.start: \"{start:%Y-%m-%d}\" and collect.end: \"{end:%Y-%m-%d}\" (the table's first day "
              f"and the day after its last), then draft again" if fits else
              "the table has no rows in some of them: fill the gap or choose a window without it, then draft again")
    listed = ", ".join(shortfalls[:6]) + (f" and {len(shortfalls) - 6} more" if len(shortfalls) > 6 else "")
    raise ValueError(
        f"collect.start .. collect.end ({params.collect.start:%Y-%m-%d} .. {params.collect.end:%Y-%m-%d}) is wider "
        f"than the table, whose {time_column!r} spans {first:%Y-%m-%d %H:%M} .. {last:%Y-%m-%d %H:%M}: validate "
        f"holds every {section['period']} of the window to the drafted rows per day, so the suite would fail on "
        f"the table it is drafted from, in {listed}; {advice}")


def _draft_behaviour(frame: Any, params: Any, keys: list[str], suite: str) -> Any:
    """The learned behaviour, with the monitor's tolerances (monitor.unit_margin, the surges, consistency_r2)."""
    from pipelines.data.behaviour import Floors, LabelSpec, draft_behaviour

    source, monitor = params.source, params.monitor
    segments = params.validate_.segments
    if segments is None:
        segments = [name for name in params.evaluate.slices if name in frame.columns]
    label = LabelSpec(target=source.target, positive_above=source.positive_above,
                      positive_class=source.positive_class) if source.target in frame.columns else None
    return draft_behaviour(frame, time_column=source.time_column, period=params.validate_.period, label=label,
                           key_columns=keys, segments=segments, max_segments=params.validate_.max_segments,
                           margin=monitor.unit_margin,
                           floors=Floors(missing=monitor.missing_surge, share=monitor.new_category_surge,
                                         outside=monitor.out_of_range_surge),
                           relation_r2=monitor.consistency_r2, suite=suite)


def _models_list(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    from pipelines.release import registry

    params = _load(args)
    store = registry.open_registry(params)
    models = registry.list_models(store, name=params.project.model_name)
    table = Table(title=f"{params.project.model_name} models (registry: {store.location})")
    table.add_column("tag", no_wrap=True)
    for column in ("stage", "created", "test AUC", "data version", "commit", "dirty", "gate"):
        table.add_column(column, no_wrap=True)
    for model in models:
        # The entry is read whatever version (or person) stored it: a part it could not type is None here.
        entry = model.entry
        auc = entry.metrics.test.roc_auc if entry.metrics.test else None
        verdict = "" if entry.gate is None else "passed" if entry.gate.promote else "refused"
        lineage = entry.lineage
        table.add_row(model.tag, model.stage, model.created[:16],
                      "n/a" if auc is None else f"{auc:.4f}",
                      (entry.data_version.raw_table_md5 if entry.data_version else "unknown")[:8],
                      (lineage.git_commit if lineage else "unknown")[:8],
                      "?" if lineage is None else "yes" if lineage.git_dirty else "no", verdict,
                      style="bold green" if model.stage == "champion" else None)
    Console(width=160).print(table if models else "no models in the store yet: run the training DAG (dvc repro)")


def _monitor_ack(args: argparse.Namespace) -> dict[str, Any]:
    from pipelines.monitor import acknowledge

    params = _load(args)
    record = acknowledge.acknowledge(params.paths.monitoring_dir, args.kind, args.why, args.column or [], args.since,
                                     by=args.by, known_columns=params.features.raw_columns)
    return {**record.to_json_dict(), "next": "the next monitoring run applies it (the alarm stops blocking "
                                             "retraining); `python -m pipelines monitor acks` lists those in force"}


def _monitor_acks(args: argparse.Namespace) -> list[dict[str, Any]]:
    from pipelines.monitor import acknowledge

    params = _load(args)
    records = acknowledge.read_all(params.paths.monitoring_dir) if args.all else \
        acknowledge.active(params.paths.monitoring_dir)
    return [record.to_json_dict() for record in records]


def _monitor_revoke(args: argparse.Namespace) -> dict[str, Any]:
    from pipelines.monitor import acknowledge

    params = _load(args)
    return acknowledge.revoke(params.paths.monitoring_dir, args.id, args.why, by=args.by).to_json_dict()


def _monitor_calibration(args: argparse.Namespace) -> dict[str, Any]:
    """The champion's thresholds, how often a window like its reference alarms (leave-one-out), and a warning when
    they were learned from too few or too small windows."""
    from pipelines import io as catalog
    from pipelines.monitor.calibration import Calibration, calibration_warning, leave_one_out
    from pipelines.release import registry

    params = _load(args)
    store = registry.open_registry(params)
    tag = args.tag or registry.require_champion(store)
    stored = registry.model_path(tag, store) / catalog.CALIBRATION_FILE
    if not stored.exists():
        raise FileNotFoundError(f"{tag} has no {catalog.CALIBRATION_FILE}: it was registered before calibration")
    calibration = Calibration.model_validate(catalog.read_json(stored))
    estimate = leave_one_out(calibration, params.monitor)
    return {"tag": tag, "windows": calibration.windows, "resamples": calibration.resamples,
            "period": calibration.period, "drift_index": calibration.drift_index,
            "prediction": calibration.prediction, "auc_drop": calibration.auc_drop,
            "labels": calibration.labels.limits if calibration.labels else None,
            "false_alarms": None if estimate is None else estimate.model_dump(),
            "warning": calibration_warning(calibration)}


def _models_rollback(args: argparse.Namespace) -> dict[str, Any]:
    from pipelines.release import registry

    params = _load(args)
    store = registry.open_registry(params)
    previous = registry.require_champion(store)
    restored = registry.rollback(store, args.to, force=args.force)
    return {"champion": restored, "previous": previous}


def _models_quarantine(args: argparse.Namespace) -> dict[str, Any]:
    from pipelines.release import registry

    params = _load(args)
    if (args.tag is None) == (args.table is None):
        raise ValueError("models quarantine takes a model TAG or --table MD5 (one of them)")
    reason = args.reason or (f"table {args.table} failed validation" if args.table else "quarantined by hand")
    return registry.quarantine(registry.open_registry(params), name=params.project.model_name, tag=args.tag,
                               table_md5=args.table, reason=reason)


def _models_prune(args: argparse.Namespace) -> dict[str, Any]:
    from pipelines.release import registry

    params = _load(args)
    store = registry.open_registry(params)
    deleted = registry.prune(store, args.keep, name=params.project.model_name, dry_run=args.dry_run)
    return {"deleted" if not args.dry_run else "would_delete": deleted,
            "champion": registry.champion_tag(store), "kept_promoted": args.keep}


REPORT_START = '{\n  "tag"'  # the reproduce report as printed (json indent 2): what callers parse after the logs


def _reproduce(args: argparse.Namespace) -> dict[str, Any]:
    from pipelines.release.reproduce import reproduce

    params = _load(args)
    from pipelines.release.registry import open_registry

    report = reproduce(args.tag, Path(args.params).resolve().parent, params.versioning.git_remote,
                       keep=Path(args.keep) if args.keep else None, store=open_registry(params))
    if args.check and not report["identical"]:
        print(json.dumps(report, indent=2, default=str))
        raise SystemExit(1)
    return report


def _replay(args: argparse.Namespace) -> Any:
    from pipelines.config import load_params
    from pipelines.monitor.replay import run_replay

    overrides = dict(args.set or [])
    for key in ("start", "end", "rate", "batch_size"):
        if getattr(args, key) is not None:
            overrides[f"replay.{key}"] = getattr(args, key)
    return run_replay(load_params(args.params, overrides), args.url)


def _summary(args: argparse.Namespace) -> None:
    from pipelines.release.summary import summary_text

    print(summary_text(_load(args)))


def _params(args: argparse.Namespace) -> Any:
    """Check the params file; with --explain, what one key (or section) means, accepts, is set to, and which DVC
    stages re-run when it changes (dvc.yaml's params lists)."""
    from pipelines.config import explain

    params = _load(args)
    if not args.explain:
        return {"params": args.params, "valid": True, "sections": list(type(params).model_fields)}
    found = explain(args.explain)
    value: Any = params.model_dump(by_alias=True, mode="json")
    for part in args.explain.split("."):
        value = value[part]
    return {**found, "value": value, "dvc_stages": _stages_reading(args.explain)}


def _stages_reading(key: str) -> list[str]:
    """dvc.yaml's stages whose params list names `key`, a section holding it, or a key inside it."""
    import yaml

    dvc_file = Path(DVC_FILE)
    if not dvc_file.exists():
        return []
    stages = (yaml.safe_load(dvc_file.read_text()) or {}).get("stages", {})
    return sorted(name for name, spec in stages.items() for listed in spec.get("params", [])
                  if isinstance(listed, str) and (key == listed or key.startswith(listed + ".")
                                                  or listed.startswith(key + ".")))


def _model_card(args: argparse.Namespace) -> Any:
    from pipelines.release.model_card import write_model_card

    return write_model_card(_load(args))


def _optimize(args: argparse.Namespace) -> dict[str, Any]:
    """Every variant of the model (pruned, refitted, ONNX, quantised), each measured against it; with --tag, of a
    registered model, whose registry entry then carries the report (each variant with its parent and its loss)."""
    from pipelines.model.optimize import run_optimize

    params = _load(args)
    if args.tag and args.model:
        raise ValueError("optimize takes --model DIR or --tag TAG, not both")
    if not args.tag:
        return run_optimize(params, Path(args.model) if args.model else None).to_json_dict()
    from pipelines import io
    from pipelines.release import registry

    store = registry.open_registry(params)
    report = run_optimize(params, registry.model_path(args.tag, store)).to_json_dict()
    folder = registry.attach_files(args.tag, {io.VARIANTS_REPORT_FILE: lambda temp: io.write_json(Path(temp), report)},
                                   store)
    return {**report, "registered": str(folder / io.VARIANTS_REPORT_FILE)}


def _export(args: argparse.Namespace) -> dict[str, Any]:
    """The champion (the registry's, else the train stage's model when nothing is registered yet) or a variant as
    an edge artefact, checked against the model on probe rows."""
    from pipelines.model.export import run_export
    from pipelines.release import registry

    params = _load(args)
    store = registry.open_registry(params)
    tag = registry.champion_tag(store)
    full = registry.model_path(tag, store) if tag else params.paths.model_dir
    return run_export(params, args.format, args.variant, full, Path(args.out) if args.out else None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable[[argparse.Namespace], Any], help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--params", default=PARAMS_FILE, help=f"params file (default: {PARAMS_FILE})")
        sub.add_argument("--set", action="append", type=_parse_override, metavar="KEY=VALUE",
                         help="override one param, e.g. --set train.lightgbm.num_leaves=31 (repeatable)")
        sub.set_defaults(handler=handler)
        return sub

    for command, function in STAGE_FUNCTIONS.items():
        add(command, _run_stage(function), STAGE_HELP.get(command, f"run the {command} stage"))
    models = commands.add_parser("models", help="the model registry: list models, roll the champion back, "
                                                "quarantine, prune")
    model_commands = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    for name, handler, help_text in (("list", _models_list, "list stored models with stage, metrics, data, commit"),
                                      ("rollback", _models_rollback, "make the previous (or --to) model champion"),
                                      ("quarantine", _models_quarantine,
                                       "mark a model, or every model trained on a table (--table MD5), unfit to "
                                       "serve; the champion rolls back to the newest clean one"),
                                      ("prune", _models_prune, "delete stored models other than the champion and "
                                                               "the last N promoted (refused ones included)")):
        sub = model_commands.add_parser(name, help=help_text)
        sub.add_argument("--params", default=PARAMS_FILE, help=f"params file (default: {PARAMS_FILE})")
        sub.add_argument("--set", action="append", type=_parse_override, metavar="KEY=VALUE")
        sub.set_defaults(handler=handler)
        if name == "rollback":
            sub.add_argument("--to", metavar="TAG", help="the tag to restore (default: the previous champion)")
            sub.add_argument("--force", action="store_true", help="restore a model the gate refused (it never "
                                                                  "served: refused without this flag)")
        if name == "quarantine":
            sub.add_argument("tag", nargs="?", help="the model's tag (python -m pipelines models list)")
            sub.add_argument("--table", metavar="MD5", help="quarantine every model trained on this table (its MD5: "
                                                            "data version in models list, table_md5 in summary.json)")
            sub.add_argument("--reason", help="why, for the journal (default: the table failed validation)")
        if name == "prune":
            sub.add_argument("--keep", type=int, default=3, metavar="N",
                             help="keep the last N promoted models besides the champion (default: 3)")
            sub.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    monitor = commands.add_parser("monitor", help="the monitor: acknowledge a data-quality alarm, list or revoke "
                                                  "acknowledgements, the champion's calibration")
    monitor_commands = monitor.add_subparsers(dest="monitor_command", required=True, metavar="ACTION")
    for name, handler, help_text in (
            ("ack", _monitor_ack, "accept a data-quality alarm as the new normal (it stops blocking retraining)"),
            ("acks", _monitor_acks, "the acknowledgements in force (--all: the whole journal)"),
            ("revoke", _monitor_revoke, "withdraw an acknowledgement"),
            ("calibration", _monitor_calibration, "the champion's thresholds and its leave-one-out false-alarm "
                                                  "rate")):
        sub = monitor_commands.add_parser(name, help=help_text)
        sub.add_argument("--params", default=PARAMS_FILE, help=f"params file (default: {PARAMS_FILE})")
        sub.add_argument("--set", action="append", type=_parse_override, metavar="KEY=VALUE")
        sub.set_defaults(handler=handler)
        if name == "ack":
            sub.add_argument("--kind", required=True, help="the alarm's kind: new_category, mean_outside, "
                                                           "relation_broken, missing_surge, out_of_range, "
                                                           "refused, label_shift, rescoring")
            sub.add_argument("--column", action="append", metavar="NAME",
                             help="a column the alarm names (repeatable; none: every column)")
            sub.add_argument("--since", metavar="YYYY-MM-DD", help="the first window it covers (default: every "
                                                                   "window)")
        if name in ("ack", "revoke"):
            sub.add_argument("--why", required=True, help="why (kept in the journal for audit)")
            sub.add_argument("--by", help="who (default: $FLIGHTOPS_OPERATOR, else your login name)")
        if name == "revoke":
            sub.add_argument("id", help="the acknowledgement's id (python -m pipelines monitor acks)")
        if name == "acks":
            sub.add_argument("--all", action="store_true", help="every line, revoked ones and revocations too")
        if name == "calibration":
            sub.add_argument("--tag", help="a registered model (default: the champion)")
    rebuild = add("reproduce", _reproduce, "rebuild a registered model from its lineage (commit/experiment, params, "
                                           "data from the DVC remote) in a temp worktree and compare md5 and metrics")
    rebuild.add_argument("tag", help="the model's tag, e.g. delay-classifier:abc123 (python -m pipelines models list)")
    rebuild.add_argument("--check", action="store_true",
                         help="exit 1 unless the model file and metrics (and the variants optimize --tag recorded) "
                              "are identical")
    rebuild.add_argument("--keep", metavar="DIR", help="copy the rebuilt worktree here to inspect it")
    add("summary", _summary, "the last training run for people: test metrics beside the baselines, the gate's "
                             "decision, where to look next")
    explained = add("params", _params, "check the params file; --explain KEY says what a key means and which "
                                       "stages re-run when it changes")
    explained.add_argument("--explain", metavar="KEY", help="a dotted key or section, e.g. train.lightgbm.num_leaves")
    add("model-card", _model_card, "write the champion's (else the candidate's) model card as markdown + HTML")
    optimize = add("optimize", _optimize, "make smaller, faster variants of the model (first trees, fewer features, "
                                          "ONNX, quantised), each measured against it (opt-in: no DVC stage)")
    optimize.add_argument("--model", metavar="DIR", help="a trained model folder (default: paths.model_dir)")
    optimize.add_argument("--tag", help="a registered model instead (python -m pipelines models list); its registry "
                                        "entry gets the report")
    export = add("export", _export, "write the champion (or a variant) as an edge artefact with its encoding.json, "
                                    "checked against the model on probe rows")
    export.add_argument("--format", required=True, metavar="onnx|c",
                        help="onnx: model.onnx; c: TL2cgen's C and a runner built with cc (CSV on stdin)")
    export.add_argument("--variant", default="full", metavar="NAME",
                        help="full (default: the registry's champion, else paths.model_dir), or one `optimize` made: "
                             "trees, features, pruned, leaves, ordinal, onnx, quantised")
    export.add_argument("--out", metavar="DIR", help="where to write it (default: paths.variants_dir/"
                                                     "export-<variant>-<format>)")
    draft = add("draft-suite", _draft_suite, "draft a Great Expectations suite and its learned behaviour (the "
                                             "calibration) from the collected table (or --table)")
    draft.add_argument("--table", help="a reference CSV/Parquet table as read from disk (default: the table the "
                                       "collect stage makes from params' source and collect window)")
    draft.add_argument("--out", required=True, help="where to write the suite JSON, e.g. expectations/mine.json")
    draft.add_argument("--name", help="suite name (default: the file name)")
    draft.add_argument("--calibration", help="where to write the learned behaviour (default: beside --out, "
                                             "<name>.calibration.json); point validate.calibration at it")
    draft.add_argument("--calibration-only", action="store_true",
                       help="draft only the learned behaviour, keeping a reviewed suite at --out as it is")
    replay = add("replay", _replay, "replay a later period of the table's rows (replay.start .. replay.end) against "
                                    "the running service, then deliver their outcomes")
    replay.add_argument("--url", required=True, help="the service, e.g. http://127.0.0.1:3000")
    replay.add_argument("--start", help="first scheduled day (default: replay.start)")
    replay.add_argument("--end", help="end day, exclusive (default: replay.end)")
    replay.add_argument("--rate", type=float, help="rows per second (default: replay.rate)")
    replay.add_argument("--batch-size", dest="batch_size", type=int,
                        help="rows per request (default: replay.batch_size)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        result = args.handler(args)
    except (ValueError, FileNotFoundError, KeyError, RuntimeError) as error:
        # Our own errors carry a message written for the user; a traceback would bury it (-v shows it).
        if args.verbose:
            raise
        print(f"error: {args.command} failed: {error}", file=sys.stderr)
        return 1
    if result is not None:
        print(json.dumps(result, indent=2, default=str))
    return 0
