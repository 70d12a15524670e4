"""`personaflow forget USER_ID`: erase one customer from everything the platform keeps (GDPR art. 17).

By column, never by a text search over bytes: it knows which column of which file or table holds a
customer id (personaflow/core/ids.py: user_id and its aliases, and a live session `live-<id>`) and
changes only those rows and cells. A row number, a price or another id that equals the customer's id
is not theirs and is left byte for byte as it was.
- landing day files, the users file, quarantine copies, any CSV (by its header) and the live event
  logs (JSONL): the customer's records are removed; every other record keeps its exact bytes;
- the warehouse (raw, quarantine, staging, marts): rows whose customer column is theirs deleted, a
  live session of theirs replaced by the tombstone, and text naming them as a customer
  (`user_id=14911`, `customer 14911`: core.ids.quoted_regex) rewritten; DuckDB: then the file is rebuilt
  from its live data (`COPY FROM DATABASE`), because DuckDB keeps freed blocks and a deleted row would
  still be in the file's bytes; PostgreSQL (PERSONAFLOW_WAREHOUSE_URL): in one transaction, then
  `VACUUM FULL` rewrites the tables touched without the dead rows (the server's WAL archive and
  backups are the operator's to expire); Spark (PERSONAFLOW_WAREHOUSE_URL=spark): each table holding
  them is rewritten without them through Spark, partition by partition (personaflow/core/spark_forget.py);
- Feast offline snapshots (Parquet): their rows dropped; the SQLite online store: the rows keyed by
  their entity key (exactly theirs) deleted, then VACUUM; on Redis (PERSONAFLOW_REDIS_URL): their Feast
  hash and live counters deleted;
- served models: their id replaced by a tombstone and their vector rows zeroed, in every version;
- other files (alert emails, quality reports, GX Data Docs, Airflow and dbt logs, other SQLite text):
  where they name the id as a customer (core.ids.quoted_regex), it becomes the tombstone.
Files the project ships are never rewritten: dbt's target folder (manifest, compiled unit tests and
their fixtures: a tested id that equals a customer's is not theirs).

Before anything changes, `holding` looks for the id in every customer column: an id no store knows is
an error (`UnknownUser`, nothing changed or recorded) unless `force`. After it, the same check runs
again; whatever it still finds is reported (`still_holding`), never silently left. The customer is then
remembered only as a keyed hash (personaflow/core/forgotten.py): `forgotten.json` lets imports, the
loader and the API refuse them if a shop sends them again, and `audit/forget.jsonl` records when, what
hash, and how much was removed where.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from personaflow.core import warehouse as wh
from personaflow.core.forgotten import atomic_write, csv_records, drop_lines, subject
from personaflow.core.ids import (
    LIVE_SESSION,
    is_session_column,
    is_user_column,
    names_session,
    names_user,
    normal_user_id,
    quoted_regex,
    variant_regex,
)
from personaflow.core.settings import Settings

# never read as text: the warehouse (checked by SQL, then rebuilt), model arrays (ids.json holds the ids)
BINARY = {".duckdb", ".wal", ".pt", ".npz", ".npy", ".db-wal", ".db-shm", ".pkl", ".gpickle", ".msgpack"}


class UnknownUser(LookupError):
    """No store under the home holds this id: nothing to forget (`--force` records it anyway)."""


def _quoted(user_id: str) -> re.Pattern[bytes]:
    return re.compile(quoted_regex(user_id).encode(), re.IGNORECASE)


def _shipped(path: Path) -> bool:
    """Files the project ships, copied or compiled under the home: dbt's target folder (its manifest and
    compiled unit tests carry the project's fixtures) and installed dbt packages."""
    for parent in path.parents:
        if parent.name == "dbt_packages" or (parent.name == "target" and (parent / "manifest.json").exists()):
            return True
    return False


def _roots(s: Settings) -> list[Path]:
    roots = sorted({Path(p) for p in (s.home, s.landing_dir, s.quarantine_dir, s.features_dir,
                                      s.reports_dir, s.bentoml_home, s.airflow_home)})  # fmt: skip
    return [r for r in roots if r.exists() and not any(o != r and o in r.parents for o in roots)]


