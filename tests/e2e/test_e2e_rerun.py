"""Clearing a finished night and re-running every task leaves the data as it was (issue 26).

After the good night (session fixture `good_run`), everything the night wrote that a re-run must not
change is fingerprinted: the landed files, every warehouse table (raw and marts) as a hash of its
sorted rows, Feast's offline sources and training set and its online store, the profile stages'
outputs and reports, and the production pointer. The whole run is then cleared through Airflow's
REST API (`POST .../dagRuns/{id}/clear`, every task) and runs again on the real scheduler; afterwards
the run succeeded again with the same task states, every fingerprint and row count is identical, and
production is the same model: the retrained candidate learned from the very same data, so the gate
holds it to beating production clearly (personaflow/training/gate.py, `gate_same_data`), and it is
not promoted.

What a re-run legitimately changes is left out, by name: the clock of a load or a snapshot
(`VOLATILE` columns), the validations' log (one row per validation, by design), the candidate the
re-run trained (a new model in the store beside production) and the night's own report pages.

This file sorts after test_e2e.py (its asset test counts the good run's asset events: one each) and
before test_e2e_ui.py (which still finds the good run's "Promoted" note: a clear keeps the note and
promote only appends its new verdict) and test_forget.py (which re-lands the shop's files).
"""

from __future__ import annotations

import difflib
import hashlib
import sqlite3
import time
from pathlib import Path

import duckdb
import pytest

from personaflow.orchestration.orchestrate import DAG_ID

pytestmark = pytest.mark.e2e

# The wall clock of a load, a validation or a Feast snapshot: when it happened, not what was loaded;
# and the GX page of the latest validation, which each validation renders under its own run time.
VOLATILE = {"loaded_at", "validated_at", "created_ts", "replaced_at", "data_docs"}
# The recommendation-drift history (one row per night, a re-run replaces its night's row) gets a row only
# when a production model exists at drift time: the good night ran with none, its re-run with its own.
DRIFT_HISTORY = "recommendation_popularity.parquet"
# Logs with one row per validation run: a re-run adds its own row by design (raw.batches keeps the day's
# load itself, and is compared).
RUN_LOGS = {"raw.batch_validations"}


def _rows_digest(con: duckdb.DuckDBPyConnection, relation: str, columns: list[str]) -> tuple[int, str]:
    """(row count, sha256 of the rows as text, sorted): equal for the same rows in any order."""
    kept = ", ".join(f'"{c}"' for c in columns if c not in VOLATILE)
    rows = con.execute(f"select cast(row({kept}) as varchar) as r from {relation} order by r").fetchall()
    digest = hashlib.sha256("\n".join(r for (r,) in rows).encode()).hexdigest()
    return len(rows), digest


def warehouse_fingerprint(path: Path) -> dict[str, tuple[int, str]]:
    """Every base table of the warehouse (raw, marts, dbt's incremental tables, quarantine)."""
    out = {}
    with duckdb.connect(str(path), read_only=True) as con:
        tables = con.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_type = 'BASE TABLE' order by 1, 2"
        ).fetchall()
        for schema, table in tables:
            name = f"{schema}.{table}"
            if name in RUN_LOGS:
                continue
            columns = [c for (c,) in con.execute(
                "select column_name from information_schema.columns where table_schema = ? "
                "and table_name = ? order by ordinal_position", [schema, table]).fetchall()]  # fmt: skip
            out[name] = _rows_digest(con, f'"{schema}"."{table}"', columns)
    return out


def parquet_fingerprint(root: Path) -> dict[str, tuple[int, str]]:
    """Feast's offline sources, the training set, the serving tables, the profile outputs: rows, not
    bytes (a file rewritten with the same rows is the same data)."""
    out = {}
    with duckdb.connect() as con:
        for path in sorted(root.rglob("*.parquet")):
            if ".pit-window" in path.parts:  # the features stage's scratch repo, removed after each run
                continue
            relation = f"read_parquet('{path}')"
            columns = [d[0] for d in con.execute(f"select * from {relation} limit 0").description]
            out[str(path.relative_to(root))] = _rows_digest(con, relation, columns)
    return out


def online_fingerprint(path: Path) -> dict[str, tuple[int, str]]:
    """Feast's SQLite online store: every view's rows (entity key, feature, value, event time)."""
    out = {}
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
        tables = [t for (t,) in con.execute("select name from sqlite_master where type = 'table' order by 1")]
        for table in tables:
            columns = [c[1] for c in con.execute(f'pragma table_info("{table}")') if c[1] not in VOLATILE]
            kept = ", ".join(f'"{c}"' for c in columns)
            rows = sorted(repr(r) for r in con.execute(f'select {kept} from "{table}"'))
            out[table] = (len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest())
    return out


