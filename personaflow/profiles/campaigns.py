"""Campaign response: who each campaign reached, who redeemed, what it did to revenue, and who is likely to
redeem the next one. Pure functions over frames (the imports fill them: personaflow/ingest/campaigns.py).

Inputs, our columns:
- `daily`: user_id, day (datetime64), revenue, baskets: one row per customer and day with a purchase
  (`daily_spend` builds it from purchase lines). Memory O(customer-days), never customers × items.
- `campaigns`: campaign_id, campaign_type, start_date, end_date; `members`: campaign_id, user_id (who was
  reached); `redemptions`: user_id, campaign_id, redemption_date.
- `demo_known`: the set of customers with demographics (a stratum variable).

**The comparison (stated).** For a campaign, the eligible customers are those who bought before its
start. Reached ones are compared with eligible ones the campaign did not reach, within strata of
pre-period spend decile (the `pre_days` before the start, deciles over all eligible customers) ×
demographics known or not. The incremental revenue per reached customer is the average over strata,
weighted by the reached customers in each, of (mean window revenue of reached − mean of not reached):
the effect on the reached (ATT) under "reach is as good as random within a stratum". Reached customers in
a stratum without any unreached one are left out and counted. Not reached means not reached by this
campaign; such a customer may be reached by another campaign running at the same time, which pulls the
estimate towards zero. The 95 % interval is a stratified bootstrap: customers resampled with replacement
within each (stratum, reached) cell, the weights held, percentiles of `n_boot` replicates.
Memory: O(n_boot × eligible customers) for the bootstrap, one campaign at a time.

**The response model (stated).** Who redeems a campaign, among those it reached: a gradient-boosted
classifier (scikit-learn HistGradientBoosting) on features known at the campaign's start (pre-period
spend and baskets, recency, tenure, spend to date, demographics bands with "unknown", campaigns reached
and coupons redeemed before, redeemed a campaign of the same type before) and the campaign type. It is
not an uplift model: in The Complete Journey no customer redeems a campaign that did not reach them
(2,102 of 2,102 redemptions are by reached households), so the uplift of reach on redemption equals the
probability of redemption when reached; the revenue effect of reach is estimated by the stratified
comparison above. Trained on campaigns that ended before the one it is judged on (time-ordered).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from personaflow.profiles.demographics import AGE_BANDS, INCOME_BANDS, for_customers

PRE_DAYS = 56
N_BOOT = 1000
DECILES = 10
COMPARISON = (
    f"reached vs eligible unreached customers (bought before the start), within strata of {PRE_DAYS}-day "
    f"pre-period spend decile x demographics known; weighted by reached per stratum; 95% interval by "
    f"stratified bootstrap ({N_BOOT} replicates)"
)


def daily_spend(lines: pd.DataFrame) -> pd.DataFrame:
    """Purchase lines (user_id, ts, revenue, order_id) -> one row per customer and day: revenue, baskets."""
    day = pd.to_datetime(lines["ts"]).dt.normalize()
    grouped = lines.assign(day=day).groupby(["user_id", "day"], sort=False)
    out = grouped.agg(revenue=("revenue", "sum"), baskets=("order_id", "nunique")).reset_index()
    return out.astype({"user_id": str})


def _window(daily: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Revenue and baskets per customer with days in [start, end] (inclusive days)."""
    part = daily[(daily["day"] >= start.normalize()) & (daily["day"] <= end.normalize())]
    return part.groupby("user_id").agg(revenue=("revenue", "sum"), baskets=("baskets", "sum"))


