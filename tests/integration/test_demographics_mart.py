"""marts.customer_demographics through dbt: the point-in-time rule for a changed dimension (a customer's
income raised on 2017-03-01 is not seen by the marts of 2017-02-28), and an empty typed mart for a
shop without a customer table."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb

from personaflow.core.settings import Settings
from personaflow.pipeline.transform import run_dbt
from tests.unit.test_shop_tables_profile import _shop


def _mart(s: Settings, as_of: date) -> dict[str, str]:
    run_dbt(s.warehouse, as_of, s.dbt_project_dir, s.home / "dbt-state", select="customer_demographics")
    with duckdb.connect(str(s.warehouse), read_only=True) as con:
        return dict(con.execute("select user_id, income from marts.customer_demographics").fetchall())


def test_the_mart_reads_each_customer_as_of_the_night(tmp_path: Path) -> None:
    s = _shop(tmp_path)
    assert _mart(s, date(2017, 2, 28)) == {"a": "50-74K", "b": "Under 15K"}
    assert _mart(s, date(2017, 3, 1)) == {"a": "150-174K", "b": "Under 15K"}
    assert _mart(s, date(2016, 12, 31)) == {}


def test_a_shop_without_a_customer_table_gets_an_empty_mart(tmp_path: Path) -> None:
    s = _shop(tmp_path)
    with duckdb.connect(str(s.warehouse)) as con:
        con.execute("drop table raw.customers")
    assert _mart(s, date(2017, 2, 28)) == {}
