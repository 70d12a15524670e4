"""Run Great Expectations 1.x suites over frames and turn the outcome into plain, mailable results.

Frames (or, on a PostgreSQL warehouse, a day of a table: personaflow/quality/sql_source.py; on Spark, a
table or a day of it as a Spark DataFrame: personaflow/quality/spark_source.py) in, `CheckResult`
out: the caller reads the data and decides what a failure means (quarantine, alert). The
expectations themselves are in personaflow/quality/suites.py.

With `docs_dir`, GX runs in a file-based context under that folder and each run adds its validation
results to the GX Data Docs site (HTML, `docs_dir/gx/uncommitted/data_docs/local_site/index.html`);
the result carries the page of this run. Without it, an ephemeral context (nothing on disk).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.data_context.types.resource_identifiers import (
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)

from personaflow.quality.frames import vectorizable
from personaflow.quality.spark_source import SparkBatch, spark_batch_definition, spark_frame
from personaflow.quality.sql_source import (
    SqlBatch,
    runtime_environment,
    split_for_sql,
    sql_batch_definition,
    sql_text,
)
from personaflow.quality.suites import Thresholds, marts_expectations, raw_expectations

# GX logs every metric resolution at INFO and some deprecations at WARNING; our own log says what failed.
logging.getLogger("great_expectations").setLevel(logging.ERROR)

# Loader bookkeeping on raw.events: same for every row of a batch, so only noise in sample rows.
LOAD_COLUMNS = ("batch_date", "source_file", "loaded_at")
SAMPLE_SIZE = 5  # bad values / rows kept per failed expectation: enough to diagnose, small for an email
KEEP_RESULTS = 120  # validation results listed on the Data Docs index (two suites a night: two months)


@dataclass(frozen=True)
class Failure:
    """One failed expectation, in plain types (goes into emails, reasons.json and Airflow XCom)."""

    table: str
    expectation: str
    column: str | None
    observed: Any
    expected: dict[str, Any]
    unexpected_count: int | None = None
    sample_values: list[Any] = field(default_factory=list)
    sample_rows: list[dict[str, Any]] = field(default_factory=list)
    severity: str = "critical"
    description: str | None = None

    def describe(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        count = f", {self.unexpected_count} bad rows" if self.unexpected_count else ""
        return f"{self.expectation} on {where}: observed {self.observed!r}, expected {self.expected}{count}"


@dataclass(frozen=True)
class CheckResult:
    """`failures` are critical (stop the run), `warnings` alert only, `notices` are for the report."""

    suite: str
    success: bool
    n_rows: int
    n_expectations: int
    failures: list[Failure]
    warnings: list[Failure] = field(default_factory=list)
    notices: list[Failure] = field(default_factory=list)
    docs: str | None = None  # the Data Docs HTML page of this run (a file path)
    docs_index: str | None = None

    @property
    def severity(self) -> str:
        return "critical" if self.failures else "warning" if self.warnings else "ok"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "severity": self.severity}


def check_raw_batch(
    events: pd.DataFrame | SqlBatch | SparkBatch,
    batch_date: date,
    expected_rows: int | None = None,
    *,
    source_format: str = "synthetic",
    trailing_rows: Sequence[int] = (),
    now: datetime | None = None,
    limits: Thresholds | None = None,
    docs_dir: Path | None = None,
    previous_rows: int | None = None,
) -> CheckResult:
    """Validate one batch of raw.events rows (all rows share `batch_date`) by its source format's rules.

    `expected_rows` is raw.batches.row_count (a mismatch means a partial load); `trailing_rows` the
    row counts of the batches before it, newest first (for the volume check). `events` is the rows, or
    on a PostgreSQL or Spark warehouse the day of raw.events itself (validated in the warehouse).
    """
    now = now or datetime.now(UTC).replace(tzinfo=None)
    n_rows = events.n_rows if isinstance(events, SqlBatch | SparkBatch) else len(events)
    expectations = raw_expectations(
        source_format, batch_date, now, n_rows, expected_rows, trailing_rows, limits or Thresholds(),
        previous_rows=previous_rows,
    )
    suite = f"raw_events.{source_format}"
    if isinstance(events, SqlBatch):
        parts = [("raw.events", part, checks) for part, checks in split_for_sql(events, expectations)]
    else:
        parts = [("raw.events", events, expectations)]
    return _run_suite(suite, parts, docs_dir, f"batch-{batch_date}")


def check_marts(
    tables: dict[str, pd.DataFrame], as_of: date, *, now: datetime | None = None, docs_dir: Path | None = None
) -> CheckResult:
    """Validate the marts (`{"marts.user_features": frame, ...}`) as built for `as_of`."""
    now = now or datetime.now(UTC).replace(tzinfo=None)
    suites = marts_expectations({t: list(f.columns) for t, f in tables.items()}, as_of, now)
    return _run_suite("marts", [(t, tables[t], s) for t, s in suites.items()], docs_dir, f"as_of-{as_of}")


def check_marts_on_spark(
    tables: Sequence[SparkBatch], as_of: date, *, now: datetime | None = None, docs_dir: Path | None = None
) -> CheckResult:
    """The marts suite over Spark tables (`SparkBatch` of e.g. marts.user_features), by GX's Spark engine."""
    now = now or datetime.now(UTC).replace(tzinfo=None)
    by_name = {t.table: t for t in tables}
    columns = {t.table: list(spark_frame(t).columns) for t in tables}  # the schema only: no Spark job
    suites = marts_expectations(columns, as_of, now)
    return _run_suite("marts", [(t, by_name[t], s) for t, s in suites.items()], docs_dir, f"as_of-{as_of}")


