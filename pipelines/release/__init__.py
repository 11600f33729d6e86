"""release: what happens to a model once it exists.

`registry` stores models (BentoML's store), the champion pointer and its journal; `lineage` records what built a
model (commit, params, data); `versioning` runs retrains as DVC experiments; `reproduce` rebuilds a registered model
from its lineage; `model_card` and `reporting` write what people read about it.
"""
