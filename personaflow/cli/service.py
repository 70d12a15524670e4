"""`personaflow` commands for the running services: Airflow (`up`, `down`, `trigger`, `backfill`,
`announce`, `run-dag`), the BentoML server (`serve`) and the end-to-end `demo`.

The functions are registered on the one Typer app in personaflow/cli/main.py; this module does not import it.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, NoReturn

import typer

from personaflow.cli.common import DateOpt, _last_batch_day, _print
from personaflow.core import settings as config


def announce(day: DateOpt) -> None:
    """Tell the running Airflow (`personaflow up`) that the day's batch was corrected and re-ingested:
    an event on the raw asset starts `personaflow_refresh` for that day."""
    from personaflow.orchestration.orchestrate import announce_batch

    _print(announce_batch(config.load(), day.date()))


def run_dag(day: Annotated[datetime | None, typer.Option("--date", formats=["%Y-%m-%d"])] = None) -> None:
    """Run personaflow_nightly for one batch day through Airflow (`dag.test()`)."""
    from personaflow.orchestration.orchestrate import run_once

    s = config.load()
    batch_day = day.date() if day else _last_batch_day(s)
    result = run_once(s, batch_day)
    _print(result)
    if result["state"] != "success":
        failed = result.get("failures") or {}
        reason = "; ".join(f"{task}: {why}" for task, why in failed.items()) or "see the task logs"
        typer.echo(f"run-dag failed for {batch_day}: {reason} (logs: {s.airflow_home / 'logs'})", err=True)
        raise typer.Exit(1)


@contextlib.contextmanager
def _signals_stop() -> Iterator[None]:
    """SIGTERM (and SIGINT, as always) raise KeyboardInterrupt here, so the cleanup of the command (stop
    its process groups) runs whichever way it is told to stop; the old handlers come back after."""

    def interrupt(signum, frame) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    old = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _fail(command: str, message: str, code: int = 1) -> NoReturn:
    typer.echo(f"{command}: {message}", err=True)
    raise typer.Exit(code)


def up() -> None:
    """Start Airflow (UI, scheduler, our DAGs; in celery mode also its workers) and, if a model is in
    production, the BentoML server. A port in use or a setting at fault is an error (exit 1); SIGTERM
    or Ctrl-C while starting stops what had started."""
    from personaflow.ops.airflow_service import up as start
    from personaflow.orchestration.airflow_api import password_file
    from personaflow.orchestration.airflow_mode import ModeError

    s = config.load()
    try:
        with _signals_stop():
            started = start(s)
    except KeyboardInterrupt:
        _fail("up", "interrupted: stopped what had started", 130)
    except (RuntimeError, TimeoutError, ModeError) as exc:
        _fail("up", str(exc))
    typer.echo(f"Airflow UI   {started.url}  (ready in {started.seconds:.0f}s)")
    if started.workers:
        typer.echo(f"workers      {', '.join(started.workers)}  (CeleryExecutor, metadata DB on PostgreSQL)")
    typer.echo(f"login        {started.user} / password in {password_file(s.airflow_home)}")
    typer.echo(f"serving      {started.serving_url or 'not started: no model in production yet'}")
    if started.serving_url:
        typer.echo(f"API token    in {_token_file(s)}  (POST /events needs it)")
    typer.echo(f"logs         {s.home / 'run'}   stop with `personaflow down`")


def down() -> None:
    """Stop what `personaflow up` started (signals each process group, waits for the ports to close).
    SIGTERM or Ctrl-C while stopping does not leave half of it running: it finishes first."""
    from personaflow.ops.airflow_service import down as stop

    got: list[int] = []
    signals = (signal.SIGTERM, signal.SIGINT)
    old = {sig: signal.signal(sig, lambda signum, frame: got.append(signum)) for sig in signals}
    try:
        stopped = stop(config.load())
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    typer.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    if got:
        raise typer.Exit(128 + got[0])


def _token_file(s: config.Settings) -> str:
    return "PERSONAFLOW_API_TOKENS" if s.api_tokens else str(s.api_token_file)


def _client(s: config.Settings):
    from personaflow.orchestration.airflow_api import AirflowClient, read_password

    password = s.airflow_password or read_password(s.airflow_home, s.airflow_user)
    return AirflowClient(f"http://{s.airflow_host}:{s.airflow_port}", s.airflow_user, password)


def trigger(
    day: DateOpt,
    wait: bool = typer.Option(False, help="Wait for the run to finish and print every task's state."),
) -> None:
    """Trigger personaflow_nightly for one batch day on the running Airflow (`personaflow up`)."""
    from personaflow.orchestration.orchestrate import DAG_ID

    client = _client(config.load())
    if client.dag(DAG_ID)["is_paused"]:
        client.set_paused(DAG_ID, False)
        typer.echo(f"{DAG_ID} was paused: unpaused it")
    run_id = client.trigger(DAG_ID, day.date(), conf={"batch_date": day.date().isoformat()})
    typer.echo(f"triggered {run_id}")
    if wait:
        run = client.wait(DAG_ID, run_id, timeout=3600)
        _print({"state": run["state"], "note": run.get("note"), "tasks": client.task_states(DAG_ID, run_id)})
        if run["state"] != "success":
            raise typer.Exit(1)


def backfill(
    first: Annotated[datetime, typer.Option("--from", formats=["%Y-%m-%d"])],
    last: Annotated[datetime, typer.Option("--to", formats=["%Y-%m-%d"])],
    rerun: bool = typer.Option(False, help="Also redo days that already have a run."),
    wait: bool = typer.Option(False, help="Wait for every day's run and print its state."),
) -> None:
    """One personaflow_nightly run per day from --from to --to (inclusive), oldest first, one at a time."""
    from personaflow.orchestration.orchestrate import DAG_ID

    client = _client(config.load())
    if client.dag(DAG_ID)["is_paused"]:
        client.set_paused(DAG_ID, False)
    created = client.backfill(DAG_ID, first.date(), last.date(), rerun=rerun)
    typer.echo(f"backfill {created['id']}: {first.date()} .. {last.date()}")
    if wait:
        runs = client.wait_backfill(DAG_ID, created["id"], timeout=6 * 3600)
        _print({r["logical_date"][:10]: r["state"] for r in runs})
        if any(r["state"] != "success" for r in runs):
            raise typer.Exit(1)


def _no_production_model(s: config.Settings) -> str | None:
    """Why there is nothing to serve (no pointer, an unreadable one, or one naming a model the store
    no longer has), or None when the production model can be loaded."""
    import json

    pointer = s.production_pointer
    if not pointer.is_file():
        return f"no model in production ({pointer} does not exist)"
    try:
        tag = json.loads(pointer.read_text()).get("tag")
    except (ValueError, AttributeError):
        tag = None
    if not tag:
        return f"no model in production ({pointer} names no model)"
    from personaflow.training.registry.store import get_model

    try:
        get_model(tag)
    except Exception:  # bentoml's NotFound, or a tag it cannot parse
        return f"no model in production (model {tag} named by {pointer} is not in the model store)"
    return None


def serve() -> None:
    """Start the BentoML server in the foreground; Ctrl-C or SIGTERM stops it (its whole process group).
    A port in use, or a server that dies, is an error (exit 1) with one line saying why."""
    from personaflow.serving.process import port_in_use, start, stop, wait_ready

    s = config.load()
    missing = _no_production_model(s)
    if missing:  # before any port is taken: the server would only crash-loop over it
        _fail("serve", f"{missing}: run `personaflow history <export>` to build one from your data, or "
                       "`personaflow train` then `personaflow promote <tag>`")  # fmt: skip
    if port_in_use(s.serve_host, s.serve_port):
        where = f"{s.serve_host}:{s.serve_port}"
        _fail("serve", f"{where} is already in use (`personaflow down`, or set PERSONAFLOW_SERVE_PORT)")
    url = f"http://{s.serve_host}:{s.serve_port}"
    proc = None
    try:
        with _signals_stop():
            proc = start(s.serve_host, s.serve_port)
            try:
                wait_ready(url, timeout=300, proc=proc)
            except (RuntimeError, TimeoutError) as exc:
                _fail("serve", str(exc))
            typer.echo(f"serving {url}  (API token for POST /events: in {_token_file(s)})", err=True)
            code = proc.wait()
    except KeyboardInterrupt:
        return  # asked to stop: the finally below stops the group; exit 0
    finally:
        if proc is not None:
            stop(proc)
    _fail("serve", f"the server exited on its own with code {code}")


def demo(users: int = 2000, items: int = 500, days: int = 60, seed: int = 42) -> None:
    """Generate a shop, run the nightly DAG through Airflow, serve the model, ask it once, stop."""
    from personaflow.ops.demo import run_demo

    run_demo(config.load(), users=users, items=items, days=days, seed=seed)
