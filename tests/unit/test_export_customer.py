"""`personaflow export-customer ID` (right of access): everything held about one customer (events,
demographics versions, campaigns, reviews, tonight's profile files) and nobody else; an unknown id is an
error like forget's; after `forget`, export-customer finds nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from personaflow.core.settings import Settings
from personaflow.pipeline.export_customer import export_customer
from personaflow.pipeline.forget import UnknownUser, forget_user
from personaflow.pipeline.reviews import import_reviews
from personaflow.pipeline.shop_tables import import_table
from tests.unit.test_shop_tables_profile import _shop


def _shop_with_reviews(tmp_path: Path) -> Settings:
    s = _shop(tmp_path)  # events of a-d, a's income changed on 2017-03-01, campaigns 1 and 2
    (tmp_path / "red.csv").write_text("customer,id,on\na,1,2017-01-12\n")
    (tmp_path / "red.toml").write_text(
        'format = "csv"\n[columns]\nuser_id = "customer"\ncampaign_id = "id"\nredemption_date = "on"\n'
    )
    import_table("redemptions", tmp_path / "red.csv", str(tmp_path / "red.toml"), s)
    (tmp_path / "reviews.csv").write_text(
        "id,who,sku,stars,words,at\nr1,a,i1,1,The fabric tore after one wash,2017-02-01\n"
        "r2,b,i1,5,Lovely and warm,2017-02-02\n"
    )
    (tmp_path / "reviews.toml").write_text(
        'format = "csv"\n[columns]\nreview_id = "id"\nuser_id = "who"\nitem_id = "sku"\nrating = "stars"\n'
        'text = "words"\nreview_ts = "at"\n'
    )
    import_reviews(tmp_path / "reviews.csv", str(tmp_path / "reviews.toml"), s, score=False, marts=False)
    return s


def test_the_export_holds_the_customers_data_and_nobody_elses(tmp_path: Path) -> None:
    s = _shop_with_reviews(tmp_path)
    out = export_customer("a", s)
    assert out["user_id"] == "a"
    assert len(out["events"]) == 20 and {e["user_id"] for e in out["events"]} == {"a"}  # days 1..58 step 3
    incomes = sorted(v["income"] for v in out["demographics"]["versions"])
    assert incomes == ["150-174K", "50-74K"]  # both versions, with their dates and raw records
    assert all(json.loads(v["raw_record"])["id"] == "a" for v in out["demographics"]["versions"])
    assert out["demographics"]["as_of_tonight"]["income_band"] == "mid income"  # point in time: Feb 28
    assert sorted(m["campaign_id"] for m in out["campaigns"]["reached"]) == ["1", "2"]
    assert [r["campaign_id"] for r in out["campaigns"]["redemptions"]] == ["1"]
    assert out["campaigns"]["summary"]["coupons_redeemed"] == 1
    assert [r["review_id"] for r in out["reviews"]["reviews"]] == ["r1"]
    assert out["reviews"]["reviews"][0]["raw_record"]["words"].startswith("The fabric")
    assert out["held_in"] and all("'b'" not in line for line in out["held_in"])
    text = json.dumps(out)
    assert "Lovely and warm" not in text and "Under 15K" not in text  # b's review and b's income
    json.loads(text)  # plain JSON all through
    # the same customer by another written form of the id
    assert len(export_customer(" a ", s)["events"]) == 20


def test_an_unknown_id_is_an_error_like_forgets(tmp_path: Path) -> None:
    s = _shop_with_reviews(tmp_path)
    with pytest.raises(UnknownUser, match="no store holds user_id 'ghost'"):
        export_customer("ghost", s)
    with pytest.raises(ValueError, match="USER_ID is empty"):
        export_customer("  ", s)


def test_after_forget_export_customer_finds_nothing(tmp_path: Path) -> None:
    s = _shop_with_reviews(tmp_path)
    assert export_customer("a", s)["reviews"]["reviews"]  # held before
    result = forget_user("a", s)
    assert result["still_holding"] == []
    with pytest.raises(UnknownUser, match="'a' was forgotten"):
        export_customer("a", s)
    b = export_customer("b", s)  # the others are untouched
    assert [r["review_id"] for r in b["reviews"]["reviews"]] == ["r2"]
    assert b["demographics"]["versions"][0]["income"] == "Under 15K"


def test_the_cli_writes_the_export_and_fails_in_one_line_for_an_unknown_id(
    tmp_path: Path, monkeypatch
) -> None:
    from typer.testing import CliRunner

    from personaflow.cli.main import app

    s = _shop_with_reviews(tmp_path)
    monkeypatch.setenv("PERSONAFLOW_HOME", str(s.home))
    monkeypatch.setenv("PERSONAFLOW_FEATURES_DIR", str(s.features_dir))
    target = tmp_path.parent / f"{tmp_path.name}-export" / "a.json"
    done = CliRunner().invoke(app, ["export-customer", "a", "--output", str(target)])
    assert done.exit_code == 0, done.output
    assert json.loads(target.read_text())["events"] and target.stat().st_mode & 0o077 == 0
    missing = CliRunner().invoke(app, ["export-customer", "ghost"])
    assert missing.exit_code == 1 and "no store holds user_id 'ghost'" in missing.output
