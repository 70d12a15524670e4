"""Interactions in, a leak-free time split out.

`load_interactions` is the only I/O here; `time_split` is pure so tests can feed it tiny frames.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd

from personaflow.core import warehouse as wh

INTERACTION_COLUMNS = ["user_id", "item_id", "event_date", "n_views", "n_carts", "n_purchases", "weight"]


@dataclass(frozen=True)
class IdMaps:
    """Dense indices for the users and items seen in training (index i <-> ids[i])."""

    user_ids: list[str]
    item_ids: list[str]
    user_index: dict[str, int] = field(init=False, repr=False)
    item_index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "user_index", {u: i for i, u in enumerate(self.user_ids)})
        object.__setattr__(self, "item_index", {v: i for i, v in enumerate(self.item_ids)})

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def to_json(self) -> dict[str, list[str]]:
        return {"user_ids": list(self.user_ids), "item_ids": list(self.item_ids)}

    @classmethod
    def from_json(cls, payload: dict[str, list[str]]) -> IdMaps:
        return cls(user_ids=list(payload["user_ids"]), item_ids=list(payload["item_ids"]))


@dataclass(frozen=True)
class Split:
    """Training rows before `cutoff`; purchase truth per train user inside the hold-out window."""

    train: pd.DataFrame
    test_truth: dict[str, set[str]]
    maps: IdMaps
    cutoff: date
    last_date: date
    n_truth_items_unrankable: int


def load_interactions(warehouse: wh.Location) -> pd.DataFrame:
    """Read marts.interactions with a short-lived read-only connection (dbt may write later), less the
    (user, item) pairs the user returned in full (marts.returned_items, where the warehouse has it).

    On Spark the table (partitioned by event_date) comes to the driver in ranges of days of at most
    `spark.CHUNK_ROWS` rows (personaflow/core/spark.py `read_by_days`), never as one collect. Memory on
    the driver: the frame training fits on (O(interactions), on every engine) plus one chunk while it
    arrives, and a copy of the chunks while they are joined into one frame."""
    if not wh.exists(warehouse):
        raise FileNotFoundError(f"warehouse not found: {warehouse}")
    con = wh.connect(warehouse, read_only=True)
    try:
        columns = ", ".join(f"i.{c}" for c in INTERACTION_COLUMNS)
        anti = (
            "where not exists (select 1 from marts.returned_items r"
            " where i.user_id = r.user_id and i.item_id = r.item_id)"
            if con.table_exists("marts.returned_items")
            else ""
        )
        order = "order by event_date, user_id, item_id"
        if con.engine == "spark":
            from personaflow.core.spark import read_by_days

            where = f"{anti} and {{days}}" if anti else "where {days}"
            sql = f"select {columns} from marts.interactions i {where} {order}"
            chunks = list(read_by_days(con, "marts.interactions", "event_date", sql))
            frame = pd.concat(chunks, ignore_index=True) if chunks else con.execute(
                f"select {columns} from marts.interactions i limit 0").df()  # fmt: skip
        else:
            frame = con.execute(f"select {columns} from marts.interactions i {anti} {order}").df()
    finally:
        con.close()
    frame["event_date"] = pd.to_datetime(frame["event_date"]).dt.date
    return frame


def _check_columns(frame: pd.DataFrame) -> None:
    missing = [c for c in ("user_id", "item_id", "event_date", "n_purchases", "weight") if c not in frame]
    if missing:
        raise ValueError(f"interactions frame lacks column(s) {missing}; has {list(frame.columns)}")


def time_split(frame: pd.DataFrame, holdout_days: int) -> Split:
    """Split at cutoff = max(event_date) - holdout_days + 1.

    Train is every row strictly before the cutoff. Truth is, for users present in train, the items
    they purchased inside the hold-out window, restricted to items seen in train (nothing else can be
    ranked); the number of truth items dropped that way is reported, not hidden.
    """
    _check_columns(frame)
    if holdout_days < 1:
        raise ValueError(f"holdout_days must be >= 1, got {holdout_days}")
    if frame.empty:
        raise ValueError("interactions frame is empty: nothing to split")
    dates = pd.to_datetime(frame["event_date"]).dt.date
    last_date: date = max(dates)
    cutoff = last_date - timedelta(days=holdout_days - 1)
    in_train = dates < cutoff
    train = frame.loc[in_train].reset_index(drop=True)
    if train.empty:
        raise ValueError(
            f"no training rows before cutoff {cutoff} (last date {last_date}, holdout {holdout_days})"
        )
    holdout = frame.loc[~in_train]

    maps = IdMaps(user_ids=sorted(train["user_id"].unique()), item_ids=sorted(train["item_id"].unique()))
    bought = holdout[(holdout["n_purchases"] > 0) & holdout["user_id"].isin(maps.user_index)]
    rankable = bought["item_id"].isin(maps.item_index)
    truth: dict[str, set[str]] = {}
    for user_id, items in bought.loc[rankable].groupby("user_id")["item_id"]:
        truth[str(user_id)] = set(items)
    return Split(
        train=train,
        test_truth=truth,
        maps=maps,
        cutoff=cutoff,
        last_date=last_date,
        n_truth_items_unrankable=int(
            bought.loc[~rankable, ["user_id", "item_id"]].drop_duplicates().shape[0]
        ),
    )


def split_fingerprint(split: Split) -> str:
    """sha256 of what a model fitted and is judged on: the training rows (in any order), the cut and
    the hold-out truth. Two models with the same fingerprint learned from the same data, so a retrain
    of the same night (a cleared task, a re-run day) is not "fresher data" to the gate
    (personaflow/training/gate.py). Interactions only: a night whose catalogue alone changed counts as
    the same data, so production stays unless the retrain beats it clearly. Memory: one 8-byte hash
    per training row."""
    rows = pd.util.hash_pandas_object(split.train[sorted(split.train.columns)], index=False).to_numpy()
    digest = hashlib.sha256(np.sort(rows).tobytes())
    digest.update(split.cutoff.isoformat().encode())
    for user in sorted(split.test_truth):
        digest.update(f"\n{user}:{','.join(sorted(split.test_truth[user]))}".encode())
    return digest.hexdigest()


def positive_pairs(train: pd.DataFrame, maps: IdMaps) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (user_idx, item_idx) pairs with their summed interaction weight (> 0 only)."""
    grouped = train.groupby(["user_id", "item_id"], sort=True, observed=True)["weight"].sum().reset_index()
    grouped = grouped[grouped["weight"] > 0]
    users = grouped["user_id"].map(maps.user_index)
    items = grouped["item_id"].map(maps.item_index)
    if users.isna().any() or items.isna().any():
        bad = grouped.loc[users.isna() | items.isna(), ["user_id", "item_id"]].iloc[0].to_dict()
        raise ValueError(f"training pair {bad} is missing from the id maps")
    return (
        users.to_numpy(np.int64),
        items.to_numpy(np.int64),
        grouped["weight"].to_numpy(np.float64),
    )


def cut_time(split: Split) -> pd.Timestamp:
    """The split's cut as a timestamp: a purchases split's exact `cut_ts`, else midnight of `cutoff`."""
    cut = getattr(split, "cut_ts", None)
    return pd.Timestamp(cut) if cut is not None else pd.Timestamp(split.cutoff)


def event_times(train: pd.DataFrame) -> pd.Series:
    """Each training row's time: `ts` where the rows have one (purchases), else its `event_date`."""
    return pd.to_datetime(train["ts"] if "ts" in train else train["event_date"])
