"""One module per model family: the only place a learner's own objects (a booster, an estimator) are touched.

A family module holds `FAMILY` (its name in `train.family` / `search.families`), `MODEL_CLASS` (its
`pipelines.model.seam.TrainedModel`) and `fit(train, valid, schema, params) -> Fitted`; its params are the section
`train.<family>` (pipelines/config.py) and its search space `search.grid.<family>` / `search.space.<family>`.
Adding a family is that module, its section, its space and its dependency (docs/model-selection.md).
"""
