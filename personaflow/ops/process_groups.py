"""Stopping what we started: process groups and sessions, waited for, SIGKILLed when they linger.

Every service `personaflow up` starts runs in a session of its own (`start_new_session=True`), so its
leader's pid is both its process group and its session id. Signalling the group reaches the
components; a session sweep also reaches the processes that moved to a group of their own inside it:
Airflow's task supervisor puts every task in its own process group (so it can kill a task's children),
and those would outlive a worker or a scheduler that was killed without being asked to stop.
"""

from __future__ import annotations

import os
import signal
import socket
import time

import psutil


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def alive(pgid: int) -> bool:
    """Whether any process of group `pgid` is still there (a zombie leader we can reap does not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        os.waitpid(pgid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def session_pids(sid: int) -> list[int]:
    """Every live process of session `sid` (the session leader's pid), the leader first if alive."""
    found = []
    for pid in psutil.pids():
        try:
            if os.getsid(pid) == sid and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                found.append(pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return sorted(found, key=lambda p: p != sid)


def signal_session(sid: int, sig: int) -> list[int]:
    """Send `sig` to every process of session `sid`; returns the pids signalled."""
    pids = session_pids(sid)
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    return pids


def stop_session(sid: int, first: int = signal.SIGTERM, timeout: float = 25) -> bool:
    """`first` to the whole session, wait for it to empty, SIGKILL what is left; False if none was alive."""
    if not session_pids(sid):
        return False
    signal_session(sid, first)
    deadline = time.monotonic() + timeout
    while session_pids(sid) and time.monotonic() < deadline:
        _reap(sid)
        time.sleep(0.25)
    if session_pids(sid):
        signal_session(sid, signal.SIGKILL)
        while session_pids(sid) and time.monotonic() < deadline + 10:
            time.sleep(0.1)
    _reap(sid)
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop_group(pgid: int, host: str, port: int, first: int = signal.SIGINT, timeout: float = 30) -> bool:
    """Signal a process group, wait for it to exit and its port to close; SIGKILL what is left of it and
    of its session (tasks in groups of their own)."""
    if not alive(pgid):
        return False
    signal_group(pgid, first)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (alive(pgid) or port_open(host, port)):
        time.sleep(0.25)
    if alive(pgid):
        signal_group(pgid, signal.SIGKILL)
        while alive(pgid) and time.monotonic() < deadline + 10:
            time.sleep(0.1)
    signal_session(pgid, signal.SIGKILL)
    return True
