"""The warehouse's one placeholder dialect: numbered markers `$1, $2, ...`, as PostgreSQL and DuckDB
both read them natively.

DuckDB binds `$n` itself, and psycopg hands a statement to PostgreSQL untouched through its
`RawCursor` (the PostgreSQL connection's `cursor_factory`), so no statement is rewritten for either:
a `?` or a `%` inside a literal stays what it is, and one parameter can be used twice (`$1 ... $1`).

`check` refuses a statement that still uses DuckDB's `?` markers: DuckDB would run it, PostgreSQL
would not, so a DuckDB-only test run would never notice. Spark 3.5 has only `?` and `:name` markers,
so `spark_named` spells `$n` as `:pn` for it. Both find the markers with DuckDB's own lexer
(`duckdb.tokenize`), which knows string literals, quoted identifiers and comments; the SQL they read
is the subset DuckDB and PostgreSQL share, and that lexer also reads Spark's backquoted names. (Spark-only
SQL must not put a backslash-escaped quote in a literal: DuckDB's lexer does not know that escape.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb


class PlaceholderError(ValueError):
    """A statement whose markers are not the warehouse's `$n`."""


def markers(sql: str) -> list[tuple[int, str]]:
    """Each parameter marker outside literals, quoted identifiers and comments: (offset, text), where
    text is `?` or `$n`."""
    found = []
    for offset, kind in duckdb.tokenize(sql):
        if kind != duckdb.token_type.operator:
            continue
        if sql[offset] == "?":
            found.append((offset, "?"))
        elif sql[offset] == "$":
            end = offset + 1
            while end < len(sql) and sql[end].isdigit():
                end += 1
            if end > offset + 1:
                found.append((offset, sql[offset:end]))
    return found


def check(sql: str) -> list[tuple[int, str]]:
    """The statement's markers; raises PlaceholderError if any is `?`."""
    found = markers(sql)
    for offset, text in found:
        if text == "?":
            raise PlaceholderError(
                f"SQL for the warehouse uses a `?` placeholder at offset {offset}; write `$1, $2, ...` "
                f"(personaflow/core/placeholders.py): {sql[max(0, offset - 40):offset + 20]!r}"
            )
    return found


def spark_named(sql: str, params: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    """`sql` with each `$n` as Spark's named marker `:pn`, and the parameters by those names."""
    pieces, start, used = [], 0, set()
    for offset, text in check(sql):
        number = int(text[1:])
        if not 1 <= number <= len(params):
            raise PlaceholderError(f"SQL names {text} but {len(params)} parameter(s) were given")
        pieces += [sql[start:offset], f":p{number}"]
        start, used = offset + len(text), used | {number}
    pieces.append(sql[start:])
    return "".join(pieces), {f"p{n}": params[n - 1] for n in sorted(used)}
