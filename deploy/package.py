"""Package the champion as a Bento: `python -m deploy.package [--params params.yaml]` (from the repo root).

Writes the champion's tag to `serve.bundled_champion_file` (packed into the Bento, so the Bento serves the
model it was built with where there is no registry), refreshes `services/requirements.txt` from uv.lock's `serve`
dependency group, with `serve-onnx` when serve.artifact is an ONNX variant (what the Bento's Dockerfile installs:
the serving stack at the versions training used, without Prefect, DVC, GX or Evidently), then runs `bentoml build
-f services/bentofile.yaml .` with the same environment.
Prints the Bento tag; `bentoml serve <tag>` serves it.

`--containerize` then builds the OCI image with BentoML's own path, `bentoml containerize --backend buildah` (no
Docker daemon), from the base image the bentofile names, building that first when buildah's store lacks it
(`deploy/container.py`); it prints the image name, its size and the build times.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from pipelines import io

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# What the service is (its bentofile and pinned requirements) lives with it in services/; this folder builds it.
BENTOFILE = PROJECT_ROOT / io.BENTOFILE
REQUIREMENTS = PROJECT_ROOT / io.SERVING_REQUIREMENTS
EXPORT_SERVE_GROUP = ("export", "--frozen", "--only-group", "serve", "--no-hashes", "--no-emit-project")
ONNX_GROUP = "serve-onnx"  # onnxruntime: packed only when serve.artifact is an ONNX variant
SKLEARN_GROUP = "serve-sklearn"  # scikit-learn: packed only when a scikit-learn family may be champion
SKLEARN_FAMILIES = frozenset(("logistic", "histgb"))


def locked_requirements(artifact: str = "full", families: frozenset[str] | set[str] = frozenset({"lightgbm"})) -> str:
    """The `serve` dependency group pinned from uv.lock, as requirements.txt text; with an ONNX `artifact`
    (serve.artifact onnx or quantised) the `serve-onnx` group too, and with a scikit-learn family among `families`
    (those that may be champion: `serving_families`) the `serve-sklearn` group, so each serves in the image."""
    from pipelines.model.variants import ONNX_VARIANTS

    uv = shutil.which("uv")
    if uv is None:
        raise RuntimeError("uv is needed to export the Bento's requirements from uv.lock "
                           "(scripts/bootstrap.sh installs it)")
    groups = ("--only-group", ONNX_GROUP) if artifact in ONNX_VARIANTS else ()
    if families & SKLEARN_FAMILIES:
        groups += ("--only-group", SKLEARN_GROUP)
    result = subprocess.run([uv, *EXPORT_SERVE_GROUP, *groups], cwd=PROJECT_ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"uv export failed:\n{result.stderr}")
    return result.stdout


def serving_families(params: Any, champion: str, store: Any = None) -> frozenset[str]:
    """The families whose models this Bento may serve: the champion's, and every family the params let compete (a
    container that follows the registry serves the next champion too, whichever of them wins)."""
    from pipelines.release.registry import model_entry

    configured = params.search.families or [params.train.family]
    return frozenset([*configured, model_entry(champion, store).family])


def package(params_path: Path) -> str:
    from pipelines.config import load_params
    from pipelines.release.registry import model_path, open_registry, require_champion

    params = load_params(params_path)
    store = open_registry(params)
    tag = require_champion(store)
    model_path(tag, store)  # `bentoml build` packs it from this machine's store: imported from a remote registry
    bundled = params.serve.bundled_champion_file
    bundled.parent.mkdir(parents=True, exist_ok=True)
    bundled.write_text(json.dumps({"tag": tag}) + "\n")
    requirements = locked_requirements(params.serve.artifact, serving_families(params, tag, store))
    if not REQUIREMENTS.exists() or REQUIREMENTS.read_text() != requirements:
        REQUIREMENTS.write_text(requirements)
    env = {**os.environ, "FLIGHTOPS_PARAMS": str(params_path)}
    result = subprocess.run([sys.executable, "-m", "bentoml", "build", "-f", str(BENTOFILE), "."],
                            env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"bentoml build failed:\n{result.stdout}\n{result.stderr}")
    found = re.search(r'Successfully built Bento\(tag="([^"]+)"\)', result.stdout + result.stderr)
    if not found:
        raise RuntimeError(f"bentoml build did not report a tag:\n{result.stdout}\n{result.stderr}")
    # BentoML keeps each Bento in a 0700 folder (a mkdtemp). `bentoml serve <tag>` started as root runs its workers
    # as serve.worker_user, who must read it; a Bento is no secret (its files inside are 0644), as models are.
    import bentoml

    Path(bentoml.get(found.group(1)).path).chmod(0o755)
    return found.group(1)


def main() -> None:
    from pipelines.config import DEFAULT_PARAMS_FILE

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path,
                        default=Path(os.environ.get("FLIGHTOPS_PARAMS") or DEFAULT_PARAMS_FILE))
    parser.add_argument("--containerize", action="store_true",
                        help="then build the OCI image with `bentoml containerize --backend buildah`")
    parser.add_argument("--image", help="image name for --containerize (default localhost/<bento tag>)")
    args = parser.parse_args()
    tag = package(args.params)
    print(tag)
    if args.containerize:
        from deploy.container import ContainerError, containerize

        try:
            built = containerize(tag, args.image)
        except ContainerError as error:
            raise SystemExit(f"error: {error}") from None
        if built.base is not None:
            print(f"base image {built.base.image}: built in {built.base.seconds:.0f}s, "
                  f"{built.base.size_bytes / 1e6:.0f} MB")
        print(f"image {built.image}: built in {built.seconds:.0f}s, {built.size_bytes / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
