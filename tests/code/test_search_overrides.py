"""A change to a `train.<family>` key the search sets in every candidate changes nothing: refused, naming the setting
(README, "What is refused"; the train stage's command runs the check, tests/integration/test_mistakes.py)."""

from __future__ import annotations

import pytest

from pipelines.config import ParamsError
from pipelines.model.overrides import lost_changes, refuse_lost_changes, searched_keys

GRID = {"lightgbm": {"num_leaves": [31, 63]}, "logistic": {"C": [0.1, 1.0]}, "histgb": {}}


def test_the_grid_and_the_optuna_space_set_their_keys_and_none_sets_nothing(make_params) -> None:
    grid = make_params({"search.strategy": "grid", "search.grid": GRID}).search
    assert searched_keys(grid, "lightgbm") == {"train.lightgbm.num_leaves": "search.grid.lightgbm.num_leaves"}
    assert searched_keys(grid, "logistic") == {"train.logistic.C": "search.grid.logistic.C"}
    both = make_params({"search.strategy": "grid", "search.grid": GRID, "search.families": ["lightgbm", "logistic"]})
    assert set(searched_keys(both.search, "lightgbm")) == {"train.lightgbm.num_leaves", "train.logistic.C"}
    optuna = make_params({"search.strategy": "optuna", "search.trials": 4,
                          "search.space": {"lightgbm": {"learning_rate": [0.02, 0.1]}, "logistic": {},
                                           "histgb": {}}}).search
    assert searched_keys(optuna, "lightgbm") == {"train.lightgbm.learning_rate": "search.space.lightgbm.learning_rate"}
    assert searched_keys(make_params({"search.strategy": "none"}).search, "lightgbm") == {}
    assert searched_keys(make_params({"search.strategy": "optuna", "search.trials": 0}).search, "lightgbm") == {}


def test_a_lost_change_is_refused_with_the_key_and_the_setting_to_change(make_params) -> None:
    search = make_params({"search.strategy": "grid", "search.grid": GRID}).search
    assert lost_changes({"train.lightgbm.learning_rate": 0.1, "collect.end": "2013-06-01"}, search, "lightgbm") == []
    # A family that does not compete: its grid sets nothing.
    assert lost_changes({"train.logistic.C": 5.0}, search, "lightgbm") == []
    with pytest.raises(ParamsError) as refused:
        refuse_lost_changes({"train.lightgbm.num_leaves": 15, "train.lightgbm.learning_rate": 0.1}, search,
                            "lightgbm")
    message = str(refused.value)
    assert message.startswith("train.lightgbm.num_leaves=15 changes nothing: search.strategy is grid and "
                              "search.grid.lightgbm.num_leaves ([31, 63]) sets num_leaves in every candidate")
    assert "-S 'search.grid.lightgbm.num_leaves=[15]'" in message and "-S search.strategy=none" in message
    assert "learning_rate" not in message
    # With the search off, `train:` is the one model: the same change is what the user asked for.
    refuse_lost_changes({"train.lightgbm.num_leaves": 15}, make_params({"search.strategy": "none"}).search,
                        "lightgbm")


def test_a_changed_params_file_is_warned_of_not_refused(make_params, caplog: pytest.LogCaptureFixture) -> None:
    """`dvc exp run -S` or an edit (or a value an earlier experiment left in the workspace): warned, the run goes on."""
    from pipelines.model.overrides import warn_lost_changes

    grid = {**GRID, "lightgbm": {"min_data_in_leaf": [50, 200]}}
    search = make_params({"search.strategy": "grid", "search.grid": grid}).search
    with caplog.at_level("WARNING", logger="pipelines.model.overrides"):
        lines = warn_lost_changes({"train.lightgbm.min_data_in_leaf": 10, "train.lightgbm.seed": 7}, search,
                                  "lightgbm")
    assert len(lines) == 1 and lines[0] in caplog.text
    assert "search.grid.lightgbm.min_data_in_leaf ([50, 200])" in lines[0]
