"""`personaflow forget` on the PostgreSQL warehouse (PERSONAFLOW_WAREHOUSE_URL): the customer's rows are
gone from every schema (their id in any written form: 1785.0, 01785), text naming them as a customer
carries the tombstone instead, other customers (an id that merely contains theirs included) and a
number that merely equals theirs (a row number) are untouched, and a re-run finds nothing more."""

from __future__ import annotations

from personaflow.core import warehouse as wh
from personaflow.pipeline.forget import _warehouse

SETUP = """
create schema raw;
create schema marts;
create table raw.events (event_id text, user_id text, description text, quantity integer, source_row bigint);
insert into raw.events values
    ('e1', '1785', 'ok', 1, 1), ('e2', '1785.0', 'ok', 2, 2),
    ('e3', '17850', 'for customer 1785 and 17850', 3, 1785), ('e4', null, 'no customer', 1, 4),
    ('e5', '01785', 'ok', 1, 5);
create table marts.user_features (user_id text, monetary double precision, favourite_categories text);
insert into marts.user_features values ('1785', 10.5, 'home'), ('17850', 3.0, 'toys');
create table raw.batch_validations (batch_date date, failed text);
insert into raw.batch_validations values ('2011-03-01', 'user_id 1785.0 repeated; price 0.1785 odd');
create view marts.v as select * from raw.events;
"""


def _mentions(con, user_id: str) -> int:
    """Text cells naming the customer: a user_id of theirs in any form, or text quoting them."""
    rows = con.execute("select user_id, description from raw.events").fetchall() + con.execute(
        "select user_id, favourite_categories from marts.user_features").fetchall() + con.execute(
        "select failed from raw.batch_validations").fetchall()  # fmt: skip
    import re

    pattern = re.compile(r"(?<![A-Za-z0-9_.\-])0*" + re.escape(user_id) + r"(?![A-Za-z0-9_]|\.0*[1-9])")
    return sum(bool(pattern.search(v)) for row in rows for v in row if isinstance(v, str))


def test_forget_erases_the_customer_from_every_postgres_table(postgres_url):
    with wh.connect(postgres_url) as con:
        con.execute(SETUP)
        assert _mentions(con, "1785") == 6
    removed = _warehouse(postgres_url, "1785.0", "forgotten-abc")
    assert removed == 4  # three events (1785, 1785.0, 01785), one profile
    with wh.connect(postgres_url, read_only=True) as con:
        assert _mentions(con, "1785") == 0
        assert con.execute("select user_id from marts.user_features").fetchall() == [("17850",)]
        [(text, row)] = con.execute(
            "select description, source_row from raw.events where event_id = 'e3'"
        ).fetchall()
        assert (text, row) == ("for customer forgotten-abc and 17850", 1785)  # their row number stays
        [(failed,)] = con.execute("select failed from raw.batch_validations").fetchall()
        assert failed == "user_id forgotten-abc repeated; price 0.1785 odd"
        assert con.execute("select count(*) from marts.v").fetchone()[0] == 2
    assert _warehouse(postgres_url, "1785", "forgotten-abc") == 0
