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
    "gate": "run_gate_and_promote",
    "reference": "run_reference",
}
STAGE_HELP = {"train": "model selection: train the search's candidates on Dask and keep the best on the validation "
                       "split (search.strategy none: `train:` alone)",
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
    suite = draft_suite(frame, args.name or Path(args.out).stem, label_column=label,
                        positive_above=source.positive_above if label else None,
                        positive_class=source.positive_class if label else None,
                        key_columns=[name for name in source.key_columns if name in frame.columns],
                        time_column=time_column, period=params.validate_.period)
    write_suite(suite, Path(args.out))
    return {"suite": args.out, "drafted_from": origin, "rows": len(frame),
            "expectations": len(suite.get("expectations", [])),
            "per_period": len((suite.get("per_period") or {}).get("expectations", [])),
            "next": "review the drafted bounds, then commit the file and point validate.suite at it"}


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


def _models_rollback(args: argparse.Namespace) -> dict[str, Any]:
    from pipelines.release import registry

    params = _load(args)
    store = registry.open_registry(params)
    previous = registry.require_champion(store)
    restored = registry.rollback(store, args.to, force=args.force)
    return {"champion": restored, "previous": previous}


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
    models = commands.add_parser("models", help="the model registry: list models, roll the champion back, prune")
    model_commands = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    for name, handler, help_text in (("list", _models_list, "list stored models with stage, metrics, data, commit"),
                                      ("rollback", _models_rollback, "make the previous (or --to) model champion"),
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
        if name == "prune":
            sub.add_argument("--keep", type=int, default=3, metavar="N",
                             help="keep the last N promoted models besides the champion (default: 3)")
            sub.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    rebuild = add("reproduce", _reproduce, "rebuild a registered model from its lineage (commit/experiment, params, "
                                           "data from the DVC remote) in a temp worktree and compare md5 and metrics")
    rebuild.add_argument("tag", help="the model's tag, e.g. delay-classifier:abc123 (python -m pipelines models list)")
    rebuild.add_argument("--check", action="store_true", help="exit 1 unless the model file and metrics are identical")
    rebuild.add_argument("--keep", metavar="DIR", help="copy the rebuilt worktree here to inspect it")
    add("summary", _summary, "the last training run for people: test metrics beside the baselines, the gate's "
                             "decision, where to look next")
    explained = add("params", _params, "check the params file; --explain KEY says what a key means and which "
                                       "stages re-run when it changes")
    explained.add_argument("--explain", metavar="KEY", help="a dotted key or section, e.g. train.lightgbm.num_leaves")
    add("model-card", _model_card, "write the champion's (else the candidate's) model card as markdown + HTML")
    draft = add("draft-suite", _draft_suite, "draft a Great Expectations suite from the collected table (or --table)")
    draft.add_argument("--table", help="a reference CSV/Parquet table as read from disk (default: the table the "
                                       "collect stage makes from params' source and collect window)")
    draft.add_argument("--out", required=True, help="where to write the suite JSON, e.g. expectations/mine.json")
    draft.add_argument("--name", help="suite name (default: the file name)")
    replay = add("replay", _replay, "replay a later period of real flights against the running service, "
                                    "then deliver their outcomes")
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
