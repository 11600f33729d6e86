"""`train.device_type: gpu`: find an OpenCL platform before training, the way LightGBM's loader will.

LightGBM's PyPI wheel (4.x) is built with its OpenCL GPU learner and carries the Khronos ICD loader inside it, so no
system libOpenCL is needed: only an ICD, i.e. a `.icd` file naming a vendor's OpenCL library (for an NVIDIA card,
`libnvidia-opencl.so.1`, which the driver installs). Without one, LightGBM fails only after the dataset is built,
with "No OpenCL device found". This module looks in the same places as that loader (OCL_ICD_FILENAMES, then
OCL_ICD_VENDORS or /etc/OpenCL/vendors), loads each library and asks it for its platforms, so a missing or broken
set-up is refused before any work starts, with what was looked at.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.config import ParamsError

DEFAULT_VENDORS_DIR = Path("/etc/OpenCL/vendors")


@dataclass
class OpenCLProbe:
    """What was looked at, and how many OpenCL platforms each vendor library reported."""

    looked_at: list[str] = field(default_factory=list)
    platforms: dict[str, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return any(count > 0 for count in self.platforms.values())


def _icd_files(environ: dict[str, str], looked_at: list[str]) -> list[Path]:
    vendors = environ.get("OCL_ICD_VENDORS")
    location = Path(vendors) if vendors else DEFAULT_VENDORS_DIR
    looked_at.append(f"OCL_ICD_VENDORS={vendors}" if vendors else f"{DEFAULT_VENDORS_DIR} (OCL_ICD_VENDORS unset)")
    if location.is_file():
        return [location]
    if location.is_dir():
        return sorted(location.glob("*.icd"))
    looked_at[-1] += ": missing"
    return []


def _platform_count(library: str) -> int:
    handle = ctypes.CDLL(library)
    count = ctypes.c_uint(0)
    # An ICD library exports clIcdGetPlatformIDsKHR (the loader's entry); a plain libOpenCL exports clGetPlatformIDs.
    function = getattr(handle, "clIcdGetPlatformIDsKHR", None) or handle.clGetPlatformIDs
    status = function(ctypes.c_uint(0), None, ctypes.byref(count))
    if status != 0:
        raise OSError(f"platform query returned OpenCL error {status}")
    return int(count.value)


def probe_opencl(environ: dict[str, str] | None = None) -> OpenCLProbe:
    """Every vendor library the ICD loader would try, and its platform count (or why it failed)."""
    environ = dict(os.environ if environ is None else environ)
    probe = OpenCLProbe()
    libraries = [name for name in environ.get("OCL_ICD_FILENAMES", "").split(":") if name]
    probe.looked_at.append(f"OCL_ICD_FILENAMES={environ['OCL_ICD_FILENAMES']}" if libraries
                           else "OCL_ICD_FILENAMES unset")
    for icd in _icd_files(environ, probe.looked_at):
        try:
            libraries.append(icd.read_text().strip())
        except OSError as error:
            probe.failures[str(icd)] = str(error)
    for library in dict.fromkeys(libraries):
        try:
            probe.platforms[library] = _platform_count(library)
        except (OSError, AttributeError) as error:
            probe.failures[library] = str(error)
    return probe


def require_opencl(device_type: str, environ: dict[str, str] | None = None) -> None:
    """Refuse `train.device_type: gpu` where LightGBM would find no OpenCL platform; `cpu` needs nothing."""
    if device_type != "gpu":
        return
    probe = probe_opencl(environ)
    if probe.found:
        return
    tried = "; ".join(f"{name}: {reason}" for name, reason in probe.failures.items())
    empty = [name for name, count in probe.platforms.items() if count == 0]
    details = [f"looked at {', '.join(probe.looked_at)}"]
    if tried:
        details.append(f"could not use {tried}")
    if empty:
        details.append(f"no platforms from {', '.join(empty)}")
    if not (tried or empty):
        details.append("no .icd file names a vendor library")
    raise ParamsError(
        "train.device_type is 'gpu' but no OpenCL platform was found (" + "; ".join(details) + "). "
        "For an NVIDIA card: echo libnvidia-opencl.so.1 > /etc/OpenCL/vendors/nvidia.icd (or point OCL_ICD_VENDORS "
        "at a folder or file holding that line); otherwise set train.device_type: cpu.")
