"""Which arm a user is in: a stable hash of (experiment, user), so a user stays in one arm for the whole
test, across workers and restarts, with no state to share; the challenger gets `share` of the users."""

from __future__ import annotations

import hashlib

ARMS = ("control", "challenger")


def bucket(experiment: str, user_id: str) -> float:
    """A uniform number in [0, 1) fixed by (experiment, user): a new experiment reshuffles everyone."""
    digest = hashlib.sha256(f"{experiment}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def arm(experiment: str, user_id: str, share: float) -> str:
    if not 0 <= share <= 1:
        raise ValueError(f"challenger share {share}: must be in [0, 1]")
    return "challenger" if bucket(experiment, user_id) < share else "control"
