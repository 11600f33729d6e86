"""The params loader: every bad key or value is refused with a message that names it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines.config import ParamsError, load_params, parse_params
from support.params import PARAMS_FILE, REPO_ROOT, params_dict

LIVE_PARAMS = REPO_ROOT / "params.yaml"


def test_repo_params_file_loads() -> None:
    params = load_params(PARAMS_FILE)
    assert params.collect.start < params.collect.end
    assert params.source.target not in params.features.raw_columns


def _keys(node: object, prefix: str = "") -> set[str]:
    if not isinstance(node, dict):
        return {prefix}
    return {key for name, child in node.items() for key in _keys(child, f"{prefix}.{name}" if prefix else name)}


def _sections(data: dict) -> dict:
    """Sections whose children are keys (a search space's or grid's entries are values, a user may name others)."""
    return {name: ({key: None for key in section} if name == "search" else section) for name, section in data.items()}


def test_the_frozen_test_params_have_the_live_files_keys() -> None:
    """The tests run on support/params.yaml, a frozen copy of the flights default, so a user's edits of params.yaml
    for their own table cannot break them; a key added to or removed from params.yaml must reach the copy too."""
    live, frozen = (_sections(yaml.safe_load(path.read_text())) for path in (LIVE_PARAMS, PARAMS_FILE))
    assert _keys(frozen) == _keys(live)


def test_the_live_params_file_loads() -> None:
    """Whatever table a user pointed it at, the project's own params.yaml must load (the README's commands read it)."""
    load_params(LIVE_PARAMS)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"train.lightgbm.num_leavs": 3}, "unknown key 'num_leavs'"),
        ({"train.family": "xgboost"}, "train.family"),
        ({"train.logistic.categorical_encoding": "hashing"}, "train.logistic.categorical_encoding"),
        ({"train.family": "logistic", "train.engine": "dask"}, "train.engine: dask and train.device_type: gpu are"),
        ({"train.lightgbm.learning_rate": 2}, "train.lightgbm.learning_rate must be in (0, 1]"),
        ({"train.lightgbm.num_leaves": "many"}, "train.lightgbm.num_leaves"),
        ({"source.kind": "s3"}, "source.kind"),
        ({"collect.end": "2012-01-01"}, "collect.end (2012-01-01) must be after collect.start"),
        ({"features.numeric": ["arr_delay", "hour"]}, "label leakage): ['arr_delay']"),
        ({"features.categorical": ["hour"]}, "both categorical and numeric: ['hour']"),
        ({"train.threshold": 1.5}, "train.threshold must be in (0, 1)"),
        ({"source.kind": "file", "source.path": None}, "source.path"),
        ({"source.kind": "file", "source.path": "data.xlsx"}, "must be a .csv (or .csv.gz/.csv.bz2/.csv.zip/.csv.xz)"
         " or .parquet file, got 'data.xlsx'"),
        ({"source.kind": "file", "source.path": "data.tar.gz"}, "source.path must be a .csv"),
        ({"features.numeric": ["hour", "time_hour"]}, "source.time_column 'time_hour' is also listed as a feature"),
        ({"features.numeric": ["hour", "label"]}, "features.numeric names the column 'label', but 'label' is the "
         "0/1 label the pipeline computes from source.target"),
        ({"features.categorical": ["carrier", "request_id"]}, "features.categorical names the column 'request_id', "
         "but 'request_id' is the service's optional caller id"),
        ({"source.time_column": "label"}, "source.time_column names the column 'label'"),
        ({"evaluate.slices": ["origin", "label"]}, "evaluate.slices names the column 'label'"),
        ({"features.numeric": ["hour", "distance"], "monitor.key_features": ["hour", "temp"]},
         "monitor.key_features ['temp'] are not raw feature columns"),
        ({"serve.gc_threshold": [0, 10, 10]}, "serve.gc_threshold must be three integers >= 1, got [0, 10, 10]"),
        ({"serve.gc_threshold": [700, 10]}, "serve.gc_threshold"),
        ({"serve.predictor": "onnx"}, "serve.predictor"),
        ({"serve.body_timeout_s": 0}, "serve.body_timeout_s must be in (0, 3600], got 0"),
        ({"serve.idle_timeout_s": -1}, "serve.idle_timeout_s must be in (0, 3600], got -1"),
        ({"serve.discard_body_bytes": 1024}, "serve.discard_body_bytes (1024) must be >= serve.max_body_bytes"),
        ({"serve.prediction_log.max_total_bytes": 10**8},
         "serve.prediction_log.max_total_bytes must be >= 2 x workers x rotate_bytes (400000000)"),
        ({"serve.port": 70000}, "serve.port must be in 1..65535, got 70000"),
        ({"monitor.missing_surge": 0}, "monitor.missing_surge must be in (0, 1], got 0"),
        ({"monitor.calibration_quantile": 1}, "monitor.calibration_quantile"),
        ({"search.trials": -1}, "search.trials must be >= 0, got -1"),
        ({"deployments.monitoring.interval_minutes": 0}, "deployments.monitoring.interval_minutes must be > 0"),
        ({"train.threshold": "auto"}, "train.threshold must be in (0, 1) or 'max_f1', got 'auto'"),
        ({"train.threshold": True}, "train.threshold must be in (0, 1) or 'max_f1', got True"),
        ({"monitor.retraining_deployment": "retraining"},
         "monitor.retraining_deployment must be '<flow name>/<deployment name>', got 'retraining'"),
        ({"replay.end": "2013-01-01"}, "replay.end (2013-01-01) must be after replay.start (2013-09-01)"),
        ({"serve.prediction_log.rotate_bytes": 10}, "serve.prediction_log.rotate_bytes must be >= 1024, got 10"),
        # Nullable bounded keys: their bounds sit inside the union, not on the field.
        ({"search.max_rows": 10}, "search.max_rows must be >= 1000, got 10"),
        ({"train.recency_half_life_days": 0}, "train.recency_half_life_days must be > 0.0, got 0"),
        ({"monitor.retrain_window_days": 0}, "monitor.retrain_window_days must be >= 1, got 0"),
    ],
)
def test_invalid_override_is_refused_by_name(override: dict, message: str) -> None:
    with pytest.raises(ParamsError) as error:
        load_params(PARAMS_FILE, override)
    assert message in str(error.value)


def test_unknown_key_in_file_suggests_the_right_one(tmp_path: Path) -> None:
    data = params_dict(tmp_path)
    data["train"]["lightgbm"]["num_leavs"] = 3
    data["train"]["logistic"]["num_leaves"] = 3
    data["train"]["histgb"]["max_leaves"] = 3
    data["extra_section"] = {}
    with pytest.raises(ParamsError) as error:
        parse_params(data, origin="mine.yaml")
    text = str(error.value)
    assert "mine.yaml" in text
    assert "train.lightgbm.num_leavs: unknown key (did you mean 'num_leaves'?)" in text
    # Each family's section refuses keys by name: another family's key is not one of its own.
    assert "train.logistic.num_leaves: unknown key" in text
    assert "train.histgb.max_leaves: unknown key (did you mean 'max_leaf_nodes'?)" in text
    assert "extra_section: unknown key" in text


def test_missing_key_is_named(tmp_path: Path) -> None:
    data = params_dict(tmp_path)
    del data["split"]["test_days"]
    with pytest.raises(ParamsError, match=r"split.test_days: required key is missing"):
        parse_params(data)


@pytest.mark.parametrize("content", ["", "just a string", "a: [unclosed"])
def test_unusable_file_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(content)
    with pytest.raises(ParamsError, match=str(path)):
        load_params(path)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")


def test_dates_are_utc(tmp_path: Path) -> None:
    params = parse_params(yaml.safe_load(PARAMS_FILE.read_text()))
    assert params.collect.start.tzinfo is not None
    assert params.collect.start.utcoffset().total_seconds() == 0


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    data = params_dict(tmp_path, {"train.lightgbm.learning_rate": 0, "gate.max_latency_ms": -1, "split.test_days": 0})
    with pytest.raises(ParamsError) as error:
        parse_params(data)
    lines = str(error.value).splitlines()[1:]
    assert sorted(line.strip() for line in lines) == [
        "gate.max_latency_ms must be >= 0, got -1", "split.test_days must be >= 1, got 0",
        "train.lightgbm.learning_rate must be in (0, 1], got 0"]


def test_the_validate_section_keeps_its_yaml_name(tmp_path: Path) -> None:
    data = params_dict(tmp_path)
    data["validate"]["fail_on_eror"] = data["validate"].pop("fail_on_error")
    data["validat"] = data.pop("validate")
    with pytest.raises(ParamsError) as error:
        parse_params(data)
    assert "validat: unknown key (did you mean 'validate'?)" in str(error.value)
    data["validate"] = data.pop("validat")
    with pytest.raises(ParamsError, match=r"validate.fail_on_eror: unknown key \(did you mean 'fail_on_error'\?\)"):
        parse_params(data)


def test_sections_are_frozen(tmp_path: Path) -> None:
    params = parse_params(params_dict(tmp_path, {"train.seed": 7}))
    assert params.validate_.fail_on_error is True and params.train.seed == 7
    with pytest.raises(ValueError, match="frozen"):
        params.train.seed = 8  # type: ignore[misc]


def test_every_key_is_documented_once_in_the_loader() -> None:
    """Each key's meaning lives in its Field(description=...), which `params --explain` prints."""
    from pipelines.config import Params, explain
    from pipelines.config import _fields as documented

    keys = documented(Params)
    assert len(keys) > 100
    undocumented = [key for key, (_, _, info) in keys.items()
                    if not (info.description or (isinstance(info.annotation, type) and info.annotation.__doc__))]
    assert undocumented == []
    assert "Leaves per tree" in explain("train.lightgbm.num_leaves")["description"]
    assert explain("train.lightgbm.learning_rate")["accepts"] == {"exclusiveMinimum": 0, "maximum": 1, "type": "number"}
    assert set(explain("gate")["keys"]) >= {"gate.metric", "gate.min_improvement"}


