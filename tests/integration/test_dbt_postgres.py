"""The scale path's dbt: the same project, the same raw rows, built on DuckDB (dbt-duckdb) and on a real
PostgreSQL (dbt-postgres, tests/_servers.py) gives the same marts, and what reads the marts (the features
export, Feast's entity frame, training's interactions) reads the same from both.

The shop is small and synthetic but has everything the models branch on: invoices with several lines,
cancellations, a duplicate line, a line without a customer, a non-positive quantity, postage, users and
items files, ten daily batches. Each engine first builds up to the day before the last (full), then the
last day incrementally (the `replace_days` strategy), so both materialisations are compared.
"""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from personaflow.core import warehouse as wh
from personaflow.core.settings import postgres_env
from personaflow.pipeline.features import read_marts
from personaflow.pipeline.transform import run_dbt
from personaflow.serving.tables import CO_PURCHASE_COLUMNS, export_serving_tables
from personaflow.training.data.interactions import load_interactions
from tests.integration.test_transform import PROJECT

FIRST, LAST = date(2011, 3, 1), date(2011, 3, 10)
VARS = {"churn_horizon_days": 3, "co_purchase_min_orders": 2}
# Every mart and its key: rows are compared key by key.
MARTS = {
    "interactions": ["user_id", "item_id", "event_date"],
    "user_features": ["user_id"],
    "item_features": ["item_id"],
    "sessions": ["session_id"],
    "co_purchase": ["item_id", "other_item_id"],
    "churn_labels": ["user_id", "cutoff_date"],
    "returned_items": ["user_id", "item_id"],
    "data_quality": ["batch_date", "reason"],
    "data_quality_items": ["reason"],
    "data_quality_days": ["batch_date"],
}
WORDS = ["HEART LANTERN", "CHRISTMAS BAUBLE", "TEA CUP", "PARTY BUNTING", "TOY DOLL", "GARDEN POT"]


def shop_events(seed: int = 7) -> pd.DataFrame:
    """Online-Retail-shaped invoice lines over FIRST..LAST, with the faults the staging layer flags."""
    rng = np.random.default_rng(seed)
    rows, n = [], 0
    for day in range(10):
        for invoice in range(30):
            user = f"c{rng.integers(1, 41):03d}"
            ts = datetime.combine(FIRST + timedelta(days=day), datetime.min.time()) + timedelta(
                seconds=int(rng.integers(8 * 3600, 20 * 3600))
            )
            items = rng.choice(24, size=int(rng.integers(1, 5)), replace=False)
            for item in items:
                n += 1
                rows.append((f"{day}{invoice:03d}", f"I{item:03d}", int(rng.integers(1, 6)),
                             round(float(rng.uniform(0.5, 20)), 2), user, ts))  # fmt: skip
            if invoice % 9 == 0:  # a cancellation of the invoice's first line an hour later
                first = rows[-len(items)]
                rows.append(("C" + first[0], first[1], -1, first[3], user, ts + timedelta(hours=1)))
            if invoice % 11 == 0:
                rows.append((rows[-1][0], "POST", 1, 18.0, user, ts))  # postage: not a product
    rows.append(rows[5])  # a duplicate line
    rows.append(("9999", "I001", 2, 1.25, None, datetime(2011, 3, 4, 9)))  # no customer
    rows.append(("9998", "I002", -3, 1.25, "c001", datetime(2011, 3, 4, 9)))  # not a cancellation
    frame = pd.DataFrame(rows, columns=["order_id", "item_id", "quantity", "price", "user_id", "event_ts"])
    frame["event_id"] = [f"e{i:05d}" for i in range(len(frame))]
    frame["event_type"] = np.where(frame["order_id"].str.startswith("C"), "return", "purchase")
    frame["session_id"] = frame["order_id"]
    frame["batch_date"] = frame["event_ts"].dt.date
    frame["source_file"] = "events_" + frame["batch_date"].astype(str) + ".csv"
    frame["loaded_at"] = datetime(2011, 3, 11)
    frame["description"] = [WORDS[int(i[1:]) % 6] if i != "POST" else "POSTAGE" for i in frame["item_id"]]
    frame["country"] = np.where(frame["user_id"].fillna("").str.endswith("7"), "France", "United Kingdom")
    frame["source_format"] = "online-retail"
    frame["source_row"] = np.arange(1, len(frame) + 1)
    return frame


