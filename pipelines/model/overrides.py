"""Which `train:` keys the search replaces in every candidate, and the refusal of a change that would be lost.

Under `search.strategy: grid` every candidate is its family's `train.<family>` section with the grid's keys replaced
(optuna: the space's), so `dvc exp run -S train.lightgbm.num_leaves=31` with num_leaves in the grid trains the very
same candidates: the same model, the same metrics, and no word about it. The train stage's command
(`pipelines.cli`) says so, naming the search setting that decides the value: it refuses a `--set` of such a key
(that command line asked for it), and warns of a params.yaml that differs from its commit in one (`dvc exp run -S`,
an edit, or a value an earlier `dvc exp run` left in the workspace, where refusing would stop the next experiment
for a change nobody made now). Small functions of (search params, changed keys, the trained family), so that
another search strategy only has to say which keys it sets.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pipelines.config import ParamsError, SearchParams

log = logging.getLogger(__name__)


def searched_keys(search: SearchParams, train_family: str) -> dict[str, str]:
    """`train.<family>.<key>` -> the search setting that gives it a value in every candidate of that family, for
    the families that compete (`search.families`, or `train.family` alone); {} for search.strategy none."""
    if search.strategy == "none" or (search.strategy == "optuna" and search.trials == 0):
        return {}
    setting = "grid" if search.strategy == "grid" else "space"
    return {f"train.{family}.{key}": f"search.{setting}.{family}.{key}"
            for family in (search.families or [train_family]) for key in getattr(search, setting).of(family)}


def lost_changes(changed: Mapping[str, Any], search: SearchParams, train_family: str) -> list[str]:
    """One line per changed `train.<family>.<key>` (dotted key -> its new value) that the search replaces."""
    searched = searched_keys(search, train_family)
    lines = []
    for dotted, value in sorted(changed.items()):
        if dotted not in searched:
            continue
        setting, key = searched[dotted], dotted.rsplit(".", 1)[1]
        grid = search.strategy == "grid"
        family = dotted.split(".")[1]
        values = (search.grid if grid else search.space).of(family)[key]
        instead = f"-S '{setting}=[{value}]'" if grid else f"its [low, high] range, -S '{setting}=[..]'"
        lines.append(f"{dotted}={value} changes nothing: search.strategy is {search.strategy} and {setting} "
                     f"({values}) sets {key} in every candidate; change {setting} instead ({instead}), or train "
                     f"this one model alone with -S search.strategy=none")
    return lines


def refuse_lost_changes(changed: Mapping[str, Any], search: SearchParams, train_family: str) -> None:
    """Raise `ParamsError` if a change to `train:` (from --set, -S or an edit of params.yaml) would be lost."""
    lines = lost_changes(changed, search, train_family)
    if lines:
        raise ParamsError("\n".join(lines))


def warn_lost_changes(changed: Mapping[str, Any], search: SearchParams, train_family: str) -> list[str]:
    """Log a warning per change to `train:` that the search replaces; returns the lines."""
    lines = lost_changes(changed, search, train_family)
    for line in lines:
        log.warning("%s", line)
    return lines
