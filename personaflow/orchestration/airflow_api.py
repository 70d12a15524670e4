"""A small client for Airflow 3's REST API (v2): log in, trigger, backfill, clear, wait, read states, write
notes.

The CLI (`personaflow trigger/backfill`), the tests and the DAG's own tasks use it. Tasks call it to
leave a note on their task instance and run (the UI's "why was / wasn't this model promoted"): the
Task SDK of Airflow 3.3 has no call for that, and tasks may not touch the metadata DB, so they go
through the public API like any user would. Only httpx is imported: the DAG file stays cheap.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

import httpx

FINISHED = {"success", "failed"}


def password_file(airflow_home: Path) -> Path:
    """Where SimpleAuthManager keeps (and, on first start, generates) its users' passwords."""
    return Path(airflow_home) / "simple_auth_manager_passwords.json.generated"


def read_password(airflow_home: Path, user: str) -> str:
    path = password_file(airflow_home)
    try:
        passwords = json.loads(path.read_text() or "{}")
    except FileNotFoundError:
        raise RuntimeError(f"no password file {path}: start Airflow once (`personaflow up`)") from None
    if user not in passwords:
        raise RuntimeError(f"user {user!r} not in {path} (users there: {sorted(passwords)})")
    return passwords[user]


class AirflowClient:
    """Bearer-token session against one api-server (`base_url` like http://127.0.0.1:8080)."""

    def __init__(self, base_url: str, user: str, password: str, timeout: float = 30) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)
        resp = self._http.post("/auth/token", json={"username": user, "password": password})
        if resp.status_code != 201:
            raise RuntimeError(
                f"login as {user!r} at {self.base_url} refused: HTTP {resp.status_code} {resp.text}"
            )
        self._http.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"

    @classmethod
    def from_settings(cls, timeout: float = 10) -> AirflowClient:
        """The client a task uses: address and login from the settings (`orchestrate.airflow_env` hands
        them to the task)."""
        from personaflow.core.settings import load

        s = load()
        password = s.airflow_password or read_password(s.airflow_home, s.airflow_user)
        return cls(f"http://{s.airflow_host}:{s.airflow_port}", s.airflow_user, password, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        resp = self._http.request(method, "/api/v2" + path, **kwargs)
        if resp.status_code >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {resp.status_code} {resp.text[:500]}")
        return resp.json() if resp.content else {}

    def dag(self, dag_id: str) -> dict[str, Any]:
        return self._call("GET", f"/dags/{dag_id}")

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> dict[str, Any]:
        """Wait until the dag-processor has parsed and stored `dag_id`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.dag(dag_id)
            except RuntimeError as exc:
                if "HTTP 404" not in str(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(1)

    def set_paused(self, dag_id: str, paused: bool) -> dict[str, Any]:
        return self._call("PATCH", f"/dags/{dag_id}", json={"is_paused": paused})

    def trigger(self, dag_id: str, day: date, conf: dict | None = None, run_id: str | None = None) -> str:
        """A manual run for batch day `day`: logical date and data interval as a scheduled run has them
        (Airflow would otherwise infer the interval that *ends* at the logical date for manual runs)."""
        start = datetime.combine(day, dtime.min, tzinfo=UTC)
        body = {
            "logical_date": start.isoformat(),
            "data_interval_start": start.isoformat(),
            "data_interval_end": (start + timedelta(days=1)).isoformat(),
            "conf": conf or {},
        }
        if run_id:
            body["dag_run_id"] = run_id
        return self._call("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"]

    def backfill(self, dag_id: str, first: date, last: date, rerun: bool = False) -> dict[str, Any]:
        """One run per day in [first, last]; `rerun` also redoes days that already ran."""
        body = {
            "dag_id": dag_id,
            "from_date": datetime.combine(first, dtime.min, tzinfo=UTC).isoformat(),
            "to_date": datetime.combine(last, dtime.min, tzinfo=UTC).isoformat(),
            "reprocess_behavior": "completed" if rerun else "none",
            "max_active_runs": 1,  # one warehouse writer at a time
        }
        return self._call("POST", "/backfills", json=body)

    def wait_backfill(self, dag_id: str, backfill_id: int, timeout: float = 3600) -> list[dict[str, Any]]:
        """Wait until the backfill is complete; returns its runs, oldest first."""
        deadline = time.monotonic() + timeout
        while (backfill := self._call("GET", f"/backfills/{backfill_id}")).get("completed_at") is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"backfill {backfill_id} of {dag_id} not complete after {timeout:.0f}s")
            time.sleep(5)
        # Runs do not name their backfill in every Airflow 3 answer: its window and run type do.
        first, last = str(backfill["from_date"])[:10], str(backfill["to_date"])[:10]
        runs = [
            r for r in self.runs(dag_id)
            if r.get("backfill_id") == backfill_id
            or (r.get("run_type") == "backfill" and first <= str(r.get("logical_date"))[:10] <= last)
        ]  # fmt: skip
        if not runs:
            raise RuntimeError(f"backfill {backfill_id} of {dag_id} completed with no run ({first}..{last})")
        return sorted(runs, key=lambda r: str(r.get("logical_date")))

    def clear_run(self, dag_id: str, run_id: str, only_failed: bool = False) -> dict[str, Any]:
        """Clear the run's task instances (every one, or only the failed ones), as the UI's *Clear* on a
        run does: the run is queued again and the scheduler re-runs them. Returns the run."""
        body = {"dry_run": False, "only_failed": only_failed}
        return self._call("POST", f"/dags/{dag_id}/dagRuns/{run_id}/clear", json=body)

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self._call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/dags/{dag_id}/dagRuns", params={"order_by": "logical_date"})["dag_runs"]

    def wait(self, dag_id: str, run_id: str, timeout: float = 600, poll: float = 2) -> dict[str, Any]:
        """Poll the run until it finishes; raises TimeoutError naming the unfinished tasks."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(dag_id, run_id)
            if run["state"] in FINISHED:
                return run
            if time.monotonic() > deadline:
                pending = {t: s for t, s in self.task_states(dag_id, run_id).items() if s not in FINISHED}
                raise TimeoutError(f"run {run_id} still {run['state']} after {timeout:.0f}s; tasks {pending}")
            time.sleep(poll)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        return {ti["task_id"]: ti["state"] for ti in self.task_instances(dag_id, run_id)}

    def asset_id(self, uri: str) -> int:
        found = self._call("GET", "/assets", params={"uri_pattern": uri})["assets"]
        ids = [a["id"] for a in found if a["uri"] == uri]
        if not ids:
            raise RuntimeError(f"asset {uri!r} unknown to Airflow (is the DAG that uses it parsed?)")
        return ids[0]

    def asset_event(self, uri: str, extra: dict | None = None) -> dict[str, Any]:
        """Record an event for the asset with this URI (as a producing task would); unpaused DAGs
        scheduled on it start. The asset must be known to Airflow, i.e. some parsed DAG uses it."""
        body = {"asset_id": self.asset_id(uri), "extra": extra or {}}
        return self._call("POST", "/assets/events", json=body)

    def asset_events(self, uri: str) -> list[dict[str, Any]]:
        """The asset's events, oldest first (source_dag_id / source_run_id name the producing run)."""
        params = {"asset_id": self.asset_id(uri), "order_by": "timestamp"}
        return self._call("GET", "/assets/events", params=params)["asset_events"]

    def queued_asset_events(self, dag_id: str) -> list[dict[str, Any]]:
        """Asset events waiting to start a run of `dag_id` (the scheduler turns them into runs)."""
        return self._call("GET", f"/dags/{dag_id}/assets/queuedEvents")["queued_events"]

    def set_task_note(self, dag_id: str, run_id: str, task_id: str, note: str) -> None:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        self._call("PATCH", path, params={"update_mask": "note"}, json={"note": note[:1000]})

    def set_run_note(self, dag_id: str, run_id: str, note: str) -> None:
        self._call("PATCH", f"/dags/{dag_id}/dagRuns/{run_id}", params={"update_mask": "note"},
                   json={"note": note[:1000]})  # fmt: skip


NOTE_TIMEOUT_S = 30.0


def write_notes(
    dag_id: str, run_id: str, task_id: str, task_note: str, run_note: str | None = None, append: bool = False
) -> bool:
    """From inside a task: note on its task instance (and the run; `append` adds a line under the run's
    note instead of replacing it). A note is a convenience for the UI, so an api-server that is not
    there (`dag.test()`, no password yet) only logs a warning.

    An api-server busy with a night's tasks on a small machine can take more than a few seconds to
    answer (CI saw a 5 s timeout lose a note), so each call waits up to NOTE_TIMEOUT_S and a timed-out
    write is tried once more: both writes set a value, so a second try changes nothing if the first
    one landed, and an appended line already there is not appended again."""
    import logging

    log = logging.getLogger(__name__)
    for attempt in (1, 2):
        try:
            client = AirflowClient.from_settings(timeout=NOTE_TIMEOUT_S)
            try:
                client.set_task_note(dag_id, run_id, task_id, task_note)
                note = run_note
                if run_note and append:
                    earlier = client.run(dag_id, run_id).get("note") or ""
                    done = earlier == run_note or earlier.endswith(f"\n\n{run_note}")
                    note = None if done else (f"{earlier}\n\n{run_note}" if earlier else run_note)
                if note:
                    client.set_run_note(dag_id, run_id, note)
            finally:
                client.close()
            break
        except httpx.TimeoutException as exc:
            if attempt == 2:
                log.warning("no UI note for %s/%s (%s): %s", run_id, task_id, type(exc).__name__, exc)
                return False
        except (httpx.HTTPError, RuntimeError, KeyError, OSError) as exc:
            log.warning("no UI note for %s/%s (%s): %s", run_id, task_id, type(exc).__name__, exc)
            return False
    log.info("note on %s/%s: %s", run_id, task_id, task_note)
    return True
