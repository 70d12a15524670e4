"""A folder holding a shop's tables, recognised for `personaflow history FOLDER`: which file is the
events (or transactions) and which are customers, products, reviews, campaigns, coupons and
redemptions, each with the mapping that reads it.

Two ways, documented in docs/guides/own-data.md:
- a manifest, `personaflow.toml` in the folder (or `--manifest NAME|FILE`: a shipped one in
  personaflow/ingest/mappings/ with `kind = "shop"`, e.g. `complete-journey`, for a folder one may not
  write into). One table per section:

      [events]                      # required
      file = "transactions.parquet"
      format = "parquet"            # online-retail | csv | parquet
      mapping = "household_id=user_id,product_id=item_id,transaction_timestamp=event_ts"
      constants = { event_type = "purchase" }   # columns the export lacks, one value for every row
                                    # (a shop with reviews and no orders: from = "reviews", no file:
                                    # each review is a view event of its reviewer, see review_events)
      [customers]                   # optional, and so are products, reviews, campaigns, redemptions
      file = "demographics.parquet"
      mapping = "complete-journey-customers"    # a shipped mapping's name, or a TOML file (relative
                                                # to the manifest)
- by file name, without a manifest: `events.*` or `transactions.*` (csv, csv.gz, xlsx or parquet, our
  column names), and `customers.*`, `products.*`, `reviews.*` (csv or jsonl), `campaigns.*` (with
  `campaign_members.*` beside it), `coupons.*`, `redemptions.*`, each in our column names. Their
  mappings are made from the file's header (ours that it has) and written to
  `landing/imports/mappings/` so the import is repeatable and can be read afterwards. Customers and
  products without a `valid_from` column hold from the first day of the events (`dated`).

Anything else in the folder is listed as not used, never silently taken. Memory: headers only.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from personaflow.ingest.csvfile import IngestError
from personaflow.ingest.shop_tables import MAPPINGS_DIR

MANIFEST = "personaflow.toml"
# The order the tables load in: events first (redemptions are checked against its customers), the
# catalogue before the marts, campaigns before their coupons (checked against the campaigns and the
# catalogue) and redemptions.
TABLE_KINDS = ("customers", "products", "reviews", "campaigns", "coupons", "redemptions")
EVENT_NAMES = ("events", "transactions")
MEMBERS_NAME = "campaign_members"
_SUFFIXES = {".csv": "csv", ".gz": "csv", ".xlsx": "csv", ".parquet": "parquet", ".jsonl": "jsonl"}


@dataclass(frozen=True)
class Table:
    """One table of the folder: its kind, file and the mapping to read it with (events: their=ours
    pairs; the other kinds: a shipped mapping's name or a TOML path)."""

    kind: str
    path: Path
    mapping: str | None = None
    format: str | None = None  # events only
    constants: dict[str, str] = field(default_factory=dict)  # events only
    from_header: bool = False  # its mapping was made from the file's header (by file name)


@dataclass(frozen=True)
class ShopFolder:
    folder: Path
    events: Table
    tables: list[Table]
    manifest: Path | None
    unused: list[str]

    def describe(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "manifest": str(self.manifest) if self.manifest else None,
            "tables": {t.kind: str(t.path.name) for t in (self.events, *self.tables)},
            "unused_files": self.unused,
        }


def _stem(path: Path) -> str:
    return path.name.split(".")[0].lower()


def _format(path: Path) -> str | None:
    return _SUFFIXES.get(path.suffix.lower())


def read_folder(folder: Path, manifest: str | Path | None, mappings_dir: Path) -> ShopFolder:
    """The folder's tables, from `manifest` (a shipped name, a file, or None: the folder's
    personaflow.toml if present, else the file names). `mappings_dir`: where mappings made from file
    headers are written."""
    folder = Path(folder)
    if not folder.is_dir():
        raise IngestError(f"{folder}: not a folder")
    spec_path = _manifest_path(folder, manifest)
    if spec_path is not None:
        return _from_manifest(folder, spec_path)
    return _by_name(folder, mappings_dir)


def _manifest_path(folder: Path, manifest: str | Path | None) -> Path | None:
    if manifest is None:
        own = folder / MANIFEST
        return own if own.is_file() else None
    path = Path(manifest)
    if not path.suffix:
        path = MAPPINGS_DIR / f"{manifest}.toml"
    if not path.is_file():
        shipped = [p.stem for p in sorted(MAPPINGS_DIR.glob("*.toml")) if _is_shop(p)]
        raise IngestError(f"manifest {manifest}: no such file; shipped: {', '.join(shipped)}")
    return path


def _is_shop(path: Path) -> bool:
    try:
        return tomllib.loads(path.read_text()).get("kind") == "shop"
    except tomllib.TOMLDecodeError:
        return False


def _from_manifest(folder: Path, spec_path: Path) -> ShopFolder:
    where = f"manifest {spec_path}"
    try:
        spec = tomllib.loads(spec_path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise IngestError(f"{where}: not valid TOML ({exc})") from exc
    unknown = sorted(set(spec) - {"kind", "events", *TABLE_KINDS})
    if unknown:
        raise IngestError(
            f"{where}: [{', '.join(unknown)}] not a table we read (events, {', '.join(TABLE_KINDS)})"
        )
    if "events" not in spec:
        raise IngestError(f"{where}: needs an [events] section (the events or transactions file)")

    def table(kind: str) -> Table:
        entry = spec[kind]
        if kind == "events" and entry.get("from") == "reviews":
            # no order export: the events are the reviews' (personaflow/ingest/reviews.py review_events)
            if "reviews" not in spec:
                raise IngestError(f'{where}: [events] from = "reviews" needs a [reviews] section')
            return Table("events", folder / str(spec["reviews"].get("file", "")), None, "reviews")
        if "file" not in entry:
            raise IngestError(f'{where}: [{kind}] needs file = "..."')
        path = folder / str(entry["file"])
        if not path.is_file():
            raise IngestError(f"{where}: [{kind}] file {path} not found")
        if kind == "events":
            fmt = str(entry.get("format") or _format(path) or "")
            if fmt not in ("online-retail", "csv", "parquet"):
                raise IngestError(f"{where}: [events] format = {fmt!r}; one of online-retail, csv, parquet")
            constants = {str(k): str(v) for k, v in (entry.get("constants") or {}).items()}
            return Table(kind, path, entry.get("mapping"), fmt, constants)
        mapping = entry.get("mapping")
        if not mapping:
            raise IngestError(f'{where}: [{kind}] needs mapping = "NAME" or a TOML file')
        local = spec_path.parent / str(mapping)
        return Table(
            kind, path, str(local) if Path(str(mapping)).suffix and local.is_file() else str(mapping)
        )

    events = table("events")
    tables = [table(kind) for kind in TABLE_KINDS if kind in spec]
    used = {t.path.name for t in (events, *tables)} | {MANIFEST}
    return ShopFolder(folder, events, tables, spec_path, _unused(folder, used, tables))


def _unused(folder: Path, used: set[str], tables: list[Table]) -> list[str]:
    members = set()
    for t in tables:
        if t.kind == "campaigns" and t.mapping:
            from personaflow.ingest.campaigns import campaign_mapping

            try:
                members.add(campaign_mapping(t.mapping).members.get("file", ""))
            except IngestError:
                pass
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.name not in used | members)


def _by_name(folder: Path, mappings_dir: Path) -> ShopFolder:
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and _format(path):
            found.setdefault(_stem(path), []).append(path)
    for stem, paths in found.items():
        if len(paths) > 1 and stem in (*EVENT_NAMES, *TABLE_KINDS, MEMBERS_NAME):
            names = ", ".join(p.name for p in paths)
            raise IngestError(f"{folder}: {names} are all named {stem}: keep one, or write a {MANIFEST}")
    events = [found[n][0] for n in EVENT_NAMES if n in found]
    if len(events) != 1:
        what = "both events.* and transactions.*" if events else "no events.* or transactions.* file"
        raise IngestError(
            f"{folder}: {what}; name the events file events.csv / events.parquet (our column names) "
            f"or describe the folder in a {MANIFEST} (docs/guides/own-data.md)"
        )
    fmt = _format(events[0])
    if fmt not in ("csv", "parquet"):
        raise IngestError(f"{events[0]}: events must be csv, csv.gz, xlsx or parquet")
    tables = []
    for kind in TABLE_KINDS:
        if kind in found:
            path = found[kind][0]
            members = found.get(MEMBERS_NAME, [None])[0] if kind == "campaigns" else None
            mapping = _header_mapping(kind, path, members, mappings_dir)
            tables.append(Table(kind, path, str(mapping), from_header=True))
    used = {p.name for kind in (*EVENT_NAMES, *TABLE_KINDS, MEMBERS_NAME) for p in found.get(kind, [])}
    unused = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name not in used)
    return ShopFolder(folder, Table("events", events[0], None, fmt), tables, None, unused)


