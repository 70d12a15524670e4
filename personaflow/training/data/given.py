"""A split given from outside: a shop scores our models on its own protocol, on the nightly code path.

Two shapes, both files of purchases (CSV, CSV.gz or Parquet with `user_id`, `item_id`, `ts`, optional
`quantity`): - `split_given(train, test)`: the shop's own train and test rows, cut however it likes;
- `split_per_user(purchases, cuts)`: one cut time per user (`user_id`, `cut_ts`), e.g. "each customer's
  last order is the test"; a user's rows before their cut train, the rest test; users without a cut
  train on all their rows.
Either gives the same `PurchaseSplit` the retail-30d protocol builds (personaflow/training/data/purchases.py),
so every model, baseline, re-ranker and metric runs on it unchanged. Its cut (what "days since" and the
features' as-of time count from) is the last training timestamp: with per-user cuts other users' test
rows may come before it, and that is the shop's protocol, not a leak of the user's own future.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from personaflow.training.data.purchases import PURCHASE_COLUMNS, PurchaseSplit, assemble


def read_purchases(path: Path, columns: tuple[str, ...] = tuple(PURCHASE_COLUMNS)) -> pd.DataFrame:
    """A purchases file -> typed frame; a missing file, column or unreadable time names file and row."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=str)
    return typed(frame, str(path), columns)


def typed(
    frame: pd.DataFrame, source: str, columns: tuple[str, ...] = tuple(PURCHASE_COLUMNS)
) -> pd.DataFrame:
    """Ids as strings, times parsed; the first bad row is named (row 1 = the file's first data row)."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; has {list(frame.columns)}")
    out = frame.copy()
    for column in columns:
        blank = out[column].isna() | (out[column].astype(str).str.strip() == "")
        if blank.any():
            raise ValueError(f"{source}: row {int(blank.to_numpy().argmax()) + 1}: {column} is empty")
    for column in (c for c in columns if c.endswith("_id")):
        out[column] = out[column].astype(str)
    time_column = next(c for c in columns if c.endswith("ts"))
    parsed = pd.to_datetime(out[time_column], errors="coerce")
    if parsed.isna().any():
        row = int(parsed.isna().to_numpy().argmax())
        raise ValueError(
            f"{source}: row {row + 1}: {time_column} {out[time_column].iloc[row]!r} is not a time"
        )
    out[time_column] = parsed
    return out


def split_given(train: pd.DataFrame, test: pd.DataFrame) -> PurchaseSplit:
    """The shop's own train and test purchases as a split (test users: those with training rows)."""
    train, test = typed(train, "train"), typed(test, "test")
    if train.empty:
        raise ValueError("train: no rows")
    return assemble(train, test, train["ts"].max(), max(train["ts"].max(), test["ts"].max()))


def split_per_user(purchases: pd.DataFrame, cuts: pd.DataFrame) -> PurchaseSplit:
    """One cut per user: rows before it train, rows at or after it test (no cut: all rows train)."""
    purchases = typed(purchases, "purchases")
    cuts = typed(cuts, "cuts", ("user_id", "cut_ts"))
    twice = cuts["user_id"].duplicated()
    if twice.any():
        row = int(twice.to_numpy().argmax())
        raise ValueError(f"cuts: row {row + 1}: user {cuts['user_id'].iloc[row]!r} has a second cut")
    cut_of = purchases["user_id"].map(cuts.set_index("user_id")["cut_ts"])
    in_train = cut_of.isna() | (purchases["ts"] < cut_of)
    train = purchases.loc[in_train]
    if train.empty:
        raise ValueError("no purchase lies before its user's cut: nothing to train on")
    return assemble(train, purchases.loc[~in_train], train["ts"].max(), purchases["ts"].max())


def read_given(
    train: Path | None = None,
    test: Path | None = None,
    purchases: Path | None = None,
    cuts: Path | None = None,
) -> PurchaseSplit:
    """The split from files: `train` and `test`, or `purchases` and `cuts` (`personaflow evaluate` and
    `benchmarks/recommenders.py --data given` read it here)."""
    if (
        (train is None) != (test is None)
        or (purchases is None) != (cuts is None)
        or (train is None) == (purchases is None)
    ):
        raise ValueError("give either --train and --test, or --purchases and --cuts")
    if train is not None:
        return split_given(read_purchases(train), read_purchases(test))
    return split_per_user(read_purchases(purchases), read_purchases(cuts, ("user_id", "cut_ts")))
