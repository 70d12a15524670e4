"""What every benchmark shares: timing a child process with its own peak memory (or this process's,
sampled: PeakRss), and merging results."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path


def run_measured(
    cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[float, float]:
    """Run `cmd`; return (wall seconds, peak RSS in MB of that child alone, from wait4). Exits on failure."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"`{' '.join(cmd)}` failed with exit {code}")
    return round(seconds, 2), round(usage.ru_maxrss / 1024, 1)  # ru_maxrss is in KiB on Linux


def code_commit() -> str:
    """The short commit of the code a benchmark runs, "+dirty" when the package has uncommitted changes:
    a figure can then be traced to its code (the docs quote it beside each run)."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--", "personaflow") else "")


def merge_results(
    path: Path, result: dict[str, object], replacing: tuple[str, ...] = (), sort_keys: bool = False
) -> None:
    """Write `result` over the keys already in `path`, so runs of one size keep the other sizes' figures.
    Earlier keys starting with any of `replacing` are dropped first: they are this run's alone (a shop or
    protocol re-run must not keep an earlier run's keys that it no longer writes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(path.read_text()) if path.exists() else {}
    kept = {k: v for k, v in previous.items() if not (replacing and k.startswith(replacing))}
    path.write_text(json.dumps({**kept, **result}, indent=2, sort_keys=sort_keys) + "\n")
    print(f"wrote {path}", flush=True)