def _files(s: Settings) -> Iterator[Path]:
    """Every file under the home's folders, except the Spark warehouse's dir when Spark is the warehouse:
    its Parquet files, their .crc checksums and the Derby metastore are Spark's, changed through Spark
    (personaflow/core/spark_forget.py); a file rewritten behind its back would fail its checksum."""
    where = wh.location(s)
    spark_dir = where.directory if wh.is_spark(where) else None
    for root in _roots(s):
        for path in sorted(root.rglob("*")):
            if spark_dir is not None and (path == spark_dir or spark_dir in path.parents):
                continue
            if path.is_file() and not path.name.endswith(".forget") and not _shipped(path):
                yield path


def _csv_holding(path: Path, user_id: str) -> list[str]:
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    records = csv_records(text)
    header = next(records, ([], ""))[0]
    users = [i for i, c in enumerate(header) if is_user_column(c)]
    sessions = [i for i, c in enumerate(header) if is_session_column(c)]
    found = set()
    for fields, _ in records:
        for i in users:
            if i < len(fields) and names_user(fields[i], user_id):
                found.add(header[i])
        for i in sessions:
            if i < len(fields) and names_session(fields[i], user_id):
                found.add(header[i])
    return [f"{path}: {c}" for c in sorted(found)]


def _jsonl_holding(path: Path, user_id: str) -> list[str]:
    found = set()
    for line in path.read_bytes().splitlines():
        for key, value in _safe_json(line).items():
            if (is_user_column(key) and names_user(value, user_id)) or (
                is_session_column(key) and names_session(value, user_id)
            ):
                found.add(key)
    return [f"{path}: {c}" for c in sorted(found)]


def _parquet_holding(path: Path, user_id: str) -> list[str]:
    import pyarrow.parquet as pq

    names = pq.read_schema(path).names
    columns = [c for c in names if is_user_column(c) or is_session_column(c)]
    if not columns:
        return []
    frame = pd.read_parquet(path, columns=columns)
    found = []
    for c in columns:
        test = names_user if is_user_column(c) else names_session
        if _cells(frame[c], user_id, test).any():
            found.append(f"{path}: {c}")
    return found


def _cells(column: pd.Series, user_id: str, test) -> np.ndarray:
    """Which cells of `column` are the customer's (`test`: names_user or names_session); only cells
    holding the id's normal form are normalised (every written form contains it)."""
    text = column.astype("string")
    hit = text.str.contains(user_id, regex=False).fillna(False).to_numpy(dtype=bool)
    out = np.zeros(len(column), dtype=bool)
    out[hit] = [bool(test(v, user_id)) for v in column.to_numpy()[hit]]
    return out


