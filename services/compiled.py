"""The champion's trees compiled to machine code (lleaves → LLVM), used by the service in place of Booster.predict.

Why: on the loop's last champion (272 trees × 63 leaves) `Booster.predict` takes ~16 ms per 1,000 rows on one core
and ~37 µs for one row; the compiled forest gives the same probabilities (to ~5e-16) in ~3.4 ms and ~10 µs,
and the model call was the largest single cost of a 1,000-row request (docs/serving.md).

How it stays safe:
- Compiling is done by a child process (`python -m services.compiled MODEL OUT`): lleaves builds the LLVM IR in
  Python for ~4 s and LLVM works for ~3 more, which in a serving worker would hold its GIL (and a crash in LLVM
  would take the worker down). The worker only loads the finished object file.
- Object files are cached in `paths.compiled_dir`, named by the model file's hash, the target and the compiler
  versions, and written under a file lock then renamed into place: workers and restarts compile a model once.
- No inlining (`finline=False`): compiling this model takes ~7 s instead of ~63 s, for 3.4 instead of 2.7 ms.
  On x86-64 the code targets the generic `x86-64-v2` level rather than the host CPU: as fast here as host-tuned
  code, and the cached file stays valid if the cache moves to another x86-64 machine.
- Before a compiled forest serves, its predictions are compared with the booster's on probe rows that sit on,
  just above and just below every split threshold of the forest, on missing values and on unseen categories;
  any difference above `PARITY_TOLERANCE` refuses it and the booster serves (the reason is in /metadata).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import logging
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from pipelines import io
from pipelines.model.families.lightgbm import LIGHTGBM_ZERO, on_and_beside  # lleaves reads |x| <= it as it is

log = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-9
PROBE_ROWS = 4000
# A child that has not compiled in this long is stuck (the default champion takes ~7 s on one core).
COMPILE_TIMEOUT_S = 600.0
_OPTIONS: dict[str, Any] = {"finline": False, "use_fp64": True, "raw_score": False}


class CompileError(RuntimeError):
    """The forest could not be compiled, loaded, or did not match the booster."""


def _target() -> tuple[str | None, str | None]:
    """(LLVM CPU, features): portable x86-64-v2 on x86-64 hosts; the host's own CPU elsewhere."""
    if platform.machine().lower() in {"x86_64", "amd64"}:
        return "x86-64-v2", ""
    return None, None


def object_name(model_file: Path) -> str:
    """Cache file name: changes with the model, the target and the compiler, never with where the model lives."""
    digest = hashlib.sha256(model_file.read_bytes()).hexdigest()[:20]
    cpu = _target()[0] or f"{platform.machine()}-host"
    compiler = f"lleaves{version('lleaves')}-llvmlite{version('llvmlite')}"
    return f"{digest}-{cpu}-{compiler}{io.COMPILED_SUFFIX}"


def _lleaves_model(model_file: Path, object_file: Path) -> Any:
    """lleaves compiles to `object_file` when it does not exist, and loads it (no compiling) when it does."""
    import lleaves

    cpu, features = _target()
    model = lleaves.Model(model_file=str(model_file))
    model.compile(cache=str(object_file), target_cpu=cpu, target_cpu_features=features, **_OPTIONS)
    return model


@contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    """An exclusive lock on `lock_file`, created when missing. flock needs no write access, so a lock file another
    user left (the host's service beside a container's) is opened read-only rather than refused."""
    try:
        handle = open(lock_file, "a")  # noqa: SIM115 - closed by the with below
    except PermissionError:
        handle = open(lock_file)  # noqa: SIM115
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def writable_cache_dir(preferred: Path) -> Path:
    """`preferred`, or a per-user temp folder when it cannot be created or written (e.g. a read-only image)."""
    for candidate in (preferred, Path(tempfile.gettempdir()) / f"flightops-compiled-{os.getuid()}"):
        try:
            candidate.mkdir(parents=True, exist_ok=True)
            if os.access(candidate, os.W_OK):
                return candidate
        except OSError:
            continue
    raise CompileError(f"no writable folder for compiled models ({preferred} or the temp folder)")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ensure_compiled(model_file: Path, cache_dir: Path, timeout_s: float = COMPILE_TIMEOUT_S) -> Path:
    """The cached object file for `model_file`, compiled by a child process first if it is not cached yet.

    Each object file has a `.sha256` beside it, checked before it is used: LLVM aborts the whole process on a
    damaged object file (it cannot be caught), so a damaged or unconfirmed one is compiled afresh instead.
    """
    cache_dir = writable_cache_dir(cache_dir)
    name = object_name(model_file)
    target, checksum = cache_dir / name, cache_dir / f"{name}{io.CHECKSUM_SUFFIX}"
    with _locked(cache_dir / f"{name}{io.LOCK_SUFFIX}"):
        if target.exists() and checksum.exists() and checksum.read_text().strip() == _sha256(target):
            return target
        target.unlink(missing_ok=True)
        partial = cache_dir / f".{name}.{os.getpid()}.partial"
        partial.unlink(missing_ok=True)
        try:
            done = subprocess.run([sys.executable, "-m", "services.compiled", str(model_file), str(partial)],
                                  capture_output=True, text=True, timeout=timeout_s,
                                  cwd=Path(__file__).resolve().parent.parent)
        except subprocess.TimeoutExpired:
            partial.unlink(missing_ok=True)
            raise CompileError(f"compiling {model_file} took longer than {timeout_s:.0f} s") from None
        if done.returncode != 0 or not partial.exists():
            partial.unlink(missing_ok=True)
            reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            raise CompileError(f"compiling {model_file} failed: {reason}")
        checksum.write_text(_sha256(partial) + "\n")  # first the checksum, then the file it vouches for
        os.replace(partial, target)
        return target


