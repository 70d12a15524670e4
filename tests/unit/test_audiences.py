"""Audiences: every filter narrows the list as it says, bad definitions name the field, saved audiences
are refreshed with their size kept night after night."""

from datetime import date

import pandas as pd
import pytest

from personaflow.profiles.audiences import COLUMNS, AudienceError, AudienceSpec, select, summarise

PROFILE = pd.DataFrame(
    [
        ("a", "Champions", "big spenders", "bulk", 0.05, 3, 20, 900.0, "United Kingdom", "home decor"),
        ("b", "Champions", "big spenders", "weekend", 0.10, 70, 12, 400.0, "France", "candles and lights"),
        ("c", "At Risk", "lapsed", "bulk", 0.80, 120, 4, 300.0, "United Kingdom", "kitchen and dining"),
        ("d", "Lost", "lapsed", "weekend", 0.95, 300, 1, 20.0, "Germany", None),
        ("e", "Lost", "lapsed", None, None, 200, 1, -5.0, "United Kingdom", None),  # churn not scored
    ],
    columns=COLUMNS,
)
BOUGHT = pd.DataFrame(
    [
        ("a", "84879", "home decor", "ASSORTED COLOUR BIRD ORNAMENT"),
        ("c", "21136", "candles and lights", "PAINTED METAL PEARS ASSORTED"),
        ("c", "79321", "candles and lights", "CHILLI LIGHTS"),
        ("d", "71477", "candles and lights", "COLOURED GLASS CANDLE HOLDER"),
    ],
    columns=["user_id", "item_id", "category", "name"],
)


def _ids(spec: AudienceSpec) -> list[str]:
    return select(PROFILE, BOUGHT, spec)["user_id"].tolist()


def test_each_filter_narrows_and_best_customers_come_first():
    assert _ids(AudienceSpec()) == ["a", "b", "c", "d", "e"]  # by monetary, highest first
    assert _ids(AudienceSpec(rfm_segments=["Champions"], min_recency_days=60)) == ["b"]
    assert _ids(AudienceSpec(min_churn_score=0.6, bought_text=["candle"])) == ["d"]  # any case
    assert _ids(AudienceSpec(min_churn_score=0.6, bought_categories=["candles and lights"])) == ["c", "d"]
    assert _ids(AudienceSpec(max_churn_score=0.5)) == ["a", "b"]  # unscored users are never "low risk"
    assert _ids(AudienceSpec(countries=["United Kingdom"], max_monetary=0)) == ["e"]
    assert _ids(AudienceSpec(bought_items=["84879", "79321"], min_frequency=5)) == ["a"]
    assert _ids(AudienceSpec(segment_labels=["lapsed"], max_recency_days=250)) == ["c", "e"]
    assert _ids(AudienceSpec(personas=["bulk"])) == ["a", "c"]
    assert _ids(AudienceSpec(rfm_segments=["Lost"], personas=["weekend", "bulk"])) == ["d"]


def test_summary_counts_size_share_and_segments():
    members = select(PROFILE, BOUGHT, AudienceSpec(rfm_segments=["Lost", "At Risk"]))
    summary = summarise(members, len(PROFILE))
    assert (
        summary["size"] == 3
        and summary["share"] == 0.6
        and summary["rfm_segments"] == {"Lost": 2, "At Risk": 1}
    )
    assert summary["monetary_total"] == 315.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"min_recency_days": 90, "max_recency_days": 30}, "min_recency_days=90"),
        ({"min_churn_score": 1.5}, "min_churn_score=1.5"),
        ({"name": "Bad Name!"}, "name 'Bad Name!'"),
    ],
)
def test_bad_definitions_name_the_field(kwargs, field):
    with pytest.raises(AudienceError, match=field):
        AudienceSpec(**kwargs)
    with pytest.raises(AudienceError, match="unknown field.*min_recency"):
        AudienceSpec.from_json({"min_recency": 3})


def _marts(warehouse, day: str, profile: pd.DataFrame) -> None:
    import duckdb

    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema if not exists marts")
        con.register("p", profile.drop(columns=["segment_label", "persona", "churn_score"]))
        con.register("b", BOUGHT)
        con.execute(
            f"create or replace table marts.user_features as select *, date '{day}' as as_of_date from p"
        )
        con.execute(
            "create or replace table marts.interactions as select user_id, item_id, 1 as n_purchases from b"
        )
        con.execute(
            "create or replace table marts.item_features as "
            "select distinct item_id, category, name as description from b"
        )


