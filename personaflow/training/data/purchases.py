"""The retail-30d benchmark protocol's data half: purchases in, a time-cut split out (scoring:
personaflow/training/evaluation/protocol.py).

Protocol (issue 4): keep purchases with a customer, not cancelled, quantity > 0, price > 0; cut at
`test_days` before the log's last timestamp; train on everything before the cut; test users are those
who buy after the cut *and* bought before it; their truth is the set of items they buy after the cut.

The last-basket protocol (`last_basket_split`, the next-basket field's: Li et al., TOIS 2023) cuts per
user instead: users with at least `min_baskets` baskets (a basket is one timestamp, an invoice; or one
user-day where the log has no invoice time) are test users, their last basket is the truth, and the
rest of their rows train, with every other user's rows. Its validation (`validation_split`) peels the
basket before the last the same way, so every model and baseline tunes on each user's previous basket.
Every training item is ranked (re-buys allowed). Truth items never seen in training stay in the truth
(they count as misses: no model can rank them), so numbers are comparable with the shared reference
ones. `validation_split` cuts the same way inside the training period, for early stopping and tuning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from personaflow.training.data.interactions import IdMaps, Split, time_split

PURCHASE_COLUMNS = ["user_id", "item_id", "ts"]
DEFAULT_RETAIL_DIR = Path("../shared/data/online-retail")
MIN_VAL_USERS = 50  # a validation window holding fewer users is widened (validation_split)
MAX_VAL_DAYS = 180


@dataclass(frozen=True)
class PurchaseSplit(Split):
    """A `data.Split` (so every metric and model works on it) plus the exact cut timestamps."""

    cut_ts: pd.Timestamp | None = None
    last_ts: pd.Timestamp | None = None
    n_test_rows: int = 0

    def sizes(self) -> dict[str, int]:
        return {
            "train_rows": int(len(self.train)),
            "train_users": self.maps.n_users,
            "train_items": self.maps.n_items,
            "test_users": len(self.test_truth),
            "test_rows": self.n_test_rows,
            "truth_items_unrankable": self.n_truth_items_unrankable,
        }


@dataclass(frozen=True)
class LastBasketSplit(PurchaseSplit):
    """A per-user last-basket split; `validation_split` cuts it again the same way (one basket earlier)."""

    min_baskets: int = 3
    by_day: bool = False


def _checked(purchases: pd.DataFrame) -> pd.DataFrame:
    """A copy with the purchase columns typed (ts a timestamp, ids text); names what is missing or empty."""
    missing = [c for c in PURCHASE_COLUMNS if c not in purchases]
    if missing:
        raise ValueError(f"purchases frame lacks column(s) {missing}; has {list(purchases.columns)}")
    if purchases.empty:
        raise ValueError("purchases frame is empty: nothing to split")
    frame = purchases.copy()
    frame["ts"] = pd.to_datetime(frame["ts"])
    frame["user_id"] = frame["user_id"].astype(str)
    frame["item_id"] = frame["item_id"].astype(str)
    return frame


def last_basket_split(purchases: pd.DataFrame, min_baskets: int = 3, by_day: bool = False) -> LastBasketSplit:
    """Each user with >= `min_baskets` baskets: the last basket tests, earlier rows train; users with
    fewer baskets train on all their rows. `by_day`: a basket is a user-day (no invoice time in the log).
    The split's cut (what "days since" counts from) is the last training time. Memory: the purchases
    frame and one row per basket, linear in the log."""
    if min_baskets < 2:
        raise ValueError(f"min_baskets must be >= 2 (one to learn from, one to test), got {min_baskets}")
    frame = _checked(purchases)
    basket = frame["ts"].dt.floor("D") if by_day else frame["ts"]
    baskets = pd.DataFrame({"user_id": frame["user_id"], "basket": basket}).drop_duplicates()
    per_user = baskets.groupby("user_id")["basket"].agg(["count", "max"])
    cut_of = per_user.loc[per_user["count"] >= min_baskets, "max"]
    in_test = basket >= frame["user_id"].map(cut_of)  # NaT (no cut) compares False: the user trains
    if not in_test.any():
        raise ValueError(f"no user has {min_baskets} baskets: no test basket")
    train, test = frame.loc[~in_test], frame.loc[in_test]
    split = assemble(train, test, train["ts"].max(), frame["ts"].max())
    fields = {name: getattr(split, name) for name in PurchaseSplit.__dataclass_fields__}
    return LastBasketSplit(**fields, min_baskets=min_baskets, by_day=by_day)


def clean_online_retail(landing: pd.DataFrame) -> pd.DataFrame:
    """Online Retail rows in the landing layout (ingest.online_retail) -> the protocol's purchases."""
    keep = (
        landing["user_id"].notna()
        & (landing["event_type"] == "purchase")
        & (landing["quantity"] > 0)
        & (landing["price"] > 0)
    )
    out = landing.loc[keep, ["user_id", "item_id", "event_ts", "quantity"]].rename(columns={"event_ts": "ts"})
    out["ts"] = pd.to_datetime(out["ts"])
    return out.reset_index(drop=True)


