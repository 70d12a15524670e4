"""What every benchmark shares: timing a child process with its own peak memory (or this process's,
sampled: PeakRss), and merging results."""

from __future__ import annotations

import json
import os
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


def merge_results(path: Path, result: dict[str, object]) -> None:
    """Write `result` over the keys already in `path`, so runs of one size keep the other sizes' figures."""
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**previous, **result}, indent=2) + "\n")
    print(f"wrote {path}")


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
