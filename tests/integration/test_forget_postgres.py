"""`personaflow forget` on the PostgreSQL warehouse (PERSONAFLOW_WAREHOUSE_URL): the customer's rows are
gone from every schema, text quoting them carries the tombstone instead, other customers (an id that
merely contains theirs included) are untouched, and a re-run finds nothing more to remove."""

from __future__ import annotations

from personaflow.core import warehouse as wh
from personaflow.pipeline.forget import _warehouse

SETUP = """
create schema raw;
create schema marts;
create table raw.events (event_id text, user_id text, description text, quantity integer);
insert into raw.events values
    ('e1', '1785', 'ok', 1), ('e2', '1785', 'ok', 2), ('e3', '17850', 'for 1785 and 17850', 3),
    ('e4', null, 'no customer', 1);
create table marts.user_features (user_id text, monetary double precision, favourite_categories text);
insert into marts.user_features values ('1785', 10.5, 'home'), ('17850', 3.0, 'toys');
create table raw.batch_validations (batch_date date, failed text);
insert into raw.batch_validations values ('2011-03-01', 'user_id 1785.0 repeated; price 0.1785 odd');
create view marts.v as select * from raw.events;
"""


def _mentions(con, user_id: str) -> int:
    rows = con.execute("select * from raw.events").fetchall() + con.execute(
        "select * from marts.user_features").fetchall() + con.execute(
        "select * from raw.batch_validations").fetchall()  # fmt: skip
    import re

    pattern = re.compile(r"(?<![A-Za-z0-9_.\-])" + re.escape(user_id) + r"(?![A-Za-z0-9_]|\.[1-9])")
    return sum(bool(pattern.search(str(v))) for row in rows for v in row if v is not None)


def test_forget_erases_the_customer_from_every_postgres_table(postgres_url):
    with wh.connect(postgres_url) as con:
        con.execute(SETUP)
        assert _mentions(con, "1785") == 5
    removed = _warehouse(postgres_url, "1785", "forgotten-abc")
    assert removed == 3  # two events, one profile
    with wh.connect(postgres_url, read_only=True) as con:
        assert _mentions(con, "1785") == 0
        assert con.execute("select user_id from marts.user_features").fetchall() == [("17850",)]
        [(text,)] = con.execute("select description from raw.events where event_id = 'e3'").fetchall()
        assert text == "for forgotten-abc and 17850"
        [(failed,)] = con.execute("select failed from raw.batch_validations").fetchall()
        assert failed == "user_id forgotten-abc.0 repeated; price 0.1785 odd"
        assert con.execute("select count(*) from marts.v").fetchone()[0] == 2
    assert _warehouse(postgres_url, "1785", "forgotten-abc") == 0
