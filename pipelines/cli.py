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

STAGES = ("collect", "validate", "preprocess", "train", "evaluate")


def _parse_override(text: str) -> tuple[str, Any]:
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set expects key=value, got {text!r}")
    return key, yaml.safe_load(value)


def _setup_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", datefmt="[%X]",
                        handlers=[RichHandler(rich_tracebacks=False, show_path=False)])
    for noisy in ("great_expectations", "py.warnings", "numexpr"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _load(args: argparse.Namespace) -> Any:
    from pipelines.config import load_params

    return load_params(args.params, dict(args.set or []))


def _run_stage(name: str) -> Callable[[argparse.Namespace], Any]:
    def command(args: argparse.Namespace) -> Any:
        from pipelines import stages

        return getattr(stages, f"run_{name}")(_load(args))

    return command


def _draft_suite(args: argparse.Namespace) -> Any:
    from pipelines.collect import read_table
    from pipelines.validate import draft_suite, write_suite

    frame = read_table(Path(args.table))
    suite = draft_suite(frame, args.name or Path(args.out).stem)
    write_suite(suite, Path(args.out))
    return {"suite": args.out, "expectations": len(suite.get("expectations", [])),
            "next": "review the drafted bounds, then commit the file and point validate.suite at it"}


def _model_card(args: argparse.Namespace) -> Any:
    from pipelines.model_card import write_model_card

    return write_model_card(_load(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable[[argparse.Namespace], Any], help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
        sub.add_argument("--set", action="append", type=_parse_override, metavar="KEY=VALUE",
                         help="override one param, e.g. --set train.num_leaves=31 (repeatable)")
        sub.set_defaults(handler=handler)
        return sub

    for stage in STAGES:
        add(stage, _run_stage(stage), f"run the {stage} stage")
    add("model-card", _model_card, "write the champion's (else the candidate's) model card as markdown + HTML")
    draft = add("draft-suite", _draft_suite, "draft a Great Expectations suite from a reference CSV/Parquet table")
    draft.add_argument("--table", required=True, help="reference table (CSV or Parquet)")
    draft.add_argument("--out", required=True, help="where to write the suite JSON, e.g. expectations/mine.json")
    draft.add_argument("--name", help="suite name (default: the file name)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        result = args.handler(args)
    except (ValueError, FileNotFoundError, KeyError) as error:
        # Our own errors carry a message written for the user; a traceback would bury it.
        print(f"error: {args.command} failed: {error}", file=sys.stderr)
        return 1
    if result is not None:
        print(json.dumps(result, indent=2, default=str))
    return 0
