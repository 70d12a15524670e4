"""Campaign response (personaflow/profiles/campaigns.py) on small hand-made tables whose answers are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personaflow.profiles import campaigns as cr


def _frame(rows: list[tuple[str, bool, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(f"u{i}", s, r, y) for i, (s, r, y) in enumerate(rows)],
        columns=["user_id", "stratum", "reached", "window_revenue"],
    )


def test_stratified_effect_weights_strata_by_reached_and_differs_from_the_naive_gap() -> None:
    # stratum a: reached 10, 10 vs unreached 4, 4, 4 (gap 6); stratum b: reached 100 vs 90, 90 (gap 10).
    # ATT = (2 * 6 + 1 * 10) / 3; the naive gap (40 - 38.4 = 1.6) mixes the strata.
    frame = _frame(
        [
            ("a", True, 10),
            ("a", True, 10),
            ("a", False, 4),
            ("a", False, 4),
            ("a", False, 4),
            ("b", True, 100),
            ("b", False, 90),
            ("b", False, 90),
        ]
    )
    effect = cr.stratified_effect(frame, n_boot=200)
    assert effect.incremental_per_reached == pytest.approx(22 / 3)
    assert effect.naive_difference == pytest.approx(1.6)
    # no spread within any cell: every bootstrap replicate is the point itself
    assert effect.ci_low == pytest.approx(22 / 3) and effect.ci_high == pytest.approx(22 / 3)
    assert (effect.n_reached, effect.n_control, effect.n_reached_compared, effect.n_strata) == (3, 5, 3, 2)


def test_reached_customers_in_a_stratum_without_controls_are_left_out_and_counted() -> None:
    frame = _frame([("a", True, 10), ("a", False, 7), ("lonely", True, 1000)])
    effect = cr.stratified_effect(frame, n_boot=50)
    assert effect.incremental_per_reached == pytest.approx(3)
    assert (effect.n_reached, effect.n_reached_compared, effect.n_strata) == (2, 1, 1)


def test_no_comparable_controls_gives_no_estimate_rather_than_a_number() -> None:
    effect = cr.stratified_effect(_frame([("a", True, 10), ("b", False, 3)]), n_boot=10)
    assert np.isnan(effect.incremental_per_reached) and effect.n_strata == 0


def test_bootstrap_interval_covers_a_known_effect_and_narrows_with_more_customers() -> None:
    rng = np.random.default_rng(1)
    widths = []
    for n in (200, 3200):
        base = rng.gamma(2.0, 20.0, size=2 * n)
        reached = np.arange(2 * n) < n
        revenue = base + np.where(reached, 5.0, 0.0)  # a true effect of +5 per reached customer
        frame = pd.DataFrame(
            {
                "user_id": [f"u{i}" for i in range(2 * n)],
                "stratum": "s",
                "reached": reached,
                "window_revenue": revenue,
            }
        )
        effect = cr.stratified_effect(frame, n_boot=500, seed=3)
        assert effect.ci_low < effect.incremental_per_reached < effect.ci_high
        widths.append(effect.ci_high - effect.ci_low)
    assert effect.ci_low < 5 < effect.ci_high  # the large sample's interval holds the truth
    assert widths[1] < widths[0] / 2  # 16x the customers: about a quarter of the width


def _shop() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    day = pd.Timestamp
    lines = pd.DataFrame(
        [
            ("h1", day("2017-01-05"), 50.0, "b1"),
            ("h1", day("2017-02-03"), 30.0, "b2"),  # reached, buys in window
            ("h2", day("2017-01-06"), 50.0, "b3"),
            ("h2", day("2017-02-04"), 10.0, "b4"),  # not reached
            ("h3", day("2017-02-02"), 99.0, "b5"),  # first purchase after the start: not eligible
        ],
        columns=["user_id", "ts", "revenue", "order_id"],
    )
    campaigns = pd.DataFrame(
        {
            "campaign_id": ["1"],
            "campaign_type": ["Type A"],
            "start_date": [day("2017-02-01")],
            "end_date": [day("2017-02-04")],
        }
    )
    members = pd.DataFrame({"campaign_id": ["1", "1"], "user_id": ["h1", "h3"]})
    redemptions = pd.DataFrame(
        {"user_id": ["h1"], "campaign_id": ["1"], "redemption_date": [day("2017-02-03")]}
    )
    return cr.daily_spend(lines), campaigns, members, redemptions


def test_campaign_response_counts_reach_redemption_and_compares_eligible_customers() -> None:
    daily, campaigns, members, redemptions = _shop()
    table = cr.campaign_response(daily, campaigns, members, redemptions, demo_known=set(), n_boot=20)
    row = table.iloc[0]
    assert (row["reached"], row["redeemed"], row["redemption_rate"]) == (2, 1, 0.5)
    # h3 bought first after the start: not eligible, so one reached (h1) vs one control (h2), same stratum
    assert (row["reached_eligible"], row["controls"]) == (1, 1)
    assert row["window_revenue_per_reached"] == pytest.approx(30.0)  # the window's last day counts
    assert row["incremental_revenue_per_reached"] == pytest.approx(20.0)


def test_response_features_see_nothing_from_on_or_after_the_campaign_start() -> None:
    daily, campaigns, members, redemptions = _shop()
    later = pd.concat(
        [
            redemptions,
            pd.DataFrame(
                {"user_id": ["h1"], "campaign_id": ["1"], "redemption_date": [pd.Timestamp("2016-12-01")]}
            ),
        ]
    )
    feats = cr.response_features(
        daily, campaigns.iloc[0], ["h1", "h2", "nobody"], campaigns, members, later, customers=None
    ).set_index("user_id")
    # the redemption in the window is not known at the start; the one before it is
    assert feats.loc["h1", "redemptions_before"] == 1
    assert feats.loc["h1", "spend_to_date"] == 50.0 and feats.loc["h1", "recency_days"] == 27
    assert feats.loc["nobody", "spend_to_date"] == 0 and feats.loc["nobody", "demo_known"] == 0
    assert feats.loc["h1", "type_A"] == 1 and feats.loc["h1", "type_B"] == 0


def test_response_model_learns_a_signal_and_the_audience_leaves_out_the_reached() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    rows = pd.DataFrame({f: rng.normal(size=n) for f in cr.FEATURES})
    rows["redeemed"] = (rows["redemptions_before"] + 0.5 * rng.normal(size=n) > 1).astype(int)
    rows["user_id"] = [f"u{i}" for i in range(n)]
    model = cr.fit_response_model(rows.iloc[:1500])
    scores = cr.score(model, rows.iloc[1500:])
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(rows["redeemed"].iloc[1500:], scores.to_numpy()) > 0.85
    reached = set(scores.sort_values(ascending=False).index[:3])
    audience = cr.likely_not_reached(scores, reached, top=5)
    assert len(audience) == 5 and not set(audience["user_id"]) & reached
    assert audience["redeem_score"].is_monotonic_decreasing


def test_campaign_history_is_point_in_time() -> None:
    _, campaigns, members, redemptions = _shop()
    before = cr.campaign_history(campaigns, members, redemptions, "2017-01-31")
    assert before.empty
    during = cr.campaign_history(campaigns, members, redemptions, "2017-02-03").set_index("user_id")
    assert during.loc["h1", "campaigns_reached"] == 1 and during.loc["h1", "coupons_redeemed"] == 1
    assert during.loc["h3", "campaigns_redeemed"] == 0


def test_the_t_learner_finds_who_reach_moves_and_the_stratified_check_sees_it() -> None:
    rng = np.random.default_rng(2)
    n = 4000
    rows = pd.DataFrame({f: rng.normal(size=n) for f in cr.FEATURES})
    rows["reached"] = rng.random(n) < 0.5
    # reach adds 4 a day to customers who redeemed before (redemptions_before > 0), nothing to the rest
    moved = rows["redemptions_before"] > 0
    rows["revenue_per_day"] = 10 + rows["pre_spend"] + np.where(rows["reached"] & moved, 4.0, 0.0)
    rows["revenue_per_day"] += rng.normal(scale=1.0, size=n)
    train, test = rows.iloc[:3000], rows.iloc[3000:].copy()
    test["uplift"] = cr.predict_uplift(cr.fit_uplift(train), test)
    assert test.loc[moved[3000:], "uplift"].mean() == pytest.approx(4, abs=0.6)
    assert test.loc[~moved[3000:], "uplift"].mean() == pytest.approx(0, abs=0.6)
    top = test["uplift"] >= test["uplift"].median()
    frame = test.assign(stratum="s", window_revenue=test["revenue_per_day"])
    high = cr.stratified_effect(frame[top], n_boot=200)
    low = cr.stratified_effect(frame[~top], n_boot=200)
    assert high.ci_low > low.ci_high  # the half ranked highest gains more, beyond the intervals


# ---- coupons ------------------------------------------------------------------------------------------

DEPARTMENTS = pd.Series({"milk": "DAIRY", "cheese": "DAIRY", "soap": "DRUG GM", "bread": "BAKERY"})
COUPONS = pd.DataFrame(
    {
        "campaign_id": ["1", "1", "1", "2"],
        "coupon_id": ["k1", "k1", "k2", "k3"],
        "item_id": ["milk", "cheese", "soap", "bread"],
    }
)


def test_a_redemption_is_put_on_the_coupon_products_bought_that_day_else_on_the_coupons_department() -> None:
    redemptions = pd.DataFrame(
        {
            "user_id": ["h1", "h2", "h1"],
            "campaign_id": ["1", "1", "1"],
            "coupon_id": ["k1", "k1", "k2"],
            "redemption_date": pd.to_datetime(["2017-02-02", "2017-02-03", "2017-02-09"]),
        }
    )
    bought = pd.DataFrame(
        {
            "user_id": ["h1", "h1", "h2", "h1"],
            "day": pd.to_datetime(["2017-02-02", "2017-02-02", "2017-02-04", "2017-02-09"]),
            "item_id": ["cheese", "bread", "milk", "bread"],  # bread: bought, but not on the coupon
        }
    )
    spent = cr.redeemed_on(redemptions, COUPONS, bought, DEPARTMENTS).set_index(["user_id", "coupon_id"])
    assert spent.loc[("h1", "k1"), "items"] == ["cheese"] and spent.loc[("h1", "k1"), "matched"]
    # h2 bought the coupon's milk a day later: not matched; the coupon's own department stands in
    assert spent.loc[("h2", "k1"), "items"] == [] and not spent.loc[("h2", "k1"), "matched"]
    assert spent.loc[("h2", "k1"), "department"] == "DAIRY"
    assert spent.loc[("h1", "k2"), "department"] == "DRUG GM"

    profile = cr.coupon_profile(spent.reset_index(), "2017-02-28").set_index("user_id")
    assert profile.loc["h1", "coupon_departments"] == ["DAIRY", "DRUG GM"]  # a tie: by name
    assert profile.loc["h1", "coupon_products"] == ["cheese"] and profile.loc["h2", "coupon_products"] == []
    early = cr.coupon_profile(spent.reset_index(), "2017-02-02").set_index("user_id")
    assert list(early.index) == ["h1"] and early.loc["h1", "coupon_departments"] == ["DAIRY"]  # point in time


def test_promoted_departments_are_shares_of_each_campaigns_coupon_products() -> None:
    table = cr.promoted(COUPONS, DEPARTMENTS).set_index("campaign_id")
    assert table.loc["1", "coupons"] == 2 and table.loc["1", "coupon_products"] == 3
    assert table.loc["1", "promoted_departments"] == "DAIRY 67%, DRUG GM 33%"
    assert table.loc["2", "promoted_departments"] == "BAKERY 100%"


def test_the_coupon_comparison_counts_only_the_campaigns_own_products() -> None:
    """Reached customers buy 10 more milk (a coupon product) in the window and the same bread as the
    controls: the effect on coupon products is +10, and it is all of the effect on all products."""
    rng = np.random.default_rng(3)
    rows = []
    users = [f"u{i}" for i in range(200)]
    reached = set(users[:100])
    for u in users:
        base = float(rng.uniform(5, 50))
        rows.append((u, "2017-01-05", "bread", base, f"{u}a"))  # before: eligible, bread only
        rows.append((u, "2017-01-20", "milk", 4.0, f"{u}b"))  # pre-period spend on the coupon product
        rows.append((u, "2017-02-05", "bread", base, f"{u}c"))
        rows.append((u, "2017-02-06", "milk", 4.0 + (10.0 if u in reached else 0.0), f"{u}d"))
    lines = pd.DataFrame(rows, columns=["user_id", "ts", "item_id", "revenue", "order_id"])
    campaigns = pd.DataFrame(
        {"campaign_id": ["1"], "campaign_type": ["A"], "start_date": [pd.Timestamp("2017-02-01")],
         "end_date": [pd.Timestamp("2017-02-10")]}
    )  # fmt: skip
    members = pd.DataFrame({"campaign_id": "1", "user_id": sorted(reached)})
    none = pd.DataFrame(columns=["user_id", "campaign_id", "redemption_date"])
    own = cr.coupon_spend(lines, COUPONS, campaigns)
    assert set(own["campaign_id"]) == {"1"} and own["revenue"].sum() == pytest.approx(200 * 8 + 100 * 10)
    row = cr.campaign_response(
        cr.daily_spend(lines), campaigns, members, none, set(), n_boot=200, coupon_daily=own
    ).iloc[0]
    assert row["coupon_incremental_revenue_per_reached"] == pytest.approx(10.0)
    assert row["coupon_incremental_ci_low"] == pytest.approx(10.0)  # no noise on milk: a point interval
    assert row["coupon_window_revenue_per_reached"] == pytest.approx(14.0)
    assert row["incremental_ci_low"] < 10.0 < row["incremental_ci_high"]  # bread's noise widens it
    reached_window = 14.0 * 100
    bread = lines[(lines["ts"] == "2017-02-05") & lines["user_id"].isin(reached)]["revenue"].sum()
    assert row["coupon_share_of_reached_revenue"] == pytest.approx(reached_window / (reached_window + bread))
