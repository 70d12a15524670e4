"""The warehouse adapter (personaflow/core/warehouse.py) on both engines: a real DuckDB file and a real
PostgreSQL started by the suite. The same SQL and the same frames must come back the same."""

import datetime as dt

import pyarrow as pa
import pytest

from personaflow.core import warehouse as wh
from personaflow.core.placeholders import PlaceholderError

FRAME = pa.table(
    {
        "a": ["x", "", None, 'q"u,o'],
        "b": [1, None, 3, 4],
        "c": [1.5, 2.0, None, -0.25],
        "d": pa.array([dt.datetime(2011, 1, 1, 8, 26), None, dt.datetime(2011, 12, 9), None]),
    }
)


@pytest.fixture(params=["duckdb", "postgres"])
def where(request, tmp_path):
    if request.param == "duckdb":
        return tmp_path / "warehouse.duckdb"
    return request.getfixturevalue("postgres_url")


def test_register_insert_and_read_back_the_same_rows(where):
    with wh.connect(where) as con:
        con.execute("create schema if not exists raw; create table raw.t (a varchar, b bigint, "
                    "c double precision, d timestamp);")
        con.register("frame", FRAME)
        con.execute("insert into raw.t select * from frame")
        con.unregister("frame")
        rows = con.execute("select a, b, c, d from raw.t order by b nulls first").fetchall()
    # empty string and NULL stay apart; quotes and commas survive the COPY
    assert rows == [("", None, 2.0, None), ("x", 1, 1.5, dt.datetime(2011, 1, 1, 8, 26)),
                    (None, 3, None, dt.datetime(2011, 12, 9)), ('q"u,o', 4, -0.25, None)]


def test_parameters_transactions_and_missing_tables(where):
    with wh.connect(where) as con:
        con.execute("create schema if not exists raw; create table raw.t (a varchar, n bigint);")
        con.execute("insert into raw.t values ($1, $2), ($3, $4)", ["50% off", 1, "b", 2])
        assert con.execute("select a from raw.t where n = $1", [1]).fetchone() == ("50% off",)
        con.begin()
        con.execute("delete from raw.t")
        con.rollback()
        assert con.execute("select count(*) as n from raw.t").df()["n"].tolist() == [2]
        assert con.table_exists("raw.t") and not con.table_exists("raw.nope")
        with pytest.raises(wh.MISSING_TABLE):
            con.execute("select * from marts.nope")


def test_a_question_mark_and_a_percent_in_literals_stay_literals(where):
    """Statements reach both engines as written: a `?` or `%` (or `$1`) inside a literal, quoted
    identifier or comment is text, next to real `$n` parameters, one of them used twice. (The old
    `?` -> `%s` rewrite turned the `?` in the literal into a parameter and doubled the `%`.)"""
    with wh.connect(where) as con:
        con.execute('create schema if not exists raw; create table raw.t ("why?" varchar, n bigint);')
        con.execute(
            """insert into raw.t ("why?", n) values ('is 50% off? ask $1', $1), ($2, $1 + 1) -- why? 100%""",
            [7, "%s and ?"],
        )
        got = con.execute(
            """select "why?", n, 'a?b%c' as lit from raw.t where n >= $1 and "why?" like '%?%' order by n""",
            [7],
        ).fetchall()
    assert got == [("is 50% off? ask $1", 7, "a?b%c"), ("%s and ?", 8, "a?b%c")]


def test_a_question_mark_placeholder_is_refused_on_every_engine(where):
    """DuckDB alone would bind `?`: the connection refuses it, so a DuckDB-only run cannot hide SQL
    that PostgreSQL would reject."""
    with wh.connect(where) as con:
        con.execute("create schema if not exists raw; create table raw.t (a varchar);")
        with pytest.raises(PlaceholderError, match="placeholder"):
            con.execute("insert into raw.t values (?)", ["x"])
        assert con.execute("select count(*) from raw.t where a = $1", ["x"]).fetchone() == (0,)


def test_read_only_connection_refuses_writes(where):
    with wh.connect(where) as con:
        con.execute("create schema if not exists raw; create table raw.t (a varchar);")
    with wh.connect(where, read_only=True) as con, pytest.raises(wh.ERRORS):
        con.execute("insert into raw.t values ('x')")


def test_location_and_description_hide_the_password():
    class S:
        warehouse = "/tmp/w.duckdb"
        warehouse_url = "postgresql://pf:secret@db.example:6543/shop"

    assert wh.location(S) == S.warehouse_url
    assert "secret" not in wh.describe(S.warehouse_url)
    S.warehouse_url = ""
    assert str(wh.location(S)) == "/tmp/w.duckdb"
