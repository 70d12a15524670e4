"""Build everything from a shop's history in one command: `personaflow history PATH --format F`, or
`personaflow history FOLDER` for a folder holding the shop's tables (events plus any of customers,
products, reviews, campaigns, redemptions; personaflow/ingest/shop_folder.py recognises them by a
manifest or by file name): each table is imported with its own import (named errors, raw kept,
checks, quarantine) after the events and before the marts, so the marts, profiles and /profile carry
them from the first night.

A year of an export is not 374 nightly runs (31-50 hours through the DAG). Each stage runs once over
all days, in bulk, with the nightly code: import and load every day, validate every day with the
batch suite (personaflow/quality/history.py), build the marts as of the last day (dbt, full refresh), validate
them, segments and churn, Feast features, train a first model and promote it through the gate. After
that the nightly DAG carries on day by day (or `personaflow backfill` replays the last days).

A long, sparse log (most days without an event: years of a shop's reviews) lands only its days with
events as batches (`empty_days="auto"`, personaflow/ingest/landing.py): every stage's cost per day is
then paid for the days that have something to load and check, and the marts as of the last day, and
any day, hold the same events.

Each stage prints one progress line when it ends (time, peak memory) and the summary keeps the
timings, so benchmarks/history.py measures exactly this path.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import psutil

from personaflow.core.settings import Settings
from personaflow.ingest.shop_folder import dated, read_folder
from personaflow.pipeline import features as features_stage
from personaflow.pipeline import ingest as ingest_stage
from personaflow.pipeline import profiles as profiles_stage
from personaflow.pipeline import promote as promote_stage
from personaflow.pipeline import train as train_stage
from personaflow.pipeline import transform as transform_stage
from personaflow.pipeline import validate as validate_stage
from personaflow.pipeline.audiences import refresh_saved

Progress = Callable[[str], None]


class PeakMemory:
    """Peak resident memory of this process while a block runs (sampled every 20 ms)."""

    def __init__(self) -> None:
        self._proc = psutil.Process(os.getpid())
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def build_history(
    path: Path,
    source_format: str,
    s: Settings,
    mapping: str | None = None,
    overwrite: bool = False,
    train: bool = True,
    progress: Progress | None = None,
    manifest: str | None = None,
    empty_days: str = "auto",
) -> dict[str, Any]:
    """Import `path` (an export, or a folder of the shop's tables) and build every stage from it;
    returns each stage's result and its cost. `empty_days` ("auto", "land", "skip"): whether the days
    without events become header-only batches (module docstring)."""
    say = progress or (lambda _line: None)
    timings: dict[str, dict[str, float]] = {}
    out: dict[str, Any] = {"source": str(path), "format": source_format, "stages": timings}
    folder = None
    constants: dict[str, str] = {}
    if Path(path).is_dir():
        folder = read_folder(Path(path), manifest, s.landing_dir / "imports" / "mappings")
        out["folder"] = folder.describe()
        say(f"folder: {', '.join(f'{k} {v}' for k, v in out['folder']['tables'].items())}")
        path, source_format = folder.events.path, folder.events.format or "csv"
        mapping, constants = folder.events.mapping, folder.events.constants
        if source_format == "reviews":
            path, out["events_from_reviews"] = _review_events(folder, s)
            source_format, mapping = "parquet", None
            say(f"events: {out['events_from_reviews']['events']:,} from the reviews (one view per review)")
        out["format"] = source_format
    elif manifest is not None:
        raise ValueError(f"--manifest {manifest} describes a folder; {path} is a file")

    def run(name: str, fn: Callable[[], Any]) -> Any:
        say(f"{name} ...")
        started = time.perf_counter()
        with PeakMemory() as memory:
            result = fn()
        seconds = time.perf_counter() - started
        timings[name] = {"seconds": round(seconds, 2), "peak_rss_mb": round(memory.peak / 2**20, 1)}
        say(f"{name}: done in {seconds:.1f}s (peak {memory.peak / 2**20:.0f} MB){_gist(name, result)}")
        out[name] = result
        return result

    imported = run(
        "import",
        lambda: ingest_stage.import_events(
            path, source_format, s, mapping=mapping, overwrite=overwrite, constants=constants,
            empty_days=empty_days,
        ),  # fmt: skip
    )
    first, last = _days(imported)
    for table in folder.tables if folder else []:
        run(f"import_{table.kind}", lambda table=table: _import_table(dated(table, first), last, s))
    run("validate_history", lambda: validate_stage.validate_history(first, last, s, progress=say))
    run("transform", lambda: transform_stage.transform(last, s, full_refresh=True))
    run("validate_marts", lambda: validate_stage.validate_marts(last, s))
    run("segments", lambda: profiles_stage.segments(last, s))
    run("churn", lambda: profiles_stage.churn(last, s))
    run("audiences", lambda: refresh_saved(s))
    run("features", lambda: features_stage.features(last, s))
    if train:
        candidate = run("train", lambda: train_stage.train(s))
        run("promote", lambda: promote_stage.promote(candidate["tag"], s, report=candidate.get("report")))
    out["as_of"] = last.isoformat()
    out["total_seconds"] = round(sum(t["seconds"] for t in timings.values()), 2)
    out["peak_rss_mb"] = max(t["peak_rss_mb"] for t in timings.values())
    return out


def _review_events(folder: Any, s: Settings) -> tuple[Path, dict[str, int]]:
    """A folder whose manifest says `[events] from = "reviews"`: its reviews (read through their own
    mapping, repeats dropped) as view events, written beside the imports as Parquet in our column
    names; (that file, counts)."""
    from personaflow.ingest.reviews import load_mapping, read_reviews, review_events

    table = next(t for t in folder.tables if t.kind == "reviews")
    frame, _ = read_reviews(table.path, load_mapping(str(table.mapping)))
    events, counts = review_events(frame)
    target = s.landing_dir / "imports" / f"{table.path.name.split('.')[0]}.review-events.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    events.to_parquet(target, index=False)
    return target, counts


def _import_table(table: Any, last: date, s: Settings) -> dict[str, Any]:
    """One of the folder's other tables through its own import; the profile fields are refreshed once,
    by the audiences stage, and reviews' marts by the transform stage."""
    if table.kind == "reviews":
        from personaflow.pipeline.reviews import import_reviews

        return import_reviews(table.path, str(table.mapping), s, marts=False, as_of=last)
    from personaflow.pipeline.shop_tables import import_table

    return import_table(table.kind, table.path, str(table.mapping), s, refresh=False)


def _days(imported: dict[str, Any]):
    from personaflow.ingest.landing import imported_days

    days = imported_days(imported)
    if days is None:
        raise ValueError(f"{imported['source']}: no events to build from")
    return days


def _gist(name: str, result: Any) -> str:
    """The one number a person looks for after each stage."""
    if not isinstance(result, dict):
        return ""
    if name == "import":
        faults = ", ".join(f"{k} {v:,}" for k, v in result.get("faults", {}).items())
        extra = result.get("extra_columns")
        n_aside = result.get("rows_set_aside", 0)
        aside = f"; {n_aside:,} faulty rows set aside" if n_aside else ""
        if result["batches"].get("empty_days_not_landed"):  # a sparse log: say what became a batch
            aside += (
                f"; a sparse log: only the {result['batches']['days_with_events']:,} days with events are "
                f"batches ({result['batches']['empty_days_not_landed']:,} empty days not landed)"
            )
        return (
            f": {result.get('rows', 0):,} rows, {result['batches'].get('days', 0)} days{aside}"
            + (f"; faults: {faults}" if faults else "")
            + (f"; extra column(s) {', '.join(extra)} kept in {result['raw_copy']}" if extra else "")
        )
    if name == "validate_history":
        return (
            f": {result['ok_days']} ok, {len(result['warning_days'])} warned, "
            f"{len(result['failed_days'])} failed (quarantined)"
        )
    if name.startswith("import_"):
        keys = ("rows", "coupon_rows", "repeats", "repeats_dropped", "campaigns", "redemptions", "loaded")
        counts = {k: result[k] for k in keys if k in result}
        return ": " + ", ".join(f"{k} {v:,}" for k, v in counts.items() if isinstance(v, int))
    if name == "transform":
        return f": {result.get('models', '?')} models, {result.get('tests', '?')} tests"
    if name in ("segments", "churn") and result.get("status") == "skipped":
        return f": skipped ({result['reason']})"
    if name == "train":
        metrics = result.get("metrics", {})
        return f": {result.get('tag')} ndcg@10={metrics.get('ndcg_at_10', float('nan')):.4f}"
    if name == "promote":
        return f": {'promoted' if result.get('promoted') else 'refused'} ({result.get('reason')})"
    return ""
