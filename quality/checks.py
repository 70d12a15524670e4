"""Great Expectations 1.x suites for one raw batch and for the marts.

Frames in, `CheckResult` out: the caller reads the data (DuckDB) and decides what a failure means
(quarantine, alert). GX runs in an ephemeral context so nothing is written under the repo, and each
call builds its own context: contexts are cheap (~30 ms) and sharing one across Airflow task retries
or threads would share its batch cache too.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig

# GX logs every metric resolution at INFO and some deprecations at WARNING; our own log says what failed.
logging.getLogger("great_expectations").setLevel(logging.ERROR)

EVENT_COLUMNS = (
    "event_id",
    "user_id",
    "item_id",
    "event_type",
    "event_ts",
    "session_id",
    "quantity",
    "price",
)
EVENT_TYPES = ("view", "cart", "purchase")
# Loader bookkeeping on raw.events: same for every row of a batch, so only noise in sample rows.
LOAD_COLUMNS = ("batch_date", "source_file", "loaded_at")
SAMPLE_SIZE = 5  # bad values / rows kept per failed expectation: enough to diagnose, small for an email


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

    def describe(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        count = f", {self.unexpected_count} bad rows" if self.unexpected_count else ""
        return f"{self.expectation} on {where}: observed {self.observed!r}, expected {self.expected}{count}"


@dataclass(frozen=True)
class CheckResult:
    suite: str
    success: bool
    n_rows: int
    n_expectations: int
    failures: list[Failure]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_raw_batch(events: pd.DataFrame, batch_date: date, expected_rows: int | None = None) -> CheckResult:
    """Validate one batch of raw.events rows (all rows share `batch_date`).

    `expected_rows` is raw.batches.row_count when known: a mismatch means a partial load.
    """
    day = datetime.combine(batch_date, datetime.min.time())
    expectations: list[gxe.Expectation] = [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectTableColumnsToMatchSet(column_set=list(EVENT_COLUMNS), exact_match=False),
        *(
            gxe.ExpectColumnValuesToNotBeNull(column=c)
            for c in ("event_id", "user_id", "item_id", "event_ts")
        ),
        gxe.ExpectColumnValuesToBeUnique(column="event_id"),
        gxe.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(EVENT_TYPES)),
        gxe.ExpectColumnValuesToBeBetween(column="quantity", min_value=1, max_value=1000),
        gxe.ExpectColumnValuesToBeBetween(column="price", min_value=0.01, max_value=100_000),
        # [day, day + 1): an event at midnight belongs to the next day's file.
        gxe.ExpectColumnValuesToBeBetween(
            column="event_ts", min_value=day, max_value=day + timedelta(days=1), strict_max=True
        ),
    ]
    if expected_rows is not None:
        expectations.append(gxe.ExpectTableRowCountToEqual(value=int(expected_rows)))
    return _run_suite("raw_events", {"raw.events": (events, expectations)})


def check_marts(user_features: pd.DataFrame, item_features: pd.DataFrame, as_of: date) -> CheckResult:
    """Validate marts.user_features and marts.item_features as built for `as_of`."""
    as_of_ts = datetime.combine(as_of, datetime.min.time())
    # Marts only use events with event_ts < as_of + 1 day, so a later timestamp means a leak.
    horizon = as_of_ts + timedelta(days=1)
    user_checks: list[gxe.Expectation] = [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToNotBeNull(column="user_id"),
        gxe.ExpectColumnValuesToBeUnique(column="user_id"),
        gxe.ExpectColumnValuesToBeBetween(column="as_of_date", min_value=as_of_ts, max_value=as_of_ts),
        *(
            check
            for col in ("r_score", "f_score", "m_score")
            for check in (
                gxe.ExpectColumnValuesToNotBeNull(column=col),
                gxe.ExpectColumnValuesToBeBetween(column=col, min_value=1, max_value=5),
            )
        ),
        gxe.ExpectColumnValuesToBeBetween(column="monetary", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="last_event_ts", max_value=horizon, strict_max=True),
    ]
    item_checks: list[gxe.Expectation] = [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToNotBeNull(column="item_id"),
        gxe.ExpectColumnValuesToBeUnique(column="item_id"),
        gxe.ExpectColumnValuesToBeBetween(column="revenue", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="popularity_rank", min_value=1),
    ]
    return _run_suite(
        "marts",
        {
            "marts.user_features": (user_features, user_checks),
            "marts.item_features": (item_features, item_checks),
        },
    )


def _run_suite(
    suite_name: str, tables: dict[str, tuple[pd.DataFrame, Sequence[gxe.Expectation]]]
) -> CheckResult:
    context = gx.get_context(mode="ephemeral")
    # tqdm bars would land in Airflow task logs, one line per metric batch.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = context.data_sources.add_pandas(name=suite_name)
    failures: list[Failure] = []
    n_rows = n_expectations = 0
    for table, (frame, expectations) in tables.items():
        asset = source.add_dataframe_asset(name=table)
        batch_definition = asset.add_batch_definition_whole_dataframe(name=f"{table}:whole")
        suite = context.suites.add(gx.ExpectationSuite(name=f"{suite_name}:{table}"))
        for expectation in expectations:
            suite.add_expectation(expectation)
        validation = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{suite_name}:{table}", data=batch_definition, suite=suite)
        )
        # A fresh RangeIndex makes GX's partial_unexpected_index_list usable as row positions.
        frame = _vectorizable(frame.reset_index(drop=True))
        result = validation.run(
            batch_parameters={"dataframe": frame},
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_SIZE},
        )
        n_rows += len(frame)
        n_expectations += len(result.results)
        failures.extend(_failure(table, r.to_json_dict(), frame) for r in result.results if not r.success)
    return CheckResult(suite_name, not failures, n_rows, n_expectations, failures)


def _vectorizable(frame: pd.DataFrame) -> pd.DataFrame:
    """Cast to the dtypes GX's pandas `between` vectorizes (datetime64[ns], int64, float64).

    DuckDB hands TIMESTAMP over as datetime64[us] and INTEGER as int32; for those GX falls back to a
    per-row Python comparison, about 4x slower on a 100k-row batch.
    """
    casts: dict[str, str] = {}
    for name, dtype in frame.dtypes.items():
        if pd.api.types.is_datetime64_dtype(dtype) and dtype != "datetime64[ns]":
            casts[str(name)] = "datetime64[ns]"
        elif (
            pd.api.types.is_integer_dtype(dtype)
            and dtype != "int64"
            and not pd.api.types.is_extension_array_dtype(dtype)
        ):
            casts[str(name)] = "int64"
        elif pd.api.types.is_float_dtype(dtype) and dtype != "float64":
            casts[str(name)] = "float64"
    out = frame
    for name, target in casts.items():
        try:
            out = out.astype({name: target})
        except (OverflowError, ValueError, pd.errors.OutOfBoundsDatetime):
            pass  # e.g. a year-9999 timestamp: keep the slow path, which still reports the row
    return out


def _failure(table: str, outcome: dict[str, Any], frame: pd.DataFrame) -> Failure:
    config = outcome["expectation_config"]
    kwargs = {k: v for k, v in config["kwargs"].items() if k != "batch_id"}
    result = outcome.get("result") or {}
    errors = _exception_messages(outcome.get("exception_info") or {})
    if errors:
        # e.g. a missing column: GX reports it as a failed expectation with an exception, not a raise.
        observed: Any = "error: " + "; ".join(errors)
    elif "mismatched" in (result.get("details") or {}):
        observed = {"columns": result.get("observed_value"), **result["details"]["mismatched"]}
    elif "observed_value" in result:
        observed = result["observed_value"]
    else:
        observed = f"{result.get('unexpected_count')} of {result.get('element_count')} rows unexpected"
    indexes = [i for i in result.get("partial_unexpected_index_list") or [] if isinstance(i, int)]
    rows = frame.iloc[indexes[:SAMPLE_SIZE]] if indexes else frame.iloc[0:0]
    rows = rows.drop(columns=[c for c in LOAD_COLUMNS if c in rows.columns])
    return Failure(
        table=table,
        expectation=config["type"],
        column=kwargs.get("column"),
        observed=_plain(observed),
        expected=_plain(kwargs),
        unexpected_count=result.get("unexpected_count"),
        sample_values=_plain(list(result.get("partial_unexpected_list") or [])[:SAMPLE_SIZE]),
        sample_rows=[_plain(row) for row in rows.to_dict(orient="records")],
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
    if value is None or value is pd.NaT:
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