def settings_with(env: dict[str, str]):
    """personaflow's settings as they read with `env` over this process's environment, which is left
    as it was (what the stack started from those settings gets, through orchestrate.airflow_env)."""
    from personaflow.core import settings as config

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return config.load()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def write_results(path: Path, result: dict[str, object]) -> None:
    """Write `result` as the whole of `path` (a benchmark whose keys are all from one run) and show it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {path}")


class PeakRss:
    """This process's RSS peak, sampled every 10 ms while the block runs (tracemalloc misses torch)."""

    def __enter__(self) -> PeakRss:
        self.peak, self._stop = self._rss(), threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    @staticmethod
    def _rss() -> float:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def _watch(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


# ---- a child and every process it starts (Spark's JVM, a shell's children), measured as one tree ----

_PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def become_subreaper() -> None:
    """Orphans of our children are re-parented to this process instead of init, so that `run_tree` can
    reap them and count their CPU time: pyspark starts its JVM as a child it never waits for, so
    without this the JVM's CPU would be counted nowhere. Call it after starting any daemon (a local
    PostgreSQL whose postmaster must stay init's child: `pg_ctl stop` waits for it to vanish)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat from field 3 (state) on: [state, ppid, pgrp, session, ..., utime at 11, stime 12,
    cutime 13, cstime 14, ..., rss pages at 21]; None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            text = fh.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _processes() -> dict[int, list[str]]:
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            found[int(entry)] = fields
    return found


def _pss_mb(pid: int) -> float:
    """Proportional set size: shared pages (PostgreSQL's shared buffers) split among their sharers, so
    a sum over a server's processes counts them once."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def server_cpu_s(root: int) -> float:
    """CPU seconds a server's process tree has used so far: the root with its reaped children (a
    PostgreSQL backend that served a connection and exited), plus its live children."""
    total = 0.0
    for pid, fields in _processes().items():
        if pid == root:
            total += sum(int(fields[i]) for i in (11, 12, 13, 14)) / _TICK
        elif int(fields[1]) == root:
            total += (int(fields[11]) + int(fields[12])) / _TICK
    return total


def _server_pss_mb(root: int, procs: dict[int, list[str]]) -> float:
    return sum(_pss_mb(pid) for pid, f in procs.items() if pid == root or int(f[1]) == root)


def run_tree(
    cmd: list[str], *, env: dict[str, str], cwd: Path, timeout: float, log: Path, server: int | None = None,
    sample_s: float = 0.5,
) -> dict[str, object]:
    """Run `cmd` in its own session, its output to `log`; its whole process tree measured:

    - wall_s: until the command exits (a JVM it leaves behind shutting down is not waited for);
    - cpu_s: user + system seconds of every process of the session (the command's own rusage with its
      waited-for children, plus every orphan reaped here: needs `become_subreaper`);
    - peak_rss_mb: the largest sum of the session's resident sets, sampled every `sample_s`, or the
      largest single process's own peak (rusage) if a sample missed it;
    - jvm_cpu_s: of that CPU, what a JVM the command left behind used (Spark's, in local mode its
      executors' threads beside the driver's JVM; the rest is the Python process's own);
    - with `server` (a server's root pid, e.g. the postmaster): server_cpu_s (its tree's CPU during the
      run), server_peak_pss_mb, and peak_total_mb (client RSS + server PSS, sampled together);
    - status: ok, failed (exit N: last line) or timeout after N s (last line of the log: how far it got).
    A run past `timeout`, or interrupted (SIGTERM), has its session killed (only that session)."""
    started = time.perf_counter()
    server_before = server_cpu_s(server) if server else 0.0
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    sid, me = proc.pid, os.getpid()
    peak = peak_server = peak_total = maxrss = cpu = 0.0
    status, code = "ok", None

    def sample() -> None:
        nonlocal peak, peak_server, peak_total
        procs = _processes()
        rss = sum(int(f[21]) for f in procs.values() if int(f[3]) == sid) * _PAGE / 2**20
        pss = _server_pss_mb(server, procs) if server else 0.0
        peak, peak_server, peak_total = max(peak, rss), max(peak_server, pss), max(peak_total, rss + pss)

    jvm_cpu = None

    def reap(pid: int, flags: int) -> bool:
        nonlocal cpu, maxrss, code, jvm_cpu
        try:
            with open(f"/proc/{pid}/comm") as fh:
                name = fh.read().strip()
        except OSError:
            name = ""
        got, wstatus, usage = os.wait4(pid, flags)
        if got:
            cpu += usage.ru_utime + usage.ru_stime
            if name == "java" and pid != sid:  # Spark's JVM: the executors' threads and the driver's JVM
                jvm_cpu = (jvm_cpu or 0.0) + usage.ru_utime + usage.ru_stime
            maxrss = max(maxrss, usage.ru_maxrss / 1024)
            if pid == sid:
                code = os.waitstatus_to_exitcode(wstatus)
                proc.returncode = code  # reaped here: subprocess must not wait for it again
        return bool(got)

    try:
        while not reap(sid, os.WNOHANG):
            sample()
            if time.perf_counter() - started > timeout:
                os.killpg(sid, signal.SIGKILL)  # the session this run started, nothing else
                reap(sid, 0)
                status = f"timeout after {timeout:.0f} s"
                break
            time.sleep(sample_s)
        wall = time.perf_counter() - started
        # what the command left behind (Spark's JVM exits once its Python driver's pipe closes): reap
        # it, so that its CPU counts; kill it if it lingers
        deadline = time.perf_counter() + 60
        while members := [p for p, f in _processes().items() if int(f[3]) == sid]:
            for pid in members:
                if (f := _stat(pid)) is not None and int(f[1]) == me:
                    reap(pid, os.WNOHANG)
            if time.perf_counter() > deadline:
                os.killpg(sid, signal.SIGKILL)
            sample()
            time.sleep(0.2)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(sid, signal.SIGKILL)
        raise
    if status == "ok" and code != 0:
        status = f"failed (exit {code})"
    if status != "ok":
        lines = log.read_text(errors="replace").strip().splitlines() or [""]
        status += f": {lines[-1][:300]}"
    result: dict[str, object] = {
        "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "peak_rss_mb": round(max(peak, maxrss), 1),
        "status": status,
    }  # fmt: skip
    if jvm_cpu is not None:
        result["jvm_cpu_s"] = round(jvm_cpu, 2)
    if server:
        server_cpu = server_cpu_s(server) - server_before
        result.update({
            "client_cpu_s": round(cpu, 2), "server_cpu_s": round(server_cpu, 2),
            "cpu_s": round(cpu + server_cpu, 2), "server_peak_pss_mb": round(peak_server, 1),
            "peak_total_mb": round(max(peak_total, max(peak, maxrss)), 1),
        })  # fmt: skip
    return result
