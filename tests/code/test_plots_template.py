"""`dvc plots show` offline (issue #42): DVC's page template with Vega, Vega-Lite and Vega-Embed inside."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from ops.plots_template import point_dvc_at, write_template
from support.project_copy import venv_env


def test_the_template_holds_the_libraries_and_loads_nothing_from_elsewhere(tmp_path: Path) -> None:
    from dvc_render.html import HTML

    template = write_template(tmp_path / "template.html")
    page = template.read_text()
    assert not re.findall(r"<script[^>]+src=", page) and "cdn.jsdelivr" not in page
    assert "window.vegaEmbed" in page and "window.vegaLite" in page
    assert "{scripts}" not in page  # DVC's placeholder for its CDN tags is left out on purpose
    filled = HTML(page).with_element("<div id='plot'>here</div>").embed()  # DVC accepts it as a template
    assert "<div id='plot'>here</div>" in filled


def test_dvc_is_pointed_at_it_per_checkout(tmp_path: Path) -> None:
    env = venv_env()
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True, env=env)
    subprocess.run(["dvc", "init", "-q"], cwd=tmp_path, check=True, env=env)
    template = tmp_path / "template.html"
    template.write_text("<html>{plot_divs}</html>")
    point_dvc_at(tmp_path, template)
    said = subprocess.run(["dvc", "config", "--local", "plots.html_template"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=True).stdout.strip()
    assert said == str(template.resolve())
    assert "html_template" not in (tmp_path / ".dvc" / "config").read_text()  # never committed
