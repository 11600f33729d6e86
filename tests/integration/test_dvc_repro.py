"""`dvc repro` in a real temp git+DVC repo: the DAG runs, a second run is a no-op, one param re-runs only its
stages, a plain run's model is rebuilt from the commit of its dvc.lock, experiments, metrics, params diff, plots,
and a local remote all work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipelines.cli import REPORT_START
from pipelines.contracts import ReferenceReceipt
from support.params import SMALL_WINDOW
from support.project_copy import commit, copy_project, run, set_params

pytestmark = pytest.mark.integration

def _run(repo: Path, *args: str) -> str:
    done = run(repo, *args)
    return done.stdout + done.stderr


def _ran_stages(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_project(tmp_path_factory.mktemp("dvc-project"), SMALL_WINDOW,
                        remote=tmp_path_factory.mktemp("dvc-remote"))


def test_repro_runs_the_dag_then_is_a_noop(repo: Path) -> None:
    first = _run(repo, "dvc", "repro")
    assert {"collect", "validate", "preprocess", "train", "evaluate", "variant", "gate"} <= _ran_stages(first)
    metrics = json.loads((repo / "metrics" / "evaluate.json").read_text())
    assert metrics["model"]["roc_auc"] > metrics["baselines"]["prior"]["roc_auc"]
    assert (repo / "models" / "candidate" / "model.txt").exists()
    commit(repo, "first run")

    second = _run(repo, "dvc", "repro")
    assert _ran_stages(second) == set()
    assert "up to date" in second


def _registered(repo: Path) -> tuple[str, dict]:
    """The tag of the model the last `dvc repro` registered, and its lineage."""
    from pipelines.release import registry

    tag = json.loads((repo / "var" / "registry" / "dvc-gate.json").read_text())["tag"]
    return tag, registry.model_entry(tag).lineage.to_json_dict()


def _reproduce(repo: Path, tag: str) -> tuple[int, dict | str]:
    """`python -m pipelines reproduce <tag> --check`: its exit code and JSON report (or stderr when it has none)."""
    done = run(repo, "python", "-m", "pipelines", "reproduce", tag, "--check", check=False)
    if REPORT_START not in done.stdout:
        return done.returncode, done.stderr[-3000:]
    return done.returncode, json.loads(done.stdout[done.stdout.rindex(REPORT_START):])


def test_a_plain_runs_model_is_rebuilt_from_the_commit_of_its_dvc_lock(repo: Path) -> None:
    """The everyday loop: `dvc repro`, then commit the dvc.lock it wrote. The lineage names the commit the run
    started from, whose dvc.lock is not this run's; reproduce rebuilds from the commit that holds it."""
    tag, lineage = _registered(repo)
    head = run(repo, "git", "rev-parse", "HEAD").stdout.strip()
    assert lineage["git_commit"] == run(repo, "git", "rev-parse", "HEAD~1").stdout.strip() != head
    assert lineage["git_dirty"] is False
    code, report = _reproduce(repo, tag)
    assert code == 0 and isinstance(report, dict), report
    assert report["identical"] and report["commit"] == head
    assert "which committed the dvc.lock of the plain `dvc repro` run" in report["source"]


def test_reproduce_check_covers_the_variants_optimize_recorded(repo: Path) -> None:
    """`optimize --tag` attaches variants.json to the registry entry; `reproduce --check` then reruns optimize on the
    rebuilt model with the recorded settings and finds every variant the same."""
    tag, _ = _registered(repo)
    run(repo, "python", "-m", "pipelines", "optimize", "--tag", tag)
    code, report = _reproduce(repo, tag)
    assert code == 0 and isinstance(report, dict), report
    variants = report["variants"]
    assert report["identical"] and variants["identical"] and variants["differences"] == [], variants
    assert variants["settings"] == "recorded"
    assert {"full", "trees", "pruned", "onnx", "quantised"} <= set(variants["variants"])


def _gate_with(repo: Path, artifact: str) -> dict[str, dict]:
    """The gate's checks (`run_gate`: decide and write metrics/gate.json, no registering) with serve.artifact set."""
    run(repo, "python", "-c", "from pipelines.config import load_params; from pipelines.stages import run_gate; "
                              f"run_gate(load_params('params.yaml', {{'serve.artifact': {artifact!r}}}))")
    return {check["name"]: check for check in json.loads((repo / "metrics" / "gate.json").read_text())["checks"]}