def _entity_key(user_id: str) -> bytes:
    """Feast's online-store key of this customer (the user_id entity, serialization version 3)."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    entity = EntityKey(join_keys=["user_id"], entity_values=[Value(string_val=user_id)])
    return serialize_entity_key(entity, entity_key_serialization_version=3)


def _sqlite_text_columns(con: sqlite3.Connection) -> Iterator[tuple[str, str, str]]:
    for (table,) in con.execute("select name from sqlite_master where type = 'table'").fetchall():
        for _, column, kind, *_ in con.execute(f'pragma table_info("{table}")').fetchall():
            yield table, column, kind.upper()


def _sqlite(path: Path, user_id: str, tombstone: str, erase: bool) -> tuple[int, list[str]]:
    """Feast's online store keys rows by a serialized entity key: the customer's exact key's rows are
    deleted; in text columns, where the id is named as a customer it becomes the tombstone; VACUUM so
    freed pages do not keep it. erase=False: only says where it is (the check)."""
    quoted, key = _quoted(user_id), _entity_key(user_id)
    tomb = rb"\1\2" + tombstone.encode() + rb"\4"

    def _has(value: object) -> int:
        if isinstance(value, str):
            value = value.encode("utf-8", errors="surrogateescape")
        return int(isinstance(value, bytes) and bool(quoted.search(value)))

    def _sub(value: object) -> object:
        if isinstance(value, str):
            return quoted.sub(tomb, value.encode("utf-8", errors="surrogateescape")).decode(
                "utf-8", errors="surrogateescape"
            )
        return quoted.sub(tomb, value) if isinstance(value, bytes) else value

    removed, found, changed = 0, [], False
    con = sqlite3.connect(path)
    con.create_function("pf_has", 1, _has, deterministic=True)
    con.create_function("pf_sub", 1, _sub, deterministic=True)
    try:
        for table, column, kind in list(_sqlite_text_columns(con)):
            if column == "entity_key":
                where = f'where "{column}" = ?'
                [(n,)] = con.execute(f'select count(*) from "{table}" {where}', [key]).fetchall()
                if n and erase:
                    removed += con.execute(f'delete from "{table}" {where}', [key]).rowcount
                    changed = True
                elif n:
                    found.append(f"{path}: {table}.{column}")
            elif kind in ("TEXT", "VARCHAR", "JSON", "CLOB", "") or "CHAR" in kind:
                where = f'where pf_has("{column}")'
                [(n,)] = con.execute(f'select count(*) from "{table}" {where}').fetchall()
                if n and erase:
                    con.execute(f'update "{table}" set "{column}" = pf_sub("{column}") {where}')
                    changed = True
                elif n:
                    found.append(f"{path}: {table}.{column}")
        if changed:
            con.commit()
            con.execute("vacuum")
            # The serving API keeps the online store in WAL mode: fold the log (holding the old pages)
            # back into the file and empty it.
            con.execute("pragma wal_checkpoint(truncate)")
    finally:
        con.close()
    return removed, found


def _jsonl_rows(path: Path, user_id: str) -> int:
    lines = path.read_bytes().splitlines(keepends=True)
    kept = [ln for ln in lines if not _json_names(_safe_json(ln), user_id)]
    if len(kept) != len(lines):
        atomic_write(path, b"".join(kept))
    return len(lines) - len(kept)


def _json_names(record: dict, user_id: str) -> bool:
    return any(is_user_column(k) and names_user(v, user_id) for k, v in record.items())


def _safe_json(line: bytes) -> dict:
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _sql_patterns(user_id: str) -> tuple[str, str, str]:
    """Regexes both engines read: a user column's whole value, a live session's, free text naming it."""
    variant = variant_regex(user_id, whole=True)
    return rf"^\s*(?:{variant})\s*$", rf"^{LIVE_SESSION}(?:{variant})\s*$", quoted_regex(user_id)


def _tables(con: Any, where: str = "") -> dict[tuple[str, str], list[tuple[str, str]]]:
    columns = con.execute(
        "select c.table_schema, c.table_name, c.column_name, c.data_type "
        "from information_schema.columns c join information_schema.tables t "
        f"using (table_schema, table_name) where t.table_type = 'BASE TABLE' {where}"
    ).fetchall()
    tables: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for schema, table, column, kind in columns:
        tables.setdefault((schema, table), []).append((column, kind))
    return tables


def _by_column(con: Any, tables: dict, user_id: str, tombstone: str, postgres: bool, erase: bool):
    """Each table: rows whose customer column is theirs (deleted), their live sessions and text naming
    them as a customer (rewritten). Returns (rows deleted, tables touched, where the id still is)."""
    whole, session, quoted = _sql_patterns(user_id)

    def match(column: str, flags: str = "") -> str:
        # every test reads the one pattern, $1 (numbered markers can repeat)
        text = f'cast("{column}" as varchar)'
        if postgres:
            return f"{text} {'~*' if 'i' in flags else '~'} $1"
        return f"regexp_matches({text}, $1, '{flags}')" if flags else f"regexp_matches({text}, $1)"

    text_kinds = ("text", "character varying") if postgres else ("VARCHAR",)
    removed, touched, found = 0, set(), []
    for (schema, table), cols in tables.items():
        name = f'"{schema}"."{table}"'
        users = [c for c, _ in cols if is_user_column(c)]
        if users:
            where = "where " + " or ".join(match(c) for c in users)
            [(n,)] = con.execute(f"select count(*) from {name} {where}", [whole]).fetchall()
            if n and erase:
                con.execute(f"delete from {name} {where}", [whole])
                removed, touched = removed + n, touched | {name}
            elif n:
                found.append(f"{schema}.{table}: " + ", ".join(users))
        for column, kind in cols:
            if is_user_column(column) or kind not in text_kinds:
                continue
            pattern, flags = (session, "") if is_session_column(column) else (quoted, "i")
            where = f"where {match(column, flags)}"
            [(n,)] = con.execute(f"select count(*) from {name} {where}", [pattern]).fetchall()
            if not n:
                continue
            if not erase:
                found.append(f"{schema}.{table}: {column}")
                continue
            if is_session_column(column):
                con.execute(f'update {name} set "{column}" = $2 {where}', [pattern, tombstone])
            else:
                con.execute(
                    f'update {name} set "{column}" = regexp_replace("{column}", $1, $2, \'gi\') {where}',
                    [pattern, rf"\1\2{tombstone}\4"],
                )
            touched.add(name)
    return removed, touched, found


def _warehouse_pg(url: str, user_id: str, tombstone: str, erase: bool) -> tuple[int, list[str]]:
    """PostgreSQL: by column in every base table of the warehouse, in one transaction; then VACUUM FULL
    the tables touched so no dead row keeps them."""
    with wh.connect(url) as con:
        tables = _tables(con, "and c.table_schema not in ('pg_catalog', 'information_schema')")
        con.begin()
        try:
            removed, touched, found = _by_column(con, tables, user_id, tombstone, True, erase)
            con.commit()
        except BaseException:
            con.rollback()
            raise
        for name in sorted(touched):
            con.execute(f"vacuum full {name}")
    return removed, found


def _warehouse(path: wh.Location, user_id: str, tombstone: str) -> int:
    """The customer's rows deleted and text naming them rewritten, by column; returns the rows deleted."""
    return _warehouse_columns(path, normal_user_id(user_id), tombstone, erase=True)[0]


