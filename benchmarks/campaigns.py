"""Benchmark: campaign response on The Complete Journey (../shared/data/complete-journey), read through the
shipped mappings and the imports' own readers (personaflow/ingest/customers.py, campaigns.py).

Per campaign: reached, redeemed, redemption rate, and the incremental revenue per reached household in the
campaign window against unreached households in the same stratum (pre-period spend decile × demographics
known), with a stratified-bootstrap 95 % interval (personaflow/profiles/campaigns.py states the
comparison). With the campaigns' coupons (coupons.parquet: which products each campaign's coupons are
for): per campaign the departments it promoted, and the same comparison with revenue counted on its own
coupon products only, beside the one on all products; per redemption, the coupon products the household
bought that day and their department. The response model (who redeems, among the reached) is trained on
the campaigns that ended before the test campaign started and judged by ROC AUC on it: the latest
campaign with >= 100 reached and >= 30 redeemers. Writes benchmarks/results/campaigns.json.

    make bench-campaigns
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd
from _common import PeakRss, write_results

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "complete-journey"
RESULTS = ROOT / "benchmarks" / "results" / "campaigns.json"


def main() -> None:
    from sklearn.metrics import roc_auc_score

    from personaflow.ingest.campaigns import (
        campaign_mapping,
        coupon_mapping,
        read_campaigns,
        read_coupons,
        read_redemptions,
        redemption_mapping,
    )
    from personaflow.ingest.customers import customer_mapping, read_customers
    from personaflow.ingest.products import product_mapping, read_products
    from personaflow.profiles import campaigns as cr

    idle = os.getloadavg()[0] < 0.5 * (os.cpu_count() or 1)  # load before the timed work
    out: dict[str, object] = {
        "data": "The Complete Journey 2.0 (complete-journey/)",
        "cores": os.cpu_count(),
        "measured_at": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine_idle": idle,
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
    }
    started = time.perf_counter()
    with PeakRss() as rss:
        lines = pd.read_parquet(
            DATA / "transactions.parquet",
            columns=["household_id", "basket_id", "sales_value", "transaction_timestamp", "product_id"],
        )
        lines = lines.rename(
            columns={
                "household_id": "user_id",
                "basket_id": "order_id",
                "sales_value": "revenue",
                "transaction_timestamp": "ts",
                "product_id": "item_id",
            }
        ).astype({"user_id": str, "item_id": str})
        daily = cr.daily_spend(lines)
        users = set(daily["user_id"])
        customers, _ = read_customers(
            DATA / "demographics.parquet", customer_mapping("complete-journey-customers")
        )
        campaigns, members, _ = read_campaigns(
            DATA / "campaign_descriptions.parquet", campaign_mapping("complete-journey-campaigns")
        )
        redemptions, _ = read_redemptions(
            DATA / "coupon_redemptions.parquet",
            redemption_mapping("complete-journey-redemptions"),
            users,
            set(campaigns["campaign_id"]),
        )
        coupons, coupon_report = read_coupons(
            DATA / "coupons.parquet",
            coupon_mapping("complete-journey-coupons"),
            set(campaigns["campaign_id"]),
        )
        catalogue, _ = read_products(DATA / "products.parquet", product_mapping("complete-journey-products"))
        departments = catalogue.drop_duplicates("item_id").set_index("item_id")["department"]
        out.update(
            {
                "coupon_rows_read": coupon_report["rows_read"],
                "coupon_rows_exact_repeats_dropped": coupon_report["repeats"],
                "coupon_rows_kept": coupon_report["coupon_rows"],
                "coupons": coupon_report["coupons"],
                "coupon_products": coupon_report["products"],
                "coupon_products_not_in_catalogue": int(
                    (~coupons["item_id"].drop_duplicates().isin(departments.index)).sum()
                ),
            }
        )
        out.update(
            {
                "transaction_lines": len(lines),
                "households": len(users),
                "households_with_demographics": int(customers["user_id"].nunique()),
                "campaigns": len(campaigns),
                "campaign_members": len(members),
                "redemptions": len(redemptions),
                "pre_period_days": cr.PRE_DAYS,
                "bootstrap_replicates": cr.N_BOOT,
                "comparison": "stratified: reached vs eligible unreached households "
                "(bought before the start) within strata of pre-period (56 d) spend decile x "
                "demographics known; ATT weighted "
                "by reached per stratum; 95% CI by stratified bootstrap (1000 replicates)",
            }
        )
        read_s = time.perf_counter() - started

        t0 = time.perf_counter()
        coupon_daily = cr.coupon_spend(lines, coupons, campaigns)
        out["coupon_spend_s"] = round(time.perf_counter() - t0, 2)
        out["coupon_comparison"] = cr.COUPON_COMPARISON
        t0 = time.perf_counter()
        demo_known = set(customers["user_id"])
        table = cr.campaign_response(
            daily, campaigns, members, redemptions, demo_known, coupon_daily=coupon_daily
        )
        table = table.merge(cr.promoted(coupons, departments), on="campaign_id", how="left")
        out["response_table_s"] = round(time.perf_counter() - t0, 2)
        out.update(redemption_departments(lines, redemptions, coupons, departments))
        for r in table.sort_values("campaign_id", key=lambda s: s.astype(int)).itertuples():
            k = f"campaign_{r.campaign_id}"
            if r.reached_eligible == 0:  # starts before the transactions do: nobody has a pre-period
                out[f"{k}_comparison_note"] = "starts before the first transaction: no eligible households"
            out.update(
                {
                    f"{k}_type": r.campaign_type,
                    f"{k}_start_date": str(r.start_date.date()),
                    f"{k}_end_date": str(r.end_date.date()),
                    f"{k}_reached_households": r.reached,
                    f"{k}_redeemed_households": r.redeemed,
                    f"{k}_redemption_rate": round(r.redemption_rate, 4),
                    f"{k}_reached_compared_households": r.reached_compared,
                    f"{k}_control_households": r.controls,
                    f"{k}_window_revenue_per_reached_usd": round(r.window_revenue_per_reached, 2),
                    f"{k}_incremental_revenue_per_reached_usd": round(r.incremental_revenue_per_reached, 2),
                    f"{k}_incremental_revenue_per_reached_ci95_low_usd": round(r.incremental_ci_low, 2),
                    f"{k}_incremental_revenue_per_reached_ci95_high_usd": round(r.incremental_ci_high, 2),
                    f"{k}_naive_difference_per_reached_usd": round(r.naive_difference, 2),
                    f"{k}_coupons": int(r.coupons),
                    f"{k}_coupon_products": int(r.coupon_products),
                    f"{k}_promoted_departments_share_of_coupon_products": r.promoted_departments,
                    f"{k}_coupon_products_window_revenue_per_reached_usd": round(
                        r.coupon_window_revenue_per_reached, 2
                    ),
                    f"{k}_coupon_products_share_of_reached_window_revenue": round(
                        r.coupon_share_of_reached_revenue, 4
                    ),
                    f"{k}_coupon_products_incremental_revenue_per_reached_usd": round(
                        r.coupon_incremental_revenue_per_reached, 2
                    ),
                    f"{k}_coupon_products_incremental_revenue_per_reached_ci95_low_usd": round(
                        r.coupon_incremental_ci_low, 2
                    ),
                    f"{k}_coupon_products_incremental_revenue_per_reached_ci95_high_usd": round(
                        r.coupon_incremental_ci_high, 2
                    ),
                }
            )
            print(
                f"{k} {r.campaign_type} reached={r.reached} rate={r.redemption_rate:.3f} "
                f"incr={r.incremental_revenue_per_reached:.1f} [{r.incremental_ci_low:.1f}, "
                f"{r.incremental_ci_high:.1f}] naive={r.naive_difference:.1f} | coupon products "
                f"({r.promoted_departments}) incr={r.coupon_incremental_revenue_per_reached:.1f} "
                f"[{r.coupon_incremental_ci_low:.1f}, {r.coupon_incremental_ci_high:.1f}]"
            )

        # the response model, time-ordered: train on campaigns ended before the test campaign's start
        big = table[(table["reached"] >= 100) & (table["redeemed"] >= 30)].sort_values("start_date")
        test = big.iloc[-1]
        train_ids = table.loc[table["end_date"] < test["start_date"], "campaign_id"].tolist()
        t0 = time.perf_counter()
        train = cr.response_rows(daily, campaigns, members, redemptions, customers, train_ids)
        held = cr.response_rows(daily, campaigns, members, redemptions, customers, [test["campaign_id"]])
        features_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        model = cr.fit_response_model(train)
        fit_s = time.perf_counter() - t0
        scores = cr.score(model, held)
        auc = roc_auc_score(held["redeemed"], scores.to_numpy())
        # a one-feature peer: redeemed a campaign of the same type before (what a marketer would try first)
        peer = roc_auc_score(
            held["redeemed"], held["redeemed_same_type_before"] + 1e-3 * held["redemptions_before"]
        )
        out.update(
            {
                "response_model": "HistGradientBoostingClassifier on pre-campaign behaviour + "
                "demographics bands + past reach/redemptions + campaign type; a response model "
                "among the reached (no "
                "household redeems a campaign that did not reach it, so uplift on redemption = response)",
                "response_model_train_campaigns": ",".join(train_ids),
                "response_model_train_rows": len(train),
                "response_model_train_positives": int(train["redeemed"].sum()),
                "response_model_test_campaign": str(test["campaign_id"]),
                "response_model_test_campaign_type": test["campaign_type"],
                "response_model_test_rows": len(held),
                "response_model_test_positives": int(held["redeemed"].sum()),
                "response_model_test_roc_auc": round(float(auc), 4),
                "past_redemption_rule_test_roc_auc": round(float(peer), 4),
                "response_model_features_s": round(features_s, 2),
                "response_model_fit_s": round(fit_s, 2),
            }
        )
        print(
            f"response model AUC on campaign {test['campaign_id']}: {auc:.4f} "
            f"(past-redemption rule {peer:.4f})"
        )
        # revenue uplift of reach (T-learner), same time order; judged on the test campaign by the
        # stratified comparison inside the half it ranks highest vs the half it ranks lowest
        t0 = time.perf_counter()
        up_train = cr.uplift_rows(daily, campaigns, members, redemptions, customers, train_ids, demo_known)
        up_test = cr.uplift_rows(
            daily, campaigns, members, redemptions, customers, [test["campaign_id"]], demo_known
        )
        up_features_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        models = cr.fit_uplift(up_train)
        up_fit_s = time.perf_counter() - t0
        up_test["uplift"] = cr.predict_uplift(models, up_test)
        top = up_test["uplift"] >= up_test["uplift"].median()
        days = (test["end_date"] - test["start_date"]).days + 1
        out.update(
            {
                "uplift_model": "T-learner: HistGradientBoostingRegressor on reached and on eligible "
                "unreached "
                "households, revenue per window day; same features and time order as the response model",
                "uplift_model_train_rows": len(up_train),
                "uplift_model_test_rows": len(up_test),
                "uplift_model_fit_s": round(up_fit_s, 2),
                "uplift_model_features_s": round(up_features_s, 2),
            }
        )
        for name, part in (("top_half", up_test[top]), ("bottom_half", up_test[~top])):
            e = cr.stratified_effect(part, outcome="window_revenue")
            out.update(
                {
                    f"uplift_{name}_reached_households": e.n_reached_compared,
                    f"uplift_{name}_predicted_incremental_per_reached_usd": round(
                        float(part.loc[part["reached"], "uplift"].mean() * days), 2
                    ),
                    f"uplift_{name}_observed_incremental_per_reached_usd": round(
                        e.incremental_per_reached, 2
                    ),
                    f"uplift_{name}_observed_ci95_low_usd": round(e.ci_low, 2),
                    f"uplift_{name}_observed_ci95_high_usd": round(e.ci_high, 2),
                }
            )
            print(
                f"uplift {name}: observed {e.incremental_per_reached:.1f} [{e.ci_low:.1f}, {e.ci_high:.1f}]"
            )
    out.update(profile_refresh(DATA))
    out["read_s"] = round(read_s, 2)
    out["total_s"] = round(time.perf_counter() - started, 2)
    out["peak_rss_mb"] = round(rss.peak, 1)
    # NaN (no comparison possible) is not JSON: written as null
    out = {k: (None if isinstance(v, float) and v != v else v) for k, v in out.items()}
    write_results(RESULTS, out)


def redemption_departments(
    lines: pd.DataFrame, redemptions: pd.DataFrame, coupons: pd.DataFrame, departments: pd.Series
) -> dict[str, object]:
    """What the households redeemed coupons on: each redemption put on the coupon's products bought that
    day (profiles/campaigns.py redeemed_on), and the departments most redeemed on."""
    from personaflow.profiles import campaigns as cr

    days = redemptions.assign(day=pd.to_datetime(redemptions["redemption_date"]).dt.normalize())
    bought = lines.assign(day=pd.to_datetime(lines["ts"]).dt.normalize())[["user_id", "day", "item_id"]]
    bought = bought.merge(days[["user_id", "day"]].drop_duplicates(), on=["user_id", "day"])
    spent = cr.redeemed_on(redemptions, coupons, bought, departments)
    top = spent["department"].value_counts().head(5)
    return {
        "redemptions_matched_to_coupon_products_bought_that_day": int(spent["matched"].sum()),
        "redemptions_top_departments": ", ".join(f"{d} {n}" for d, n in top.items()),
        "households_redeeming": int(spent["user_id"].nunique()),
    }


def profile_refresh(data: Path) -> dict[str, object]:
    """The profile's demographics and campaign fields for every household (refresh_profile_tables, what
    runs after each import and in the nightly audiences stage) on the real shop: its transactions as
    purchase events in a scratch warehouse, the three tables through the imports and their mappings."""
    import tempfile

    import duckdb

    from personaflow.core.settings import Settings
    from personaflow.ingest.load import RAW_DDL
    from personaflow.pipeline.shop_tables import import_table, refresh_profile_tables

    with tempfile.TemporaryDirectory(prefix="bench-campaigns-") as tmp:
        s = Settings(home=Path(tmp), features_dir=Path(tmp) / "features")
        with duckdb.connect(str(s.warehouse)) as con:
            con.execute(RAW_DDL)
            con.execute(
                "insert into raw.events (event_id, user_id, item_id, event_type, event_ts, quantity, price, "
                "order_id) select 'cj' || row_number() over (), cast(household_id as varchar), "
                "cast(product_id as varchar), 'purchase', transaction_timestamp, quantity, "
                "sales_value / greatest(quantity, 1), cast(basket_id as varchar) "
                f"from read_parquet('{data / 'transactions.parquet'}')"
            )
        t0 = time.perf_counter()
        import_table("customers", data / "demographics.parquet", "complete-journey-customers", s)
        import_table("products", data / "products.parquet", "complete-journey-products", s)
        import_table("campaigns", data / "campaign_descriptions.parquet", "complete-journey-campaigns", s)
        import_table("coupons", data / "coupons.parquet", "complete-journey-coupons", s)
        import_table("redemptions", data / "coupon_redemptions.parquet", "complete-journey-redemptions", s)
        imports_s = time.perf_counter() - t0  # each import refreshes the profile fields too
        t0 = time.perf_counter()
        with PeakRss() as rss:
            report = refresh_profile_tables(s)
        refresh_s = time.perf_counter() - t0
        demo = pd.read_parquet(s.features_dir / "customer_demographics.parquet")
        camp = pd.read_parquet(s.features_dir / "customer_campaigns.parquet")
    return {
        "profile_refresh_s": round(refresh_s, 2),
        "profile_refresh_peak_rss_mb": round(rss.peak, 1),
        "profile_imports_with_refresh_s": round(imports_s, 2),
        "profile_as_of": report["as_of"],
        "profile_customers": len(demo),
        "profile_customers_demographics_unknown": int((demo["demographic_label"] == "unknown").sum()),
        "profile_customers_with_redeem_score": int(camp["redeem_score"].notna().sum()),
        "profile_redeem_score_campaign_type": str(camp["redeem_score_campaign_type"].dropna().iloc[0]),
        "profile_demographic_labels": int(demo["demographic_label"].nunique()),
        "profile_customers_with_coupon_departments": int(camp["coupon_departments"].map(len).gt(0).sum()),
        "profile_redemptions_matched_to_purchases": report.get("redemptions_matched_to_purchases"),
    }


if __name__ == "__main__":
    main()
