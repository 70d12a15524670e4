"""The profile's demographics and campaign fields: from the imports through refresh_profile_tables to what
/profile (serving/shop_tables.py) and the audience filters read, on a tiny shop."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from personaflow.core import warehouse as wh
from personaflow.core.settings import Settings
from personaflow.ingest.load import RAW_DDL
from personaflow.pipeline.shop_tables import DEMOGRAPHICS_FILE, import_table
from personaflow.profiles.audiences import AudienceError, AudienceSpec, select
from personaflow.serving.shop_tables import ShopTables


def _shop(tmp_path: Path) -> Settings:
    s = Settings(home=tmp_path, features_dir=tmp_path / "features")
    rows = []
    for i, user in enumerate(["a", "b", "c", "d"]):
        for day in range(1, 60, 3 + i):  # every customer buys through January and February
            rows.append(
                (
                    f"e{user}{day}",
                    user,
                    "i1",
                    "purchase",
                    pd.Timestamp("2017-01-01") + pd.Timedelta(days=day),
                    1,
                    10.0 + i,
                    f"o{user}{day}",
                )
            )
    events = pd.DataFrame(
        rows,
        columns=["event_id", "user_id", "item_id", "event_type", "event_ts", "quantity", "price", "order_id"],
    )
    with wh.connect(wh.location(s)) as con:
        con.execute(RAW_DDL)
        con.register("ev", events)
        con.execute(f"insert into raw.events ({', '.join(events.columns)}) select * from ev")
    (tmp_path / "cust.csv").write_text(
        "id,age,income,since\na,25-34,50-74K,2017-01-01\nb,65+,Under 15K,2017-01-01\n"
        "a,25-34,150-174K,2017-03-01\n"
    )
    (tmp_path / "cust.toml").write_text(
        'format = "csv"\n[columns]\nuser_id = "id"\nage = "age"\nincome = "income"\nvalid_from = "since"\n'
    )
    (tmp_path / "camp.csv").write_text(
        "id,kind,from,to\n1,A,2017-01-10,2017-01-25\n2,A,2017-02-20,2017-03-10\n"
    )
    (tmp_path / "reached.csv").write_text("id,customer\n1,a\n1,b\n1,c\n2,a\n")
    (tmp_path / "camp.toml").write_text(
        'format = "csv"\n[columns]\ncampaign_id = "id"\ncampaign_type = "kind"\nstart_date = "from"\n'
        'end_date = "to"\n[members]\nfile = "reached.csv"\ncampaign_id = "id"\nuser_id = "customer"\n'
    )
    (tmp_path / "red.csv").write_text("customer,id,on\na,1,2017-01-12\n")
    (tmp_path / "red.toml").write_text(
        'format = "csv"\n[columns]\nuser_id = "customer"\ncampaign_id = "id"\nredemption_date = "on"\n'
    )
    import_table("customers", tmp_path / "cust.csv", str(tmp_path / "cust.toml"), s)
    import_table("campaigns", tmp_path / "camp.csv", str(tmp_path / "camp.toml"), s)
    return s


def test_every_customer_gets_demographics_as_of_the_last_day_and_campaign_history(tmp_path: Path) -> None:
    s = _shop(tmp_path)
    with pytest.raises(Exception, match="'ghost' is not a customer the shop has events of"):
        (tmp_path / "bad.csv").write_text("customer,id,on\nghost,1,2017-01-12\n")
        import_table("redemptions", tmp_path / "bad.csv", str(tmp_path / "red.toml"), s)
    report = import_table("redemptions", tmp_path / "red.csv", str(tmp_path / "red.toml"), s)["profile"]
    assert report["customers"] == 4 and report["with_demographics"] == 2
    assert report["as_of"] == "2017-02-28" and report["reached_by_running_campaign"] == 1

    demo = pd.read_parquet(s.features_dir / DEMOGRAPHICS_FILE).set_index("user_id")
    # the last day is before a's raise (2017-03-01): the point-in-time read keeps the older income
    assert demo.loc["a", "demographic_label"] == "young customers, mid income"
    assert demo.loc["b", "demographic_label"] == "older customers, low income"
    assert demo.loc[["c", "d"], "demographic_label"].eq("unknown").all()

    tables = ShopTables(s.features_dir)
    a = tables.fields("a")
    assert a["demographics"]["income_band"] == "mid income"
    assert a["campaigns"]["campaigns_reached"] == 2 and a["campaigns"]["coupons_redeemed"] == 1
    assert a["campaigns"]["reached_by_running_campaign"] is True and a["campaigns"]["last_campaign_id"] == "2"
    d = tables.fields("d")
    assert d["demographics"]["label"] == "unknown" and d["campaigns"]["campaigns_reached"] == 0
    assert tables.fields("new-since-tonight")["demographics"]["label"] == "unknown"

    # what /profile answers: the service's Profile model with these fields (serving/service.py)
    from personaflow.serving.schemas import Profile

    base = {name: None for name, f in Profile.model_fields.items() if f.is_required()}
    base.update(
        user_id="a",
        favourite_categories=[],
        n_views=0,
        n_carts=0,
        n_purchases=0,
        n_returns=0,
        live_events=0,
        churn_basis="rule",
    )
    answer = Profile.model_validate({**base, **a}).model_dump()
    assert answer["demographics"]["label"] == "young customers, mid income"
    assert answer["campaigns"]["redeem_score"] is None or 0 <= answer["campaigns"]["redeem_score"] <= 1


def test_the_profile_has_no_such_fields_for_a_shop_without_these_tables(tmp_path: Path) -> None:
    assert ShopTables(tmp_path).fields("a") == {"demographics": None, "campaigns": None}


def test_audience_filters_on_demographics_and_redemption(tmp_path: Path) -> None:
    profile = pd.DataFrame(
        {
            "user_id": ["a", "b", "c"],
            "rfm_segment": "Champions",
            "segment_label": None,
            "churn_score": 0.1,
            "recency_days": 1,
            "frequency": 3,
            "monetary": [30.0, 20.0, 10.0],
            "country": "US",
            "favourite_categories": None,
            "age_band": ["young", "older", "unknown"],
            "income_band": ["mid income", "low income", "unknown"],
            "household": "unknown",
            "demographic_label": ["young customers, mid income", "older customers, low income", "unknown"],
            "redeem_score": [0.9, 0.6, 0.1],
            "reached_by_running_campaign": [True, False, False],
        }
    )
    bought = pd.DataFrame(columns=["user_id", "item_id", "category", "name"])
    pick = lambda **kw: list(select(profile, bought, AudienceSpec(**kw))["user_id"])  # noqa: E731
    assert pick(income_bands=["mid income", "unknown"]) == ["a", "c"]
    assert pick(demographic_labels=["older customers, low income"]) == ["b"]
    # "likely to redeem, not yet reached"
    assert pick(min_redeem_score=0.5, not_reached_by_running_campaign=True) == ["b"]
    with pytest.raises(
        AudienceError, match="age_bands 'Young' is not a segment name \\(did you mean 'young'"
    ):
        AudienceSpec(age_bands=["Young"])


def test_a_shop_without_customer_or_campaign_tables_gets_no_such_files(tmp_path: Path) -> None:
    from personaflow.pipeline.shop_tables import refresh_profile_tables

    s = _shop(tmp_path)
    with wh.connect(wh.location(s)) as con:
        con.execute("drop table raw.customers; drop table raw.campaigns")
    for f in s.features_dir.glob("customer_*.parquet"):
        f.unlink()
    assert refresh_profile_tables(s) == {"skipped": "no customer or campaign tables"}
    assert not list(s.features_dir.glob("customer_*.parquet"))


def _with_coupons(tmp_path: Path, s: Settings) -> dict:
    """_shop's catalogue (i1 DAIRY, i2 BAKERY) and coupons (campaign 1: k1 for i1, listed twice; campaign
    2: k2 for i2), and a redemption file (not imported) of k1 by a on 2017-01-11, a day a bought i1."""
    (tmp_path / "cat.csv").write_text("sku,dept\ni1,DAIRY\ni2,BAKERY\n")
    (tmp_path / "cat.toml").write_text(
        'format = "csv"\n[columns]\nitem_id = "sku"\ndepartment = "dept"\n'
        '[options]\nvalid_from = "2017-01-01"\n'
    )
    import_table("products", tmp_path / "cat.csv", str(tmp_path / "cat.toml"), s, refresh=False)
    (tmp_path / "coupons.csv").write_text("upc,sku,id\nk1,i1,1\nk1,i1,1\nk2,i2,2\n")
    (tmp_path / "coupons.toml").write_text(
        'format = "csv"\n[columns]\ncoupon_id = "upc"\nitem_id = "sku"\ncampaign_id = "id"\n'
    )
    got = import_table("coupons", tmp_path / "coupons.csv", str(tmp_path / "coupons.toml"), s, refresh=False)
    (tmp_path / "red.csv").write_text("customer,id,on,upc\na,1,2017-01-11,k1\n")
    (tmp_path / "red.toml").write_text(
        'format = "csv"\n[columns]\nuser_id = "customer"\ncampaign_id = "id"\nredemption_date = "on"\n'
        'coupon_id = "upc"\n'
    )
    return got


def test_coupons_put_redemptions_on_departments_in_the_profile_and_campaigns_on_their_products(
    tmp_path: Path,
) -> None:
    import json

    from personaflow.pipeline.shop_tables import COUPON_SPEND_SQL
    from personaflow.profiles.campaigns import coupon_spend

    s = _shop(tmp_path)
    got = _with_coupons(tmp_path, s)
    assert (got["repeats"], got["table_rows"], got["checks"]["success"]) == (1, 2, True)
    report = import_table("redemptions", tmp_path / "red.csv", str(tmp_path / "red.toml"), s)["profile"]
    assert report["redemptions_matched_to_purchases"] == 1

    tables = ShopTables(s.features_dir)
    a, b = tables.fields("a")["campaigns"], tables.fields("b")["campaigns"]
    assert a["coupon_departments"] == ["DAIRY"] and a["coupon_products"] == ["i1"]
    assert b["coupon_departments"] == [] and b["coupon_products"] == []

    response = json.loads((s.reports_dir / "campaigns" / "response.json").read_text())
    assert "coupon products" in response["coupon_comparison"]
    first = {c["campaign_id"]: c for c in response["campaigns"]}["1"]
    assert first["promoted_departments"] == "DAIRY 100%" and first["coupon_products"] == 1
    # every purchase here is of i1, campaign 1's coupon product: the two comparisons agree
    assert first["coupon_share_of_reached_revenue"] == pytest.approx(1.0)
    assert first["coupon_incremental_revenue_per_reached"] == pytest.approx(
        first["incremental_revenue_per_reached"]
    )

    # the SQL that builds the spend on coupon products is the pure coupon_spend
    with wh.connect(wh.location(s), read_only=True) as con:
        sql = con.execute(COUPON_SPEND_SQL).df()
        lines = con.execute(
            "select user_id, event_ts as ts, quantity * price as revenue, order_id, item_id from raw.events"
        ).df()
        campaigns = con.execute("select * from raw.campaigns").df()
        coupons = con.execute("select * from raw.coupons").df()
    pure = coupon_spend(lines, coupons, campaigns)
    key = ["campaign_id", "user_id", "day"]
    sql = sql.assign(day=pd.to_datetime(sql["day"]).astype("datetime64[ns]"))
    sql = sql.sort_values(key).reset_index(drop=True)
    pure = pure.assign(day=pure["day"].astype("datetime64[ns]")).sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(sql[pure.columns], pure, check_dtype=False)
