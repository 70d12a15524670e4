"""The warehouse's placeholder dialect (personaflow/core/placeholders.py): `$n` markers found by DuckDB's
lexer, `?` refused, and the `$n` -> `:pn` spelling for Spark. The same SQL on a real PostgreSQL and
DuckDB file: tests/integration/test_warehouse.py."""

import datetime as dt

import duckdb
import pytest

from personaflow.core import warehouse as wh
from personaflow.core.placeholders import PlaceholderError, check, markers, spark_named

TRICKY = (
    """select 'is it 50%? $1' as "why? $2", $1 -- a ? and $3 in a comment\n"""
    """/* and ? $4 here */ from t where a = $2 and b = $1 || 'x?'"""
)


def test_markers_outside_literals_identifiers_and_comments_only():
    assert [text for _, text in markers(TRICKY)] == ["$1", "$2", "$1"]
    assert [TRICKY[offset:offset + 2] for offset, _ in markers(TRICKY)] == ["$1", "$2", "$1"]
    assert markers("select 1 where x = ? and y = '?'") == [(19, "?")]
    assert markers("select '?', \"?\", $10 + $2") == [(17, "$10"), (23, "$2")]


def test_check_refuses_a_question_mark_marker_and_names_where():
    with pytest.raises(PlaceholderError, match="offset 19"):
        check("select 1 where x = ? and y = '?'")
    assert check("select '?' where x = $1") == [(21, "$1")]


def test_spark_spelling_keeps_literals_and_reuses_a_parameter():
    sql, args = spark_named(TRICKY, ["one", "two"])
    assert sql == TRICKY.replace("as \"why? $2\", $1", "as \"why? $2\", :p1").replace(
        "a = $2 and b = $1", "a = :p2 and b = :p1"
    )
    assert args == {"p1": "one", "p2": "two"}
    with pytest.raises(PlaceholderError, match=r"\$3 but 2"):
        spark_named("select $3", [1, 2])
    with pytest.raises(PlaceholderError):
        spark_named("select ?", [1])


def test_the_duckdb_connection_runs_dollar_markers_and_refuses_question_marks(tmp_path):
    with wh.connect(tmp_path / "w.duckdb") as con:
        day = dt.date(2011, 12, 9)
        assert con.execute("select $1 = $2, $1, '?%'", [day, day]).fetchone() == (True, day, "?%")
        with pytest.raises(PlaceholderError):
            con.execute("select ? as a", [1])
        # without parameters a statement is not checked: a `?` there has no value and DuckDB refuses it
        with pytest.raises(duckdb.Error):
            con.execute("select ? as a")
        assert con.execute("select '?' as a").fetchone() == ("?",)
