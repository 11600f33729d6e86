"""Peak memory of the calling process, measured so that a benchmark's child does not report its parent's peak.

Linux keeps `ru_maxrss` across fork and exec: a child started by a benchmark that already holds a big table
reports at least the parent's peak (a 1x validation child reported 1.8 GB, the parent's 10x table, instead of its
own 0.7 GB). `VmHWM` in /proc/self/status belongs to the process's own address space, which exec replaces.
"""

from __future__ import annotations

import resource
from pathlib import Path

_STATUS = Path("/proc/self/status")


def peak_rss_bytes() -> int:
    """This process's own peak resident memory in bytes (VmHWM; `ru_maxrss` where /proc is absent)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_rss_mib() -> float:
    return peak_rss_bytes() / 2**20