def test_saved_audiences_are_refreshed_with_their_size_over_time(tmp_path, monkeypatch):
    from personaflow.core import settings
    from personaflow.pipeline.audiences import refresh_saved, save_audience, size_history

    monkeypatch.setenv("PERSONAFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("PERSONAFLOW_FEATURES_DIR", str(tmp_path / "features"))
    s = settings.load()
    assert refresh_saved(s)["audiences"] == {}  # nothing saved yet: a normal night
    save_audience(AudienceSpec(name="lapsed-champions", rfm_segments=["Champions"], min_recency_days=60), s)
    _marts(s.warehouse, "2011-12-08", PROFILE)
    assert refresh_saved(s)["audiences"] == {"lapsed-champions": 1}
    refresh_saved(s)  # the same night again replaces its row, it does not add one
    _marts(s.warehouse, "2011-12-09", PROFILE.assign(recency_days=PROFILE["recency_days"] + 60))
    assert refresh_saved(s)["as_of"] == "2011-12-09"
    assert size_history(s, "lapsed-champions") == [
        {"as_of": str(date(2011, 12, 8)), "size": 1}, {"as_of": str(date(2011, 12, 9)), "size": 2},
    ]  # fmt: skip
    members = pd.read_parquet(tmp_path / "audiences" / "members" / "lapsed-champions.parquet")
    assert sorted(members["user_id"]) == ["a", "b"]


def test_an_unknown_segment_name_is_an_error_listing_the_valid_ones(tmp_path, monkeypatch):
    """A misspelt segment used to select nobody, silently (an audience of 0)."""
    from personaflow.profiles.audiences import RFM_SEGMENTS, check_labels

    with pytest.raises(AudienceError) as caught:
        AudienceSpec(rfm_segments=["Champions", "Loyal customers"])
    text = str(caught.value)
    assert text.startswith("rfm_segments 'Loyal customers' is not a segment name")
    assert "did you mean 'Loyal Customers'?" in text and all(name in text for name in RFM_SEGMENTS)
    with pytest.raises(AudienceError, match="'VIP' is not a segment name; valid: Champions, "):
        AudienceSpec(rfm_segments=["VIP"])
    assert _ids(AudienceSpec(rfm_segments=["Loyal Customers", "Lost"])) == ["d", "e"]  # valid names pass
    # K-means labels are tonight's: an unknown one lists those of the profile
    near = r"'big spender' .*did you mean 'big spenders'.*valid: big spenders, lapsed$"
    with pytest.raises(AudienceError, match=near):
        check_labels(PROFILE, AudienceSpec(segment_labels=["big spender"]))
    check_labels(PROFILE, AudienceSpec(segment_labels=["lapsed"]))
    # personas too are tonight's names: an unknown one lists them (a near miss named), a known one passes
    with pytest.raises(AudienceError, match=r"^personas 'Bulk' .*did you mean 'bulk'.*valid: bulk, weekend$"):
        check_labels(PROFILE, AudienceSpec(personas=["Bulk"]))
    with pytest.raises(AudienceError, match=r"^personas 'wholesalers' is not a persona name; valid: bulk, "):
        check_labels(PROFILE, AudienceSpec(personas=["wholesalers"]))
    check_labels(PROFILE, AudienceSpec(personas=["weekend"]))

    # a definition saved before names were checked is reported by the nightly refresh, not a failed night
    from personaflow.core import settings
    from personaflow.pipeline.audiences import audiences_dir, refresh_saved

    monkeypatch.setenv("PERSONAFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("PERSONAFLOW_FEATURES_DIR", str(tmp_path / "features"))
    s = settings.load()
    (audiences_dir(s) / "definitions").mkdir(parents=True)
    (audiences_dir(s) / "definitions" / "old.json").write_text('{"name": "old", "rfm_segments": ["loyal"]}')
    _marts(s.warehouse, "2011-12-08", PROFILE)
    night = refresh_saved(s)
    assert night["audiences"] == {} and "'loyal' is not a segment name" in night["invalid"]["old"]


def test_the_rfm_names_checked_are_the_dbt_grid_s():
    """RFM_SEGMENTS must follow dbt_project/macros/rfm_segment.sql, or a real segment would be refused."""
    import re

    from personaflow.core.settings import REPO_ROOT
    from personaflow.profiles.audiences import RFM_SEGMENTS

    macro = (REPO_ROOT / "dbt_project" / "macros" / "rfm_segment.sql").read_text()
    names = set(re.findall(r"then '([^']+)'", macro))
    assert names == set(RFM_SEGMENTS) and len(RFM_SEGMENTS) == len(names)


def test_a_segment_file_from_before_personas_reads_with_an_empty_persona(tmp_path):
    """user_segment.parquet written before the persona column existed: audiences still load, persona null."""
    from personaflow.pipeline.audiences import _latest

    path = tmp_path / "user_segment.parquet"
    stamps = pd.to_datetime(["2011-12-07", "2011-12-08", "2011-12-08"]).tz_localize("UTC")
    old = pd.DataFrame({"user_id": ["a", "a", "b"], "segment_label": ["x", "y", "z"], "feature_ts": stamps})
    old.to_parquet(path, index=False)
    latest = _latest(path, ["segment_label", "persona"]).set_index("user_id")
    assert latest["segment_label"].to_dict() == {"a": "y", "b": "z"} and latest["persona"].isna().all()