def find_retail_file(folder: Path) -> Path:
    """The CSV export inside the shared data folder (a file path is accepted as is)."""
    folder = Path(folder)
    if folder.is_file():
        return folder
    if not folder.is_dir():
        raise FileNotFoundError(
            f"Online Retail data not found at {folder}: put the UCI export (CSV) there or pass its path"
        )
    files = sorted(p for p in folder.iterdir() if p.name.lower().endswith((".csv", ".csv.gz")))
    if not files:
        raise FileNotFoundError(
            f"no .csv file in {folder} (the UCI sheet saved as CSV, optionally gzipped, is expected)"
        )
    return files[0]


def load_online_retail(path: Path = DEFAULT_RETAIL_DIR) -> pd.DataFrame:
    """Read the export with the ingest parser (same dates, ids and faults), then clean it."""
    from personaflow.ingest.online_retail import read_online_retail

    landing, _ = read_online_retail(find_retail_file(path))
    return clean_online_retail(landing)


def purchases_from_events(events: pd.DataFrame) -> pd.DataFrame:
    """Synthetic-shop (or raw.events-shaped) events -> purchases; returns/views/carts dropped."""
    keep = (events["event_type"] == "purchase") & (events["quantity"] > 0) & (events["price"] > 0)
    keep &= events["user_id"].notna()
    out = events.loc[keep, ["user_id", "item_id", "event_ts", "quantity"]].rename(columns={"event_ts": "ts"})
    out["ts"] = pd.to_datetime(out["ts"])
    return out.reset_index(drop=True)


def split_purchases(purchases: pd.DataFrame, test_days: int = 30) -> PurchaseSplit:
    """Cut at last_ts - test_days; see the module docstring for the rules."""
    if test_days < 1:
        raise ValueError(f"test_days must be >= 1, got {test_days}")
    frame = _checked(purchases)
    last_ts = frame["ts"].max()
    cut_ts = last_ts - pd.Timedelta(days=test_days)
    in_train = frame["ts"] < cut_ts
    if not in_train.any():
        raise ValueError(f"no purchases before the cut {cut_ts} (last {last_ts}, test_days {test_days})")
    return assemble(frame.loc[in_train], frame.loc[~in_train], cut_ts, last_ts)


def assemble(
    train: pd.DataFrame, test: pd.DataFrame, cut_ts: pd.Timestamp, last_ts: pd.Timestamp
) -> PurchaseSplit:
    """Train and test purchases (typed as split_purchases types them) -> the protocol's split: test users
    are test rows' users who bought in training; their truth is every item they bought in the test rows."""
    train = train.sort_values("ts", kind="stable").reset_index(drop=True)
    # The columns the skeleton's models and baselines read (one purchase line = one purchase).
    train["event_date"] = train["ts"].dt.date
    train["n_purchases"] = 1
    train["weight"] = 1.0
    maps = IdMaps(user_ids=sorted(train["user_id"].unique()), item_ids=sorted(train["item_id"].unique()))
    test = test[test["user_id"].isin(maps.user_index)]
    truth = {str(u): set(items) for u, items in test.groupby("user_id")["item_id"]}
    pairs = test[["user_id", "item_id"]].drop_duplicates()
    return PurchaseSplit(
        train=train,
        test_truth=truth,
        maps=maps,
        cutoff=pd.Timestamp(cut_ts).date(),
        last_date=pd.Timestamp(last_ts).date(),
        n_truth_items_unrankable=int((~pairs["item_id"].isin(maps.item_index)).sum()),
        cut_ts=pd.Timestamp(cut_ts),
        last_ts=pd.Timestamp(last_ts),
        n_test_rows=int(len(test)),
    )


def validation_split(split: Split, val_days: int, min_users: int = MIN_VAL_USERS) -> Split:
    """The same protocol inside the training period: early stopping and tuning never see the test.

    A purchases split (benchmark) is cut again by timestamp; a nightly split of the interactions mart
    (views and carts too, `interactions.time_split`) is cut again by day, keeping its own rules.
    The window is doubled while it holds fewer than `min_users` users and doubling leaves training
    rows: a log whose customers are quiet at its end gave a dozen validation users, and early stopping
    on a dozen users follows noise (it kept epoch 1).
    A last-basket split is cut again per user, whatever `val_days`: each user's last training basket
    is the validation truth (users with at least two training baskets)."""
    if isinstance(split, LastBasketSplit):
        return last_basket_split(_purchase_rows(split.train), max(2, split.min_baskets - 1), split.by_day)
    days, best = val_days, None
    while True:
        try:
            inner = _cut_again(split, days)
        except ValueError:  # no rows left before that cut: keep the widest window that had some
            if best is None:
                raise
            return best
        best = inner
        if len(inner.test_truth) >= min_users or days >= MAX_VAL_DAYS:
            return inner
        days *= 2


def _cut_again(split: Split, days: int) -> Split:
    if isinstance(split, PurchaseSplit):
        return split_purchases(_purchase_rows(split.train), test_days=days)
    return time_split(split.train, days)


def _purchase_rows(train: pd.DataFrame) -> pd.DataFrame:
    """A split's training rows as purchases to cut again: `quantity` kept where present, because the
    re-ranker's training windows are these views, and without it their user numerics
    (features.from_purchases' monetary) counted lines while the serving split's counted units."""
    return train[[c for c in (*PURCHASE_COLUMNS, "quantity") if c in train]]
