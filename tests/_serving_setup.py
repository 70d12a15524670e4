"""A tiny promoted model, a tiny Feast store and a running `bentoml serve` over them, for serving tests.

The marts are written straight into DuckDB (like tests/integration/test_features.py) as of yesterday
(UTC), so a
live event sent today counts as "since the nightly run". Besides the model's users, the marts hold one
user the model does not know (COLD_USER, segment Champions), a segment best seller (users[2] and
users[6], both Champions, bought `segment_hit`) and co-purchase rules for items[5] (CO_PURCHASE).
marts.churn_labels has two past cut-offs (planted: 15+ days without an order = churned), so the real
segments and churn stages run before the features stage, as in the nightly DAG.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from personaflow.core import settings
from personaflow.core.settings import REPO_ROOT
from personaflow.pipeline import profiles as profiles_stage
from personaflow.pipeline.features import build_features
from personaflow.serving import process
from personaflow.serving.auth import read_token_file
from personaflow.training.data.interactions import time_split
from personaflow.training.data.synthetic import make_interactions
from personaflow.training.evaluation.baselines import popularity_ranking
from personaflow.training.models.bpr import fit_bpr
from personaflow.training.registry.pointer import promote
from personaflow.training.registry.store import save_candidate

CATEGORIES = ("toys", "home", "books")
COLD_USER = "cold-champion"
# (item index, other item index, lift, n_orders_both): two usable rules for items[5], one on too few
# orders and one below chance (both must be left out by serving).
CO_PURCHASE = [(5, 9, 2.5, 4), (5, 11, 1.5, 3), (5, 12, 3.0, 2), (5, 13, 0.8, 5), (9, 5, 2.5, 4)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_marts(
    warehouse: Path,
    users: list[str],
    items: list[str],
    as_of: date,
    purchases: list[tuple[str, str]] = (),
) -> None:
    """user_features for `users` (alternating segments), item_features for every item, one past
    purchase of items[0] by users[0] (so `purchased_items` has something) plus `purchases`, and the
    co_purchase rules of CO_PURCHASE."""
    ts = f"{as_of} 12:00:00"
    user_rows = ", ".join(
        f"('{u}', date '{as_of}', timestamp '{ts}', timestamp '{ts}', timestamp '{ts}', {n % 30}, "
        f"{1 + n % 4}, {10.0 * (n + 1)}, {1 + n % 5}, {1 + n % 5}, {1 + n % 5}, "
        f"'{'Champions' if n % 2 == 0 else 'Hibernating'}', {5 + n}, {n % 3}, {1 + n % 4}, {1 + n % 6}, "
        f"timestamp '{as_of - timedelta(days=n % 30)} 12:00:00', {1 + n % 4})"
        for n, u in enumerate(users)
    )
    # Two past cut-offs for the churn stage; planted: 15+ days without an order -> churned.
    label_rows = ", ".join(
        f"('{u}', date '{as_of - timedelta(days=90 + 30 * c)}', 90, {(3 * n + 5 * c) % 40}, {1 + n % 4}, "
        f"{10.0 * (n + 1)}, {(3 * n + 5 * c) % 40 + 10}, {1 + n % 4}, {int((3 * n + 5 * c) % 40 < 15)}, "
        f"{str((3 * n + 5 * c) % 40 >= 15).lower()})"
        for n, u in enumerate(users)
        for c in (0, 1)
    )
    item_rows = ", ".join(
        f"('{i}', '{CATEGORIES[n % len(CATEGORIES)]}', 'brand-{n % 4}', {5.0 + n}, 10, 2, 1, 1, 9.5, {n + 1})"
        for n, i in enumerate(items)
    )
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema if not exists marts")
        con.execute(
            f"""create or replace table marts.user_features as select * from (values {user_rows})
            t(user_id, as_of_date, first_event_ts, last_event_ts, last_purchase_ts, recency_days, frequency,
              monetary, r_score, f_score, m_score, rfm_segment, n_views, n_carts, n_purchases, n_sessions,
              first_purchase_ts, n_orders_90d)"""
        )
        con.execute(
            f"""create or replace table marts.churn_labels as select * from (values {label_rows})
            t(user_id, cutoff_date, horizon_days, recency_days, frequency, monetary,
              days_since_first_purchase, n_orders_90d, n_orders_in_horizon, churned)"""
        )
        con.execute(
            f"""create or replace table marts.item_features as select * from (values {item_rows})
            t(item_id, category, brand, price, n_views, n_carts, n_purchases, n_buyers, revenue,
              popularity_rank)"""
        )
        bought = ", ".join(
            f"('{u}', '{i}', date '{as_of}', timestamp '{ts}', 1, 1, 1, 1, 5.0, 9.0)"
            for u, i in [(users[0], items[0]), *purchases]
        )
        con.execute(
            f"""create or replace table marts.interactions as select * from (values {bought})
            t(user_id, item_id, event_date, last_event_ts, n_views, n_carts, n_purchases, quantity,
              revenue, weight)"""
        )
        # the usable lines the personas read (one order per bought item), as the transform builds them
        con.execute("create schema if not exists intermediate")
        con.execute(
            """create or replace table intermediate.int_events_as_of as select user_id,
            user_id || '-' || item_id as order_key, item_id, last_event_ts as event_ts,
            'purchase' as event_type, quantity, revenue, 0.0 as return_value, true as is_product
            from marts.interactions"""
        )
        con.execute(
            "create or replace table intermediate.int_items as select item_id, category "
            "from marts.item_features"
        )
        rules = ", ".join(
            f"('{items[a]}', '{items[b]}', {n}, 10, 10, 100, {n / 100}, {n / 10}, {lift}, {n / 10})"
            for a, b, lift, n in CO_PURCHASE
        )
        con.execute(
            f"""create or replace table marts.co_purchase as select * from (values {rules})
            t(item_id, other_item_id, n_orders_both, n_orders_item, n_orders_other, n_orders, support,
              confidence, lift, score)"""
        )


@contextlib.contextmanager
def running_server(
    home: Path,
    max_in_flight: int = 256,
    extra_env: dict[str, str] | None = None,
    extra_users: tuple[str, ...] = (),
) -> Iterator[dict]:
    """Train, promote, build features, serve; yields what tests need (`auth`: the headers that carry
    the server's API token); stops the server after. `extra_users`: more users in the marts (with a
    profile, unknown to the model), like COLD_USER."""
    features_dir = home / "features"
    env = {
        "BENTOML_HOME": str(home / "bentoml"),
        "PERSONAFLOW_PRODUCTION_POINTER": str(home / "production.json"),
        "PERSONAFLOW_FEATURES_DIR": str(features_dir),
        "PERSONAFLOW_LANDING_DIR": str(home / "landing"),
        "PERSONAFLOW_SERVE_MAX_IN_FLIGHT": str(max_in_flight),
        # No token set: the server generates one into this file (0600) at its first start.
        "PERSONAFLOW_API_TOKEN_FILE": str(home / "secrets" / "api_token"),
        **(extra_env or {}),
    }
    split = time_split(make_interactions(seed=31), holdout_days=7)
    model, _ = fit_bpr(split, dim=8, epochs=3, batch_size=256, seed=2, device="cpu")
    popular = popularity_ranking(split)
    as_of = datetime.now(UTC).date() - timedelta(days=1)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)

        def save(ndcg: float) -> str:
            metrics = {"ndcg_at_10": ndcg, "baseline_ndcg_at_10": 0.1}
            return save_candidate(model, split.maps, popular, metrics, {"seed": 2})

        tag = save(0.3)
        assert promote(tag, home / "production.json")["promoted"]
        users, items = split.maps.user_ids[:20], split.maps.item_ids
        segment_hit = next(i for i, _ in reversed(popular) if i != items[0])
        purchases = [(users[2], segment_hit), (users[6], segment_hit)]
        write_marts(home / "warehouse.duckdb", [*users, COLD_USER, *extra_users], items, as_of, purchases)
        # the nightly profile stages, as the DAG runs them before Feast materializes
        mp.setenv("PERSONAFLOW_WAREHOUSE", str(home / "warehouse.duckdb"))
        mp.setenv("PERSONAFLOW_REPORTS_DIR", str(home / "reports"))
        s = settings.load()
        profiles = {"segments": profiles_stage.segments(as_of, s), "churn": profiles_stage.churn(as_of, s)}
        build_features(home / "warehouse.duckdb", features_dir, REPO_ROOT / "feature_repo", as_of)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = process.start("127.0.0.1", port, env=env, log_file=home / "serve.log")
        try:
            process.wait_ready(base, timeout=120, proc=proc)
            token = read_token_file(home / "secrets" / "api_token")[0]
            yield {
                "token": token,
                "auth": {"Authorization": f"Bearer {token}"},
                "base": base,
                "tag": tag,
                "split": split,
                "popular": popular,
                "pointer": home / "production.json",
                "save": save,
                "users": users,
                "items": items,
                "segment_hit": segment_hit,
                "home": home,
                "as_of": as_of,
                "env": env,
                "profiles": profiles,
            }
        finally:
            process.stop(proc)


def promoted_bpr(tmp_path: Path, monkeypatch, n_users: int, n_items: int, n_rows: int):
    """A one-epoch BPR model promoted to production in a temp home, its settings in the environment the
    way the service reads them: (split, features_dir, production pointer, warehouse)."""
    from personaflow.training.data.interactions import time_split
    from personaflow.training.data.synthetic import make_interactions
    from personaflow.training.evaluation.baselines import popularity_ranking
    from personaflow.training.models.bpr import fit_bpr
    from personaflow.training.registry.pointer import promote
    from personaflow.training.registry.store import save_candidate

    features_dir, pointer = tmp_path / "features", tmp_path / "production.json"
    warehouse = tmp_path / "warehouse.duckdb"
    for key, value in {"BENTOML_HOME": tmp_path / "bentoml", "PERSONAFLOW_PRODUCTION_POINTER": pointer,
                       "PERSONAFLOW_FEATURES_DIR": features_dir, "PERSONAFLOW_WAREHOUSE": warehouse}.items():
        monkeypatch.setenv(key, str(value))  # fmt: skip
    monkeypatch.delenv("PERSONAFLOW_REDIS_URL", raising=False)  # the SQLite online store
    shop = make_interactions(n_users=n_users, n_items=n_items, n_rows=n_rows, seed=5)
    split = time_split(shop, holdout_days=7)
    model, _ = fit_bpr(split, dim=8, epochs=1, batch_size=512, seed=2, device="cpu")
    metrics = {"ndcg_at_10": 0.3, "baseline_ndcg_at_10": 0.1}
    tag = save_candidate(model, split.maps, popularity_ranking(split), metrics, {"seed": 2})
    assert promote(tag, pointer)["promoted"]
    return split, features_dir, pointer, warehouse