def _context(docs_dir: Path | None, runtime: dict[str, str] | None = None):
    if docs_dir is None:
        context = gx.get_context(mode="ephemeral", runtime_environment=runtime)
    else:
        docs_dir.mkdir(parents=True, exist_ok=True)
        context = gx.get_context(mode="file", project_root_dir=str(docs_dir), runtime_environment=runtime)
    # tqdm bars would land in Airflow task logs, one line per metric batch.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


def _run_suite(
    suite_name: str,
    tables: Sequence[tuple[str, pd.DataFrame | SqlBatch | SparkBatch, Sequence[gxe.Expectation]]],
    docs_dir: Path | None,
    run_name: str,
) -> CheckResult:
    context = _context(docs_dir, runtime_environment([data for _, data, _ in tables]))
    source = context.data_sources.add_or_update_pandas(name=suite_name)
    run_id = RunIdentifier(run_name=run_name, run_time=datetime.now(UTC))
    failures: list[Failure] = []
    warnings: list[Failure] = []
    notices: list[Failure] = []
    identifiers: list[ValidationResultIdentifier] = []
    n_rows = n_expectations = 0
    names: set[str] = set()
    for table, data, expectations in tables:
        # GX turns dots in suite names into folders of the Data Docs site: keep names flat.
        name = re.sub(r"[^A-Za-z0-9_-]+", "_", f"{suite_name}-{table}")
        name = name if name not in names else f"{name}-{len(names)}"  # a table in two parts (SQL)
        names.add(name)
        extra: dict[str, Any] = {}
        if isinstance(data, SqlBatch | SparkBatch):  # validated in the warehouse, rows named by a key
            define = sql_batch_definition if isinstance(data, SqlBatch) else spark_batch_definition
            batch_definition, parameters = define(context, data)
            frame, rows = None, data.n_rows
            if data.key:
                extra["unexpected_index_column_names"] = [data.key]
        else:
            asset = next((a for a in source.assets if a.name == table), None) or source.add_dataframe_asset(
                table
            )
            batch_definition = next(
                (b for b in asset.batch_definitions if b.name == "whole"), None
            ) or asset.add_batch_definition_whole_dataframe(name="whole")
            # A fresh RangeIndex makes GX's partial_unexpected_index_list usable as row positions.
            frame = vectorizable(data.reset_index(drop=True))
            parameters, rows = {"dataframe": frame}, len(frame)
        # The expectations carry this run's bounds (day, now, trailing mean): replace the stored suite.
        suite = context.suites.add_or_update(gx.ExpectationSuite(name=name, expectations=list(expectations)))
        validation = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=name, data=batch_definition, suite=suite)
        )
        result = validation.run(
            batch_parameters=parameters,
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_SIZE, **extra},
            run_id=run_id,
        )
        identifiers.append(
            ValidationResultIdentifier(
                expectation_suite_identifier=ExpectationSuiteIdentifier(name=name),
                run_id=run_id,
                batch_identifier=result.meta.get("active_batch_definition", {}).get("batch_identifier")
                or result.batch_id,
            )
        )
        n_rows += rows
        n_expectations += len(result.results)
        for r in result.results:
            outcome = r.to_json_dict()
            severity = str(outcome["expectation_config"].get("severity") or "critical")
            if not r.success:
                {"critical": failures, "warning": warnings}.get(severity, notices).append(
                    _failure(table, outcome, frame, severity)
                )
            elif (outcome.get("result") or {}).get("unexpected_count"):
                # Passed within its `mostly` allowance: still say how many rows were off.
                notices.append(_failure(table, outcome, frame, "info"))
    docs, index = _build_docs(context, identifiers) if docs_dir is not None else (None, None)
    return CheckResult(
        suite_name, not failures, n_rows, n_expectations, failures, warnings, notices, docs, index
    )


