"""What the customers, campaigns and redemptions imports share: a declared per-source column mapping
(TOML, the shape of personaflow/ingest/reviews.py's), reading a CSV or Parquet export as text columns with
each row's record kept, and the named errors.

A mapping is `format = "csv" | "parquet"`, `[columns]` (ours = "their column"), optional `[options]`
and, for campaigns, `[members]`. Shipped mappings live in `personaflow/ingest/mappings/` (named by their
stem); a shop's own is passed as a path. docs/guides/campaigns.md documents the format.

Memory: one export in one frame, O(rows × columns); nothing is compared pairwise.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from personaflow.ingest.csvfile import IngestError, bad_values

MAPPINGS_DIR = Path(__file__).parent / "mappings"
FORMATS = ("csv", "parquet")


@dataclass(frozen=True)
class TableMapping:
    """How one source's columns become ours (`columns`: ours -> theirs)."""

    name: str
    path: Path
    format: str
    columns: dict[str, str]
    options: dict[str, Any] = field(default_factory=dict)
    members: dict[str, str] = field(default_factory=dict)  # campaigns: file + campaign_id/user_id


def mapping_names(kind: str | None = None) -> list[str]:
    """The shipped mappings (of one `kind`: the `kind = "..."` line each file starts with)."""
    names = []
    for path in sorted(MAPPINGS_DIR.glob("*.toml")):
        if kind is None or tomllib.loads(path.read_text()).get("kind") == kind:
            names.append(path.stem)
    return names


def read_mapping(
    name_or_path: str | Path,
    kind: str | None,
    formats: tuple[str, ...],
    required: tuple[str, ...],
    optional: tuple[str, ...],
) -> tuple[Path, dict[str, Any], dict[str, str], str]:
    """(path, the TOML, its [columns] ours -> theirs, where) of a shipped mapping by name or a shop's TOML
    file by path, with its format in `formats` and its columns ours; every kind's loader starts here."""
    path = Path(name_or_path)
    if not path.suffix:
        path = MAPPINGS_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise IngestError(f"mapping {name_or_path}: no such file; shipped: {', '.join(mapping_names(kind))}")
    try:
        spec = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise IngestError(f"mapping {path}: not valid TOML ({exc})") from exc
    where = f"mapping {path}"
    fmt = spec.get("format")
    if fmt not in formats:
        raise IngestError(f"{where}: format = {fmt!r}; expected one of {', '.join(formats)}")
    columns = {str(k): str(v) for k, v in (spec.get("columns") or {}).items()}
    unknown = sorted(set(columns) - set(required) - set(optional))
    if unknown:
        raise IngestError(
            f"{where}: [columns] {', '.join(unknown)} not ours ({', '.join(required + optional)})"
        )
    missing = [c for c in required if c not in columns]
    if missing:
        raise IngestError(f"{where}: [columns] must map {', '.join(missing)}")
    return path, spec, columns, where


def load_mapping(
    name_or_path: str | Path, required: tuple[str, ...], optional: tuple[str, ...], kind: str | None = None
) -> TableMapping:
    """A shipped mapping by name or a shop's TOML file by path, checked against our `required` and
    `optional` fields; the error names the entry at fault."""
    path, spec, columns, _ = read_mapping(name_or_path, kind, FORMATS, required, optional)
    members = {str(k): str(v) for k, v in (spec.get("members") or {}).items()}
    return TableMapping(path.stem, path, spec["format"], columns, dict(spec.get("options") or {}), members)


def read_table(path: Path, fmt: str) -> tuple[pd.DataFrame, list[str]]:
    """Every row of a CSV or Parquet export (CSV as text), and each row's record as JSON text (raw kept)."""
    path = Path(path)
    if not path.is_file():
        raise IngestError(f"{path}: file not found")
    try:
        if fmt == "parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except Exception as exc:  # pyarrow and pandas raise many kinds for a file that is not one
        raise IngestError(f"{path}: not a readable {fmt} file ({exc})") from exc
    frame = frame.reset_index(drop=True)
    records = [json.dumps(r, default=str, ensure_ascii=False) for r in frame.to_dict(orient="records")]
    return frame, records


def text(values: pd.Series) -> pd.Series:
    """Values as stripped text; None for missing or empty."""
    out = values.map(
        lambda v: (
            None if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NaT else str(v).strip()
        )
    )
    return out.where(out != "", None).astype(object)