def test_the_gate_checks_the_variant_the_variant_stage_made(repo: Path) -> None:
    """The DAG's variant stage (serve.artifact full) made nothing and the gate checked no variant; naming one,
    `dvc repro variant` makes it (no manual optimize), the gate checks it (of this very model.txt) and refuses it
    once its report is of another model. Put back to full, the stage writes the same bytes: the DAG is up to date."""
    served = repo / "models" / "served"
    report = json.loads((served / "variants.json").read_text())
    assert (report["served"], report["variants"]) == ("full", [])
    gate_file = repo / "metrics" / "gate.json"
    written = gate_file.read_bytes()
    assert "variant_" not in written.decode()
    try:
        set_params(repo, {"serve.artifact": "quantised"})
        assert _ran_stages(_run(repo, "dvc", "repro", "variant")) == {"variant"}
        assert sorted(path.name for path in served.iterdir()) == ["quantised", "variants.json"]
        checks = _gate_with(repo, "quantised")
        assert checks["variant_parity"]["passed"] and 0 < checks["variant_parity"]["value"] <= 1e-3
        assert checks["variant_latency"]["passed"], checks["variant_latency"]
        report = json.loads((served / "variants.json").read_text())
        (served / "variants.json").write_text(json.dumps({**report, "model_md5": "0" * 32}))
        refused = _gate_with(repo, "quantised")
        assert not refused["variant_parity"]["passed"] and "variant_latency" not in refused
        assert "were made from model 00000000, not this one" in refused["variant_parity"]["reason"]
    finally:
        set_params(repo, {"serve.artifact": "full"})
        _run(repo, "dvc", "repro", "variant")
        gate_file.write_bytes(written)
    assert _ran_stages(_run(repo, "dvc", "repro")) == set()


def test_a_registry_without_the_gates_receipt_is_gated_again(repo: Path) -> None:
    """A fresh clone has gate.json (git) but no registry (var/): `dvc repro` must gate and register again rather
    than skip the gate and leave nothing to serve."""
    registry = repo / "var" / "registry"
    receipt = json.loads((registry / "dvc-gate.json").read_text())
    assert receipt["promoted"] and receipt["tag"] == json.loads((registry / "champion.json").read_text())["tag"]
    shutil.rmtree(registry)

    output = _run(repo, "dvc", "repro")
    assert _ran_stages(output) == {"gate", "reference"}  # its receipt went with var/ too: attached again
    assert json.loads((registry / "champion.json").read_text())["tag"] == receipt["tag"]
    assert ReferenceReceipt.load(registry).tag == receipt["tag"]
    assert _ran_stages(_run(repo, "dvc", "repro")) == set()


def test_one_param_reruns_only_its_stages(repo: Path) -> None:
    set_params(repo, {"train.lightgbm.learning_rate": 0.1})
    output = _run(repo, "dvc", "repro")
    ran = _ran_stages(output)
    assert "train" in ran and "evaluate" in ran
    assert not ran & {"collect", "validate", "preprocess"}
    diff = _run(repo, "dvc", "params", "diff")
    assert "train.lightgbm.learning_rate" in diff and "0.05" in diff and "0.1" in diff
    shown = _run(repo, "dvc", "metrics", "show")
    assert "model.roc_auc" in shown


def test_a_model_trained_on_uncommitted_params_is_dirty_until_they_are_committed(repo: Path) -> None:
    tag, lineage = _registered(repo)  # the run above, with train.lightgbm.learning_rate edited and not committed
    assert lineage["git_dirty"] and lineage["dirty_files"] == ["params.yaml"]
    assert lineage["params_diff"] == {"train.lightgbm.learning_rate": {"repo": 0.05, "run": 0.1}}
    code, said = _reproduce(repo, tag)
    assert code != 0 and "no commit here holds the dvc.lock that built the model" in said, said
    assert "Commit the dvc.lock (and params.yaml) that run wrote" in said
    commit(repo, "lr 0.1")
    code, report = _reproduce(repo, tag)
    assert code == 0 and isinstance(report, dict), report
    assert report["identical"] and report["commit"] == run(repo, "git", "rev-parse", "HEAD").stdout.strip()


def test_plots_render(repo: Path) -> None:
    output = _run(repo, "dvc", "plots", "show", "--out", "plots_html")
    assert (repo / "plots_html" / "index.html").exists(), output
    html = (repo / "plots_html" / "index.html").read_text()
    assert "ROC" in html and "Calibration" in html


def test_experiment_with_a_changed_param(repo: Path) -> None:
    if run(repo, "git", "status", "--porcelain").stdout.strip():
        commit(repo, "lr 0.1")
    # num_leaves is the grid's to set (train.lightgbm.num_leaves would be refused: tests/integration/test_mistakes.py).
    _run(repo, "dvc", "exp", "run", "-S", "search.grid.lightgbm.num_leaves=[15]", "--name", "small-leaves")
    table = _run(repo, "dvc", "exp", "show", "--no-pager", "--csv")
    assert "small-leaves" in table and "search.grid.lightgbm.num_leaves" in table


def test_push_and_pull_through_the_local_remote(repo: Path) -> None:
    _run(repo, "dvc", "push")
    model = repo / "models" / "candidate" / "model.txt"
    original = model.read_bytes()
    shutil.rmtree(repo / "models")
    shutil.rmtree(repo / ".dvc" / "cache")
    _run(repo, "dvc", "pull")
    assert model.read_bytes() == original
