"""What a good batch and good marts look like: Great Expectations 1.x expectations, with severities.

- critical: the batch is quarantined, an alert (FAILED) goes out, the run stops;
- warning: an alert (WARNING) goes out, the run goes on (e.g. a volume drop, a known fault of the
  source rising above its usual share);
- info: recorded in the report and Data Docs only (e.g. a shop closed for the day).

Rules differ per source format where the source has known faults: the Online Retail export has rows
without a customer, price <= 0 and negative quantities by design (raw keeps them, staging flags
them), so those are shares with thresholds there, while our own formats must be clean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import great_expectations.expectations as gxe
from great_expectations.expectations.row_conditions import Column

from personaflow.ingest.raw_types import EVENT_TYPES as RAW_EVENT_TYPES
from personaflow.ingest.raw_types import V2_TYPES as RAW_V2_TYPES
from personaflow.quality import contract

# The raw contract is defined once, by the loader that writes it.
EVENT_COLUMNS = tuple(RAW_EVENT_TYPES)
V2_COLUMNS = tuple(RAW_V2_TYPES)
EVENT_TYPES = contract.EVENT_TYPES
# "Exact duplicate" (raw contract v2): equal on every business column, whatever the event_id says.
DUPLICATE_KEY = [
    "order_id", "session_id", "item_id", "event_ts", "quantity", "price", "user_id", "event_type",
    "description", "country",
]  # fmt: skip
# pandas dtypes (a frame read from the warehouse), the SQL types GX names on PostgreSQL, then Spark's
# type classes (GX's Spark engine names a column's type by its pyspark class)
INT_TYPES = ["int64", "int32", "Int64", "Int32", "INTEGER", "BIGINT", "IntegerType", "LongType"]
FLOAT_TYPES = ["float64", "Float64", "DOUBLE PRECISION", "DOUBLE_PRECISION", "DoubleType"]
TIME_TYPES = [
    "datetime64[ns]", "datetime64[us]", "datetime64", "TIMESTAMP WITHOUT TIME ZONE", "TIMESTAMP",
    "TimestampType", "TimestampNTZType",
]  # fmt: skip
LENIENT_FORMATS = ("online-retail",)
# A shop's own exports (`personaflow ingest PATH --format ...`): a day without rows is a day the shop sold
# nothing (a Sunday, a holiday), not a broken feed. A re-delivery that empties a day that had rows stays
# critical (`previous_rows` below).
EXPORT_FORMATS = ("online-retail", "csv", "parquet")


@dataclass(frozen=True)
class Thresholds:
    """The numbers behind the rules; the defaults are what the nightly run uses."""

    trailing_batches: int = 7  # row count is compared with the mean of this many earlier batches
    min_trailing: int = 3  # fewer earlier batches than this: no volume check yet
    volume_low: float = 0.2  # fewer rows than this share of the trailing mean: WARNING
    volume_high: float = 5.0  # more than this multiple: WARNING (a file landed twice?)
    # A re-delivered day with more than this share fewer rows than the load it replaces: WARNING (mailed;
    # the new rows stay until someone looks). An empty re-delivery of a day that had rows is critical.
    redelivery_drop: float = 0.10
    duplicate_share: float = 0.05  # rows in exact-duplicate groups, our formats (critical)
    # An imported export's day with more faulty rows than this share lands whole and is quarantined whole;
    # below it, the faulty rows are set aside one by one (personaflow/quality/row_faults.py).
    row_fault_share: float = 0.2
    duplicate_share_lenient: float = 0.10  # same, sources with known duplicates (warning)
    missing_customer_share: float = 0.5  # online-retail: more rows without customer: WARNING
    bad_price_share: float = 0.10  # online-retail: more rows with price <= 0: WARNING
    max_quantity: int = contract.MAX_QUANTITY  # our formats (the API's own limit)
    max_quantity_lenient: int = 100_000  # online-retail has a 80,995-unit line and its cancellation
    max_price: float = contract.MAX_PRICE
    min_price: float = contract.MIN_PRICE  # our formats (the API's own floor)


def raw_expectations(
    source_format: str,
    batch_date: date,
    now: datetime,
    n_rows: int,
    expected_rows: int | None = None,
    trailing_rows: Sequence[int] = (),
    limits: Thresholds | None = None,
    previous_rows: int | None = None,
) -> list[gxe.Expectation]:
    """Expectations for one batch of raw.events (all rows share `batch_date`); `previous_rows` is what
    the day held before this load when the batch is a re-delivery (None otherwise)."""
    limits = limits or Thresholds()
    lenient = source_format in LENIENT_FORMATS
    day = datetime.combine(batch_date, datetime.min.time())
    checks: list[gxe.Expectation] = [
        gxe.ExpectTableColumnsToMatchSet(column_set=[*EVENT_COLUMNS, *V2_COLUMNS], exact_match=False),
        gxe.ExpectColumnValuesToBeInTypeList(column="event_ts", type_list=TIME_TYPES),
        gxe.ExpectColumnValuesToBeInTypeList(column="quantity", type_list=INT_TYPES),
        gxe.ExpectColumnValuesToBeInTypeList(column="price", type_list=FLOAT_TYPES),
        *(
            gxe.ExpectColumnValuesToNotBeNull(column=c)
            for c in ("event_id", "item_id", "event_type", "event_ts")
        ),
        gxe.ExpectColumnValuesToNotBeNull(column="quantity"),
        gxe.ExpectColumnValuesToBeUnique(column="event_id"),
        gxe.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(EVENT_TYPES)),
        # [day, day + 1): an event at midnight belongs to the next day's file.
        gxe.ExpectColumnValuesToBeBetween(
            column="event_ts", min_value=day, max_value=day + timedelta(days=1), strict_max=True
        ),
        gxe.ExpectColumnValuesToBeBetween(column="event_ts", max_value=now, description="no future events"),
    ]
    if lenient:
        checks += [
            gxe.ExpectTableRowCountToBeBetween(min_value=1, severity="info", description="a trading day"),
            gxe.ExpectColumnValuesToNotBeNull(
                column="user_id", mostly=1 - limits.missing_customer_share, severity="warning"
            ),
            gxe.ExpectColumnValuesToBeBetween(
                column="quantity",
                min_value=-limits.max_quantity_lenient,
                max_value=limits.max_quantity_lenient,
            ),
            gxe.ExpectColumnValuesToBeBetween(
                column="price", min_value=-limits.max_price, max_value=limits.max_price
            ),
            gxe.ExpectColumnValuesToBeBetween(
                column="price",
                min_value=0,
                strict_min=True,
                mostly=1 - limits.bad_price_share,
                severity="warning",
            ),
            _duplicates(limits.duplicate_share_lenient, "warning"),
        ]
    else:
        buys = Column("event_type").is_in(["purchase", "return"])
        checks += [
            gxe.ExpectTableRowCountToBeBetween(min_value=1, severity="info", description="a trading day")
            if source_format in EXPORT_FORMATS
            else gxe.ExpectTableRowCountToBeBetween(min_value=1),
            gxe.ExpectColumnValuesToNotBeNull(column="user_id"),
            gxe.ExpectColumnValuesToNotBeNull(column="price", row_condition=buys),
            gxe.ExpectColumnValuesToBeBetween(
                column="quantity",
                min_value=1,
                max_value=limits.max_quantity,
                row_condition=Column("event_type") != "return",
            ),
            # A return may come as -2 (a reversal line) or 2 (the API's "2 units back"); never 0.
            gxe.ExpectColumnValuesToBeBetween(
                column="quantity",
                min_value=-limits.max_quantity,
                max_value=limits.max_quantity,
                row_condition=Column("event_type") == "return",
            ),
            gxe.ExpectColumnValuesToNotBeInSet(column="quantity", value_set=[0]),
            gxe.ExpectColumnValuesToBeBetween(
                column="price", min_value=limits.min_price, max_value=limits.max_price
            ),
            _duplicates(limits.duplicate_share, "critical"),
        ]
    if previous_rows:
        # A re-delivered day must not wipe a day that had rows (a header-only export of a trading day):
        # critical, so the earlier load is put back (personaflow/quality/quarantine.py); a big drop only
        # warns.
        checks += [
            gxe.ExpectTableRowCountToBeBetween(
                min_value=1, description=f"a re-delivery of a day that held {previous_rows} rows is not empty"
            ),
            gxe.ExpectTableRowCountToBeBetween(
                min_value=math.ceil(previous_rows * (1 - limits.redelivery_drop)),
                severity="warning",
                description=f"a re-delivery keeps at least {1 - limits.redelivery_drop:.0%} of the "
                f"{previous_rows} rows it replaces",
            ),
        ]
    if expected_rows is not None:  # raw.batches.row_count: a mismatch means a partial load
        checks.append(gxe.ExpectTableRowCountToEqual(value=int(expected_rows)))
    checks += volume_expectations(n_rows, trailing_rows, lenient or source_format in EXPORT_FORMATS, limits)
    return checks


def volume_expectations(
    n_rows: int, trailing_rows: Sequence[int], lenient: bool, limits: Thresholds
) -> list[gxe.Expectation]:
    """Row count against the trailing mean of earlier non-empty batches: a WARNING, never a stop."""
    earlier = [n for n in trailing_rows if n > 0][: limits.trailing_batches]
    if len(earlier) < limits.min_trailing or (lenient and n_rows == 0):
        return []  # no history yet; a closed day of a shop is reported by the 'trading day' check
    mean = sum(earlier) / len(earlier)
    return [
        gxe.ExpectTableRowCountToBeBetween(
            min_value=math.ceil(mean * limits.volume_low),
            max_value=math.floor(mean * limits.volume_high),
            severity="warning",
            description=f"row count within {limits.volume_low:.0%}..{limits.volume_high:.0%} of the "
            f"trailing mean {mean:.0f} of the last {len(earlier)} batches",
        )
    ]


def _duplicates(share: float, severity: str) -> gxe.Expectation:
    # GX counts every member of a duplicate group, so the share is of rows involved in duplication.
    return gxe.ExpectCompoundColumnsToBeUnique(
        column_list=DUPLICATE_KEY, mostly=1 - share, ignore_row_if="never", severity=severity
    )


def marts_expectations(columns: dict[str, Sequence[str]], as_of: date, now: datetime) -> dict[str, list]:
    """Expectations per mart table, for the tables (and columns) that exist: keys unique, RFM 1-5, no
    dates after the as-of day (a leak) or after now, no negative gross money."""
    as_of_ts = datetime.combine(as_of, datetime.min.time())
    horizon = min(as_of_ts + timedelta(days=1), now)  # marts only use events with ts < as_of + 1 day
    keys = {
        "marts.user_features": ["user_id"],
        "marts.item_features": ["item_id"],
        "marts.interactions": ["user_id", "item_id", "event_date"],
        "marts.sessions": ["session_id"],
    }
    out: dict[str, list] = {}
    for table, cols in columns.items():
        key = keys.get(table, [])
        checks: list[gxe.Expectation] = [
            gxe.ExpectTableRowCountToBeBetween(min_value=1),
            gxe.ExpectTableColumnsToMatchSet(column_set=key, exact_match=False),
            *(gxe.ExpectColumnValuesToNotBeNull(column=c) for c in key),
        ]
        if len(key) == 1:
            checks.append(gxe.ExpectColumnValuesToBeUnique(column=key[0]))
        elif key:
            checks.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=key))
        for col in ("r_score", "f_score", "m_score"):
            if col in cols:
                checks += [
                    gxe.ExpectColumnValuesToNotBeNull(column=col),
                    gxe.ExpectColumnValuesToBeBetween(column=col, min_value=1, max_value=5),
                ]
        # monetary is net of returns (RFM practice): goods bought before the log can bring it below 0
        for col in ("gross_monetary", "revenue", "returned_value"):
            if col in cols:
                checks.append(gxe.ExpectColumnValuesToBeBetween(column=col, min_value=0))
        if "popularity_rank" in cols:
            checks.append(gxe.ExpectColumnValuesToBeBetween(column="popularity_rank", min_value=1))
        if "as_of_date" in cols:
            checks.append(
                gxe.ExpectColumnValuesToBeBetween(column="as_of_date", min_value=as_of_ts, max_value=as_of_ts)
            )
        for col in ("first_event_ts", "last_event_ts", "last_purchase_ts", "session_start", "session_end"):
            if col in cols:
                checks.append(
                    gxe.ExpectColumnValuesToBeBetween(column=col, max_value=horizon, strict_max=True)
                )
        if "event_date" in cols:
            checks.append(gxe.ExpectColumnValuesToBeBetween(column="event_date", max_value=as_of_ts))
        out[table] = checks
    return out
