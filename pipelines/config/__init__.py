"""The one typed loader for `params.yaml`.

Every step receives its own section of `Params` as an argument; nothing else reads the YAML. Defaults live in
`params.yaml` only (no field here has one), so a key missing from the file is an error rather than a silent
fallback that differs between the CLI, the flows and the service. Each key is documented once, in its section's
`Field(description=...)` (`pipelines/config/pipeline.py` for the training DAG, `operations.py` for the running
system); `python -m pipelines params --explain KEY` prints it. Every refusal names the dotted key
(`pipelines/config/errors.py`).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ConfigDict, Field, ValidationError, model_validator

from pipelines.config.errors import format_errors
from pipelines.config.families import (
    FAMILIES,
    SEARCHABLE,
    Family,
    FamilyParams,
    FamilySpaces,
    HistGBParams,
    LightGBMParams,
    LogisticParams,
)
from pipelines.config.operations import (
    DeploymentsParams,
    MonitorParams,
    PredictionLogParams,
    PrefectParams,
    ReplayParams,
    ServeParams,
    StackParams,
    VersioningParams,
)
from pipelines.config.pipeline import (
    TIME_PARTS,
    CollectParams,
    EvaluateParams,
    FeaturesParams,
    GateParams,
    OptimizeParams,
    PathsParams,
    ProjectParams,
    ReadParams,
    SearchParams,
    SourceParams,
    SplitParams,
    TrainParams,
    ValidateParams,
)
from pipelines.config.types import Section

__all__ = [
    "DEFAULT_PARAMS_FILE", "FAMILIES", "Family", "FamilyParams", "FamilySpaces", "HistGBParams", "LABEL",
    "LightGBMParams", "LogisticParams", "PARAMS_ENV", "REQUEST_ID", "REQUEST_ID_MAX", "RESERVED_NAMES", "SEARCHABLE",
    "TIME_PARTS", "CollectParams", "DeploymentsParams", "EvaluateParams", "FeaturesParams", "GateParams",
    "MonitorParams", "OptimizeParams", "Params", "ParamsError", "PathsParams", "PredictionLogParams", "PrefectParams",
    "ProjectParams", "ReadParams", "ReplayParams", "SearchParams", "ServeParams", "SourceParams", "SplitParams",
    "StackParams", "TrainParams", "ValidateParams", "VersioningParams", "explain", "format_errors", "load_params",
    "parse_params",
]

DEFAULT_PARAMS_FILE = Path("params.yaml")
# The params file of a process the stack or a deployment started (the service, the flows, the Evidently UI).
PARAMS_ENV = "FLIGHTOPS_PARAMS"
# Names the pipeline gives columns and fields of its own, beside a table's: no feature, time column or slice may
# be called so (the prepared splits' 0/1 label would replace the column; the request's field would replace the
# feature).
LABEL = "label"
REQUEST_ID = "request_id"
REQUEST_ID_MAX = 200  # characters: the service refuses a longer caller id
RESERVED_NAMES = {LABEL: "the 0/1 label the pipeline computes from source.target (the prepared splits' column)",
                  REQUEST_ID: "the service's optional caller id, beside the features in each request"}


class ParamsError(ValueError):
    """A params file that cannot be used; the message names every offending key."""


class Params(Section):
    """The whole file: one section per step of the DAG, then the running system's sections."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    project: ProjectParams
    paths: PathsParams
    source: SourceParams
    collect: CollectParams
    # `validate` shadows a BaseModel method: the field is `validate_`, the YAML key stays `validate`.
    validate_: ValidateParams = Field(alias="validate")
    features: FeaturesParams
    split: SplitParams
    train: TrainParams
    evaluate: EvaluateParams
    search: SearchParams
    optimize: OptimizeParams
    gate: GateParams
    serve: ServeParams
    replay: ReplayParams
    monitor: MonitorParams
    deployments: DeploymentsParams
    stack: StackParams
    prefect: PrefectParams
    versioning: VersioningParams

    @model_validator(mode="after")
    def _across_sections(self) -> Params:
        # The stack runs the Bento on serve.port beside its own servers; one port cannot serve two of them.
        ports = {"stack.prefect_port": self.stack.prefect_port, "stack.evidently_port": self.stack.evidently_port,
                 "serve.port": self.serve.port}
        if len(set(ports.values())) != len(ports):
            raise ValueError(f"stack ports must differ, got {ports}")
        for name, column in (("source.target", self.source.target), ("source.time_column", self.source.time_column)):
            if column in self.features.raw_columns:
                raise ValueError(f"{name} {column!r} is also listed as a feature")
        named = {"features.categorical": self.features.categorical, "features.numeric": self.features.numeric,
                 "source.time_column": [self.source.time_column], "evaluate.slices": self.evaluate.slices}
        for key, columns in named.items():
            for column in set(columns) & set(RESERVED_NAMES):
                raise ValueError(f"{key} names the column {column!r}, but {column!r} is {RESERVED_NAMES[column]}: "
                                 "rename that column in your table (and here)")
        unknown = [name for name in self.monitor.key_features if name not in self.features.raw_columns]
        if unknown:
            raise ValueError(f"monitor.key_features {unknown} are not raw feature columns (features.categorical / "
                             f"features.numeric: {self.features.raw_columns}): name the features the monitoring "
                             "dashboard should chart, or []")
        if self.prefect.code_source == "git":
            missing = [key for key, value in (("prefect.runner: workers", self.prefect.runner == "workers"),
                                              ("versioning.git_remote", self.versioning.git_remote),
                                              ("versioning.registry_remote", self.versioning.registry_remote))
                       if not value]
            if missing:
                raise ValueError(f"prefect.code_source: git needs {', '.join(missing)}: flow runs on other machines "
                                 "clone the git remote and share the registry remote (docs/scale-out.md)")
        return self


