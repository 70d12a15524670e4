"""Tiny warehouse builder for tests: landing CSVs and the raw/marts tables as the data contract says.

Deliberately independent of personaflow/ingest/load.py so the quality tests pin the contract, not the loader.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

RAW_DDL = """
CREATE SCHEMA IF NOT EXISTS raw;
CREATE TABLE IF NOT EXISTS raw.events (
    event_id VARCHAR, user_id VARCHAR, item_id VARCHAR, event_type VARCHAR, event_ts TIMESTAMP,
    session_id VARCHAR, quantity INTEGER, price DOUBLE, batch_date DATE, source_file VARCHAR,
    loaded_at TIMESTAMP, order_id VARCHAR, description VARCHAR, country VARCHAR, source_format VARCHAR,
    source_row BIGINT
); CREATE TABLE IF NOT EXISTS raw.batches (
    batch_date DATE PRIMARY KEY, source_file VARCHAR, row_count BIGINT, sha256 VARCHAR,
    status VARCHAR, loaded_at TIMESTAMP
);
"""


def make_events(batch_date: date, n: int, seed: int = 0) -> pd.DataFrame:
    """`n` valid events inside `batch_date`, as the generator writes them."""
    rng = np.random.default_rng(seed)
    day = pd.Timestamp(batch_date)
    return pd.DataFrame(
        {
            "event_id": [f"e{batch_date:%Y%m%d}-{i:07d}" for i in range(n)],
            "user_id": [f"u{u:06d}" for u in rng.integers(1, 500, n)],
            "item_id": [f"i{i:05d}" for i in rng.integers(1, 200, n)],
            "event_type": rng.choice(["view", "cart", "purchase"], n, p=[0.8, 0.15, 0.05]),
            "event_ts": (day + pd.to_timedelta(rng.integers(0, 86_400, n), unit="s")).strftime(
                "%Y-%m-%d %H:%M:%S"
            ),
            "session_id": [f"s{s:07d}" for s in rng.integers(1, max(2, n // 5), n)],
            "quantity": rng.integers(1, 4, n),
            "price": np.round(rng.uniform(1.0, 300.0, n), 2),
        }
    )


def write_landing(events: pd.DataFrame, landing_dir: Path, batch_date: date) -> Path:
    path = landing_dir / "events" / f"events_{batch_date.isoformat()}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    events.to_csv(path, index=False)
    return path


def load_batch(warehouse: Path, csv_path: Path, batch_date: date) -> int:
    """Idempotent load of one landing CSV into raw.events + raw.batches (one transaction)."""
    sha = hashlib.sha256(csv_path.read_bytes()).hexdigest()
    con = duckdb.connect(str(warehouse))
    try:
        con.execute(RAW_DDL)
        con.execute("BEGIN TRANSACTION")
        con.execute("DELETE FROM raw.events WHERE batch_date = ?", [batch_date])
        # all_varchar + explicit casts: a corrupted file must load so that the checks can see it.
        con.execute(
            """
            INSERT INTO raw.events (event_id, user_id, item_id, event_type, event_ts, session_id, quantity,
                                    price, batch_date, source_file, loaded_at, source_format, source_row)
            SELECT event_id, user_id, item_id, event_type, CAST(event_ts AS TIMESTAMP), session_id,
                   CAST(quantity AS INTEGER), CAST(price AS DOUBLE), ?::DATE, ?, now()::TIMESTAMP,
                   'synthetic', row_number() OVER ()
            FROM read_csv(?, header = true, all_varchar = true)
            """,
            [batch_date, str(csv_path), str(csv_path)],
        )
        [(n,)] = con.execute("SELECT count(*) FROM raw.events WHERE batch_date = ?", [batch_date]).fetchall()
        con.execute("DELETE FROM raw.batches WHERE batch_date = ?", [batch_date])
        con.execute(
            "INSERT INTO raw.batches VALUES (?, ?, ?, ?, 'loaded', now()::TIMESTAMP)",
            [batch_date, str(csv_path), n, sha],
        )
        con.execute("COMMIT")
    finally:
        con.close()
    return n


def write_marts(warehouse: Path, as_of: date, n_users: int = 50, n_items: int = 20) -> None:
    """Valid marts.user_features / marts.item_features for `as_of` (only the columns the checks read
    plus the keys; the real marts come from dbt)."""
    rng = np.random.default_rng(1)
    last = datetime.combine(as_of, datetime.min.time()) + timedelta(hours=23)
    users = pd.DataFrame(
        {
            "user_id": [f"u{i:06d}" for i in range(n_users)],
            "as_of_date": pd.Timestamp(as_of),
            "last_event_ts": [last - timedelta(days=int(d)) for d in rng.integers(0, 30, n_users)],
            "recency_days": rng.integers(0, 30, n_users),
            "frequency": rng.integers(0, 10, n_users),
            "monetary": np.round(rng.uniform(0, 500, n_users), 2),
            "gross_monetary": np.round(rng.uniform(500, 600, n_users), 2),
            "r_score": rng.integers(1, 6, n_users),
            "f_score": rng.integers(1, 6, n_users),
            "m_score": rng.integers(1, 6, n_users),
        }
    )
    items = pd.DataFrame(
        {
            "item_id": [f"i{i:05d}" for i in range(n_items)],
            "revenue": np.round(rng.uniform(0, 1000, n_items), 2),
            "popularity_rank": np.arange(1, n_items + 1),
        }
    )
    con = duckdb.connect(str(warehouse))
    try:
        con.execute("CREATE SCHEMA IF NOT EXISTS marts")
        con.register("users_df", users)
        con.register("items_df", items)
        con.execute(
            "CREATE OR REPLACE TABLE marts.user_features AS SELECT * REPLACE "
            "(as_of_date::DATE AS as_of_date, r_score::INTEGER AS r_score, f_score::INTEGER AS f_score, "
            "m_score::INTEGER AS m_score) FROM users_df"
        )
        con.execute("CREATE OR REPLACE TABLE marts.item_features AS SELECT * FROM items_df")
    finally:
        con.close()


def execute(warehouse: Path, sql: str, params: list | None = None) -> list[tuple]:
    """One statement on a short-lived connection (the code under test opens its own)."""
    con = duckdb.connect(str(warehouse))
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()
