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
echo "==> syncing the locked environment (.venv) with $PYTHON" >&2
uv sync --frozen --python "$PYTHON" ${UV_SYNC_ARGS:-}
export PATH="$ROOT/.venv/bin:$PATH"
export VIRTUAL_ENV="$ROOT/.venv"
