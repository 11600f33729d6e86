"""onnx_predictor (pipelines/model/families/lightgbm_exchange.py) turns ONNX Runtime's telemetry off before its first
session: onnxruntime >= 1.29 sends usage events from Linux by default and, at its first session, writes a device id
and an upload cache under the user's ~/.cache (found in root's home after a gate run with serve.artifact onnx)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CHILD = """
import os
from pipelines.model.families.lightgbm_exchange import onnx_predictor
try:
    onnx_predictor(b"not an onnx graph")  # the session fails to load, after onnxruntime started
except Exception as error:
    print(type(error).__name__)
print(os.environ.get("ORT_DISABLE_TELEMETRY"))
"""


def _run(home: Path) -> str:
    environment = {key: value for key, value in os.environ.items() if key != "ORT_DISABLE_TELEMETRY"}
    environment.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=environment,
                          cwd=Path(__file__).resolve().parents[2], timeout=120, check=True)
    return done.stdout + done.stderr


def test_onnx_runtime_writes_no_device_id_and_warns_of_no_telemetry(tmp_path: Path) -> None:
    output = _run(tmp_path)
    assert "InvalidProtobuf" in output and output.rstrip().endswith("1"), output
    assert "telemetry" not in output.lower().replace("ort_disable_telemetry", ""), output
    assert [path for path in tmp_path.rglob("*")] == [], "onnxruntime wrote telemetry state"