def _warehouse_columns(path: wh.Location, user_id: str, tombstone: str, erase: bool) -> tuple[int, list[str]]:
    """(rows deleted, where the id is): erase=True deletes and rewrites by column, then rebuilds the
    DuckDB file; erase=False only looks (the check)."""
    if wh.is_postgres(path):
        return _warehouse_pg(str(path), user_id, tombstone, erase)
    if wh.is_spark(path):  # its tables' files are rewritten by Spark, never as files (_files skips them)
        from personaflow.core.spark_forget import forget_in_spark

        return forget_in_spark(path, user_id, tombstone, erase)
    if not path.exists():
        return 0, []
    with duckdb.connect(str(path), read_only=not erase) as con:
        con.execute("set enable_progress_bar = false")
        removed, touched, found = _by_column(con, _tables(con), user_id, tombstone, False, erase)
        if erase:
            con.execute("checkpoint")
    if touched:
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            fresh = Path(tmp) / path.name  # same file name: views name the catalogue after it
            with duckdb.connect() as con:
                con.execute("set enable_progress_bar = false")
                con.execute(f"attach '{path}' as old (read_only)")
                con.execute(f"attach '{fresh}' as fresh")
                con.execute("copy from database old to fresh")
            os.replace(fresh, path)
    return removed, found


def _parquet(path: Path, user_id: str) -> int:
    import pyarrow.parquet as pq

    users = [c for c in pq.read_schema(path).names if is_user_column(c)]
    if not users:
        return 0
    frame = pd.read_parquet(path)
    gone = np.zeros(len(frame), dtype=bool)
    for c in users:
        gone |= _cells(frame[c], user_id, names_user)
    if not gone.any():
        return 0
    frame[~gone].to_parquet(path.with_name(f".{path.name}.forget"), index=False)
    os.replace(path.with_name(f".{path.name}.forget"), path)
    return int(gone.sum())


def _models(models_dir: Path, user_id: str, tombstone: str) -> int:
    """Every saved version: the id becomes the tombstone, its vector and history rows become zero."""
    import scipy.sparse as sp
    import torch

    changed = 0
    for ids_file in models_dir.glob("*/*/ids.json"):
        ids = json.loads(ids_file.read_text())
        users = ids.get("user_ids", [])
        rows = [i for i, u in enumerate(users) if names_user(u, user_id)]
        if not rows:
            continue
        row = rows[0]
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


