# Sourced by the README's commands: make the pinned environment exist, then put it on PATH.
# Needs only bash and Python 3.11 or 3.12; everything else comes from uv.lock.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
UV_VERSION="0.13.8"
export UV_PYTHON_DOWNLOADS=never   # use this machine's Python; never fetch one
export PREFECT_SERVER_ANALYTICS_ENABLED=false GX_ANALYTICS_ENABLED=false BENTOML_DO_NOT_TRACK=true DVC_NO_ANALYTICS=1

if ! command -v uv >/dev/null 2>&1 || [[ "$(uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]]; then
  echo "==> installing uv $UV_VERSION" >&2
  python3 -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
# The interpreter's own path, not a launcher's (a pyenv shim): uv compares the path it is given with the venv's,
# and a shim made it remove and recreate .venv on every call.
PYTHON="$("$PYTHON" -c 'import sys; print(sys.executable)')"
echo "==> syncing the locked environment (.venv) with $PYTHON" >&2
uv sync --frozen --python "$PYTHON" ${UV_SYNC_ARGS:-}
# Bytecode for the whole environment, once per lock: every stage, worker and test is a new Python process, and
# where PYTHONDONTWRITEBYTECODE is set (CI images, this machine) each would otherwise compile every module it
# imports from source again (evidently's import: 7.1 s without .pyc files, 3.1 s with). Python reads .pyc files
# whatever that variable says. `uv sync --compile-bytecode` would redo all of site-packages on every call (~26 s).
BYTECODE_STAMP=".venv/.bytecode-$(sha256sum uv.lock | cut -c1-16)"
if [[ ! -f "$BYTECODE_STAMP" ]]; then
  echo "==> compiling the environment's bytecode (once per uv.lock)" >&2
  rm -f .venv/.bytecode-*
  # A few packages ship files that are not Python 3 (templates, test data): compileall reports them and goes
  # on; a module without bytecode still imports, from source.
  .venv/bin/python -m compileall -q -j 0 .venv/lib/python*/site-packages >/dev/null 2>&1 || true
  touch "$BYTECODE_STAMP"
fi
export PATH="$ROOT/.venv/bin:$PATH"
export VIRTUAL_ENV="$ROOT/.venv"
# `dvc plots show` offline: DVC's page template with Vega bundled from the locked vl-convert-python (ops/plots_template.py),
# written into the environment once per lock and set in this checkout's .dvc/config.local.
PLOTS_STAMP=".venv/.dvc-plots-$(sha256sum uv.lock | cut -c1-16)"
if [[ ! -f "$PLOTS_STAMP" ]] || ! dvc config --local plots.html_template >/dev/null 2>&1; then
  echo "==> writing the offline page template of dvc plots show" >&2
  rm -f .venv/.dvc-plots-*
  python -m ops.plots_template >&2
  touch "$PLOTS_STAMP"
fi