def dates(values: pd.Series) -> pd.Series:
    """Dates or times (ISO 8601 text or already datetimes) as naive datetime64; NaT where unreadable."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return (
            pd.to_datetime(values).dt.tz_localize(None) if values.dt.tz else values.astype("datetime64[ns]")
        )
    parsed = pd.to_datetime(text(values), format="ISO8601", utc=True, errors="coerce")
    return parsed.dt.tz_localize(None).astype("datetime64[ns]")


class Columns:
    """Our view of one read export through its mapping: `get(ours)` as text, `fault(...)` for errors."""

    def __init__(self, path: Path, frame: pd.DataFrame, mapping: TableMapping, columns: dict[str, str]):
        self.path, self.frame, self.mapping, self.columns = Path(path), frame, mapping, columns
        self.where = np.arange(1, len(frame) + 1)  # 1-based data row (CSV: record; Parquet: row)
        missing = [f"{theirs!r} (ours: {ours})" for ours, theirs in columns.items() if theirs not in frame]
        if missing:
            raise IngestError(
                f"{path}: missing column(s) {', '.join(missing)} (mapping {mapping.name}); "
                f"the file has {', '.join(repr(c) for c in frame.columns)}; nothing was imported"
            )

    def raw(self, ours: str) -> pd.Series:
        return self.frame[self.columns[ours]]

    def get(self, ours: str) -> pd.Series:
        if ours not in self.columns:
            return pd.Series([None] * len(self.frame), index=self.frame.index, dtype=object)
        return text(self.raw(ours))

    def fault(self, ours: str, bad: np.ndarray, kind: str) -> IngestError:
        theirs = self.columns[ours]
        return bad_values(
            self.path, f"{theirs!r} (ours: {ours})", self.where, self.raw(ours), bad, kind, "row"
        )

    def required(self, ours: str, kind: str) -> pd.Series:
        values = self.get(ours)
        if values.isna().any():
            raise self.fault(ours, values.isna().to_numpy(), kind)
        return values

    def date(self, ours: str, required: bool = True) -> pd.Series:
        values = dates(self.raw(ours)) if ours in self.columns else pd.Series(pd.NaT, index=self.frame.index)
        given = self.get(ours).notna()
        bad = (given & values.isna()) | (~given if required else False)
        if np.asarray(bad).any():
            raise self.fault(ours, np.asarray(bad), "a date (ISO 8601, e.g. 2017-03-31)")
        return values


    def valid_from(self, record: str) -> pd.Series:
        """The date each row holds from: the mapped `valid_from` column, or `[options] valid_from` for an
        export without one (`record` names the row in the error, e.g. "a customer record")."""
        if "valid_from" in self.mapping.columns:
            return self.date("valid_from")
        default = self.mapping.options.get("valid_from")
        stamp = pd.to_datetime(str(default), format="ISO8601", errors="coerce") if default else pd.NaT
        if pd.isna(stamp):
            raise IngestError(
                f"mapping {self.mapping.path}: no valid_from column, and [options] valid_from = {default!r} "
                f"is not a date (YYYY-MM-DD): {record} must say from when it holds"
            )
        return pd.Series(stamp, index=self.frame.index).astype("datetime64[ns]")

    def versions(self, out: pd.DataFrame, key: str, attributes: tuple[str, ...], records: list[str],
                 entity: str) -> tuple[pd.DataFrame, int]:  # fmt: skip
        """`out` (one row per record: `key`, `attributes`, valid_from) with its provenance, exact repeats
        dropped: (the versions, repeats dropped). Two different records of one `entity` for one date are
        an error naming their rows."""
        out = out.assign(source=self.mapping.name, source_file=str(self.path),
                         source_row=self.where.astype("int64"), raw_record=records)  # fmt: skip
        same = out.duplicated([key, "valid_from", *attributes], keep="first")
        out = out[~same.to_numpy()].reset_index(drop=True)
        clash = out.duplicated([key, "valid_from"], keep=False).to_numpy()
        if clash.any():
            rows = out.loc[clash, "source_row"].tolist()[:4]
            raise IngestError(
                f"{self.path}: {entity} {out.loc[clash, key].iloc[0]!r} has different records for the same "
                f"date (rows {', '.join(map(str, rows))}); nothing was imported"
            )
        return out, int(same.sum())


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_rows(warehouse: Any, ddl: str, table: str, frame: pd.DataFrame, key: list[str]) -> int:
    """Put `frame` into `table` in one transaction, replacing the rows with the same `key` (a re-run of
    the same export changes nothing); returns the table's row count after."""
    import pyarrow as pa

    from personaflow.core import warehouse as wh

    rows = pa.Table.from_pandas(frame, preserve_index=False)
    cols = ", ".join(frame.columns)
    match = " and ".join(f"{table}.{k} = incoming.{k}" for k in key)
    with wh.connect(warehouse) as con:
        con.execute(ddl)
        con.register("incoming", rows)
        try:
            con.begin()
            con.execute(f"delete from {table} where exists (select 1 from incoming where {match})")
            con.execute(f"insert into {table} ({cols}) select {cols} from incoming")
            con.commit()
        except wh.ERRORS as exc:
            con.rollback()
            raise IngestError(f"{table}: {exc}") from exc
        finally:
            con.unregister("incoming")
        [(total,)] = con.execute(f"select count(*) from {table}").fetchall()
    return int(total)


def known_users(warehouse: Any) -> set[str] | None:
    """The customers the warehouse has events of (None: no events loaded yet, so nothing to check against)."""
    from personaflow.core import warehouse as wh

    if not wh.exists(warehouse):
        return None
    with wh.connect(warehouse, read_only=True) as con:
        if not con.table_exists("raw.events"):
            return None
        return {str(u) for (u,) in con.execute("select distinct user_id from raw.events").fetchall()}