def holding(user_id: str, s: Settings, first: bool = False) -> list[str]:
    """Where the customer still is: every customer column of every store (files by their columns, the
    warehouse, Feast, models, Redis) and free text naming them as a customer. A row number, price or
    other id that merely equals theirs is not counted. The check `forget` runs before and after.
    `first`: stop after the files when they hold the id (forget's "is it known at all?": the warehouse
    check costs a query per table, a Spark job each on Spark)."""
    user_id = normal_user_id(user_id)
    needle, quoted = user_id.encode(), _quoted(user_id)
    found: list[str] = []
    for path in _files(s):
        suffix = path.suffix.lower()
        if suffix in BINARY:
            continue
        data = path.read_bytes()
        # SQLite by SQL (rows may still be in its -wal file); Parquet by its columns (compressed pages)
        if data.startswith(b"SQLite format 3"):
            found += _sqlite(path, user_id, "", erase=False)[1]
        elif suffix == ".parquet":
            found += _parquet_holding(path, user_id)
        elif needle not in data:  # every written form of the id contains its normal form
            continue
        elif suffix == ".csv":
            found += _csv_holding(path, user_id)
        elif suffix == ".jsonl":
            found += _jsonl_holding(path, user_id)
        elif path.name == "ids.json":
            users = _safe_json(data).get("user_ids") or []
            found += [f"{path}: user_ids"] if any(names_user(u, user_id) for u in users) else []
        elif quoted.search(data):
            found.append(str(path))
    if first and found:
        return sorted(set(found))
    found += [f"warehouse {w}" for w in _warehouse_columns(wh.location(s), user_id, "", erase=False)[1]]
    if s.redis_url:
        from personaflow.serving.live_counters import redis_holds

        found += [f"redis: {key}" for key in redis_holds(s.redis_url, user_id)]
    return sorted(set(found))


def forget_user(user_id: str, s: Settings, force: bool = False) -> dict[str, Any]:
    """Erase `user_id` (any written form: core.ids.normal_user_id) from everything the platform keeps,
    by column; returns what was removed where and `still_holding`, what the check still finds. An id
    no store holds raises UnknownUser before anything is changed or recorded, unless `force`."""
    user_id = normal_user_id(user_id)
    if not user_id:
        raise ValueError("forget: USER_ID is empty")
    if not force and not holding(user_id, s, first=True):
        raise UnknownUser(
            f"forget: no store holds user_id {user_id!r} (landing, live logs, warehouse, Feast, models); "
            "nothing was changed or recorded. Check the id, or pass --force to record it as forgotten anyway"
        )
    who = subject(user_id, s)
    tombstone = f"forgotten-{who[:12]}"
    quoted, tomb = _quoted(user_id), rb"\1\2" + tombstone.encode() + rb"\4"
    counts: dict[str, int] = {"landing_rows": 0, "live_rows": 0, "parquet_rows": 0, "online_rows": 0}
    counts["warehouse_rows"] = _warehouse(wh.location(s), user_id, tombstone)
    rewritten = 0
    for path in list(_files(s)):
        suffix = path.suffix.lower()
        if suffix in BINARY:
            continue
        data = path.read_bytes()
        if data.startswith(b"SQLite format 3"):
            counts["online_rows"] += _sqlite(path, user_id, tombstone, erase=True)[0]
        elif suffix == ".parquet":
            counts["parquet_rows"] += _parquet(path, user_id)
        elif user_id.encode() not in data:
            continue
        elif suffix == ".csv":
            counts["landing_rows"] += drop_lines(path, user_id)
        elif suffix == ".jsonl":
            counts["live_rows"] += _jsonl_rows(path, user_id)
        elif path.name == "ids.json":
            continue  # the models' step below
        elif quoted.search(data):
            atomic_write(path, quoted.sub(tomb, data))
            rewritten += 1
    counts["files_rewritten"] = rewritten
    counts["model_versions"] = _models(s.bentoml_home / "models", user_id, tombstone)
    if s.redis_url:  # the online store and live counters on Redis (personaflow/serving/live_counters.py)
        from personaflow.serving.live_counters import forget_in_redis

        counts["online_rows"] += forget_in_redis(s.redis_url, user_id)
    left = holding(user_id, s)
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