def header(path: Path) -> list[str]:
    """A table's column names, reading no more than its first record."""
    fmt = _format(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    if fmt == "jsonl":
        with path.open() as handle:
            return list(json.loads(handle.readline() or "{}"))
    import pandas as pd

    return [str(c) for c in pd.read_csv(path, nrows=0).columns]


def _header_mapping(kind: str, path: Path, members: Path | None, mappings_dir: Path) -> Path:
    """A mapping TOML for a table in our column names: ours that the file's header has."""
    from personaflow.ingest import campaigns, customers, products, reviews

    fields = {
        "customers": customers.REQUIRED + customers.OPTIONAL,
        "products": products.REQUIRED + products.OPTIONAL,
        "reviews": reviews.REQUIRED + reviews.OPTIONAL,
        "campaigns": campaigns.CAMPAIGN_REQUIRED + campaigns.CAMPAIGN_OPTIONAL,
        "coupons": campaigns.COUPON_REQUIRED,
        "redemptions": campaigns.REDEMPTION_REQUIRED + campaigns.REDEMPTION_OPTIONAL,
    }[kind]
    columns = set(header(path))
    lines = [f'# made by personaflow history from the header of {path}', f'kind = "{kind}"',
             f'format = "{_format(path)}"', "", "[columns]"]  # fmt: skip
    lines += [f'{ours} = "{ours}"' for ours in fields if ours in columns]
    if kind == "campaigns":
        if members is None:
            raise IngestError(
                f"{path}: a campaigns table needs {MEMBERS_NAME}.* beside it (who each reached)"
            )
        lines += [
            "",
            "[members]",
            f'file = "{members.name}"',
            'campaign_id = "campaign_id"',
            'user_id = "user_id"',
        ]
    target = mappings_dir / f"{kind}.toml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n")
    return target


def dated(table: Table, first_day: date) -> Table:
    """A customers or products table recognised by name, without a valid_from column: its rows hold
    from `first_day` (the history's first event day), written into its mapping as [options]."""
    if not table.from_header or table.kind not in ("customers", "products") or table.mapping is None:
        return table
    path = Path(table.mapping)
    spec = tomllib.loads(path.read_text())
    if "valid_from" in spec.get("columns", {}) or "options" in spec:
        return table
    path.write_text(
        path.read_text() + f'\n[options]\nvalid_from = "{first_day.isoformat()}"  # the first event day\n'
    )
    return table
