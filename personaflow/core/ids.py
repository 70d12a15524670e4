"""Customer ids: one normal form, and where a customer id is kept.

`normal_user_id` is the single normalisation every way in uses (`personaflow forget`, the API's
/events, /recommend and /profile, the forgotten-id registry): surrounding blanks go, and a purely
numeric id loses what a spreadsheet or a float column adds to it, so `14911.0`, `014911` and
` 14911 ` are all `14911` (the Online Retail import writes ids that way too). Any other id (`u000042`)
is kept as it is: its padding is part of it.

The columns below are where a customer id is kept (files, warehouse tables, Feast snapshots):
`personaflow forget` erases by them, and only by them (personaflow/pipeline/forget.py).
"""

from __future__ import annotations

import re

_NUMERIC = re.compile(r"0*([0-9]+?)(?:\.0*)?")
# Columns (any case) whose value is a customer id.
USER_COLUMNS = frozenset({"user_id", "customer_id", "customerid", "customer id"})
# Columns whose value may be derived from one: a live session is `live-<user_id>`
# (personaflow/ingest/live.py).
SESSION_COLUMNS = frozenset({"session_id"})
LIVE_SESSION = "live-"


def normal_user_id(value: object) -> str:
    """The normal form of a customer id (see the module doc); '' for nothing."""
    if value is None:
        return ""
    text = str(value).strip()
    match = _NUMERIC.fullmatch(text)
    return match.group(1) if match else text


def is_user_column(name: object) -> bool:
    return str(name).strip().lower() in USER_COLUMNS


def is_session_column(name: object) -> bool:
    return str(name).strip().lower() in SESSION_COLUMNS


def names_user(value: object, user_id: str) -> bool:
    """Is `value` (a cell of a user column) this customer, in any written form?"""
    return value is not None and value == value and normal_user_id(value) == user_id


def names_session(value: object, user_id: str) -> bool:
    """Is `value` (a cell of a session column) this customer's live session (`live-<id>`)?"""
    text = "" if value is None or value != value else str(value).strip()
    return text.startswith(LIVE_SESSION) and normal_user_id(text[len(LIVE_SESSION) :]) == user_id


def variant_regex(user_id: str, whole: bool = False) -> str:
    """A regex (Python, RE2 and PostgreSQL alike) for the written forms of a normal id; `whole`: for a
    whole cell, where a bare trailing point (`14911.`) is one too, as normal_user_id reads it."""
    if _NUMERIC.fullmatch(user_id) and user_id == normal_user_id(user_id):
        return "0*" + user_id + (r"(?:\.0*)?" if whole else r"(?:\.0+)?")
    return re.escape(user_id)


def quoted_regex(user_id: str) -> str:
    """The id where free text (a log line, a mail, a report, a text column) names it as a customer:
    after `user_id`, `customer_id`, `customer`, `user` (with `=`, `:`, quotes or a blank between) or as
    a live session `live-<id>`. Groups: 1 left edge, 2 the naming words, 3 the id, 4 right edge; a
    rewrite keeps 1, 2 and 4. A bare number that equals the id (a row number, a price, another id) is
    not the customer and does not match."""
    key = r"""((?:user_?id|customer_?id|customer id|customer|user)["']?[ \t]*[:=]?[ \t]*["']?|live-)"""
    return r"(^|[^A-Za-z0-9_])" + key + "(" + variant_regex(user_id) + r")([^A-Za-z0-9_.]|\.(?:[^0-9]|$)|$)"