def make_duckdb_raw(path: Path) -> Path:
    events = shop_events()
    users = pd.DataFrame({"user_id": [f"c{i:03d}" for i in range(1, 31)], "signup_date": date(2011, 1, 15),
                          "country": "United Kingdom", "age_band": "25-34"})  # fmt: skip
    items = pd.DataFrame({"item_id": [f"I{i:03d}" for i in range(18)], "category": None, "brand": "acme",
                          "price": 2.5, "description": None})  # fmt: skip
    items.loc[:5, "category"] = "home"
    days = sorted(events["batch_date"].unique())
    batches = pd.DataFrame({
        "batch_date": days, "source_file": [f"events_{d}.csv" for d in days],
        "row_count": [int((events["batch_date"] == d).sum()) for d in days],
        "sha256": "x", "status": "loaded", "loaded_at": datetime(2011, 3, 11),
    })  # fmt: skip
    with wh.connect(path) as con:
        con.execute("create schema raw")
        for name, frame in [("events", events), ("users", users), ("items", items), ("batches", batches)]:
            con.register("frame", frame)
            con.execute(f"create table raw.{name} as select * from frame")
            con.unregister("frame")
        con.execute("alter table raw.events alter quantity type integer")
        con.execute("alter table raw.items alter category type varchar")
        con.execute("alter table raw.items alter description type varchar")
    return path


def copy_raw(duck: Path, pg_url: str) -> None:
    """raw.* from the DuckDB warehouse into PostgreSQL through the adapter (Arrow -> one COPY each)."""
    with wh.connect(duck, read_only=True) as source, wh.connect(pg_url) as target:
        target.execute("create schema raw")
        for name in ("events", "users", "items", "batches"):
            target.register("frame", source.execute(f"select * from raw.{name}").arrow())
            target.execute(f"create table raw.{name} as select * from frame")


