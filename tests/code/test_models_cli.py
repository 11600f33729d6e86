"""`python -m pipelines models list` lists every stored model of the project's name, whatever its metadata's
shape: the store also holds models saved by hand, by tests or by older versions of the pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.release import registry


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
    assert "forced" in registry.history(registry_dir)[-1]["reason"]
    assert main(["models", "rollback", *settings]) == 0  # back to the one that served: no --force needed
    assert registry.champion_tag(registry_dir) == served
