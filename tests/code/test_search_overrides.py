"""A change to a `train:` key the search sets in every candidate changes nothing: refused, naming the setting
(README, "What is refused"; the train stage's command runs the check, tests/integration/test_mistakes.py)."""

from __future__ import annotations

import pytest

from pipelines.config import ParamsError
from pipelines.model.overrides import lost_changes, refuse_lost_changes, searched_keys


def test_the_grid_and_the_optuna_space_set_their_keys_and_none_sets_nothing(make_params) -> None:
    grid = make_params({"search.strategy": "grid", "search.grid": {"num_leaves": [31, 63]}}).search
    assert searched_keys(grid) == {"num_leaves": "search.grid.num_leaves"}
    optuna = make_params({"search.strategy": "optuna", "search.trials": 4,
                          "search.space": {"learning_rate": [0.02, 0.1]}}).search
    assert searched_keys(optuna) == {"learning_rate": "search.space.learning_rate"}
    assert searched_keys(make_params({"search.strategy": "none"}).search) == {}
    assert searched_keys(make_params({"search.strategy": "optuna", "search.trials": 0}).search) == {}


def test_a_lost_change_is_refused_with_the_key_and_the_setting_to_change(make_params) -> None:
    search = make_params({"search.strategy": "grid", "search.grid": {"num_leaves": [31, 63]}}).search
    assert lost_changes({"train.learning_rate": 0.1, "collect.end": "2013-06-01"}, search) == []
    with pytest.raises(ParamsError) as refused:
        refuse_lost_changes({"train.num_leaves": 15, "train.learning_rate": 0.1}, search)
    message = str(refused.value)
    assert message.startswith("train.num_leaves=15 changes nothing: search.strategy is grid and "
                              "search.grid.num_leaves ([31, 63]) sets num_leaves in every candidate")
    assert "-S 'search.grid.num_leaves=[15]'" in message and "-S search.strategy=none" in message
    assert "learning_rate" not in message
    # With the search off, `train:` is the one model: the same change is what the user asked for.
    refuse_lost_changes({"train.num_leaves": 15}, make_params({"search.strategy": "none"}).search)


def test_a_changed_params_file_is_warned_of_not_refused(make_params, caplog: pytest.LogCaptureFixture) -> None:
    """`dvc exp run -S` or an edit (or a value an earlier experiment left in the workspace): warned, the run goes on."""
    from pipelines.model.overrides import warn_lost_changes

    search = make_params({"search.strategy": "grid", "search.grid": {"min_data_in_leaf": [50, 200]}}).search
    with caplog.at_level("WARNING", logger="pipelines.model.overrides"):
        lines = warn_lost_changes({"train.min_data_in_leaf": 10, "train.seed": 7}, search)
    assert len(lines) == 1 and lines[0] in caplog.text and "search.grid.min_data_in_leaf ([50, 200])" in lines[0]
