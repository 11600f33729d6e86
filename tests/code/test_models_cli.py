"""`python -m pipelines models list` lists every stored model of the project's name, whatever its metadata's
shape: the store also holds models saved by hand, by tests or by older versions of the pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.contracts import EvaluationReport
from pipelines.release import registry
from pipelines.release.model_card import build_model_card


@pytest.fixture()
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.txt").write_text("not a real booster: listing never loads it\n")
    return folder


def test_models_of_any_metadata_shape_are_listed(model_dir: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    name = f"listing-{tmp_path.name[-8:].lower().replace('_', '-')}"
    full = registry.save_model(model_dir, {"metrics": {"test": {"roc_auc": 0.71234}},
                                           "data_version": {"raw_table_md5": "abcdef0123456789"},
                                           "lineage": {"git_dirty": False, "git_commit": "0123456789abcdef"},
                                           "gate": {"promote": True}}, name=name)
    odd = registry.save_model(model_dir, {"data_version": "test-window", "metrics": {"test": "n/a"},
                                          "gate": "refused", "lineage": "no"}, name=name)
    registry_dir = tmp_path / "registry"
    registry.set_champion(registry_dir, full, reason="test")
    code = main(["models", "list", "--set", f"project.model_name={name}",
                 "--set", f"paths.registry_dir={registry_dir}"])
    out = capsys.readouterr().out
    assert code == 0, out
    full_line = next(line for line in out.splitlines() if full.split(":")[1] in line)
    odd_line = next(line for line in out.splitlines() if odd.split(":")[1] in line)
    assert "champion" in full_line and "0.7123" in full_line and "abcdef01" in full_line and "01234567" in full_line
    assert "passed" in full_line
    assert "n/a" in odd_line and "unknown" in odd_line and "passed" not in odd_line


def test_rolling_back_to_a_model_the_gate_refused_needs_force(model_dir: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """`models rollback --to TAG` of a refused model that never served is refused with the gate's reasons; with
    --force it serves, and the journal says it was forced. A model that once served rolls back without it."""
    from support.params import PARAMS_FILE

    name = f"rollback-{tmp_path.name[-8:].lower().replace('_', '-')}"
    served = registry.save_model(model_dir, {"gate": {"promote": True, "failed": []}}, name=name,
                                 labels={registry.GATE_LABEL: "passed"})
    refused = registry.save_model(model_dir, {"gate": {"promote": False, "failed": ["roc_auc 0.70 vs 0.71"]}},
                                  name=name, labels={registry.GATE_LABEL: "refused"})
    registry_dir = tmp_path / "registry"
    registry.set_champion(registry_dir, served, reason="test")
    settings = ["--params", str(PARAMS_FILE), "--set", f"project.model_name={name}",
                "--set", f"paths.registry_dir={registry_dir}"]
    assert main(["models", "rollback", "--to", refused, *settings]) == 1
    said = capsys.readouterr().err
    assert f"{refused} was refused by the gate (roc_auc 0.70 vs 0.71)" in said and "--force" in said, said
    assert registry.champion_tag(registry_dir) == served
    assert main(["models", "rollback", "--to", refused, "--force", *settings]) == 0
    assert registry.champion_tag(registry_dir) == refused
    assert "forced" in registry.history(registry_dir)[-1].reason
    assert main(["models", "rollback", *settings]) == 0  # back to the one that served: no --force needed
    assert registry.champion_tag(registry_dir) == served


# The metadata an early version of the pipeline stored (before lineage: the commit at the top level), read by today's
# reader: the store outlives the code.
EARLY_ENTRY = {
    "model_md5": "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f",
    "metrics": {"test": {"roc_auc": 0.71234, "pr_auc": 0.4, "brier": 0.18, "log_loss": 0.55, "rows": 900},
                "valid": {"auc": 0.7, "binary_logloss": 0.56},
                "evaluate": {"model": {"roc_auc": 0.71234, "pr_auc": 0.4, "log_loss": 0.55, "brier": 0.18,
                                       "precision": 0.5, "recall": 0.3, "f1": 0.37, "positive_rate": 0.21,
                                       "rows": 900},
                             "threshold": 0.31,
                             "baselines": {"prior": {"roc_auc": 0.5, "pr_auc": 0.21, "log_loss": 0.51,
                                                     "brier": 0.17, "precision": 0.0, "recall": 0.0, "f1": 0.0,
                                                     "positive_rate": 0.21, "rows": 900}}}},
    "params": {"num_leaves": 31}, "threshold": 0.31,
    "data_version": {"raw_table_md5": "abcdef0123456789", "window": ["2013-01-01", "2013-09-01"]},
    "git_commit": "0123456789abcdef0123456789abcdef01234567",
    "feature_schema": {"categorical": ["carrier"]},
    "gate": {"promote": True, "failed": [], "compared_with": "baselines"},
}


def test_an_entry_an_early_version_stored_lists_and_has_a_card_with_its_stored_metrics(
        model_dir: Path, tmp_path: Path, make_params, capsys: pytest.CaptureFixture[str]) -> None:
    """What an early version stored (no lineage, the commit at the top level) is read by the one reader: listed
    with its metrics, and its card, as a champion that is not the current candidate, shows the evaluation stored
    with it."""
    (model_dir / "model.json").write_text(json.dumps({
        "threshold": 0.31, "best_iteration": 40, "train_rows": 5000, "valid_rows": 1000,
        "valid_metrics": {"auc": 0.7}, "params": {"num_leaves": 31}}))
    name = f"early-{tmp_path.name[-8:].lower().replace('_', '-')}"
    tag = registry.save_model(model_dir, EARLY_ENTRY, name=name)
    entry = registry.model_entry(tag)
    stored = EvaluationReport.parse(EARLY_ENTRY["metrics"]["evaluate"], "the early entry")
    assert entry.metrics.evaluate == stored and stored.model.accuracy is None and entry.lineage is None
    assert entry.gate.promote and entry.data_version.raw_table_md5 == "abcdef0123456789"

    params = make_params({"project.model_name": name})
    registry.set_champion(params.paths.registry_dir, tag, reason="test")
    assert main(["models", "list", "--set", f"project.model_name={name}",
                 "--set", f"paths.registry_dir={params.paths.registry_dir}"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if tag.split(":")[1] in line)
    assert "champion" in line and "0.7123" in line and "abcdef01" in line and "passed" in line

    card = build_model_card(params)  # no candidate in this checkout: the champion is not the current candidate
    assert "stage: **champion**" in card
    assert "| LightGBM | 0.7123" in card and "| baseline: prior | 0.5000" in card
    assert "As evaluated when it was registered" in card and "of a different model" not in card
    assert "No lineage recorded" in card
