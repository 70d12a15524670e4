"""What the API's checks (personaflow/serving/api.py) read from request headers: the Host it answers to (DNS
rebinding), whether an Origin is the server's own (cross-origin posts), whether a body is JSON."""

from __future__ import annotations

from urllib.parse import urlsplit


def header(scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value
    return None


def same_origin(origin: bytes, host: bytes | None) -> bool:
    """Origin `scheme://host[:port]` names the host the request was sent to (the docs page at `/`)."""
    try:
        netloc = urlsplit(origin.decode("latin-1")).netloc.lower()
    except ValueError:
        return False
    return bool(netloc) and host is not None and netloc == host.decode("latin-1").lower()


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


def allowed_hosts(configured: tuple[str, ...], serve_host: str) -> frozenset[str] | None:
    """Host names to answer (None: any). Default: loopback names when serving on loopback."""
    if configured:
        return None if "*" in configured else frozenset(configured)
    if serve_host in LOOPBACK_NAMES or serve_host.startswith("127."):
        return frozenset({*LOOPBACK_NAMES, serve_host})
    return None


def host_name(host: bytes | None) -> str:
    """`example.com:3000` -> `example.com`, `[::1]:3000` -> `[::1]`."""
    name = (host or b"").decode("latin-1").strip().lower()
    if name.startswith("["):
        return name[: name.find("]") + 1]
    return name.rsplit(":", 1)[0] if name.count(":") == 1 else name


def is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json"