def _build_docs(context, identifiers: list[ValidationResultIdentifier]) -> tuple[str | None, str | None]:
    """Render this run's validation pages and the site index; returns their file paths."""
    _prune(context.validation_results_store)
    built = context.build_data_docs(resource_identifiers=identifiers)
    pages = context.get_docs_sites_urls(resource_identifier=identifiers[0]) if identifiers else []
    return _file(pages[0]["site_url"] if pages else None), _file(next(iter(built.values()), None))


def _prune(store, keep: int = KEEP_RESULTS) -> None:
    """Drop the oldest stored results beyond `keep`: the index page reads every stored result, so a
    year of nightly runs would slow each run down. Their HTML pages stay on disk."""
    keys = store.list_keys()
    if len(keys) > keep:
        for key in sorted(keys, key=lambda k: str(k.run_id.run_time))[: len(keys) - keep]:
            store.remove_key(key)


def _file(url: str | None) -> str | None:
    return unquote(url.removeprefix("file://")) if url else None


def _failure(table: str, outcome: dict[str, Any], frame: pd.DataFrame | None, severity: str) -> Failure:
    config = outcome["expectation_config"]
    kwargs = {k: v for k, v in config["kwargs"].items() if k != "batch_id"}
    result = outcome.get("result") or {}
    errors = _exception_messages(outcome.get("exception_info") or {})
    if errors:
        # e.g. a missing column: GX reports it as a failed expectation with an exception, not a raise.
        observed: Any = "error: " + "; ".join(errors)
    elif "mismatched" in (result.get("details") or {}):
        observed = {"columns": result.get("observed_value"), **result["details"]["mismatched"]}
    elif result.get("observed_value") is not None:
        observed = result["observed_value"]
    else:
        share = result.get("unexpected_percent")
        observed = f"{result.get('unexpected_count')} of {result.get('element_count')} rows unexpected" + (
            f" ({share:.1f}%)" if share is not None else ""
        )
    listed = result.get("partial_unexpected_index_list") or []
    values = list(result.get("partial_unexpected_list") or [])[:SAMPLE_SIZE]
    if frame is None:  # validated in the warehouse: GX names the rows by their key column and value
        samples = [sql_text(r) for r in listed if isinstance(r, dict)][:SAMPLE_SIZE]
        values = sql_text(values)
    else:
        indexes = [i for i in listed if isinstance(i, int)]
        rows = frame.iloc[indexes[:SAMPLE_SIZE]] if indexes else frame.iloc[0:0]
        samples = rows.drop(columns=[c for c in LOAD_COLUMNS if c in rows.columns]).to_dict(orient="records")
    return Failure(
        table=table,
        expectation=config["type"],
        column=kwargs.get("column"),
        observed=_plain(observed),
        expected=_plain(kwargs),
        unexpected_count=result.get("unexpected_count"),
        sample_values=_plain(values),
        sample_rows=[_plain(row) for row in samples],
        severity=severity,
        description=config.get("description"),
    )


def _exception_messages(info: dict[str, Any]) -> list[str]:
    # Flat {"raised_exception", "exception_message"} for suite-level errors; for metric errors GX
    # nests one such dict per failed metric, keyed by the metric's id.
    if "raised_exception" in info:
        return [str(info.get("exception_message"))] if info["raised_exception"] else []
    messages = [m for sub in info.values() if isinstance(sub, dict) for m in _exception_messages(sub)]
    return sorted(set(messages))


def _plain(value: Any) -> Any:
    """JSON-safe plain Python (timestamps as ISO text, NaN/NaT as None) for emails, files and XCom."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, datetime | date | pd.Timestamp):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, str | int | float | bool):
        return value
    return str(value)
