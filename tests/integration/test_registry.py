"""The gate and the registry on real models and a real BentoML store: refuse, promote, roll back, survive kills."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pipelines import io, stages
from pipelines.config import Params, parse_params
from pipelines.contracts import ReferenceReceipt
from pipelines.features import LABEL
from pipelines.release import registry
from support.params import REPO_ROOT, SMALL_WINDOW, params_dict, prepare_small_window, write_validated_table

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory, small_table: pd.DataFrame) -> Path:
    return prepare_small_window(tmp_path_factory.mktemp("gate"), small_table)


def gate_params(data_root: Path, registry_dir: Path, **overrides: Any) -> Params:
    """One challenger = the base `train:` params (no search) with `overrides`; registry under the test's tmp."""
    return parse_params(params_dict(data_root, {**SMALL_WINDOW, "search.strategy": "none",
                                                "paths.registry_dir": str(registry_dir),
                                                "project.model_name": model_name(registry_dir), **overrides}))


def model_name(registry_dir: Path) -> str:
    """A registry name of the test's own (its tmp folder's name): the session's BentoML store is shared by every
    test, and listing or pruning a name must see only this test's models."""
    return "gate-" + registry_dir.parent.name.lower().replace("_", "-")[-40:]


def train_and_gate(params: Params) -> dict[str, Any]:
    stages.run_search(params)
    stages.run_evaluate(params)
    return stages.run_gate_and_promote(params)


def gate_report(params: Params) -> dict[str, Any]:
    return json.loads((params.paths.metrics_dir / "gate.json").read_text())


def test_worse_refused_better_promoted_rollback_restores(data_root: Path, tmp_path: Path) -> None:
    registry_dir = tmp_path / "registry"
    # No champion yet: a short model only has to beat the naive baselines.
    medium = gate_params(data_root, registry_dir, **{"train.lightgbm.num_boost_round": 8})
    first = train_and_gate(medium)
    assert first["promote"] and first["previous"] is None
    assert gate_report(medium)["compared_with"] == "baselines"
    medium_tag = registry.require_champion(registry_dir)

    # Far fewer trees: honestly worse on the same holdout, refused; the champion does not move.
    weak = train_and_gate(gate_params(data_root, registry_dir, **{"train.lightgbm.num_boost_round": 2}))
    report = gate_report(medium)
    assert not weak["promote"] and registry.champion_tag(registry_dir) == medium_tag
    assert report["failed"][0].startswith("roc_auc ") and report["champion"] == medium_tag
    assert report["metrics"]["challenger"]["roc_auc"] < report["metrics"]["champion"]["roc_auc"]
    weak_tag = report["registered_tag"]

    # The full early-stopped model beats it by more than the margin: promoted.
    better = train_and_gate(gate_params(data_root, registry_dir))
    report = gate_report(medium)
    assert better["promote"] and better["previous"] == medium_tag and report["failed"] == []
    assert report["metrics"]["challenger"]["roc_auc"] >= report["metrics"]["champion"]["roc_auc"] + 0.002
    better_tag = registry.require_champion(registry_dir)

    stored = {m.tag: m for m in registry.list_models(registry_dir, name=medium.project.model_name)}
    assert (stored[better_tag].stage, stored[medium_tag].stage, stored[weak_tag].stage) == (
        "champion", "retired", "refused")  # the refused one is marked so in the store (its `gate` label)
    meta = stored[better_tag].entry.to_metadata()
    # Lineage: the validated table it was trained on (dvc.lock's hash of it), its splits, and the worktree state.
    assert meta["data_version"]["raw_table_md5"] == io.file_md5(medium.paths.raw_table)
    validated = json.loads((medium.paths.validation_dir / "summary.json").read_text())
    assert validated["success"] and validated["table_md5"] == meta["data_version"]["raw_table_md5"]
    assert meta["data_version"]["splits_md5"]["train"] == io.file_md5(io.prepared_path(medium.paths, "train"))
    assert isinstance(meta["lineage"]["git_dirty"], bool) and len(meta["lineage"]["git_commit"]) == 40
    assert meta["params"]["lightgbm"]["num_boost_round"] == SMALL_WINDOW["train.lightgbm.num_boost_round"]
    assert meta["feature_schema"]["categorical"] and meta["metrics"]["test"]["roc_auc"] > 0.7

    # Re-gating the same model registers nothing new and changes nothing.
    again = stages.run_gate_and_promote(gate_params(data_root, registry_dir))
    assert not again["promote"] and again["tag"] == better_tag
    # The reference stage attaches the monitoring reference and calibration to the model the gate registered, with
    # the windows it sized (auto: from the reference period) in its receipt; the calibration says the same.
    attached = stages.run_reference(gate_params(data_root, registry_dir, **{"monitor.window_days": "auto",
                                                                            "monitor.min_window_rows": "auto"}))
    stored_folder = registry.model_path(better_tag)
    calibration = json.loads((stored_folder / io.CALIBRATION_FILE).read_text())
    assert attached["tag"] == better_tag and (stored_folder / io.REFERENCE_FILE).exists()
    assert (calibration["window_days"], calibration["min_window_rows"]) == (attached["window_days"],
                                                                            attached["min_window_rows"])
    assert attached["window_days"] == 7 and "(auto)" in calibration["sizing"]
    assert ReferenceReceipt.load(registry_dir).tag == better_tag

    # Rollback through the CLI restores the previous champion; --to picks any stored model.
    params_file = tmp_path / "params.yaml"
    params_file.write_text(json.dumps(params_dict(data_root, {**SMALL_WINDOW,
                                                              "paths.registry_dir": str(registry_dir),
                                                              "project.model_name": model_name(registry_dir)})))
    cli = [sys.executable, "-m", "pipelines"]
    rolled = subprocess.run([*cli, "models", "rollback", "--params", str(params_file)], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True)
    assert json.loads(rolled.stdout) == {"champion": medium_tag, "previous": better_tag}
    assert registry.require_champion(registry_dir) == medium_tag
    listing = subprocess.run([*cli, "models", "list", "--params", str(params_file)], cwd=REPO_ROOT,
                             capture_output=True, text=True, check=True).stdout
    for tag, stage in ((medium_tag, "champion"), (better_tag, "retired"), (weak_tag, "refused")):
        line = next(row for row in listing.splitlines() if tag in row)
        assert stage in line
    assert registry.rollback(registry_dir, to_tag=better_tag) == better_tag

    # Prune keeps the champion and the last N promoted (journal order: better, medium), never anything else.
    name = medium.project.model_name
    assert set(registry.prune(registry_dir, keep=0, name=name, dry_run=True)) == {medium_tag, weak_tag}  # champion
    assert set(registry.prune(registry_dir, keep=1, name=name, dry_run=True)) == {medium_tag, weak_tag}  # the last
    pruned = subprocess.run([*cli, "models", "prune", "--keep", "2", "--params", str(params_file)], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True)
    assert json.loads(pruned.stdout)["deleted"] == [weak_tag]
    assert {m.tag for m in registry.list_models(registry_dir, name=name)} == {better_tag, medium_tag}
    assert registry.require_champion(registry_dir) == better_tag


