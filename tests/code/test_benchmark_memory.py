"""The benchmarks' peak memory is the measured process's own, not the peak of the process that started it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HELD_MIB = 400

# A parent that holds HELD_MIB, then starts a small child that reports both figures.
PARENT = f"""
import subprocess, sys
held = bytearray({HELD_MIB} * 2**20)
held[::4096] = b"x" * len(held[::4096])  # touch every page: resident
child = ("import json, resource; from support.memory import peak_rss_bytes; "
         "print(json.dumps([peak_rss_bytes(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024]))")
print(subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True).stdout)
"""


def test_a_child_reports_its_own_peak_not_its_parents() -> None:
    done = subprocess.run([sys.executable, "-c", PARENT], cwd=ROOT, capture_output=True, text=True, check=True)
    own, inherited = json.loads(done.stdout.strip().splitlines()[-1])
    assert inherited >= HELD_MIB * 2**20  # ru_maxrss carries the parent's peak into the child (Linux)
    assert own < HELD_MIB * 2**20 / 4  # the child itself is a bare interpreter
