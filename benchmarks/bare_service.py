"""A BentoML service that answers the flight endpoints' JSON shapes without a model or validation.

`python -m benchmarks.serving --bare` serves it beside the real service, with the same worker count, access-log
setting and load generator, so the serving figures come with the floor this machine and BentoML set (the "bare
JSON endpoint" bar), and the gap between the two is what the flight service itself costs.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import bentoml
from bentoml.validators import ContentType

WORKERS_ENV = "BARE_WORKERS"
ACCESS_LOG_ENV = "BARE_ACCESS_LOG"  # "1": BentoML's access log on, as with serve.access_log: true
# Declared JSON, as the flight service's answers are: an undeclared dict/list answer makes BentoML rebuild its JSON
# schema on every request to find the media type (~20% of a worker's CPU), which would make this floor too high.
Json = Annotated[dict[str, Any], ContentType("application/json")]


@bentoml.service(name="bare", workers=int(os.environ.get(WORKERS_ENV, "1")),
                 logging={"access": {"enabled": os.environ.get(ACCESS_LOG_ENV) == "1"}})
class Bare:
    @bentoml.api(route="/predict")
    def predict(self, flight: dict[str, Any]) -> Json:
        return {"request_id": "bare", "probability": 0.5, "label": 0}

    @bentoml.api(route="/predict_batch")
    def predict_batch(self, flights: list[dict[str, Any]]) -> Json:
        return {"predictions": [{"request_id": "bare", "probability": 0.5, "label": 0} for _ in flights]}
