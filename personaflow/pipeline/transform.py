"""Run the dbt project (raw -> staging -> intermediate -> marts) in-process and summarise what it built.

The event models (intermediate.int_events_flagged, marts.interactions, sessions, data_quality) are
incremental: a run for day N rewrites day N (and any days skipped since the last run) on top of
what they hold, so a nightly run costs one day, not all history. `full_refresh=True` rebuilds them
from all of raw.events (after changing a past batch, or the models).

dbt runs through `dbtRunner` in this Python process rather than a `dbt` subprocess: no second
interpreter start (~10 s of imports) and the results come back as objects instead of log lines.
Everything dbt writes besides the warehouse (manifest, run results, partial-parse cache, logs) goes
under `state_dir`, so the repository stays clean and parallel runs do not share a `target/`.

The warehouse is the DuckDB file (profile target `warehouse`, dbt-duckdb), a postgresql:// URL
(target `postgres`, dbt-postgres) or Spark (target `spark`, dbt-spark's in-process `session` method in
the process's SparkSession, personaflow/core/spark.py): the same models on all three, with the SQL the
dialects spell differently behind the dispatch macros in dbt_project/macros/dialect.sql.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from personaflow.core import warehouse as wh
from personaflow.core.settings import Settings, postgres_env
from personaflow.core.warehouse import location

# Commands whose results are per-node run results we can summarise.
_COMMANDS = ("build", "run", "test", "compile", "seed")
_FAILED = {"error", "fail", "runtime error"}
# The rows each model held after the last successful `build`/`run` (run_dbt's `rows`, which it counts
# anyway), by relation, with the as-of day, in the dbt state dir. A later stage that only needs to know
# whether a mart is empty reads it here instead of opening the warehouse: on Spark that open is a JVM
# start and a metastore boot (~30 s of a night on two cores), e.g. churn on a log shorter than its horizon.
BUILT_ROWS = "built_rows.json"


class TransformError(RuntimeError):
    """dbt failed: the message names every failed or errored node and what it said. `data_failure`:
    a data test failed on the data (retrying cannot help), as opposed to dbt not being able to run."""

    def __init__(self, message: str, data_failure: bool = False) -> None:
        super().__init__(message)
        self.data_failure = data_failure


def _dbt_args(
    command: str,
    as_of: date | None,
    project_dir: Path,
    state_dir: Path,
    select: str | None,
    full_refresh: bool = False,
    dbt_vars: dict[str, Any] | None = None,
    target: str = "warehouse",
    profiles_dir: Path | None = None,
) -> list[str]:
    args = [
        command,
        "--target",
        target,
        "--project-dir",
        str(project_dir),
        "--profiles-dir",
        str(profiles_dir or project_dir),
        "--target-path",
        str(state_dir / "target"),
        "--log-path",
        str(state_dir / "logs"),
        # no network here: tracking and the version check would only wait on timeouts
        "--no-send-anonymous-usage-stats",
        "--no-version-check",
        "--no-use-colors",
    ]
    variables = dict(dbt_vars or {})
    if as_of is not None:
        variables["as_of"] = as_of.isoformat()
    if variables:
        args += ["--vars", json.dumps(variables, sort_keys=True)]
    if select:
        args += ["--select", select]
    if full_refresh:
        # incremental models (int_events_as_of and the event marts) are rebuilt from all of raw.events
        args.append("--full-refresh")
    return args


def _write_profile(project_dir: Path, profiles_dir: Path, target: str, warehouse: Path | str) -> None:
    """profiles.yml for one run: the project's own (dbt_project/profiles.yml, which dbt run by hand reads
    with its variables), its `target` output's location fields filled in from `warehouse`."""
    profiles = yaml.safe_load((project_dir / "profiles.yml").read_text())
    output = profiles["personaflow"]["outputs"][target]
    if target == "spark":
        pass  # the session is this process's (personaflow/core/spark.py); nothing to point at
    elif target == "postgres":
        pg = postgres_env(str(warehouse))
        output.update({field: pg[f"PERSONAFLOW_PG_{field.upper()}"]
                       for field in ("host", "user", "password", "dbname", "schema")})  # fmt: skip
        output["port"] = int(pg["PERSONAFLOW_PG_PORT"])
    else:
        output["path"] = str(warehouse)
    profiles["personaflow"]["target"] = target
    path = profiles_dir / "profiles.yml"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(profiles, sort_keys=False))