def test_a_slice_regression_is_refused(data_root: Path, tmp_path: Path) -> None:
    registry_dir = tmp_path / "registry"
    champion = gate_params(data_root, registry_dir)
    assert train_and_gate(champion)["promote"]
    # The challenger learns from training data whose EWR labels were corrupted (flipped); the holdout is the same.
    corrupted = tmp_path / "prepared"
    corrupted.mkdir()
    for split in ("train", "valid", "test"):
        frame = pd.read_parquet(io.prepared_path(champion.paths, split))
        if split != "test":
            ewr = frame["origin"] == "EWR"
            frame.loc[ewr, LABEL] = 1 - frame.loc[ewr, LABEL]
        frame.to_parquet(corrupted / f"{split}.parquet", index=False)
    (corrupted / "feature_schema.json").write_bytes(io.schema_path(champion.paths).read_bytes())
    # made from the validated table, as far as the guard knows (the labels were flipped after it, on purpose)
    (corrupted / io.LINEAGE_FILE).write_bytes((champion.paths.prepared_dir / io.LINEAGE_FILE).read_bytes())
    challenger = gate_params(data_root, registry_dir, **{
        "paths.prepared_dir": str(corrupted), "paths.model_dir": str(tmp_path / "challenger"),
        # Only the slice rule may refuse it: the other checks are opened wide.
        "gate.min_improvement": -1.0, "gate.max_brier_increase": 1.0})
    outcome = train_and_gate(challenger)
    report = gate_report(challenger)
    assert not outcome["promote"]
    assert [c["name"] for c in report["checks"] if not c["passed"]] == ["slice_drop"]
    assert "origin=EWR" in report["failed"][0] and "origin=JFK" not in report["failed"][0]
    assert registry.champion_tag(registry_dir) == outcome["champion"]