def probe_matrix(booster: Any, rows: int = PROBE_ROWS, seed: int = 0) -> np.ndarray:
    """Rows whose every value sits on a split threshold of the forest, a hair either side of one, at 0, missing,
    or (for categorical splits) on a category the splits name or one they do not: where two implementations of
    the same trees could disagree (values within LIGHTGBM_ZERO of 0 excepted). Every such value of every
    feature appears at least once (the matrix grows past `rows` if needed), in shuffled combinations."""
    rng = np.random.default_rng(seed)
    nodes = booster.trees_to_dataframe()
    splits = nodes[nodes["split_feature"].notna()]
    columns = []
    for name in booster.feature_name():
        values: list[float] = [0.0, np.nan]
        for threshold in splits.loc[splits["split_feature"] == name, "threshold"].unique():
            if isinstance(threshold, str):  # categorical split: "1||3||5"
                categories = [float(c) for c in threshold.split("||")]
                values.extend(categories)
                values.append(max(categories) + 1)
            else:
                values.extend(on_and_beside(np.array([threshold], dtype=float)).tolist())
        candidates = np.unique(np.array(values, dtype=float))  # NaN kept once
        columns.append(candidates[~((candidates != 0) & (np.abs(candidates) <= LIGHTGBM_ZERO))])
    size = max(rows, *(len(c) for c in columns))
    return np.ascontiguousarray(np.column_stack([rng.permutation(np.resize(c, size)) for c in columns]))


@dataclass(frozen=True)
class CompiledForest:
    """A compiled forest that matched its booster; `predict` is a drop-in for `Booster.predict(matrix)`."""

    model: Any  # lleaves.Model, typed loosely to keep the import out of module load
    object_file: Path
    max_difference: float
    probe_rows: int

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """One thread: lleaves starts a thread pool per call, which ate a second core's gain on 1,000 rows (3.1
        vs 3.5 ms) and costs the other worker its core."""
        return self.model.predict(matrix, n_jobs=1)

    def describe(self) -> str:
        return (f"compiled (lleaves {version('lleaves')}, target {_target()[0] or 'host'}, "
                f"max difference from LightGBM {self.max_difference:.1e} on {self.probe_rows} probe rows)")


def load_compiled(model_file: Path, booster: Any, cache_dir: Path) -> CompiledForest:
    """Compile (or reuse the cached compile of) `model_file` and check it against `booster`."""
    object_file = ensure_compiled(model_file, cache_dir)
    try:
        model = _lleaves_model(model_file, object_file)
    except Exception as error:  # a cache file another lleaves/LLVM cannot read: drop it, the next load recompiles
        object_file.unlink(missing_ok=True)
        raise CompileError(f"could not load {object_file}: {error}") from error
    probe = probe_matrix(booster)
    expected = booster.predict(probe, num_threads=1)
    got = model.predict(probe, n_jobs=1)
    difference = float(np.max(np.abs(expected - got)))
    if not difference <= PARITY_TOLERANCE:
        raise CompileError(f"compiled forest differs from LightGBM by {difference:.3g} on probe rows "
                           f"(tolerance {PARITY_TOLERANCE:g})")
    return CompiledForest(model=model, object_file=object_file, max_difference=difference,
                          probe_rows=len(probe))


def compiles(model: Any) -> bool:
    """Whether `model` (a `pipelines.model.seam.TrainedModel`) is a forest this module compiles: LightGBM's."""
    return model.family == "lightgbm"


def load_compiled_model(model: Any, directory: Path, cache_dir: Path) -> CompiledForest:
    """`load_compiled` for the LightGBM model saved in `directory`: the one place outside its family module that
    reaches its booster (the forest is checked against it)."""
    from pipelines.contracts import model_file

    return load_compiled(model_file(directory), model.booster, cache_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Compile a LightGBM model.txt to an object file (lleaves).")
    parser.add_argument("model_file", type=Path)
    parser.add_argument("output", type=Path, help="object file to write (must not exist)")
    args = parser.parse_args(argv)
    if args.output.exists():
        parser.error(f"{args.output} exists")
    _lleaves_model(args.model_file, args.output)
    if not args.output.exists():
        sys.exit(f"lleaves wrote no object file to {args.output}")


if __name__ == "__main__":
    main()
