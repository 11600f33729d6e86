"""Reports for people, published from the flows: the model card file and Prefect artifacts that link to it, to
the validation Data Docs and to the drift reports, so a reviewer starts from the flow run in the Prefect UI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from pipelines import io
from pipelines.config import Params
from pipelines.release.model_card import write_model_card


def _file_link(path: Path) -> str:
    return path.resolve().as_uri()


@task(name="reports", cache_policy=NO_CACHE)
def publish_reports(params: Params) -> dict[str, Any]:
    """Write the model card (markdown + HTML) and link every report from the flow run's Artifacts tab."""
    card = write_model_card(params)
    create_markdown_artifact(key="model-card", markdown=Path(card["markdown"]).read_text(),
                             description=f"Model card; also at {card['html']}")
    links = {"model-card-html": (Path(card["html"]), "Model card (HTML)"),
             "validation-data-docs": (io.data_docs_index(params.paths.validation_dir),
                                      "Great Expectations Data Docs of the validated table"),
             "drift-reports": (params.paths.monitoring_dir, "Evidently drift reports (HTML + JSON per window)")}
    published = {}
    for key, (path, text) in links.items():
        if path.exists():
            create_link_artifact(key=key, link=_file_link(path), link_text=text, description=text)
            published[key] = str(path)
    return {**card, "links": published}
