"""API tokens: where they come from, and the one comparison that checks them.

Tokens come from PERSONAFLOW_API_TOKENS (comma separated) and/or the token file
(PERSONAFLOW_API_TOKEN_FILE, default `<PERSONAFLOW_HOME>/secrets/api_token`, one token a line). With
no token set anywhere, the first start generates one into that file, mode 0600 (its folder 0700).
A token is never logged or echoed: logs and answers name the file, not its content.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import stat
from pathlib import Path

from personaflow.core.settings import Settings

TOKEN_BYTES = 32
MIN_TOKEN_LENGTH = 16
log = logging.getLogger(__name__)


def ensure_token_file(path: Path) -> Path:
    """Create the token file with a fresh random token if it does not exist (0600, atomic, race-free)."""
    path = Path(path)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    # Written whole under a private name, then linked into place: several workers start at once, and
    # one that finds the file must never read it before its token is in.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
        out.flush()
        os.fsync(out.fileno())
    try:
        os.link(tmp, path)  # fails if it exists: another process made it first, use theirs
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path


def read_token_file(path: Path) -> list[str]:
    """The tokens in the file, one a line (`#` comments); a file others can read is made 0600 first."""
    path = Path(path)
    try:
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            log.warning("token file %s was readable by others: made it 0600", path)
            path.chmod(0o600)
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def load_tokens(s: Settings, create: bool = True) -> list[bytes]:
    """Every accepted token; generates the token file when none is set anywhere (and `create`)."""
    tokens = list(s.api_tokens)
    if not tokens and create:
        ensure_token_file(s.api_token_file)
    tokens += read_token_file(s.api_token_file)
    if not tokens:
        where = s.api_token_file
        log.warning("no API token (PERSONAFLOW_API_TOKENS, %s): every POST /events is refused", where)
    if any(len(t) < MIN_TOKEN_LENGTH for t in tokens):
        log.warning("an API token is shorter than %d characters: easy to guess", MIN_TOKEN_LENGTH)
    return [t.encode() for t in tokens]


def first_token(s: Settings) -> str:
    """The token a local client (demo, benchmarks, tests) sends: the first one configured."""
    tokens = load_tokens(s)
    return tokens[0].decode()


def bearer_ok(header: bytes | None, tokens: list[bytes]) -> bool:
    """`Authorization: Bearer <token>` against every token, in constant time per token."""
    if not header or not tokens:
        return False
    scheme, _, presented = header.partition(b" ")
    if scheme.lower() != b"bearer" or not presented.strip():
        return False
    presented = presented.strip()
    ok = False
    for token in tokens:  # no early exit: the time taken does not tell which token was close
        ok |= hmac.compare_digest(presented, token)
    return ok