def campaign_outcomes(
    daily: pd.DataFrame,
    campaign: pd.Series,
    reached: set[str],
    demo_known: set[str],
    pre_days: int = PRE_DAYS,
    spend: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per eligible customer (bought before the start): reached, pre_spend, window_revenue,
    demo_known, stratum ('<decile>|<known>'). `spend` (daily's columns; default `daily`) is what is
    counted: the spend on the campaign's coupon products for the coupon comparison, while eligibility
    stays "bought anything before the start"."""
    start, end = pd.Timestamp(campaign["start_date"]), pd.Timestamp(campaign["end_date"])
    spend = daily if spend is None else spend
    first = daily.groupby("user_id")["day"].min()
    eligible = first.index[first < start.normalize()]
    out = pd.DataFrame(index=pd.Index(eligible, name="user_id"))
    pre = _window(spend, start - pd.Timedelta(days=pre_days), start - pd.Timedelta(days=1))
    out["pre_spend"] = pre["revenue"].reindex(out.index).fillna(0.0)
    out["window_revenue"] = _window(spend, start, end)["revenue"].reindex(out.index).fillna(0.0)
    out["reached"] = out.index.isin(list(reached))
    out["demo_known"] = out.index.isin(list(demo_known))
    return assign_strata(out.reset_index())


def assign_strata(frame: pd.DataFrame, deciles: int = DECILES) -> pd.DataFrame:
    """stratum = pre-period spend decile (by rank: ties at 0 share the lowest) × demographics known."""
    if frame.empty:
        return frame.assign(decile=pd.Series(dtype=int), stratum=pd.Series(dtype=str))
    n = min(deciles, len(frame))
    decile = np.minimum((frame["pre_spend"].rank(method="min").to_numpy() - 1) * n // len(frame), n - 1)
    frame = frame.assign(decile=decile.astype(int))
    return frame.assign(
        stratum=frame["decile"].astype(str) + "|" + frame["demo_known"].map({True: "known", False: "unknown"})
    )


@dataclass(frozen=True)
class Effect:
    """The stratified comparison of one campaign (see the module doc)."""

    incremental_per_reached: float
    ci_low: float
    ci_high: float
    n_reached: int
    n_control: int
    n_reached_compared: int  # reached customers in strata that have controls
    n_strata: int
    naive_difference: float  # mean reached − mean not reached, no strata: shown beside, not used


def stratified_effect(
    frame: pd.DataFrame,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = 0.95,
    outcome: str = "window_revenue",
) -> Effect:
    """ATT of reach on `outcome` within strata, with a stratified bootstrap interval."""
    treated, control = frame[frame["reached"]], frame[~frame["reached"]]
    naive = (
        float(treated[outcome].mean() - control[outcome].mean()) if len(treated) and len(control) else np.nan
    )
    usable = sorted(set(treated["stratum"]) & set(control["stratum"]))
    if not usable:
        return Effect(np.nan, np.nan, np.nan, len(treated), len(control), 0, 0, naive)
    rng = np.random.default_rng(seed)
    weights, diffs, boots = [], [], []
    for stratum in usable:
        t = treated.loc[treated["stratum"] == stratum, outcome].to_numpy(float)
        c = control.loc[control["stratum"] == stratum, outcome].to_numpy(float)
        weights.append(len(t))
        diffs.append(t.mean() - c.mean())
        # B resampled means per cell: a (B × n) draw of indices, one cell at a time
        tb = t[rng.integers(0, len(t), size=(n_boot, len(t)))].mean(axis=1)
        cb = c[rng.integers(0, len(c), size=(n_boot, len(c)))].mean(axis=1)
        boots.append(tb - cb)
    w = np.asarray(weights, float) / sum(weights)
    point = float(np.dot(w, diffs))
    replicates = np.asarray(boots).T @ w
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return Effect(
        point, float(low), float(high), len(treated), len(control), int(sum(weights)), len(usable), naive
    )


def campaign_response(
    daily: pd.DataFrame,
    campaigns: pd.DataFrame,
    members: pd.DataFrame,
    redemptions: pd.DataFrame,
    demo_known: set[str],
    pre_days: int = PRE_DAYS,
    n_boot: int = N_BOOT,
    seed: int = 0,
    coupon_daily: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per campaign: reached, redeemed, redemption rate, and the stratified revenue comparison. With
    `coupon_daily` (daily's columns plus campaign_id: spend on each campaign's own coupon products, e.g.
    `coupon_spend`), the same comparison on those products too (COUPON_COMPARISON): coupon_* columns."""
    rows = []
    for _, camp in campaigns.sort_values("start_date").iterrows():
        cid = str(camp["campaign_id"])
        reached = set(members.loc[members["campaign_id"].astype(str) == cid, "user_id"].astype(str))
        redeemed = set(redemptions.loc[redemptions["campaign_id"].astype(str) == cid, "user_id"].astype(str))
        frame = campaign_outcomes(daily, camp, reached, demo_known, pre_days)
        effect = stratified_effect(frame, n_boot=n_boot, seed=seed)
        coupon = {}
        if coupon_daily is not None:
            own = coupon_daily[coupon_daily["campaign_id"].astype(str) == cid]
            coupon = _coupon_columns(daily, camp, reached, demo_known, pre_days, own, frame, n_boot, seed)
        rows.append(
            {
                "campaign_id": cid,
                "campaign_type": camp.get("campaign_type"),
                "start_date": pd.Timestamp(camp["start_date"]),
                "end_date": pd.Timestamp(camp["end_date"]),
                "reached": len(reached),
                "redeemed": len(redeemed & reached),
                "redemption_rate": len(redeemed & reached) / len(reached) if reached else np.nan,
                "reached_eligible": effect.n_reached,
                "controls": effect.n_control,
                "reached_compared": effect.n_reached_compared,
                "strata": effect.n_strata,
                "window_revenue_per_reached": float(frame.loc[frame["reached"], "window_revenue"].mean())
                if effect.n_reached
                else np.nan,
                "incremental_revenue_per_reached": effect.incremental_per_reached,
                "incremental_ci_low": effect.ci_low,
                "incremental_ci_high": effect.ci_high,
                "naive_difference": effect.naive_difference,
                **coupon,
            }
        )
    return pd.DataFrame(rows)


COUPON_COMPARISON = (
    "the same stratified comparison with revenue counted on the campaign's own coupon products only "
    "(pre-period spend deciles on those products x demographics known): reached vs eligible unreached"
)


def coupon_spend(
    lines: pd.DataFrame, coupons: pd.DataFrame, campaigns: pd.DataFrame, pre_days: int = PRE_DAYS
) -> pd.DataFrame:
    """Purchase lines (user_id, ts, revenue, order_id, item_id) -> spend on each campaign's own coupon
    products per customer and day, from `pre_days` before its start to its end: campaign_id, user_id,
    day, revenue, baskets (the `coupon_daily` of `campaign_response`; personaflow/pipeline/shop_tables.py
    builds the same in SQL). Memory: one campaign's matching lines at a time, O(lines)."""
    items = coupons.assign(
        campaign_id=coupons["campaign_id"].astype(str), item_id=coupons["item_id"].astype(str)
    )
    ts = pd.to_datetime(lines["ts"])
    item = lines["item_id"].astype(str)
    parts = []
    for _, camp in campaigns.iterrows():
        cid = str(camp["campaign_id"])
        start = pd.Timestamp(camp["start_date"]).normalize() - pd.Timedelta(days=pre_days)
        end = pd.Timestamp(camp["end_date"]).normalize() + pd.Timedelta(days=1)
        own = set(items.loc[items["campaign_id"] == cid, "item_id"])
        mask = (item.isin(own) & (ts >= start) & (ts < end)).to_numpy()
        if mask.any():
            parts.append(daily_spend(lines[mask]).assign(campaign_id=cid))
    cols = ["campaign_id", "user_id", "day", "revenue", "baskets"]
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


def _coupon_columns(
    daily: pd.DataFrame, camp: pd.Series, reached: set[str], demo_known: set[str], pre_days: int,
    own: pd.DataFrame, everything: pd.DataFrame, n_boot: int, seed: int,
) -> dict[str, Any]:  # fmt: skip
    """The coupon-product comparison of one campaign (COUPON_COMPARISON), and the share of the reached
    customers' window revenue that went to those products."""
    frame = campaign_outcomes(daily, camp, reached, demo_known, pre_days, spend=own)
    effect = stratified_effect(frame, n_boot=n_boot, seed=seed)
    on_coupon = float(frame.loc[frame["reached"], "window_revenue"].sum())
    on_all = float(everything.loc[everything["reached"], "window_revenue"].sum())
    return {
        "coupon_window_revenue_per_reached": float(frame.loc[frame["reached"], "window_revenue"].mean())
        if effect.n_reached
        else np.nan,
        "coupon_share_of_reached_revenue": on_coupon / on_all if on_all > 0 else np.nan,
        "coupon_incremental_revenue_per_reached": effect.incremental_per_reached,
        "coupon_incremental_ci_low": effect.ci_low,
        "coupon_incremental_ci_high": effect.ci_high,
        "coupon_naive_difference": effect.naive_difference,
    }


# ---- coupons: what each campaign promoted, what each customer redeemed on ------------------------------


def promoted(coupons: pd.DataFrame, departments: pd.Series, top: int = 3) -> pd.DataFrame:
    """Per campaign: coupons, coupon products, and the `top` departments by share of its coupon products
    (`departments`: item_id -> department; products without one count as "unknown"): campaign_id,
    coupons, coupon_products, promoted_departments ("GROCERY 62%, DRUG GM 20%"). O(coupon rows)."""
    rows = coupons.drop_duplicates(["campaign_id", "item_id"]).assign(
        department=lambda f: f["item_id"].astype(str).map(departments).fillna("unknown")
    )
    out = []
    for cid, part in rows.groupby(rows["campaign_id"].astype(str), sort=False):
        shares = part["department"].value_counts(normalize=True).head(top)
        out.append(
            {
                "campaign_id": cid,
                "coupons": int(coupons.loc[coupons["campaign_id"].astype(str) == cid, "coupon_id"].nunique()),
                "coupon_products": int(part["item_id"].nunique()),
                "promoted_departments": ", ".join(f"{d} {v:.0%}" for d, v in shares.items()),
            }
        )
    return pd.DataFrame(out, columns=["campaign_id", "coupons", "coupon_products", "promoted_departments"])


def redeemed_on(
    redemptions: pd.DataFrame, coupons: pd.DataFrame, bought: pd.DataFrame, departments: pd.Series
) -> pd.DataFrame:
    """What each redemption was spent on: one row per redemption (user_id, campaign_id, coupon_id,
    redemption_date) with `items` (the coupon's products the customer bought on the redemption day),
    `department` (the most common department of those items; of all the coupon's products when none was
    found) and `matched` (items found). `bought`: user_id, day, item_id of purchases on the customers'
    redemption days (a semi-join of the events on them). Memory O(bought + coupon rows): the coupon
    rows are joined with what was bought, never redemptions × coupon products."""
    red = redemptions.assign(
        user_id=redemptions["user_id"].astype(str), campaign_id=redemptions["campaign_id"].astype(str),
        coupon_id=redemptions["coupon_id"].astype(str),
        day=pd.to_datetime(redemptions["redemption_date"]).dt.normalize().astype("datetime64[ns]"),
    )[["user_id", "campaign_id", "coupon_id", "redemption_date", "day"]].drop_duplicates()  # fmt: skip
    cp = coupons.assign(
        campaign_id=coupons["campaign_id"].astype(str), coupon_id=coupons["coupon_id"].astype(str),
        item_id=coupons["item_id"].astype(str),
    )[["campaign_id", "coupon_id", "item_id"]].drop_duplicates()  # fmt: skip
    b = bought.assign(
        user_id=bought["user_id"].astype(str), item_id=bought["item_id"].astype(str),
        day=pd.to_datetime(bought["day"]).dt.normalize().astype("datetime64[ns]"),
    )[["user_id", "day", "item_id"]].drop_duplicates()  # fmt: skip
    hits = b.merge(red, on=["user_id", "day"]).merge(cp, on=["campaign_id", "coupon_id", "item_id"])
    hits["department"] = hits["item_id"].map(departments).fillna("unknown")
    key = ["user_id", "campaign_id", "coupon_id", "day"]
    if hits.empty:  # nothing found on any redemption day: every redemption falls back
        out = red.assign(items=None, department=None)
    else:
        found = hits.groupby(key).agg(
            items=("item_id", lambda v: sorted(set(v))), department=("department", _mode)
        )
        out = red.merge(found.reset_index(), on=key, how="left")
    fallback = (
        cp.assign(department=cp["item_id"].map(departments).fillna("unknown"))
        .groupby(["campaign_id", "coupon_id"])["department"]
        .agg(_mode)
        .rename("coupon_department")
    )
    out = out.merge(fallback.reset_index(), on=["campaign_id", "coupon_id"], how="left")
    out["matched"] = out["items"].notna()
    out["items"] = out["items"].map(lambda v: v if isinstance(v, list) else [])
    out["department"] = out["department"].fillna(out["coupon_department"]).fillna("unknown")
    return out.drop(columns=["day", "coupon_department"])


def _mode(values: pd.Series) -> str:
    """The most common value; ties broken by name so the answer does not depend on row order."""
    counts = values.value_counts()
    return str(min(counts.index[counts == counts.max()]))


def coupon_profile(spent: pd.DataFrame, as_of: pd.Timestamp | str, top: int = 3) -> pd.DataFrame:
    """Per customer, from `redeemed_on` rows redeemed by `as_of`: coupon_departments (up to `top`
    departments redeemed on, most redemptions first) and coupon_products (up to `top` products bought
    with a coupon, most often first). O(redemptions)."""
    part = spent[pd.to_datetime(spent["redemption_date"]) <= pd.Timestamp(as_of)]
    cols = ["user_id", "coupon_departments", "coupon_products"]
    if part.empty:
        return pd.DataFrame(columns=cols)

    def ranked(values: pd.Series) -> list[str]:
        counts = values.value_counts()
        order = sorted(counts.index, key=lambda v: (-counts[v], str(v)))
        return [str(v) for v in order[:top]]

    departments = part.groupby("user_id")["department"].agg(ranked).rename("coupon_departments")
    items = part.explode("items").dropna(subset=["items"])
    products = items.groupby("user_id")["items"].agg(ranked).rename("coupon_products")
    out = pd.DataFrame(departments).join(products, how="left").reset_index()
    out["coupon_products"] = out["coupon_products"].map(lambda v: v if isinstance(v, list) else [])
    return out[cols]


# ---- the response model --------------------------------------------------------------------------------

FEATURES = (
    "pre_spend",
    "pre_baskets",
    "spend_to_date",
    "baskets_to_date",
    "recency_days",
    "tenure_days",
    "campaigns_reached_before",
    "redemptions_before",
    "campaigns_redeemed_before",
    "redeemed_same_type_before",
    "demo_known",
    "age_rank",
    "income_rank",
    "families",
    "type_A",
    "type_B",
    "type_C",
)


def response_features(
    daily: pd.DataFrame,
    campaign: pd.Series,
    users: list[str],
    campaigns: pd.DataFrame,
    members: pd.DataFrame,
    redemptions: pd.DataFrame,
    customers: pd.DataFrame | None,
    pre_days: int = PRE_DAYS,
) -> pd.DataFrame:
    """Features of `users` for `campaign`, from what was known before its start only (user_id + FEATURES)."""
    start = pd.Timestamp(campaign["start_date"]).normalize()
    before = daily[daily["day"] < start]
    hist = before.groupby("user_id").agg(
        spend_to_date=("revenue", "sum"),
        baskets_to_date=("baskets", "sum"),
        first=("day", "min"),
        last=("day", "max"),
    )
    pre = (
        before[before["day"] >= start - pd.Timedelta(days=pre_days)]
        .groupby("user_id")
        .agg(pre_spend=("revenue", "sum"), pre_baskets=("baskets", "sum"))
    )
    out = pd.DataFrame(index=pd.Index([str(u) for u in users], name="user_id"))
    out = out.join(hist).join(pre)
    out["recency_days"] = (start - out["last"]).dt.days.fillna(9999)
    out["tenure_days"] = (start - out["first"]).dt.days.fillna(0)
    out = out.drop(columns=["first", "last"]).fillna(0.0)

    started_before = campaigns.loc[pd.to_datetime(campaigns["start_date"]) < start, "campaign_id"].astype(str)
    seen = members[members["campaign_id"].astype(str).isin(set(started_before))]
    out["campaigns_reached_before"] = seen.groupby("user_id").size().reindex(out.index).fillna(0)
    past = redemptions[pd.to_datetime(redemptions["redemption_date"]) < start]
    out["redemptions_before"] = past.groupby("user_id").size().reindex(out.index).fillna(0)
    out["campaigns_redeemed_before"] = (
        past.groupby("user_id")["campaign_id"].nunique().reindex(out.index).fillna(0)
    )
    kind = campaign.get("campaign_type")
    same_type = set(campaigns.loc[campaigns["campaign_type"] == kind, "campaign_id"].astype(str))
    same = past[past["campaign_id"].astype(str).isin(same_type)]
    out["redeemed_same_type_before"] = out.index.isin(set(same["user_id"].astype(str))).astype(float)

    demo = for_customers(list(out.index), customers, start).set_index("user_id").reindex(out.index)
    out["demo_known"] = (demo["demographic_label"] != "unknown").astype(float)
    out["age_rank"] = demo["age_band"].map({b: i for i, b in enumerate(AGE_BANDS)}).fillna(-1)
    out["income_rank"] = demo["income_band"].map({b: i for i, b in enumerate(INCOME_BANDS)}).fillna(-1)
    out["families"] = (demo["household"] == "families").astype(float) - (demo["household"] == "unknown")
    for t in ("A", "B", "C"):
        out[f"type_{t}"] = float(str(kind).strip().endswith(t))
    return out[list(FEATURES)].astype(float).reset_index()


def response_rows(
    daily: pd.DataFrame,
    campaigns: pd.DataFrame,
    members: pd.DataFrame,
    redemptions: pd.DataFrame,
    customers: pd.DataFrame | None,
    campaign_ids: list[str],
) -> pd.DataFrame:
    """Training/test rows: one per (campaign in `campaign_ids`, customer it reached), label `redeemed`."""
    parts = []
    by_id = campaigns.assign(campaign_id=campaigns["campaign_id"].astype(str)).set_index("campaign_id")
    for cid in campaign_ids:
        camp = by_id.loc[cid]
        reached = sorted(set(members.loc[members["campaign_id"].astype(str) == cid, "user_id"].astype(str)))
        feats = response_features(daily, camp, reached, campaigns, members, redemptions, customers)
        got = set(redemptions.loc[redemptions["campaign_id"].astype(str) == cid, "user_id"].astype(str))
        parts.append(feats.assign(campaign_id=cid, redeemed=feats["user_id"].isin(got).astype(int)))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*FEATURES, "redeemed"])


