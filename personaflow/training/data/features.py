"""User and item feature tables for the feature-aware models (two-tower, DeepFM), from either source.

One contract, two sources:
- `from_feast`: the nightly path. Feast's point-in-time join (`get_historical_features`) of the
  `user_profile` and `item_stats` views at the training cut, so a model trained on the period before
  the cut never sees a feature value computed after it.
- `from_purchases`: the benchmark path (retail-30d on a purchases log, where there is no warehouse): the
  same kind of profile computed from the split's training rows alone (so it is leak-free by
  construction), plus a catalogue when the data has one.

`encode` turns either into dense arrays aligned with a split's `IdMaps`: standardised log1p numerics and
integer-coded categoricals (code 0 = unknown/missing), ready for embedding tables.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from personaflow.core.spark import SparkWarehouse
from personaflow.training.data.interactions import IdMaps, cut_time

log = logging.getLogger(__name__)

FEAST_USER_NUMERIC = (
    "recency_days", "frequency", "monetary", "r_score", "f_score", "m_score",
    "n_views", "n_carts", "n_purchases", "n_sessions",
)  # fmt: skip
FEAST_USER_CATEGORICAL = ("rfm_segment",)
FEAST_ITEM_NUMERIC = ("price", "item_n_views", "item_n_purchases", "item_n_buyers", "popularity_rank")
FEAST_ITEM_CATEGORICAL = ("category", "brand")


@dataclass(frozen=True)
class FeatureTables:
    """`users` indexed by user_id, `items` by item_id; the column-name tuples say which is which."""

    users: pd.DataFrame
    items: pd.DataFrame
    user_numeric: tuple[str, ...]
    user_categorical: tuple[str, ...]
    item_numeric: tuple[str, ...]
    item_categorical: tuple[str, ...]


@dataclass(frozen=True)
class Encoded:
    """Arrays aligned with IdMaps: row i of user_* is maps.user_ids[i]; of item_*, maps.item_ids[i]."""

    user_num: np.ndarray  # float32 (n_users, n_user_numeric)
    user_cat: np.ndarray  # int64 (n_users, n_user_categorical), 0 = missing
    item_num: np.ndarray  # float32 (n_items, n_item_numeric)
    item_cat: np.ndarray  # int64 (n_items, n_item_categorical), 0 = missing
    user_cardinality: tuple[int, ...]  # embedding table size per user categorical (incl. code 0)
    item_cardinality: tuple[int, ...]


def from_purchases(
    train: pd.DataFrame, as_of: pd.Timestamp, catalogue: pd.DataFrame | None = None
) -> FeatureTables:
    """RFM-style user profile and item stats from purchase rows (user_id, item_id, ts, quantity[, price]).

    `catalogue` (optional, indexed by item_id) contributes category, brand and price columns.
    """
    frame = train.copy()
    if "n_purchases" in frame:  # the interactions mart (nightly split): its purchase rows only
        frame = frame.loc[frame["n_purchases"] > 0].copy()
    frame["ts"] = pd.to_datetime(frame["ts"] if "ts" in frame else frame["event_date"])
    qty = frame["quantity"].astype(float) if "quantity" in frame else pd.Series(1.0, index=frame.index)
    if "price" in frame:
        frame["spend"] = qty * frame["price"].astype(float)
    elif catalogue is not None and "price" in catalogue:
        frame["spend"] = qty * frame["item_id"].map(catalogue["price"]).astype(float).fillna(0.0)
    else:
        frame["spend"] = qty
    frame["day"] = frame["ts"].dt.floor("D")
    by_user = frame.groupby("user_id")
    users = pd.DataFrame(
        {
            "recency_days": (as_of - by_user["ts"].max()).dt.days,
            "tenure_days": (as_of - by_user["ts"].min()).dt.days,
            "frequency": by_user["day"].nunique(),
            "monetary": by_user["spend"].sum(),
            "n_purchases": by_user.size(),
            "n_items": by_user["item_id"].nunique(),
        }
    )
    by_item = frame.groupby("item_id")
    items = pd.DataFrame(
        {
            "item_n_purchases": by_item.size(),
            "item_n_buyers": by_item["user_id"].nunique(),
            "item_recency_days": (as_of - by_item["ts"].max()).dt.days,
            "item_age_days": (as_of - by_item["ts"].min()).dt.days,
        }
    )
    item_categorical: tuple[str, ...] = ()
    user_categorical: tuple[str, ...] = ()
    if catalogue is not None:
        for column in ("category", "brand", "price"):
            if column in catalogue:
                items[column] = items.index.map(catalogue[column])
        item_categorical = tuple(c for c in ("category", "brand") if c in items)
        if "category" in items:  # the user's most-bought category: the taste a shop segments by
            cats = frame.assign(category=frame["item_id"].map(catalogue["category"]))
            top = cats.groupby(["user_id", "category"]).size().reset_index(name="n")
            top = top.sort_values(["user_id", "n", "category"], ascending=[True, False, True])
            users["favourite_category"] = top.drop_duplicates("user_id").set_index("user_id")["category"]
            user_categorical = ("favourite_category",)
    user_numeric = tuple(c for c in users.columns if c not in user_categorical)
    item_numeric = tuple(c for c in items.columns if c not in item_categorical)
    return FeatureTables(users, items, user_numeric, user_categorical, item_numeric, item_categorical)


def from_feast(
    repo_dir: Path,
    features_dir: Path,
    user_ids: list[str],
    item_ids: list[str],
    as_of: pd.Timestamp,
    offline: SparkWarehouse | None = None,
) -> FeatureTables:
    """Point-in-time features at `as_of` for every user and item, through Feast's offline store (its
    Spark store on the `offline` warehouse: the joins run there, O(users + items) come back)."""
    from personaflow.core.feature_store import feast_on_spark, open_store

    if offline is None:
        return _from_feast(open_store(repo_dir, features_dir), user_ids, item_ids, as_of)
    with feast_on_spark(offline):
        return _from_feast(open_store(repo_dir, features_dir, offline=offline), user_ids, item_ids, as_of)


def _from_feast(store: Any, user_ids: list[str], item_ids: list[str], as_of: pd.Timestamp) -> FeatureTables:
    ts = pd.Timestamp(as_of).tz_localize("UTC") if pd.Timestamp(as_of).tzinfo is None else pd.Timestamp(as_of)

    def _join(key: str, ids: list[str], view: str, columns: tuple[str, ...]) -> pd.DataFrame:
        entity = pd.DataFrame({key: ids, "event_timestamp": ts})
        refs = [f"{view}:{c}" for c in columns]
        out = store.get_historical_features(entity_df=entity, features=refs).to_df()
        return out.set_index(key)[list(columns)].reindex(ids)

    users = _join("user_id", user_ids, "user_profile", FEAST_USER_NUMERIC + FEAST_USER_CATEGORICAL)
    items = _join("item_id", item_ids, "item_stats", FEAST_ITEM_NUMERIC + FEAST_ITEM_CATEGORICAL)
    return FeatureTables(
        users, items, FEAST_USER_NUMERIC, FEAST_USER_CATEGORICAL, FEAST_ITEM_NUMERIC, FEAST_ITEM_CATEGORICAL
    )


# A split in, its features as of its own cut out: the validation view (an earlier cut) gets features
# as of that earlier cut, so early stopping and tuning are point-in-time correct too.
FeatureSource = Callable[[Any], FeatureTables]


def purchases_source(catalogue: pd.DataFrame | None = None) -> FeatureSource:
    """Features computed from each split's own training rows (benchmark path)."""
    return lambda split: from_purchases(split.train, cut_time(split), catalogue)


