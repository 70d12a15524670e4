"""PostgreSQL and Redis from the machine's Debian packages, started in a folder of our own.

The scale path (README "Moving to Postgres and Redis") runs on a managed PostgreSQL and Redis in
production; these start the same servers locally, for the test suite, `personaflow stack up` and the
scale benchmark: on a free 127.0.0.1 port, with every file under one folder, stopped by whoever
started them. Nothing here is used by the embedded default.

PostgreSQL refuses to run as root, so as root the cluster runs as an unprivileged system user
(`PERSONAFLOW_PG_OS_USER`, default `nobody`) that owns only the cluster's folder.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PG_USER = "personaflow"
PG_DATABASE = "personaflow"


class ServerError(RuntimeError):
    """A local server would not start (its log's tail is in the message)."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def postgres_bindir() -> Path:
    """The folder with initdb/pg_ctl: PATH first, then Debian's versioned folders (newest first)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key, reverse=True)
    if not candidates:
        raise ServerError("PostgreSQL server binaries not found: run `make servers` (apt: postgresql)")
    return Path(candidates[0]).parent


def _version_key(path: str) -> float:
    try:
        return float(Path(path).parent.parent.name)
    except ValueError:
        return 0.0


def redis_binary() -> Path:
    found = shutil.which("redis-server")
    if not found and Path("/usr/bin/redis-server").exists():
        found = "/usr/bin/redis-server"  # sbin-less PATHs
    if not found:
        raise ServerError("redis-server not found: run `make servers` (apt: redis-server)")
    return Path(found)


def _wait_port(port: int, timeout: float, log: Path, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
    raise ServerError(f"{what} did not answer on 127.0.0.1:{port} within {timeout:.0f} s:\n{tail}")


def _let_through(folder: Path) -> None:
    """Let the cluster's user reach its folder through ours: search (o+x) on each of our folders above
    it, never read. The home is 0700 (personaflow.core.tool_env.private_files); under a root-run
    `stack up` it becomes 0711: nothing in it can be listed or read by another account."""
    for parent in [folder, *folder.parents]:
        info = parent.stat()
        if info.st_uid == os.getuid() and not info.st_mode & 0o001:
            parent.chmod(info.st_mode | 0o001)


@dataclass
class Postgres:
    """A PostgreSQL cluster in `folder`, answering on 127.0.0.1:`port` (trust auth, loopback only)."""

    folder: Path
    port: int
    os_user: str | None = None
    bindir: Path = field(default_factory=postgres_bindir)

    @property
    def url(self) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{PG_DATABASE}"

    def _run(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        # the cluster's user with its own group only: root's group left behind would make the folders'
        # group bits (0 under a 077 umask) apply instead of the "others" search bit it is given
        user = {}
        if self.os_user:
            user = {"user": self.os_user, "group": pwd.getpwnam(self.os_user).pw_gid, "extra_groups": []}
        return subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            check=True, capture_output=True, text=True, **user, **kwargs,
        )

    def start(self, durable: bool = True, timeout: float = 60.0) -> Postgres:
        data = self.folder / "data"
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.os_user:
            pw = pwd.getpwnam(self.os_user)
            os.chown(self.folder, pw.pw_uid, pw.pw_gid)
            _let_through(self.folder.parent)
        self.folder.chmod(0o700)
        if not (data / "PG_VERSION").exists():
            self._run("initdb", "-D", str(data), "-U", PG_USER, "--auth=trust", "-E", "UTF8", "--no-sync")
        options = [f"-p {self.port}", "-c listen_addresses=127.0.0.1", f"-k {self.folder}"]
        if not durable:
            # Test clusters: losing them on a crash is fine, waiting on fsync is not.
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        log = self.folder / "postgres.log"
        try:
            self._run("pg_ctl", "-D", str(data), "-l", str(log), "-o", " ".join(options), "-w", "-t",
                      str(int(timeout)), "start")
        except subprocess.CalledProcessError as exc:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else exc.stderr
            raise ServerError(f"PostgreSQL in {self.folder} would not start:\n{tail}") from exc
        _wait_port(self.port, timeout, log, "PostgreSQL")
        query = f"select 1 from pg_database where datname = '{PG_DATABASE}'"
        exists = self._run(
            "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER, "-d", "postgres", "-tAc", query
        ).stdout.strip()
        if exists != "1":
            self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER, PG_DATABASE)
        return self

    def create_database(self, name: str) -> str:
        """Another database in the same cluster (Airflow's metadata DB beside the warehouse); its URL."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER, name)
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if (self.folder / "data" / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop")


@dataclass
class Redis:
    """A redis-server in `folder` on 127.0.0.1:`port`; appendfsync as asked (durable: every second)."""

    folder: Path
    port: int
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, durable: bool = True, timeout: float = 30.0) -> Redis:
        self.folder.mkdir(parents=True, exist_ok=True)
        log = self.folder / "redis.log"
        args = [str(redis_binary()), "--bind", "127.0.0.1", "--port", str(self.port),
                "--dir", str(self.folder), "--logfile", str(log), "--protected-mode", "yes", "--save", ""]
        args += ["--appendonly", "yes", "--appendfsync", "everysec"] if durable else ["--appendonly", "no"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        _wait_port(self.port, timeout, log, "Redis")
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def default_os_user() -> str | None:
    """The user a cluster runs as: none needed unless we are root."""
    if os.geteuid() != 0:
        return None
    from personaflow.core.settings import load

    return load().pg_os_user  # PERSONAFLOW_PG_OS_USER