def fit_response_model(rows: pd.DataFrame, seed: int = 0) -> Any:
    """A gradient-boosted classifier of `redeemed` on FEATURES (small, regularised: a few thousand rows).
    One thread: on so few rows OpenMP's threads only wait on each other (93 s instead of ~1 s on a
    loaded 2-core machine)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    model = HistGradientBoostingClassifier(
        max_iter=200,
        learning_rate=0.05,
        max_leaf_nodes=15,
        min_samples_leaf=40,
        l2_regularization=1.0,
        random_state=seed,
    )
    with threadpool_limits(1):
        return model.fit(rows[list(FEATURES)].to_numpy(float), rows["redeemed"].to_numpy(int))


def score(model: Any, features: pd.DataFrame) -> pd.Series:
    """P(redeem | reached) per customer (indexed by user_id)."""
    p = model.predict_proba(features[list(FEATURES)].to_numpy(float))[:, 1]
    return pd.Series(p, index=features["user_id"].astype(str).to_numpy(), name="redeem_score")


def likely_not_reached(scores: pd.Series, reached: set[str], top: int) -> pd.DataFrame:
    """The audience "likely to redeem, not yet reached": the `top` highest scores among customers the
    campaign (or campaigns) in `reached` has not reached yet, best first."""
    pool = scores[~scores.index.isin(list(reached))].sort_values(ascending=False, kind="stable")
    return pool.head(top).rename_axis("user_id").reset_index()


def campaign_history(
    campaigns: pd.DataFrame, members: pd.DataFrame, redemptions: pd.DataFrame, as_of: pd.Timestamp | str
) -> pd.DataFrame:
    """Per customer, campaigns started by `as_of`: campaigns_reached, campaigns_redeemed, coupons_redeemed,
    last_campaign_id (the latest reached): the profile's campaign history, point in time."""
    as_of = pd.Timestamp(as_of)
    started = campaigns[pd.to_datetime(campaigns["start_date"]) <= as_of].assign(
        campaign_id=lambda f: f["campaign_id"].astype(str)
    )
    m = members.assign(campaign_id=members["campaign_id"].astype(str)).merge(
        started[["campaign_id", "start_date"]], on="campaign_id"
    )
    r = redemptions[pd.to_datetime(redemptions["redemption_date"]) <= as_of]
    out = m.groupby("user_id").agg(campaigns_reached=("campaign_id", "nunique"))
    out["last_campaign_id"] = m.sort_values("start_date").groupby("user_id")["campaign_id"].last()
    out = out.join(
        r.groupby("user_id").agg(
            campaigns_redeemed=("campaign_id", "nunique"), coupons_redeemed=("campaign_id", "size")
        ),
        how="outer",
    )
    out = out.fillna({"campaigns_reached": 0, "campaigns_redeemed": 0, "coupons_redeemed": 0})
    return out.astype(
        {"campaigns_reached": int, "campaigns_redeemed": int, "coupons_redeemed": int}
    ).reset_index()