# --- loading ------------------------------------------------------------------------------------------------------

def _apply_override(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    *parents, leaf = dotted.split(".")
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            raise ParamsError(f"override {dotted!r}: {part!r} is not a section of params{_guess(part, node)}")
        node = child
    if leaf not in node:
        raise ParamsError(f"override {dotted!r}: unknown key {leaf!r}{_guess(leaf, node)}")
    node[leaf] = value


def _guess(name: str, known: dict[str, Any]) -> str:
    """A typo's close match among the keys it could have meant (as the loader's errors say it)."""
    guess = difflib.get_close_matches(name, [str(key) for key in known], n=1)
    return f" (did you mean {guess[0]!r}?)" if guess else ""


def parse_params(data: dict[str, Any], origin: str = "params") -> Params:
    try:
        return Params.model_validate(data)
    except ValidationError as error:
        raise ParamsError(f"invalid params in {origin}:\n" + "\n".join(
            f"  {line}" for line in format_errors(error, Params))) from None


def load_params(path: Path | str = DEFAULT_PARAMS_FILE, overrides: dict[str, Any] | None = None) -> Params:
    """Read, override (dotted keys, e.g. ``{"collect.end": "2013-10-01"}``) and validate the params file.

    Overrides are how the flows re-run the same DAG on a new window without editing the file.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"params file not found: {path}") from None
    except yaml.YAMLError as error:
        raise ParamsError(f"params file {path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ParamsError(f"params file {path} must hold a mapping of sections, got {type(data).__name__}")
    for dotted, value in (overrides or {}).items():
        _apply_override(data, dotted, value)
    return parse_params(data, origin=str(path))


# --- documentation ------------------------------------------------------------------------------------------------

def _fields(model: type[Section], prefix: str = "") -> dict[str, tuple[type[Section], str, Any]]:
    """Every documented key below `model`, dotted as params.yaml spells it: (its section, its name, its FieldInfo)."""
    found: dict[str, tuple[type[Section], str, Any]] = {}
    for name, info in model.model_fields.items():
        key = f"{prefix}{info.alias or name}"
        found[key] = (model, name, info)
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, Section):
            found |= _fields(annotation, f"{key}.")
    return found


def explain(key: str) -> dict[str, Any]:
    """What a params key means and accepts, from its one description: `python -m pipelines params --explain KEY`.

    A section name gives its own description and its keys. Raises `ParamsError` naming close matches.
    """
    import difflib

    fields = _fields(Params)
    if key not in fields:
        guesses = difflib.get_close_matches(key, list(fields), n=3)
        raise ParamsError(f"{key}: no such params key" + (f" (did you mean {', '.join(guesses)}?)" if guesses else ""))
    section, name, info = fields[key]
    annotation = info.annotation
    if isinstance(annotation, type) and issubclass(annotation, Section):
        children = _fields(annotation, f"{key}.")
        return {"key": key, "section": (annotation.__doc__ or "").strip(),
                "keys": {child: (found[2].description or "") for child, found in children.items()}}
    schema = dict(section.model_json_schema(by_alias=True)["properties"][info.alias or name])
    schema.pop("description", None)
    schema.pop("title", None)
    return {"key": key, "description": info.description or "", "accepts": schema}
