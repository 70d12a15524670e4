"""int_items through dbt with an imported catalogue (raw.products): the point-in-time rule for a changed
category (a product moved to another category on 2017-03-01 is not seen by the marts of 2017-02-28), and
the catalogue's precedence over the landed items file and over a category read off the description."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pandas as pd

from personaflow.core import warehouse as wh
from personaflow.core.settings import Settings
from personaflow.ingest.load import RAW_DDL
from personaflow.pipeline.shop_tables import import_table
from personaflow.pipeline.transform import run_dbt


def _shop(tmp_path: Path) -> Settings:
    s = Settings(home=tmp_path, features_dir=tmp_path / "features")
    days = [pd.Timestamp("2017-01-02") + pd.Timedelta(days=n) for n in range(0, 70, 7)]
    events = pd.DataFrame(
        [
            (f"e{n}{item}", "a", item, "purchase", day, 1, 2.0, f"o{n}", text, day.date())
            for n, day in enumerate(days)
            for item, text in (("i1", "CHRISTMAS BAUBLE"), ("i2", "TEA MUG"), ("i3", "PAPER CARD"))
        ],
        columns=["event_id", "user_id", "item_id", "event_type", "event_ts", "quantity", "price", "order_id",
                 "description", "batch_date"],
    )  # fmt: skip
    with wh.connect(wh.location(s)) as con:
        con.execute(RAW_DDL)
        con.register("ev", events)
        con.execute(f"insert into raw.events ({', '.join(events.columns)}) select * from ev")
        # the landed items file says i2 is "kitchen": the imported catalogue outranks it
        con.execute("insert into raw.items values ('i2', 'kitchen', null, 2.0, 'TEA MUG')")
    (tmp_path / "products.csv").write_text(
        "sku,title,cat,since\ni1,Bauble,seasonal,2017-01-01\ni1,Bauble,decorations,2017-03-01\n"
        "i2,Mug,drinkware,2017-01-01\n"
    )
    (tmp_path / "products.toml").write_text(
        'format = "csv"\n[columns]\nitem_id = "sku"\nname = "title"\ncategory = "cat"\nvalid_from = "since"\n'
    )
    import_table("products", tmp_path / "products.csv", str(tmp_path / "products.toml"), s)
    return s


def _items(s: Settings, as_of: date) -> dict[str, tuple[str, str, str]]:
    run_dbt(s.warehouse, as_of, s.dbt_project_dir, s.home / "dbt-state", select="+int_items")
    with duckdb.connect(str(s.warehouse), read_only=True) as con:
        rows = con.execute(
            "select item_id, category, category_source, description from intermediate.int_items"
        )
        return {i: (c, src, d) for i, c, src, d in rows.fetchall()}


def test_the_catalogue_is_read_as_of_the_night_and_outranks_the_items_file_and_derived_categories(
    tmp_path: Path,
) -> None:
    s = _shop(tmp_path)
    before = _items(s, date(2017, 2, 28))
    assert before["i1"] == ("seasonal", "catalogue", "Bauble")  # the March move is not seen yet
    assert before["i2"] == ("drinkware", "catalogue", "Mug")  # over the landed items file's "kitchen"
    # not in the catalogue: the category read off its description, as before
    assert before["i3"] == ("cards wrap and stationery", "description", "PAPER CARD")
    after = _items(s, date(2017, 3, 1))
    assert after["i1"] == ("decorations", "catalogue", "Bauble")
    assert after["i2"] == before["i2"] and after["i3"] == before["i3"]