def files_fingerprint(root: Path, pattern: str = "*") -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob(pattern))
        if p.is_file()
    }


def fingerprint(s, day) -> dict[str, object]:
    return {
        "landing": files_fingerprint(s.landing_dir),
        "warehouse": warehouse_fingerprint(s.warehouse),
        "features": parquet_fingerprint(s.features_dir),
        "online": online_fingerprint(s.features_dir / "online_store.db"),
        # segments' and churn's own reports for the day (the model and drift reports are the run's)
        # (as text: a difference shows which numbers moved)
        "profile_reports": {
            f"{stage}/{p.name}": p.read_text()
            for stage in ("segments", "churn")
            for p in sorted((s.reports_dir / stage).glob(f"{stage}_{day.isoformat()}.json"))
        },
        "audiences": files_fingerprint(s.home / "audiences") if (s.home / "audiences").exists() else {},
        "production": s.production_pointer.read_text(),
    }


def _differences(before: dict, after: dict) -> list[str]:
    out = []
    for part in before:
        if isinstance(before[part], dict):
            for key in sorted(set(before[part]) | set(after[part])):
                old, new = before[part].get(key), after[part].get(key)
                if old != new and isinstance(old, str) and isinstance(new, str):
                    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=1)
                    out.append(f"{part}/{key}:\n" + "\n".join(list(lines)[:60]))
                elif old != new:
                    out.append(f"{part}/{key}: {old} -> {new}")
        elif before[part] != after[part]:
            out.append(f"{part}: changed")
    return out


def test_clearing_the_whole_night_and_rerunning_it_leaves_the_data_unchanged(airflow_stack, good_run):
    stack, s, day = airflow_stack, airflow_stack.s, airflow_stack.last
    assert good_run.state == "success", good_run.tasks
    before = fingerprint(s, day)
    # the fingerprint covers what the night wrote: the day's rows, Feast's views, segments
    assert before["warehouse"]["raw.events"][0] > 0 and before["warehouse"]["marts.user_features"][0] > 0
    assert before["online"] and before["features"]["user_segments.parquet"][0] > 0
    assert any(k.startswith("segments/") for k in before["profile_reports"]), before["profile_reports"]
    tries = {ti["task_id"]: ti["try_number"] for ti in stack.client.task_instances(DAG_ID, good_run.run_id)}
    mails = len(stack.inbox.messages)

    started = time.perf_counter()
    stack.client.clear_run(DAG_ID, good_run.run_id)
    run = stack.client.wait(DAG_ID, good_run.run_id, timeout=600)
    seconds = time.perf_counter() - started
    instances = stack.client.task_instances(DAG_ID, good_run.run_id)
    busy = sum(ti.get("duration") or 0 for ti in instances)
    print(f"\nclear + re-run of the whole night: {seconds:.1f} s wall, {busy:.1f} s in tasks "
          f"(the first run: {good_run.seconds:.1f} s)")  # fmt: skip
    assert run["state"] == "success", {ti["task_id"]: ti["state"] for ti in instances}
    assert {ti["task_id"]: ti["state"] for ti in instances} == good_run.tasks  # churn skipped again
    # every task really ran again (a new try), none was left as it was
    again = {ti["task_id"]: ti["try_number"] for ti in instances}
    assert all(again[t] > tries[t] for t in tries), (tries, again)

    after = fingerprint(s, day)
    if DRIFT_HISTORY not in before["features"]:  # new with the re-run: one row for the night, no more
        drift = after["features"].pop(DRIFT_HISTORY, None)
        assert drift is None or drift[0] == 1, drift
    diffs = _differences(before, after)
    assert not diffs, "\n".join(diffs)
    counts = {name: n for name, (n, _) in before["warehouse"].items()}
    assert {name: n for name, (n, _) in after["warehouse"].items()} == counts  # no day loaded twice

    # production did not change: the retrain on the same data did not beat it, and says so
    notes = {ti["task_id"]: ti["note"] or "" for ti in instances}
    assert notes["model.promote"].startswith("**Not promoted**"), notes["model.promote"]
    assert "not a clear win" in notes["model.promote"] or "does not beat production" in notes["model.promote"]
    assert after["production"] == before["production"]
    # nothing failed on the way: no failure notice for the day was mailed
    new = [m["Subject"] or "" for m in stack.inbox.messages[mails:]]
    assert not [subject for subject in new if "failed" in subject.lower() and str(day) in subject], new
