"""`personaflow forget USER_ID`: erase one customer from everything the platform keeps (GDPR art. 17).

Everything lives under the platform's home, so that is where we look, every byte of it:
- landing day files, the users file, live event logs, quarantine copies: the customer's rows are
  removed (files rewritten in place, atomically);
- the warehouse (raw, quarantine, staging, marts): their rows deleted, any text quoting them
  rewritten; DuckDB: then the file is rebuilt from its live data (`COPY FROM DATABASE`), because DuckDB
  keeps freed blocks and a deleted row would still be in the file's bytes; PostgreSQL
  (PERSONAFLOW_WAREHOUSE_URL): in one transaction, then `VACUUM FULL` rewrites the tables touched
  without the dead rows (the server's WAL archive and backups are the operator's to expire);
- Feast offline snapshots (Parquet): their rows dropped; the SQLite online store: their keys
  deleted, then VACUUM; on Redis (PERSONAFLOW_REDIS_URL): their Feast hash and live counters deleted;
- served models: their id replaced by a tombstone and their vector rows zeroed, in every version;
- every other file that quotes them (alert emails, quality reports, GX Data Docs, Airflow and dbt
  logs, any SQLite file): the id replaced by the tombstone.
The customer is then remembered only as a keyed hash (personaflow/core/forgotten.py): `forgotten.json`
lets imports, the loader and the API refuse them if a shop sends them again, and `audit/forget.jsonl`
records when, what hash, and how much was removed where. A
file that still holds the id after all of this is reported, never silently left.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from personaflow.core import warehouse as wh
from personaflow.core.forgotten import atomic_write, drop_lines, subject
from personaflow.core.settings import Settings

BEFORE, AFTER = rb"(?<![A-Za-z0-9_.\-])", rb"(?![A-Za-z0-9_]|\.[1-9])"
# formats cleaned by their own step (SQLite's WAL files: by the checkpoint in _sqlite)
HANDLED = {".duckdb", ".wal", ".parquet", ".pt", ".npz", ".npy", ".db-wal", ".db-shm"}


def _pattern(user_id: str) -> re.Pattern[bytes]:
    # whole ids only: forgetting 1785 must not touch 17850 nor the digits of a price like 0.1785;
    # "17850.0" (a customer id written as a float) is the id
    return re.compile(BEFORE + re.escape(user_id.encode()) + AFTER)


def _jsonl_rows(path: Path, user_id: str) -> int:
    lines = path.read_bytes().splitlines(keepends=True)
    kept = [ln for ln in lines if _safe_json(ln).get("user_id") != user_id]
    if len(kept) != len(lines):
        atomic_write(path, b"".join(kept))
    return len(lines) - len(kept)


def _safe_json(line: bytes) -> dict:
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _id_regex(user_id: str) -> str:
    """The whole id in SQL text (both engines' regexes read it): see _pattern."""
    return r"(^|[^A-Za-z0-9_.\-])" + re.escape(user_id) + r"([^A-Za-z0-9_.]|\.0|$)"


def _warehouse_pg(url: str, user_id: str, tombstone: str) -> int:
    """PostgreSQL: delete the customer's rows and rewrite text quoting them in every base table of the
    warehouse, in one transaction; then VACUUM FULL the tables touched so no dead row keeps them."""
    pattern = _id_regex(user_id)
    removed, touched = 0, set()
    with wh.connect(url) as con:
        columns = con.execute(
            "select c.table_schema, c.table_name, c.column_name, c.data_type "
            "from information_schema.columns c join information_schema.tables t "
            "using (table_schema, table_name) where t.table_type = 'BASE TABLE' "
            "and c.table_schema not in ('pg_catalog', 'information_schema')"
        ).fetchall()
        tables: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for schema, table, column, kind in columns:
            tables.setdefault((schema, table), []).append((column, kind))
        con.begin()
        try:
            for (schema, table), cols in tables.items():
                name = f'"{schema}"."{table}"'
                if any(c == "user_id" for c, _ in cols):
                    where = "where user_id::text = ?"
                    [(n,)] = con.execute(f"select count(*) from {name} {where}", [user_id]).fetchall()
                    if n:
                        con.execute(f"delete from {name} {where}", [user_id])
                        removed, touched = removed + n, touched | {name}
                for column, kind in cols:
                    if kind not in ("text", "character varying"):
                        continue
                    where = f'where "{column}" ~ ?'
                    [(n,)] = con.execute(f"select count(*) from {name} {where}", [pattern]).fetchall()
                    if n:
                        con.execute(
                            f'update {name} set "{column}" = regexp_replace("{column}", ?, ?, \'g\') {where}',
                            [pattern, rf"\1{tombstone}\2", pattern],
                        )
                        touched.add(name)
            con.commit()
        except BaseException:
            con.rollback()
            raise
        for name in sorted(touched):
            con.execute(f"vacuum full {name}")
    return removed


def _warehouse(path: wh.Location, user_id: str, tombstone: str) -> int:
    """Delete the customer's rows everywhere, rewrite text quoting them, rebuild the file."""
    if wh.is_postgres(path):
        return _warehouse_pg(str(path), user_id, tombstone)
    if not path.exists():
        return 0
    removed = 0
    pattern = _id_regex(user_id)
    with duckdb.connect(str(path)) as con:
        con.execute("set enable_progress_bar = false")
        columns = con.execute(
            "select c.table_schema, c.table_name, c.column_name, c.data_type "
            "from information_schema.columns c join information_schema.tables t "
            "using (table_schema, table_name) where t.table_type = 'BASE TABLE'"
        ).fetchall()
        tables: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for schema, table, column, kind in columns:
            tables.setdefault((schema, table), []).append((column, kind))
        for (schema, table), cols in tables.items():
            name = f'"{schema}"."{table}"'
            if any(c == "user_id" for c, _ in cols):
                [(n,)] = con.execute(f"select count(*) from {name} where user_id = ?", [user_id]).fetchall()
                con.execute(f"delete from {name} where user_id = ?", [user_id])
                removed += n
            for column, kind in cols:
                if kind == "VARCHAR":
                    con.execute(
                        f'update {name} set "{column}" = regexp_replace("{column}", ?, ?, \'g\') '
                        f'where regexp_matches("{column}", ?)',
                        [pattern, rf"\1{tombstone}\2", pattern],
                    )
        con.execute("checkpoint")
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        fresh = Path(tmp) / path.name  # same file name: views name the catalogue after it
        with duckdb.connect() as con:
            con.execute("set enable_progress_bar = false")
            con.execute(f"attach '{path}' as old (read_only)")
            con.execute(f"attach '{fresh}' as fresh")
            con.execute("copy from database old to fresh")
        os.replace(fresh, path)
    return removed


def _parquet(path: Path, user_id: str) -> int:
    frame = pd.read_parquet(path)
    if "user_id" not in frame:
        return 0
    keep = frame["user_id"].astype(str) != user_id
    if keep.all():
        return 0
    frame[keep].to_parquet(path.with_name(f".{path.name}.forget"), index=False)
    os.replace(path.with_name(f".{path.name}.forget"), path)
    return int((~keep).sum())


def _sqlite(path: Path, user_id: str, tombstone: str) -> int:
    """Feast's online store keys rows by a serialized entity key holding the id: delete those; replace
    the id in any text column; VACUUM so freed pages do not keep it."""
    removed = 0
    needle = user_id.encode()
    con = sqlite3.connect(path)
    try:
        for (table,) in con.execute("select name from sqlite_master where type = 'table'").fetchall():
            info = con.execute(f'pragma table_info("{table}")').fetchall()
            for _, column, kind, *_ in info:
                if column == "entity_key":
                    removed += con.execute(
                        f'delete from "{table}" where instr("{column}", ?) > 0', [needle]
                    ).rowcount
                elif kind.upper() in ("TEXT", "VARCHAR", ""):
                    con.execute(
                        f'update "{table}" set "{column}" = replace("{column}", ?, ?) '
                        f'where instr("{column}", ?) > 0',
                        [user_id, tombstone, user_id],
                    )
        con.commit()
        con.execute("vacuum")
        # The serving API keeps the online store in WAL mode: fold the log (holding the old pages) back
        # into the file and empty it. A server reading at that moment can keep it: then the final scan
        # reports the -wal file, never a byte-patched log.
        con.execute("pragma wal_checkpoint(truncate)")
    finally:
        con.close()
    return removed


def _models(models_dir: Path, user_id: str, tombstone: str) -> int:
    """Every saved version: the id becomes the tombstone, its vector and history rows become zero."""
    import scipy.sparse as sp
    import torch

    changed = 0
    for ids_file in models_dir.glob("*/*/ids.json"):
        ids = json.loads(ids_file.read_text())
        users = ids.get("user_ids", [])
        if user_id not in users:
            continue
        row = users.index(user_id)
        users[row] = tombstone
        folder = ids_file.parent
        state_file = folder / "state_dict.pt"
        if state_file.exists():
            state = torch.load(state_file, weights_only=True)
            state["user_emb.weight"][row] = 0
            torch.save(state, state_file)
        for name in ("history.npz", "rerank.npz"):  # users x items (repeat-buy history, frozen re-ranking)
            if (folder / name).exists():
                matrix = sp.load_npz(folder / name).tolil()
                matrix[row, :] = 0
                sp.save_npz(folder / name, matrix.tocsr())
        fill = folder / "history_fill.npy"
        if fill.exists():
            values = np.load(fill)
            if values.ndim == 1 and len(values) == len(users):
                values[row] = 0
                np.save(fill, values)
        atomic_write(ids_file, json.dumps(ids).encode())
        changed += 1
    return changed


def forget_user(user_id: str, s: Settings) -> dict[str, Any]:
    """Erase `user_id` from everything under the home; returns what was removed where."""
    user_id = user_id.strip()
    if not user_id:
        raise ValueError("forget: USER_ID is empty")
    who = subject(user_id, s)
    tombstone = f"forgotten-{who[:12]}"
    pattern = _pattern(user_id)
    counts: dict[str, int] = {"landing_rows": 0, "live_rows": 0, "parquet_rows": 0, "online_rows": 0}
    for path in sorted(s.home.rglob("*.csv")):
        counts["landing_rows"] += drop_lines(path, user_id)
    for path in sorted(s.home.rglob("*.jsonl")):
        counts["live_rows"] += _jsonl_rows(path, user_id)
    counts["warehouse_rows"] = _warehouse(wh.location(s), user_id, tombstone)
    for path in sorted(s.home.rglob("*.parquet")):
        counts["parquet_rows"] += _parquet(path, user_id)
    counts["model_versions"] = _models(s.bentoml_home / "models", user_id, tombstone)
    if s.redis_url:  # the online store and live counters on Redis (personaflow/serving/live_counters.py)
        from personaflow.serving.live_counters import forget_in_redis

        counts["online_rows"] += forget_in_redis(s.redis_url, user_id)
    rewritten, left = 0, []
    for path in sorted(p for p in s.home.rglob("*") if p.is_file() and p.suffix not in HANDLED):
        data = path.read_bytes()
        if not pattern.search(data):
            continue
        if data[:16].startswith(b"SQLite format 3"):
            counts["online_rows"] += _sqlite(path, user_id, tombstone)
        else:
            atomic_write(path, pattern.sub(tombstone.encode(), data))
        rewritten += 1
    counts["files_rewritten"] = rewritten
    for path in (p for p in s.home.rglob("*") if p.is_file()):
        if pattern.search(path.read_bytes()):
            left.append(str(path))
    _remember(s, who, counts)
    return {"subject": who, "tombstone": tombstone, **counts, "still_holding": left}


def _remember(s: Settings, who: str, counts: dict[str, int]) -> None:
    now = datetime.now(UTC).isoformat(timespec="seconds")
    path = s.home / "forgotten.json"
    entries = json.loads(path.read_text()) if path.exists() else []
    if who not in {e["subject"] for e in entries}:
        entries.append({"subject": who, "forgotten_at": now})
    atomic_write(path, json.dumps(entries, indent=2).encode())
    audit = s.home / "audit" / "forget.jsonl"
    audit.parent.mkdir(parents=True, exist_ok=True)
    with audit.open("a") as handle:
        handle.write(json.dumps({"at": now, "action": "forget", "subject": who, **counts}) + "\n")
