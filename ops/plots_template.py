"""`dvc plots show` offline: DVC's HTML page with Vega, Vega-Lite and Vega-Embed inside, not loaded from a CDN.

    python -m ops.plots_template            # scripts/bootstrap.sh runs it once per uv.lock

DVC's default page (dvc_render) loads the three libraries from cdn.jsdelivr.net, so on a machine without internet
`dvc_plots/index.html` is blank. DVC takes a page template of one's own (`dvc plots show --html-template`, or the
config key `plots.html_template`): this writes one whose single script is the libraries as bundled by the Vega
project's `vl-convert-python` (pinned in uv.lock, nothing fetched at run time), with Vega-Lite 5 like DVC's plot
templates, into the environment (`<venv>/share/flightops/`: it belongs to the packages that made it), and points
this checkout's DVC at it in `.dvc/config.local` (per machine, never committed). A copy of the project made by the
tests (`support/project_copy.py`) is pointed at the same file.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from pipelines.io import DVC_PLOTS_TEMPLATE

# DVC's plot templates (dvc_render.vega_templates) are Vega-Lite v5 specs.
VEGA_LITE_VERSION = "5.21"
# DVC fills these placeholders (dvc_render.html.HTML); `{scripts}` is left out on purpose: it is DVC's CDN tags.
PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC plots</title>
    <script type="text/javascript">
__BUNDLE__
    </script>
    <style>
        body { font-family: sans-serif; }
        table { border-spacing: 15px; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def template_path(prefix: Path | None = None) -> Path:
    """Where the template lives: in the environment (`sys.prefix`) whose packages it is made from."""
    return Path(prefix or sys.prefix) / "share" / "flightops" / DVC_PLOTS_TEMPLATE


def write_template(path: Path | None = None) -> Path:
    """The page template with the bundled libraries, written atomically; returns its path."""
    import vl_convert

    from pipelines.io import write_atomic

    path = path or template_path()
    bundle = vl_convert.javascript_bundle(vl_version=VEGA_LITE_VERSION)
    page = PAGE.replace("__BUNDLE__", bundle)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, lambda temp: Path(temp).write_text(page, encoding="utf-8"))


def point_dvc_at(repo: Path, template: Path) -> None:
    """`plots.html_template` in the repository's `.dvc/config.local` (DVC reads a relative path from .dvc/)."""
    subprocess.run(["dvc", "config", "--local", "plots.html_template", str(template.resolve())], cwd=repo,
                   check=True, capture_output=True, text=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.plots_template", description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path("."), help="the checkout whose DVC uses it (default: .)")
    args = parser.parse_args(argv)
    template = write_template()
    point_dvc_at(args.repo, template)
    print(f"dvc plots show: offline page template {template} ({template.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