def feast_source(repo_dir: Path, features_dir: Path, offline: SparkWarehouse | None = None) -> FeatureSource:
    """Features read from Feast as of each split's cut (nightly path; `offline`: a Spark warehouse)."""
    return lambda split: from_feast(
        repo_dir, features_dir, split.maps.user_ids, split.maps.item_ids, cut_time(split), offline
    )


def nightly_source(
    repo_dir: Path,
    features_dir: Path,
    catalogue: pd.DataFrame | None,
    offline: SparkWarehouse | None = None,
) -> FeatureSource:
    """Feast as of the split's cut; when Feast holds no snapshot that old (a first run over a history
    loaded at once, not night by night), the same features computed from the split's training rows.
    `offline`: the Spark warehouse whose Feast offline store the features stage filled."""
    feast = feast_source(repo_dir, features_dir, offline)

    def source(split: Any) -> FeatureTables:
        tables = feast(split)
        covered = float(tables.users.notna().any(axis=1).mean()) if len(tables.users) else 0.0
        if covered >= 0.5:
            return tables
        log.warning(
            "Feast has user features as of %s for %.0f%% of users: using features computed from the "
            "training rows instead", cut_time(split), covered * 100,
        )  # fmt: skip
        return from_purchases(split.train, cut_time(split), catalogue)

    return source


