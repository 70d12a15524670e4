"""Both warehouse engines for one test: the embedded DuckDB file and the suite's real PostgreSQL.

`@pytest.mark.parametrize("where", ENGINES, indirect=True)` runs a test on each; the value is what
`personaflow.core.warehouse.connect` takes (a DuckDB path, or a fresh PostgreSQL database's URL).
"""

import pytest

from personaflow.core import warehouse as wh

ENGINES = ["duckdb", "postgres"]


@pytest.fixture
def where(request, tmp_path):
    if getattr(request, "param", "duckdb") == "duckdb":
        return tmp_path / "wh.duckdb"
    return request.getfixturevalue("postgres_url")


def rows(where, sql: str, params: list | None = None) -> list[tuple]:
    """One read on a short-lived connection (the code under test opens its own)."""
    with wh.connect(where, read_only=True) as con:
        return con.execute(sql, params).fetchall()


def table_rows(where, table: str) -> int:
    """Rows of `table`, 0 when it does not exist (a load that failed before creating it)."""
    if not wh.is_postgres(where) and not where.exists():
        return 0
    with wh.connect(where, read_only=True) as con:
        if not con.table_exists(table):
            return 0
        return con.execute(f"select count(*) as n from {table}").fetchall()[0][0]