def test_params_explain_names_the_stages_a_key_reruns(capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from pipelines.cli import main

    monkeypatch.chdir(REPO_ROOT)
    assert main(["params", "--params", str(PARAMS_FILE), "--explain", "monitor.seed"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["dvc_stages"] == ["reference"] and shown["value"] == 42 and shown["description"]
    # A monitoring-only key re-runs no stage (#36: it re-ran the gate, which registered the same model again).
    assert main(["params", "--params", str(PARAMS_FILE), "--explain", "monitor.cooldown_days"]) == 0
    assert json.loads(capsys.readouterr().out)["dvc_stages"] == []
    assert main(["params", "--params", str(PARAMS_FILE), "--explain", "train.lightgbm.num_leavs"]) == 1
    assert "did you mean train.lightgbm.num_leaves" in capsys.readouterr().err


def test_a_set_typo_suggests_the_key(tmp_path: Path) -> None:
    """`--set` (and every override) names a close match, as the loader does for the file's own keys."""
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params_dict(tmp_path)))
    with pytest.raises(ParamsError, match=r"unknown key 'num_leavs' \(did you mean 'num_leaves'\?\)"):
        load_params(path, {"train.lightgbm.num_leavs": 3})
    with pytest.raises(ParamsError, match=r"'trian' is not a section of params \(did you mean 'train'\?\)"):
        load_params(path, {"trian.lightgbm": 3})