def _failure_message(command: str, results: list[Any], log_path: Path) -> str:
    lines = []
    for result in results:
        status = str(result.status).lower()
        if status in _FAILED:
            message = (result.message or "").strip() or "no message"
            failures = f", {result.failures} failing rows" if getattr(result, "failures", None) else ""
            lines.append(f"  {result.node.unique_id} [{status}{failures}]: {message}")
    # name the skipped models (what is now stale); their tests are only counted
    skipped = [r.node for r in results if str(r.status).lower() == "skipped"]
    skipped_models = [n.unique_id for n in skipped if n.resource_type == "model"]
    head = f"dbt {command} failed: {len(lines)} node(s) failed or errored"
    tail = ""
    if skipped:
        tail = (
            f"\n  skipped because of them: {', '.join(skipped_models) or 'no models'}"
            f" (+{len(skipped) - len(skipped_models)} tests)"
        )
    return f"{head}\n" + "\n".join(lines) + tail + f"\n  (dbt log: {log_path})"


def _release_warehouse() -> None:
    """Close the DuckDB instance dbt-duckdb keeps open after a run (profile `keep_open: true`).

    Until it is closed, this process holds the file's lock and no other process (quality checks,
    Feast, a second run) can open the warehouse. dbt-duckdb only drops it at interpreter exit.
    """
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    with DuckDBConnectionManager._LOCK:
        env = DuckDBConnectionManager._ENV
        DuckDBConnectionManager._ENV = None
        if env is not None:
            env.close()


def _row_counts(warehouse: wh.Location, relations: list[str]) -> dict[str, int]:
    # A short-lived connection, closed before returning: DuckDB lets one process write the file at a
    # time, and the next stage (quality, Feast) must be able to open it.
    with wh.connect(warehouse, read_only=True) as con:
        return {rel: int(con.execute(f"select count(*) from {rel}").fetchone()[0]) for rel in relations}


