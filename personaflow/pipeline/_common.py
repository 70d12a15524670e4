"""What every stage module shares: reading a mart, writing a stage report, the SMTP settings."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from personaflow.core import warehouse as wh
from personaflow.core.settings import Settings


def smtp_config(s: Settings):
    from personaflow.core.alert import SmtpConfig

    return SmtpConfig(host=s.smtp_host, port=s.smtp_port, sender=s.alert_from, recipients=list(s.alert_to))


def read_mart(warehouse: wh.Location, sql: str, params: list[Any]):
    if not wh.exists(warehouse):  # a DuckDB file not made yet (a server, or Spark's catalog, is there)
        raise ValueError(f"warehouse {warehouse} does not exist: load data first (personaflow history PATH, "
                         "or personaflow ingest)")  # fmt: skip
    # read-only and short-lived: DuckDB allows one writer process, and the DAG may be loading
    con = wh.connect(warehouse, read_only=True)
    try:
        return con.execute(sql, params).df()
    except wh.MISSING_TABLE as exc:
        first_line = str(exc).splitlines()[0]
        raise ValueError(
            f"{wh.describe(warehouse)}: {first_line} (build the marts: personaflow transform)"
        ) from exc
    finally:
        con.close()


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def skipped(stage: str, as_of: date, s: Settings, reason: str) -> dict[str, Any]:
    """A stage that cannot run on this data (not an error): say why, in the result and a report."""
    report = {"as_of": as_of.isoformat(), "status": "skipped", "reason": reason}
    path = write_json(s.reports_dir / stage / f"{stage}_{as_of.isoformat()}.json", report)
    return {**report, "report": str(path)}