# ---- revenue uplift (T-learner) ------------------------------------------------------------------------
# Reach vs no reach does vary for revenue: a two-model (T-learner) uplift of reach on revenue per window
# day. One regressor on reached customers, one on eligible unreached ones, same features; the uplift is
# the difference of their predictions. Judged on a later campaign by the stratified comparison inside
# the customers it ranks highest vs lowest (`stratified_effect` above).


def uplift_rows(
    daily: pd.DataFrame, campaigns: pd.DataFrame, members: pd.DataFrame, redemptions: pd.DataFrame,
    customers: pd.DataFrame | None, campaign_ids: list[str], demo_known: set[str],
) -> pd.DataFrame:  # fmt: skip
    """One row per (campaign, eligible customer): FEATURES, reached, revenue_per_day (window revenue /
    window days), stratum. Memory O(campaigns × customers), one campaign's features at a time."""
    parts = []
    by_id = campaigns.assign(campaign_id=campaigns["campaign_id"].astype(str)).set_index("campaign_id")
    for cid in campaign_ids:
        camp = by_id.loc[cid]
        reached = set(members.loc[members["campaign_id"].astype(str) == cid, "user_id"].astype(str))
        outcome = campaign_outcomes(daily, camp, reached, demo_known)
        if outcome.empty:
            continue
        days = (
            pd.Timestamp(camp["end_date"]).normalize() - pd.Timestamp(camp["start_date"]).normalize()
        ).days + 1
        feats = response_features(
            daily, camp, list(outcome["user_id"]), campaigns, members, redemptions, customers
        )
        frame = feats.merge(outcome[["user_id", "reached", "window_revenue", "stratum"]], on="user_id")
        parts.append(frame.assign(campaign_id=cid, revenue_per_day=frame["window_revenue"] / days))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def fit_uplift(rows: pd.DataFrame, seed: int = 0) -> tuple[Any, Any]:
    """(model on reached, model on unreached): gradient-boosted regressors of revenue per window day."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from threadpoolctl import threadpool_limits

    models = []
    with threadpool_limits(1):
        for group in (True, False):
            part = rows[rows["reached"] == group]
            model = HistGradientBoostingRegressor(
                max_iter=150,
                learning_rate=0.05,
                max_leaf_nodes=15,
                min_samples_leaf=50,
                l2_regularization=1.0,
                random_state=seed,
            )
            models.append(
                model.fit(part[list(FEATURES)].to_numpy(float), part["revenue_per_day"].to_numpy(float))
            )
    return models[0], models[1]


def predict_uplift(models: tuple[Any, Any], features: pd.DataFrame) -> np.ndarray:
    """Predicted revenue per window day if reached minus if not reached."""
    x = features[list(FEATURES)].to_numpy(float)
    return models[0].predict(x) - models[1].predict(x)