DEMOGRAPHIC_USER_CATEGORICAL = ("age_band", "income_band", "household")


def with_demographics(source: FeatureSource, customers: pd.DataFrame) -> FeatureSource:
    """`source`'s tables plus each user's demographic bands (age, income, household:
    personaflow/profiles/demographics.py) as of the split's cut, as user categorical features. Point in
    time: a customer version dated after the cut is never seen. A user without a record reads
    "unknown", a code of its own (two thirds of The Complete Journey's households have none).
    Memory: O(users) more per table."""
    from dataclasses import replace

    from personaflow.profiles.demographics import for_customers

    def source_with(split: Any) -> FeatureTables:
        tables = source(split)
        ids = [str(u) for u in tables.users.index]
        demo = for_customers(ids, customers, cut_time(split)).set_index("user_id").reindex(ids)
        users = tables.users.assign(
            **{c: demo[c].fillna("unknown").to_numpy() for c in DEMOGRAPHIC_USER_CATEGORICAL}
        )
        return replace(
            tables, users=users, user_categorical=tables.user_categorical + DEMOGRAPHIC_USER_CATEGORICAL
        )

    return source_with


def _numeric(frame: pd.DataFrame, columns: tuple[str, ...], ids: list[str]) -> np.ndarray:
    if not columns:
        return np.zeros((len(ids), 0), dtype=np.float32)
    raw = frame.reindex(ids)[list(columns)].apply(pd.to_numeric, errors="coerce").astype(float)
    # log1p of the magnitude: counts and spend are heavy-tailed; missing -> the column's median
    x = np.sign(raw) * np.log1p(raw.abs())
    x = x.fillna(x.median()).fillna(0.0).to_numpy()
    std = x.std(axis=0)
    return ((x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)).astype(np.float32)


def _categorical(frame: pd.DataFrame, columns: tuple[str, ...], ids: list[str]) -> tuple[np.ndarray, tuple]:
    codes, sizes = [], []
    for column in columns:
        values = frame.reindex(ids)[column]
        vocab = {v: n + 1 for n, v in enumerate(sorted(values.dropna().astype(str).unique()))}
        codes.append(values.map(lambda v, vocab=vocab: vocab.get(str(v), 0) if pd.notna(v) else 0))
        sizes.append(len(vocab) + 1)
    if not codes:
        return np.zeros((len(ids), 0), dtype=np.int64), ()
    return np.stack([c.to_numpy(np.int64) for c in codes], axis=1), tuple(sizes)


def encode(tables: FeatureTables, maps: IdMaps) -> Encoded:
    """Dense, model-ready arrays in the order of `maps` (users/items absent from a table -> missing)."""
    user_cat, user_sizes = _categorical(tables.users, tables.user_categorical, maps.user_ids)
    item_cat, item_sizes = _categorical(tables.items, tables.item_categorical, maps.item_ids)
    return Encoded(
        user_num=_numeric(tables.users, tables.user_numeric, maps.user_ids),
        user_cat=user_cat,
        item_num=_numeric(tables.items, tables.item_numeric, maps.item_ids),
        item_cat=item_cat,
        user_cardinality=user_sizes,
        item_cardinality=item_sizes,
    )