def plain(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Values as Python compares them, whatever driver types each engine returns."""
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if values.isna().all():  # no type to compare (PostgreSQL's driver gives None, DuckDB NaN or NaT)
            out[column] = np.nan
        elif values.dtype == object and values.map(lambda v: isinstance(v, Decimal)).any():
            out[column] = values.astype(float)
        elif values.dtype == object and values.map(lambda v: isinstance(v, date)).any():
            out[column] = pd.to_datetime(values)
        elif pd.api.types.is_datetime64_any_dtype(values):
            out[column] = values.astype("datetime64[us]")
        elif pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            out[column] = values.astype("float64")  # nullable ints (a NULL among them) included
    return out.sort_values(keys).reset_index(drop=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory, postgres_server):
    from personaflow.ops.local_servers import free_port

    root = tmp_path_factory.mktemp("dbt_pg")
    duck = make_duckdb_raw(root / "warehouse.duckdb")
    pg = postgres_server.create_database(f"dbt_pg_{free_port()}")
    copy_raw(duck, pg)
    runs = {}
    for name, where in (("duckdb", duck), ("postgres", pg)):
        started = time.perf_counter()
        full = run_dbt(where, LAST - timedelta(days=1), PROJECT, root / name, dbt_vars=VARS)
        nightly = run_dbt(where, LAST, PROJECT, root / name, dbt_vars=VARS)
        runs[name] = {"full": full, "nightly": nightly, "seconds": time.perf_counter() - started}
    return duck, pg, runs, root


def test_every_model_and_data_test_passes_on_both(built):
    _, _, runs, _ = built
    duck, pg = runs["duckdb"], runs["postgres"]
    for run in ("full", "nightly"):
        assert duck[run]["models"] == pg[run]["models"] == 22
        assert duck[run]["tests"] == pg[run]["tests"] and pg[run]["tests"] >= 80
        assert duck[run]["unit_tests"] == pg[run]["unit_tests"] == 7
        assert duck[run]["rows"] == pg[run]["rows"]
    assert pg["nightly"]["rows"]["marts.co_purchase"] > 0 and pg["nightly"]["rows"]["marts.churn_labels"] > 0
    assert pg["nightly"]["rows"]["marts.returned_items"] > 0


def test_postgres_marts_hold_no_numeric_columns(built):
    """PostgreSQL's sum of bigints is numeric, which its driver returns as Decimal (object columns in
    pandas, no numpy maths): every mart column is an integer, a double, text, a date or a timestamp."""
    _, pg, _, _ = built
    with wh.connect(pg, read_only=True) as con:
        numeric = con.execute(
            "select table_name, column_name from information_schema.columns "
            "where table_schema = 'marts' and data_type = 'numeric'"
        ).fetchall()
    assert numeric == []


@pytest.mark.parametrize("mart", sorted(MARTS))
def test_marts_hold_the_same_rows(built, mart):
    duck, pg, _, _ = built
    keys = MARTS[mart]
    with wh.connect(duck, read_only=True) as d, wh.connect(pg, read_only=True) as p:
        left = plain(d.execute(f"select * from marts.{mart}").df(), keys)
        right = plain(p.execute(f"select * from marts.{mart}").df(), keys)
    assert len(left) > 0
    assert list(left.columns) == list(right.columns)
    pd.testing.assert_frame_equal(left, right, check_dtype=False, rtol=1e-9, atol=1e-9)


def test_key_figures_agree(built):
    duck, pg, _, _ = built
    rfm = "select user_id, recency_days, frequency, monetary, rfm_segment from marts.user_features"
    top = ("select item_id, other_item_id, n_orders_both, lift from marts.co_purchase "
           "order by lift desc, n_orders_both desc, item_id, other_item_id limit 5")  # fmt: skip
    figures = {}
    for name, where in (("duckdb", duck), ("postgres", pg)):
        with wh.connect(where, read_only=True) as con:
            users = con.execute(f"{rfm} where user_id in ('c001', 'c007', 'c033') order by 1").fetchall()
            pairs = con.execute(top).fetchall()
        figures[name] = ([(u, int(r), int(f), round(float(m), 2), s) for u, r, f, m, s in users],
                         [(a, b, int(n), round(float(lift), 9)) for a, b, n, lift in pairs])  # fmt: skip
    assert figures["duckdb"] == figures["postgres"]
    users, pairs = figures["postgres"]
    assert [u[0] for u in users] == ["c001", "c007", "c033"] and all(u[2] >= 1 for u in users)
    assert len(pairs) == 5 and pairs[0][3] > 1


def test_features_export_and_training_reads_agree(built):
    duck, pg, _, root = built
    frames = {}
    for name, where in (("duckdb", duck), ("postgres", pg)):
        out = root / f"features-{name}"
        with wh.connect(where, read_only=True) as con:
            users, items, purchases = read_marts(con)
            counts = export_serving_tables(con, out)
        frames[name] = {
            "users": plain(users, ["user_id"]), "items": plain(items, ["item_id"]),
            "purchases": purchases.sort_values(list(purchases.columns)).reset_index(drop=True),
            "co": pd.read_parquet(out / "co_purchase.parquet"),
            "segments": pd.read_parquet(out / "segment_popularity.parquet"),
            "interactions": plain(load_interactions(where), ["user_id", "item_id", "event_date"]),
            "counts": counts,
        }  # fmt: skip
    duck_f, pg_f = frames["duckdb"], frames["postgres"]
    assert duck_f["counts"] == pg_f["counts"] and pg_f["counts"]["co_purchase_rows"] > 0
    assert list(pg_f["co"].columns) == CO_PURCHASE_COLUMNS
    assert str(pg_f["purchases"]["event_timestamp"].dtype) == "datetime64[ns, UTC]"
    for part in ("users", "items", "purchases", "co", "segments", "interactions"):
        pd.testing.assert_frame_equal(duck_f[part], pg_f[part], check_dtype=False, rtol=1e-9, obj=part)
    assert len(pg_f["interactions"]) > 0


def test_stage_readers_read_the_same_from_either_engine(built, tmp_path):
    """The stages pick the engine from the settings alone (PERSONAFLOW_WAREHOUSE_URL set or not)."""

    from personaflow.core import settings
    from personaflow.ops import demo
    from personaflow.pipeline import _common as pipeline_common
    from personaflow.pipeline import audiences as audience_stage
    from personaflow.pipeline.abtest import purchases_since
    from personaflow.report.nightly import _query

    duck, pg, _, _ = built
    base = settings.load().model_copy(update={
        "home": tmp_path, "features_dir": tmp_path / "features", "landing_dir": tmp_path / "landing",
        "warehouse": duck,
    })  # fmt: skip
    seen = {}
    for name, s in (("duckdb", base), ("postgres", base.model_copy(update={"warehouse_url": pg}))):
        profile, bought, as_of = audience_stage.load_inputs(s)
        seen[name] = {
            "mart": plain(pipeline_common.read_mart(wh.location(s), "select * from marts.churn_labels", []),
                          MARTS["churn_labels"]),
            "report": plain(_query(s, "select * from marts.data_quality_days where batch_date <= $1", [LAST]),
                            ["batch_date"]),
            "missing": _query(s, "select * from marts.no_such_mart"),
            "profile": plain(profile, ["user_id"]), "bought": plain(bought, ["user_id", "item_id"]),
            "as_of": as_of, "counts": demo.table_counts(s),
            "purchases": plain(purchases_since(s, pd.Timestamp(LAST)), ["user_id", "item_id", "ts"]),
        }  # fmt: skip
    assert seen["postgres"]["as_of"] == seen["duckdb"]["as_of"] == LAST
    assert seen["postgres"]["missing"] is None  # a mart not built yet reads as nothing on both
    assert seen["postgres"]["counts"] == seen["duckdb"]["counts"] and seen["postgres"]["counts"]["raw.events"]
    assert len(seen["postgres"]["purchases"]) > 0
    for part in ("mart", "report", "profile", "bought", "purchases"):
        pd.testing.assert_frame_equal(seen["duckdb"][part], seen["postgres"][part], check_dtype=False,
                                      obj=part)  # fmt: skip
    with pytest.raises(ValueError, match="no_such_mart"):
        pipeline_common.read_mart(pg, "select * from marts.no_such_mart", [])


def test_postgres_env_comes_from_the_url():
    env = postgres_env("postgresql://ana:p%40ss@db.example:6543/shop?schema=dbt")
    assert env == {
        "PERSONAFLOW_PG_HOST": "db.example", "PERSONAFLOW_PG_PORT": "6543", "PERSONAFLOW_PG_USER": "ana",
        "PERSONAFLOW_PG_PASSWORD": "p@ss", "PERSONAFLOW_PG_DBNAME": "shop", "PERSONAFLOW_PG_SCHEMA": "dbt",
    }  # fmt: skip
    assert postgres_env("postgresql://u@h/d")["PERSONAFLOW_PG_PORT"] == "5432"
    with pytest.raises(ValueError, match="postgresql://"):
        postgres_env("mysql://u@h/d")


def test_a_failing_postgres_build_names_the_node(built, tmp_path):
    """A model that does not build on PostgreSQL fails loudly, naming the node; the env is put back."""
    from personaflow.pipeline.transform import TransformError

    _, pg, _, _ = built
    with wh.connect(pg) as con:
        con.execute("alter table raw.items rename to items_gone")
    try:
        with pytest.raises(TransformError, match="stg_items"):
            run_dbt(pg, LAST, PROJECT, tmp_path / "state", select="stg_items int_items", dbt_vars=VARS)
    finally:
        with wh.connect(pg) as con:
            con.execute("alter table raw.items_gone rename to items")
    import os

    assert "PERSONAFLOW_PG_HOST" not in os.environ
