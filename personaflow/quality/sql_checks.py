"""The mart checks, run inside the warehouse (DuckDB or PostgreSQL) as SQL aggregates.

The marts hold a row per customer, per item and per (customer, item, day): at 320k customers pulling
them into pandas for Great Expectations peaked at 5.7 GB. Here each expectation of the marts suite
(personaflow/quality/suites.py: `marts_expectations`, the same GX expectation objects) becomes one
aggregate query in the warehouse, and only its count and up to SAMPLE_SIZE failing rows come back.
Memory bound: O(SAMPLE_SIZE rows + the tables' column lists) in Python, whatever the marts' size; the
warehouse does the scans (DuckDB spills its group-bys for the uniqueness checks to disk when needed).

GX's own SQL data source is not used: it has no DuckDB dialect (its generic SQLAlchemy source fails on
duckdb-engine's metrics), and one code path for both engines keeps their verdicts identical. What each
check counts follows GX's definitions, so the failures, alert and report read as before:
- values checks (not null, between, unique) count unexpected rows among the non-null ones, and the
  share is of the non-null rows (GX's `unexpected_percent`);
- uniqueness counts every row of a duplicated group (GX's `column_values.unique` /
  `compound_columns.unique`), NULL keys grouping together as pandas groups them;
- `mostly` lets a share of rows be off (then the check passes and the rows are a notice).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import great_expectations.expectations as gxe

from personaflow.core import warehouse as wh
from personaflow.quality.checks import LOAD_COLUMNS, SAMPLE_SIZE, CheckResult, Failure, _plain
from personaflow.quality.frames import read_frame
from personaflow.quality.suites import marts_expectations

Connection = wh.DuckConnection | wh.PgConnection


def mart_columns(con: Connection, tables: Sequence[str]) -> dict[str, list[str]]:
    """{"marts.t": [columns in table order]} for the given mart tables (names without the schema)."""
    rows = con.execute(
        "select table_name, column_name from information_schema.columns where table_schema = 'marts' "
        "order by table_name, ordinal_position"
    ).fetchall()
    out: dict[str, list[str]] = {f"marts.{t}": [] for t in tables}
    for table, column in rows:
        if f"marts.{table}" in out:
            out[f"marts.{table}"].append(column)
    return out


def check_marts_in_warehouse(
    con: Connection, tables: Sequence[str], as_of: date, *, now: datetime | None = None
) -> CheckResult:
    """The marts suite over `tables` (e.g. ("user_features", "item_features")) where they lie."""
    now = now or datetime.now(UTC).replace(tzinfo=None)
    columns = mart_columns(con, tables)
    suites = marts_expectations(columns, as_of, now)
    failures: list[Failure] = []
    warnings: list[Failure] = []
    notices: list[Failure] = []
    n_rows = n_expectations = 0
    for table, expectations in suites.items():
        rows = int(con.execute(f"select count(*) from {table} t").fetchone()[0])
        n_rows += rows
        for expectation in expectations:
            n_expectations += 1
            failure, success = _evaluate(con, table, columns[table], rows, expectation)
            if failure is None:
                continue
            if not success:
                {"critical": failures, "warning": warnings}.get(failure.severity, notices).append(failure)
            else:
                notices.append(_with_severity(failure, "info"))
    return CheckResult("marts", not failures, n_rows, n_expectations, failures, warnings, notices)


def _with_severity(failure: Failure, severity: str) -> Failure:
    return replace(failure, severity=severity)


def _literal(value: Any) -> str:
    """A bound as SQL text both engines read: numbers as they are, dates and times as typed literals."""
    if isinstance(value, datetime):
        return f"timestamp '{value.isoformat(sep=' ')}'"
    if isinstance(value, date):
        return f"date '{value.isoformat()}'"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"unsupported bound {value!r}")
    return repr(value)


def _kwargs(expectation: gxe.Expectation) -> dict[str, Any]:
    kwargs = expectation.configuration.kwargs
    return {k: v for k, v in kwargs.items() if k != "batch_id"}


def _evaluate(
    con: Connection, table: str, columns: list[str], rows: int, expectation: gxe.Expectation
) -> tuple[Failure | None, bool]:
    """(a Failure describing the outcome when any row is off, success); (None, True) when clean."""
    kwargs = _kwargs(expectation)
    severity = getattr(expectation, "severity", None) or "critical"
    severity = str(getattr(severity, "value", severity))  # GX 1.x: a FailureSeverity enum
    kind = expectation.expectation_type
    base = dict(table=table, expectation=kind, expected=_plain(kwargs), severity=severity,
                description=getattr(expectation, "description", None))  # fmt: skip
    if isinstance(expectation, gxe.ExpectTableRowCountToBeBetween):
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        ok = (low is None or rows >= low) and (high is None or rows <= high)
        return (None, True) if ok else (Failure(column=None, observed=rows, **base), False)
    if isinstance(expectation, gxe.ExpectTableColumnsToMatchSet):
        wanted = list(kwargs["column_set"])
        missing = [c for c in wanted if c not in columns]
        extra = [c for c in columns if c not in wanted] if kwargs.get("exact_match") else []
        if not missing and not extra:
            return None, True
        observed = {"columns": list(columns), "missing": missing, **({"unexpected": extra} if extra else {})}
        return Failure(column=None, observed=observed, **base), False
    column = kwargs.get("column")
    if column is not None and column not in columns:
        observed = f'error: The column "{column}" in BatchData does not exist.'
        return Failure(column=column, observed=observed, **base), False
    bad, counted = _predicate(table, expectation, kwargs)
    nonnull = rows if counted is None else _count(con, table, counted)
    unexpected = _count(con, table, bad)
    if unexpected == 0:
        return None, True
    share = 100.0 * unexpected / nonnull if nonnull else 0.0
    mostly = kwargs.get("mostly", 1.0)
    success = nonnull > 0 and unexpected / nonnull <= 1 - mostly + 1e-12
    samples = read_frame(con, f"select * from {table} t where {bad} limit {SAMPLE_SIZE}")
    samples = samples.drop(columns=[c for c in LOAD_COLUMNS if c in samples.columns])
    if column is not None:
        values = samples[column].tolist()
    else:
        values = samples[list(kwargs["column_list"])].to_dict(orient="records")
    failure = Failure(
        column=column,
        observed=f"{unexpected} of {rows} rows unexpected ({share:.1f}%)",
        unexpected_count=unexpected,
        sample_values=_plain(values),
        sample_rows=[_plain(r) for r in samples.to_dict(orient="records")],
        **base,
    )
    return failure, success


def _count(con: Connection, table: str, condition: str) -> int:
    return int(con.execute(f"select count(*) from {table} t where {condition}").fetchone()[0])


def _predicate(table: str, expectation: gxe.Expectation, kwargs: dict[str, Any]) -> tuple[str, str | None]:
    """(SQL condition of an unexpected row, condition of a counted row or None for every row)."""
    if isinstance(expectation, gxe.ExpectColumnValuesToNotBeNull):
        return f"{kwargs['column']} is null", None
    if isinstance(expectation, gxe.ExpectColumnValuesToBeBetween):
        c = kwargs["column"]
        out = []
        if kwargs.get("min_value") is not None:
            out.append(f"{c} {'<=' if kwargs.get('strict_min') else '<'} {_literal(kwargs['min_value'])}")
        if kwargs.get("max_value") is not None:
            out.append(f"{c} {'>=' if kwargs.get('strict_max') else '>'} {_literal(kwargs['max_value'])}")
        return f"{c} is not null and ({' or '.join(out) or 'false'})", f"{c} is not null"
    if isinstance(expectation, gxe.ExpectColumnValuesToBeUnique):
        c = kwargs["column"]
        dup = f"select {c} from {table} where {c} is not null group by {c} having count(*) > 1"
        return f"t.{c} in ({dup})", f"t.{c} is not null"
    if isinstance(expectation, gxe.ExpectCompoundColumnsToBeUnique):
        cols = list(kwargs["column_list"])
        listed = ", ".join(cols)
        match = " and ".join(f"t.{c} is not distinct from d.{c}" for c in cols)
        dup = f"select {listed} from {table} group by {listed} having count(*) > 1"
        # GX skips rows whose key is all NULL (ignore_row_if="all_values_are_missing")
        if kwargs.get("ignore_row_if", "all_values_are_missing") == "never":
            kept = "true"
        else:
            kept = " or ".join(f"t.{c} is not null" for c in cols)
        return f"({kept}) and exists (select 1 from ({dup}) d where {match})", f"({kept})"
    raise NotImplementedError(f"no SQL form for {expectation.expectation_type}")
