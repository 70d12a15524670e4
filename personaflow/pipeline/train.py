"""The train stage: fit the nightly recipe on the marts and save it as a candidate with the gate's
evidence."""

from __future__ import annotations

from typing import Any

from personaflow.core import warehouse as wh
from personaflow.core.settings import Settings
from personaflow.core.warehouse import location
from personaflow.pipeline._common import read_mart


def train(
    s: Settings,
    epochs: int = 20,
    dim: int = 64,
    model: str | None = None,
    hybrid: bool | None = None,
    rerank: bool | None = None,
) -> dict[str, Any]:
    """Fit the recommender (settings' model unless given; "auto", the default, chooses the recipe on the
    shop's validation window: personaflow/training/choice.py) on a time-based split; save it as a
    candidate with its metrics and the gate's evidence."""
    from personaflow.training.pipeline import train_candidate

    where = location(s)
    return train_candidate(
        where, s.holdout_days, s.seed, epochs=epochs, dim=dim, reports_dir=s.reports_dir / "training",
        pointer_path=s.production_pointer, model=model or s.model,
        hybrid=s.hybrid if hybrid is None else hybrid, rerank=s.rerank if rerank is None else rerank,
        features=features(s), customers=customers(s),
    )  # fmt: skip


def features(s: Settings) -> Any:
    """The nightly feature source (Feast as of each split's cut, with the catalogue as fallback):
    what the train stage fits re-rankers with, and what the promote stage re-fits them with."""
    from personaflow.training.data.features import nightly_source

    where = location(s)
    catalogue = read_mart(where, "select item_id, category, brand, price from marts.item_features", [])
    offline = where if wh.is_spark(where) else None  # Feast's Spark offline store (the features stage)
    return nightly_source(s.feature_repo_dir, s.features_dir, catalogue.set_index("item_id"), offline)


def customers(s: Settings) -> Any:
    """The shop's customer table (every version, with valid_from) for the re-ranker's demographics
    (tried, kept only where they pay: personaflow/training/choice.py); None without one."""
    where = location(s)
    if wh.is_spark(where) or not wh.exists(where):  # the customers import is not on Spark yet
        return None
    with wh.connect(where, read_only=True) as con:
        if not con.table_exists("raw.customers"):
            return None
        return con.execute("select * from raw.customers").df().astype({"user_id": str})