def test_a_model_trained_on_a_table_a_later_suite_fails_is_quarantined_and_a_clean_challenger_promoted(
        data_root: Path, small_table: pd.DataFrame, tmp_path: Path) -> None:
    """Issue 35.5: the suite grows (the learned behaviour) after a bad table trained the served model. Quarantining
    the table marks its models, rolls the champion back to the newest clean one, and the next clean challenger is
    compared with that one, never with the quarantined model."""
    from pipelines.data.validate import DataValidationError
    from tests.data.test_corruptions import LEARNED

    registry_dir = tmp_path / "registry"
    clean = gate_params(data_root, registry_dir, **{"train.lightgbm.num_boost_round": 8})
    assert train_and_gate(clean)["promote"]
    clean_tag = registry.require_champion(registry_dir)

    # One airport's humidity as a fraction for April: it passes the suite without its learned behaviour (as every
    # suite did before issue 35) and trains a better model (more trees), which the gate promotes.
    unit_change = LEARNED["unit-change-in-one-segment"]
    bad_root = tmp_path / "bad"
    overrides = {**SMALL_WINDOW, "search.strategy": "none", "paths.registry_dir": str(registry_dir),
                 "project.model_name": model_name(registry_dir)}
    old_suite = parse_params(params_dict(bad_root, {**overrides, "validate.calibration": None}))
    write_validated_table(old_suite, unit_change.corrupt(small_table.copy()))
    stages.run_preprocess(old_suite)
    assert train_and_gate(old_suite)["promote"]
    bad_tag = registry.require_champion(registry_dir)
    bad_md5 = io.file_md5(old_suite.paths.raw_table)
    assert bad_tag != clean_tag and registry.model_entry(bad_tag).data_version.raw_table_md5 == bad_md5

    # The grown suite (the calibration beside it) fails that table, naming column, period and segment.
    with pytest.raises(DataValidationError) as failed:
        stages.run_validate(parse_params(params_dict(bad_root, overrides)))
    assert unit_change.expected[0] in str(failed.value)

    params_file = tmp_path / "params.yaml"
    params_file.write_text(json.dumps(params_dict(data_root, overrides)))
    cli = [sys.executable, "-m", "pipelines", "models"]
    done = subprocess.run([*cli, "quarantine", "--table", bad_md5, "--params", str(params_file)], cwd=REPO_ROOT,
                          capture_output=True, text=True, check=True)
    outcome = json.loads(done.stdout)
    assert outcome["quarantined"] == [bad_tag] and (outcome["previous"], outcome["champion"]) == (bad_tag, clean_tag)
    assert registry.require_champion(registry_dir) == clean_tag
    events = [(record.event, record.tag) for record in registry.history(registry_dir)]
    assert events[-2:] == [("quarantine", bad_tag), ("rollback", clean_tag)]
    listing = subprocess.run([*cli, "list", "--params", str(params_file)], cwd=REPO_ROOT, capture_output=True,
                             text=True, check=True).stdout
    assert "quarantined" in next(row for row in listing.splitlines() if bad_tag in row)
    with pytest.raises(registry.RegistryError, match="is quarantined"):
        registry.set_champion(registry_dir, bad_tag, reason="by hand")  # it never serves again
    with pytest.raises(registry.RegistryError, match="is quarantined"):
        registry.rollback(registry_dir, to_tag=bad_tag, force=True)

    # A clean challenger (the full model on the clean table) is compared with the clean champion, and promoted.
    challenger = gate_params(data_root, registry_dir, **{"paths.model_dir": str(tmp_path / "challenger")})
    outcome = train_and_gate(challenger)
    report = gate_report(challenger)
    assert outcome["promote"] and report["champion"] == clean_tag and report["compared_with"] == "champion"
    assert registry.require_champion(registry_dir) not in {clean_tag, bad_tag}


PROMOTE_FOREVER = """
import sys
from pathlib import Path
from pipelines.release import registry
registry_dir, tags = Path(sys.argv[1]), sys.argv[2:]
i = 0
while True:
    registry.set_champion(registry_dir, tags[i % 2], reason=f"flip {i}")
    if i == 0:
        print("ready", flush=True)
    i += 1
"""


def test_promotion_is_atomic_under_sigkill(data_root: Path, tmp_path: Path) -> None:
    params = gate_params(data_root, tmp_path / "registry", **{"train.lightgbm.num_boost_round": 3})
    stages.run_search(params)
    tags = [registry.save_model(params.paths.model_dir, {"copy": str(n)}, name=params.project.model_name)
            for n in range(2)]
    registry_dir = params.paths.registry_dir
    rng = random.Random(7)
    kills = 0
    for _ in range(12):
        process = subprocess.Popen([sys.executable, "-c", PROMOTE_FOREVER, str(registry_dir), *tags],
                                   cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True, env=os.environ.copy())
        assert process.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.3))
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stdout.close()
        kills += process.returncode == -signal.SIGKILL
        # Whatever instant the kill hit: a complete pointer naming one of the two models, and a readable journal.
        pointer = json.loads((registry_dir / io.CHAMPION_FILE).read_text())
        assert pointer["tag"] in tags
        assert registry.load_model(pointer["tag"]).booster.num_trees() > 0
        journal = registry.history(registry_dir)
        assert journal and all(record.tag in tags for record in journal)
    assert kills == 12
    assert len(registry.history(registry_dir)) > 12  # the loop really promoted between kills