def run_dbt(
    warehouse: wh.Location,
    as_of: date | None,
    project_dir: Path,
    state_dir: Path,
    command: str = "build",
    select: str | None = None,
    full_refresh: bool = False,
    dbt_vars: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run `dbt <command>` against `warehouse` (the DuckDB file, or a postgresql:// URL) for the as-of
    date (None: the newest event's day).

    The incremental models rebuild only the as-of day on top of what they hold (and fill in days
    skipped since their newest one); `full_refresh=True` rebuilds them from all of raw.events.
    `dbt_vars` sets other project vars (see dbt_project.yml, e.g. churn_horizon_days); `as_of` wins
    over a var of that name.

    Returns plain types: {"models": n built, "tests": n data tests, "unit_tests": n, "rows":
    {"marts.user_features": n, ...} for every model built, "seconds": wall time}. Raises
    TransformError naming each failed node (a failing test included) and its message. One call at a
    time per process: dbt keeps global state, and the DuckDB instance is shared by the whole process.
    """
    # Imported here: dbt's import costs seconds, and modules that only import this one (the CLI,
    # DAG files) should not pay it at import time.
    from dbt.cli.main import dbtRunner

    if command not in _COMMANDS:
        raise ValueError(f"run_dbt: command {command!r} not supported; use one of {', '.join(_COMMANDS)}")
    if full_refresh and command not in ("build", "run"):
        raise ValueError(f"run_dbt: full_refresh only applies to build and run, not {command!r}")
    postgres = wh.is_postgres(warehouse)
    on_spark = wh.is_spark(warehouse)
    warehouse = warehouse if postgres or on_spark else Path(warehouse).resolve()
    project_dir = Path(project_dir).resolve()
    state_dir = Path(state_dir).resolve()
    if not (project_dir / "dbt_project.yml").is_file():
        raise TransformError(f"no dbt_project.yml in project_dir {project_dir}")
    state_dir.mkdir(parents=True, exist_ok=True)

    target = "postgres" if postgres else "spark" if on_spark else "warehouse"
    if command in ("build", "run"):
        # this run may change any model: no record until it has succeeded (a failed run leaves none)
        (state_dir / BUILT_ROWS).unlink(missing_ok=True)
    if on_spark:
        from personaflow.core import spark

        spark.session(warehouse)  # started here with our confs: dbt-spark's getOrCreate() then reuses it
    started = time.perf_counter()
    # The profile with this run's warehouse written in (not read from the environment), in a private
    # folder (0700) that is gone when the run ends: a PostgreSQL password never stays on disk.
    with tempfile.TemporaryDirectory(prefix="personaflow-dbt-profile-") as profiles_dir:
        _write_profile(project_dir, Path(profiles_dir), target, warehouse)
        args = _dbt_args(command, as_of, project_dir, state_dir, select, full_refresh, dbt_vars, target,
                         profiles_dir=Path(profiles_dir))  # fmt: skip
        try:
            # dbt's console lines are progress: stderr, so a command's stdout stays its JSON result
            with contextlib.redirect_stdout(sys.stderr):
                outcome = dbtRunner().invoke(args)
        finally:
            if not postgres and not on_spark:  # dbt-postgres closes its connections at the end of the run
                _release_warehouse()
    seconds = time.perf_counter() - started

    log_path = state_dir / "logs" / "dbt.log"
    results = list(getattr(outcome.result, "results", None) or [])
    if outcome.exception is not None:
        raise TransformError(
            f"dbt {command} could not run ({type(outcome.exception).__name__}): {outcome.exception}"
            f"\n  (dbt log: {log_path})"
        ) from outcome.exception
    if not outcome.success:
        tests_failed = any(
            str(r.status).lower() == "fail" and r.node.resource_type in ("test", "unit_test") for r in results
        )
        raise TransformError(_failure_message(command, results, log_path), data_failure=tests_failed)

    built = [r.node for r in results if r.node.resource_type == "model" and str(r.status) == "success"]
    relations = [f"{node.schema}.{node.alias}" for node in built]
    rows = _row_counts(warehouse, relations) if command in ("build", "run") and relations else {}
    if rows:
        _record_rows(state_dir, as_of, rows)
    return {
        "command": command,
        "as_of": as_of.isoformat() if as_of else None,
        "full_refresh": full_refresh,
        "models": len(built),
        "tests": sum(1 for r in results if r.node.resource_type == "test"),
        "unit_tests": sum(1 for r in results if r.node.resource_type == "unit_test"),
        "rows": rows,
        "seconds": round(seconds, 3),
    }


def _record_rows(state_dir: Path, as_of: date | None, rows: dict[str, int]) -> None:
    """Write BUILT_ROWS for this run's models (replaced whole: the file is removed when a run starts)."""
    day = as_of.isoformat() if as_of else None  # None: the newest event's day, unknown here
    record = {relation: {"rows": int(n), "as_of": day} for relation, n in rows.items()}
    partial = state_dir / f"{BUILT_ROWS}.partial"
    partial.write_text(json.dumps(record, indent=1, sort_keys=True))
    partial.replace(state_dir / BUILT_ROWS)  # a reader never sees half a file


def built_rows(state_dir: Path, relation: str, as_of: date) -> int | None:
    """The rows `relation` (e.g. "marts.churn_labels") held after the last successful dbt build or run
    in `state_dir`, if that run was for `as_of`; None when unknown (no record, another day, a run since
    that failed or is running, a model that run did not build): the caller then asks the warehouse."""
    try:
        entry = json.loads((state_dir / BUILT_ROWS).read_text()).get(relation)
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(entry, dict) or entry.get("as_of") != as_of.isoformat():
        return None
    rows = entry.get("rows")
    return rows if isinstance(rows, int) else None


def state_dir(s: Settings) -> Path:
    """Where the nightly dbt runs keep their state: manifest, logs, BUILT_ROWS."""
    return s.home / "dbt"


def transform(as_of: date, s: Settings, full_refresh: bool = False) -> dict[str, Any]:
    """`dbt build`: staging views and marts, each tested right after it is built. Incremental marts
    process the new day; `full_refresh` rebuilds them from all of raw (once after a model change)."""
    return run_dbt(
        location(s), as_of, s.dbt_project_dir, state_dir(s), full_refresh=full_refresh,
        dbt_vars=dbt_vars(s),
    )  # fmt: skip


def dbt_vars(s: Settings) -> dict[str, Any]:
    """Project vars that come from our settings (every dbt run of a night must pass the same ones)."""
    return {"churn_horizon_days": s.churn_horizon_days}
