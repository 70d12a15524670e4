"""Personas: clusters of buyers on how they shop (basket, range, re-buying, price, returns, timing), not on
recency / frequency / monetary, with k chosen for use and a name, description and action per persona.

The RFM segment (marts.user_features.rfm_segment) says *how much and how lately* a customer buys; a persona
says *how* they buy, so a campaign can be cut by both ("Champions" × "bulk re-stockers").

- `BEHAVIOUR_SQL`: one row per buyer of behaviour features, aggregated inside the warehouse (DuckDB,
  PostgreSQL or Spark: `behaviour_sql(engine=...)`) from the usable purchase and return lines. Memory
  in Python: O(buyers × features); the engine groups by (user, order) and (user, item), so its work is
  linear in the lines (the gaps' window sorts each user's orders: O(orders log orders)), never
  customers × customers or customers × items.
- `fit_personas`: K-means on the scaled features for each k, an admissibility rule, a stated criterion.
  Memory O(buyers × features × k); the silhouette, quadratic in the rows it scores, scores a fixed-seed
  sample of at most `SILHOUETTE_SAMPLE` buyers, and above `MINIBATCH_ABOVE` buyers MiniBatchKMeans
  replaces KMeans, so a million customers stay linear.

Pure functions (frames in, frames out); personaflow/pipeline/profiles.py reads the warehouse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

# The behaviour features personas are clustered on. None is R, F or M: each is a per-order or
# per-line average or a share, so a customer's count of orders or total spend does not enter.
LOG_FEATURES = ("basket_items", "basket_value", "basket_categories", "units_per_line", "unit_price")
SHARE_FEATURES = ("rebuy_share", "return_rate", "weekend_share", "evening_share")
FEATURES = (*LOG_FEATURES, *SHARE_FEATURES)
# Shown in descriptions, not clustered: the gaps are undefined for a one-order buyer (a third of a gift
# shop's), and the categories over all orders grow with the number of orders (F in disguise).
EXTRA = ("n_orders", "n_categories", "mean_gap_days", "gap_cv")

MIN_SHARE = 0.05  # every persona holds at least this share of the buyers
MIN_COHEN_D = 0.8  # "large" (Cohen 1988): the two groups' means apart by 0.8 pooled standard deviations
# ...and by a margin a marketer would notice: geometric means 1.5× apart on a log feature (basket of 8 vs
# 12 products), 15 percentage points on a share. Without it, K-means' split of one noise cloud would pass
# the d rule (halves of a normal are ~2.7 d apart) and a shop without behaviour types would get personas.
MIN_LOG_RATIO = float(np.log(1.5))
MIN_SHARE_POINTS = 0.15
K_RANGE = range(2, 9)
# For use: more personas are more ways to target, so among admissible k the largest whose silhouette is
# within this fraction of the best admissible one (k = 2 often wins silhouette by a hair on real shops).
SILHOUETTE_TOLERANCE = 0.10
# Decimals the behaviour features are fitted at: finer than any difference that means something,
# coarser than the run-to-run noise in the last bits of a warehouse's float sums.
ROUND_DECIMALS = 6
SILHOUETTE_SAMPLE = 5000
MINIBATCH_ABOVE = 100_000
CRITERION = (
    f"admissible k: every persona holds >= {MIN_SHARE:.0%} of buyers and every pair of personas differs on "
    f"at least one behaviour feature (not R, F or M) by Cohen's d >= {MIN_COHEN_D} and by >= 1.5x "
    f"(log features) or >= {MIN_SHARE_POINTS * 100:.0f} points (shares); among admissible k the largest "
    f"whose mean silhouette (euclidean, scaled features, sample of <= {SILHOUETTE_SAMPLE:,}) is within "
    f"{SILHOUETTE_TOLERANCE:.0%} of the best admissible one; none admissible -> one persona"
)
NO_PURCHASE_ID, NO_PURCHASE = -1, "not yet buyers"
NO_PURCHASE_TEXT = {
    "persona_id": NO_PURCHASE_ID, "name": NO_PURCHASE,
    "description": "no product bought yet: views, carts or non-product lines only",
    "action": "a first-purchase offer on what they viewed",
}  # fmt: skip

# Per-user behaviour over the purchase lines of products (service lines are nobody's taste) and the
# returns. Both engines read it as written (see dbt_project/macros/dialect.sql for the rules kept):
# double precision numerators, extract(epoch ...) for seconds, extract(dow/hour ...) (0 = Sunday).
BEHAVIOUR_SQL = """
with lines as (
    select e.user_id, e.order_key, e.item_id, e.event_ts, e.quantity, e.revenue, i.category
    from {events} e left join {items} i on e.item_id = i.item_id
    where e.event_type = 'purchase' and e.is_product
),
orders as (
    select user_id, order_key, min(event_ts) as order_ts, count(distinct item_id) as n_items,
        count(distinct category) as n_categories, sum(revenue) as order_value
    from lines group by user_id, order_key
),
gaps as (
    select user_id, {gap_seconds} / 86400.0 as gap_days
    from orders
),
per_order as (
    select user_id, count(*) as n_orders,
        avg(cast(n_items as {double})) as basket_items,
        avg(cast(order_value as {double})) as basket_value,
        avg(cast(n_categories as {double})) as basket_categories,
        avg(case when {weekend} then 1e0 else 0e0 end) as weekend_share,
        avg(case when extract(hour from order_ts) >= 17 then 1e0 else 0e0 end) as evening_share
    from orders group by user_id
),
per_item as (
    select user_id, item_id, count(distinct order_key) as n_orders
    from lines group by user_id, item_id
),
rebuy as (
    -- over the buyers with two orders or more (one order: nothing could be bought again, so null)
    select user_id, avg(case when n_orders >= 2 then 1e0 else 0e0 end) as rebuy_share
    from per_item where user_id in (select user_id from orders group by user_id having count(*) >= 2)
    group by user_id
),
per_line as (
    select user_id,
        cast(sum(quantity) as {double}) / count(*) as units_per_line,
        cast(sum(revenue) as {double}) / nullif(sum(quantity), 0) as unit_price,
        sum(revenue) as gross_value,
        count(distinct category) as n_categories
    from lines group by user_id
),
regularity as (
    select user_id, avg(gap_days) as mean_gap_days,
        stddev_samp(gap_days) / nullif(avg(gap_days), 0) as gap_cv
    from gaps where gap_days is not null group by user_id
),
returned as (
    select user_id, sum(return_value) as returned_value
    from {events} where event_type = 'return' and is_product group by user_id
)
select per_order.user_id, per_order.n_orders, per_order.basket_items, per_order.basket_value,
    per_order.basket_categories, per_line.units_per_line, per_line.unit_price, per_line.n_categories,
    rebuy.rebuy_share,
    coalesce(cast(returned.returned_value as {double}), 0.0)
        / nullif(cast(per_line.gross_value as {double}), 0) as return_rate,
    per_order.weekend_share, per_order.evening_share, regularity.mean_gap_days, regularity.gap_cv
from per_order
join per_line on per_order.user_id = per_line.user_id
left join rebuy on per_order.user_id = rebuy.user_id
left join regularity on per_order.user_id = regularity.user_id
left join returned on per_order.user_id = returned.user_id
order by per_order.user_id
"""


# What the dialects spell differently (DuckDB and PostgreSQL read the same SQL): Spark has no `double
# precision`, no epoch of an interval (SPARK-33500: timestamps only), and numbers the days of the week
# from Sunday = 1 (DuckDB and PostgreSQL: Sunday = 0), so its weekend is 1 and 7. The shares average
# `1e0`/`0e0` (a double on DuckDB and Spark): Spark's average of the decimal `1.0` keeps 5 places only.
_ORDER_GAP = "over (partition by user_id order by order_ts, order_key)"
DIALECTS = {
    "duckdb": {
        "double": "double precision",
        "gap_seconds": f"extract(epoch from order_ts - lag(order_ts) {_ORDER_GAP})",
        "weekend": "extract(dow from order_ts) in (0, 6)",
    },
    "spark": {
        "double": "double",
        "gap_seconds": f"(unix_micros(order_ts) - unix_micros(lag(order_ts) {_ORDER_GAP})) / 1e6",
        "weekend": "dayofweek(order_ts) in (1, 7)",
    },
}
DIALECTS["postgres"] = DIALECTS["duckdb"]


def behaviour_sql(
    events: str = "intermediate.int_events_as_of",
    items: str = "intermediate.int_items",
    engine: str = "duckdb",
) -> str:
    """BEHAVIOUR_SQL over the named relations (the nightly marts' usable events and items by default), in
    the dialect of `engine` (a connection's `engine`: duckdb, postgres or spark)."""
    return BEHAVIOUR_SQL.format(events=events, items=items, **DIALECTS[engine])


@dataclass
class PersonaResult:
    k: int
    criterion: str
    per_k: dict[int, dict[str, Any]]  # k -> admissible, silhouette, smallest share, why not
    assignments: pd.DataFrame  # user_id, persona_id, persona (buyers only)
    personas: list[dict[str, Any]] = field(default_factory=list)


def transformed(features: pd.DataFrame) -> pd.DataFrame:
    """The scale effect sizes are measured on: log1p of the amounts and counts, shares clipped to [0, 1]
    (a return rate above 1 is goods bought before the log came back)."""
    missing = [c for c in ("user_id", *FEATURES) if c not in features.columns]
    if missing:
        raise ValueError(f"behaviour frame lacks column(s) {missing}")
    out = pd.DataFrame(index=features.index)
    for name in LOG_FEATURES:
        out[name] = np.log1p(features[name].astype(float).fillna(0.0).clip(lower=0.0))
    for name in SHARE_FEATURES:
        values = features[name].astype(float).clip(0.0, 1.0)
        # re-buying is unknown for a one-order buyer: the repeat buyers' median, so it neither pulls
        # them into a cluster of its own nor marks them as novelty seekers
        fill = values.median() if name == "rebuy_share" and values.notna().any() else 0.0
        out[name] = values.fillna(fill)
    return out


def _margins() -> np.ndarray:
    return np.array([MIN_LOG_RATIO if f in LOG_FEATURES else MIN_SHARE_POINTS for f in FEATURES])


def _scaled(t: pd.DataFrame) -> np.ndarray:
    """Each feature in units of its practical margin (1 = geometric means 1.5x apart, or 15 points), from
    the median. Not standardised: a feature on which everyone shops alike (small spread) must stay small,
    or the clustering would carve its noise up; clipped at 6 margins so that one wholesaler's
    5,000-unit lines do not pull a centre alone."""
    x = t[list(FEATURES)].to_numpy(dtype=float)
    return np.clip((x - np.median(x, axis=0)) / _margins(), -6.0, 6.0)


def _kmeans(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans, MiniBatchKMeans

    if len(x) > MINIBATCH_ABOVE:
        return MiniBatchKMeans(n_clusters=k, n_init=3, random_state=seed, batch_size=4096).fit_predict(x)
    return KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(x)


def separation(t: pd.DataFrame, labels: np.ndarray) -> dict[tuple[int, int], list[str]]:
    """For every pair of clusters, the behaviour features on which they differ by the stated effect size
    (Cohen's d on the transformed scale and the practical margin). Linear in rows; k² pairs."""
    groups = {int(c): t.loc[labels == c] for c in np.unique(labels)}
    stats = {c: (g.mean(), g.var(ddof=1).fillna(0.0), len(g)) for c, g in groups.items()}
    margin = pd.Series(
        {**dict.fromkeys(LOG_FEATURES, MIN_LOG_RATIO), **dict.fromkeys(SHARE_FEATURES, MIN_SHARE_POINTS)}
    )
    out: dict[tuple[int, int], list[str]] = {}
    ids = sorted(groups)
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            (ma, va, na), (mb, vb, nb) = stats[a], stats[b]
            pooled = np.sqrt(((na - 1) * va + (nb - 1) * vb) / max(na + nb - 2, 1))
            diff = (ma - mb).abs()
            d = diff / pooled.where(pooled > 0, np.inf)
            out[(a, b)] = [f for f in FEATURES if d[f] >= MIN_COHEN_D and diff[f] >= margin[f] - 1e-12]
    return out


def fit_personas(features: pd.DataFrame, k_range: range = K_RANGE, seed: int = 42) -> PersonaResult:
    """Personas of the buyers in `features` (one row per buyer: user_id and FEATURES; EXTRA if present).

    For each k in `k_range`: K-means on the scaled features; k is admissible if every cluster holds at
    least MIN_SHARE of the buyers and every pair of clusters differs on a behaviour feature by the stated
    effect size (`separation`). Among admissible k, the largest whose sampled silhouette is within
    SILHOUETTE_TOLERANCE of the best admissible one (more personas, as long as they stay about as well
    separated); when none is admissible every buyer is one persona (k = 1): the shop's buyers do not fall into
    behaviour types that a campaign could tell apart.
    """
    from sklearn.metrics import silhouette_score
    from threadpoolctl import threadpool_limits

    # The warehouse's float sums and means differ in their last bits from run to run (DuckDB adds a
    # group's partial sums in the order its threads finish): without this a re-run night could fit
    # different personas from the same rows (issue 26's re-run test saw it on CI).
    floats = features.select_dtypes("floating").columns
    features = features.assign(**{c: features[c].round(ROUND_DECIMALS) for c in floats})
    t = transformed(features)
    n = len(t)
    if n == 0:  # a night whose users bought no product yet
        empty = pd.DataFrame({"user_id": pd.Series(dtype=str), "persona_id": pd.Series(dtype="int64"),
                              "persona": pd.Series(dtype=str)})  # fmt: skip
        return PersonaResult(0, CRITERION, {}, empty, [])
    x = _scaled(t)
    n_distinct = len(np.unique(x.round(9), axis=0))
    per_k: dict[int, dict[str, Any]] = {}
    fits: dict[int, np.ndarray] = {}
    sample = min(n, SILHOUETTE_SAMPLE)
    # one thread: the same rows give the same personas whatever the machine's cores
    # (see segments.fit_segments)
    with threadpool_limits(limits=1):
        for k in k_range:
            if k < 2 or k >= n_distinct or k * MIN_SHARE > 1:
                continue
            labels = _kmeans(x, k, seed)
            shares = np.bincount(labels, minlength=k) / n
            pairs = separation(t, labels)
            apart = [p for p, feats in pairs.items() if not feats]
            why = []
            if shares.min() < MIN_SHARE:
                why.append(f"smallest persona {shares.min():.1%} < {MIN_SHARE:.0%}")
            if apart:
                why.append(f"{len(apart)} of {len(pairs)} pairs differ on no behaviour feature enough")
            score = silhouette_score(x, labels, sample_size=sample, random_state=seed) if k < n else 0.0
            score = float(score)
            per_k[k] = {
                "admissible": not why, "silhouette": round(score, 4),
                "smallest_share": round(float(shares.min()), 4), "why_not": "; ".join(why) or None,
            }  # fmt: skip
            fits[k] = labels
    admissible = [k for k, row in per_k.items() if row["admissible"]]
    top = max((per_k[k]["silhouette"] for k in admissible), default=0.0)
    near = [k for k in admissible if per_k[k]["silhouette"] >= top - SILHOUETTE_TOLERANCE * abs(top)]
    best = max(near) if near else 1
    labels = fits[best] if admissible else np.zeros(n, dtype=int)
    personas = describe_personas(features, labels)
    names = {p["persona_id"]: p["name"] for p in personas}
    assignments = pd.DataFrame({"user_id": features["user_id"].to_numpy(), "persona_id": labels.astype(int)})
    assignments["persona"] = assignments["persona_id"].map(names)
    return PersonaResult(best, CRITERION, per_k, assignments, personas)


# Words for a persona that is high (first) or low (second) on a feature; None: not worth a name.
WORDS: dict[str, tuple[str | None, str | None]] = {
    "basket_items": ("big-basket", "small-basket"),
    "basket_value": ("high-value", "low-value"),
    "units_per_line": ("bulk", "single-unit"),
    "unit_price": ("premium", "bargain"),
    "basket_categories": ("wide-range", "narrow-range"),
    "rebuy_share": ("re-stocking", "novelty"),
    "return_rate": ("high-return", None),
    "weekend_share": ("weekend", None),
    "evening_share": ("evening", None),
}
# One action per persona, from its most distinguishing feature and direction.
ACTIONS: dict[tuple[str, bool], str] = {
    ("basket_items", True): "offer bundles and a quick re-order of their usual basket",
    ("basket_items", False): "suggest one add-on at checkout or a free-delivery threshold to grow the basket",
    ("basket_value", True): "give a dedicated account contact or loyalty tier; protect them from churn first",
    ("basket_value", False): "use a spend-more threshold (free delivery, a gift) rather than discounts",
    ("units_per_line", True): "offer volume price tiers or a trade account",
    ("units_per_line", False): "show single items and gift sets; volume offers will not land",
    ("unit_price", True): "lead with new and premium lines; skip discounts",
    ("unit_price", False): "promote value packs and price drops",
    ("basket_categories", True): "send cross-category new arrivals; each basket spans the range",
    ("basket_categories", False): "recommend within their category, then one adjacent category",
    ("rebuy_share", True): "send replenishment reminders with their usual items at their usual interval",
    ("rebuy_share", False): "lead with new arrivals; they rarely buy the same thing twice",
    ("return_rate", True): "check sizing and quality of what they return before promoting more of it",
    ("weekend_share", True): "schedule their campaigns for the weekend",
    ("evening_share", True): "schedule their campaigns for the evening",
}


def _distinguishing(t: pd.DataFrame, mask: np.ndarray) -> list[tuple[str, float]]:
    """(feature, z) with z = (persona mean - all buyers' mean) / all buyers' sd on the transformed scale,
    most distinguishing first; only features with words for that direction."""
    sd = t.std(ddof=0)
    z = (t.loc[mask].mean() - t.mean()) / sd.where(sd > 1e-9, np.inf)  # a constant feature sets no one apart
    ranked = sorted(((f, float(z[f])) for f in FEATURES), key=lambda fz: -abs(fz[1]))
    return [(f, v) for f, v in ranked if abs(v) > 1e-6 and WORDS[f][0 if v > 0 else 1] is not None]


def _weeks(days: float) -> str:
    if days < 10:
        return f"every {days:.0f} days"
    return f"every {days / 7:.0f} weeks" if days < 70 else f"every {days / 30.4:.0f} months"


def persona_numbers(members: pd.DataFrame) -> dict[str, float]:
    """The figures a description quotes: medians of the amounts (a few wholesalers would drag a mean),
    means of the shares (return rate clipped at 1; re-buying over the members with two orders or more),
    the median gap over the members with two orders or more; NaN where none has one."""
    out = {f: float(members[f].astype(float).median()) for f in LOG_FEATURES}
    for f in SHARE_FEATURES:
        values = members[f].astype(float).clip(0.0, 1.0).dropna()
        out[f] = float(values.mean()) if len(values) else float("nan")
    gaps = members["mean_gap_days"].dropna() if "mean_gap_days" in members else pd.Series(dtype=float)
    out["mean_gap_days"] = float(gaps.median()) if len(gaps) else float("nan")
    out["share_repeat"] = float((members["n_orders"] >= 2).mean()) if "n_orders" in members else float("nan")
    return out


def _n(value: float, word: str, plural: str | None = None) -> str:
    return f"{value:.0f} {word if round(value) == 1 else plural or word + 's'}"


def describe(numbers: dict[str, float]) -> str:
    """A sentence a marketer reads: basket, range, re-buying, returns, timing and rhythm, from
    `persona_numbers` (the rounding is the only change to the figures)."""
    parts = [
        f"{_n(numbers['basket_items'], 'product')} a basket worth {numbers['basket_value']:,.0f}"
        f" ({_n(numbers['units_per_line'], 'unit')} a line at {numbers['unit_price']:.2f} each)",
        f"{_n(numbers['basket_categories'], 'category', 'categories')} a basket",
    ]
    if not np.isnan(numbers["rebuy_share"]):
        parts.append(f"{numbers['rebuy_share']:.0%} of products bought again")
    if numbers["return_rate"] >= 0.01:
        parts.append(f"{numbers['return_rate']:.0%} of spend returned")
    for key, when in (("weekend_share", "at weekends"), ("evening_share", "after 17:00")):
        if numbers[key] >= 0.2:
            parts.append(f"{numbers[key]:.0%} of orders {when}")
    if not np.isnan(numbers["mean_gap_days"]) and numbers.get("share_repeat", 0) >= 0.5:
        parts.append(f"ordering {_weeks(numbers['mean_gap_days'])}")
    elif not np.isnan(numbers.get("share_repeat", float("nan"))):
        parts.append(f"{1 - numbers['share_repeat']:.0%} ordered once")
    return "; ".join(parts)


def describe_personas(features: pd.DataFrame, labels: np.ndarray) -> list[dict[str, Any]]:
    """One row per persona: id, name (from its two most distinguishing features), size, share,
    description with the members' medians, one action, and the features that set it apart (z)."""
    t = transformed(features)
    labels = np.asarray(labels).astype(int)
    out: list[dict[str, Any]] = []
    single = len(np.unique(labels)) == 1
    for pid in sorted(np.unique(labels)):
        mask = labels == pid
        numbers = persona_numbers(features.loc[mask])
        top = [] if single else _distinguishing(t, mask)
        strong = [(f, z) for f, z in top if abs(z) >= 0.5][:2] or top[:1]
        if strong:
            words = [WORDS[f][0 if z > 0 else 1] for f, z in strong]
            name = " ".join(words) + " buyers"
            action = ACTIONS[(strong[0][0], strong[0][1] > 0)]
        else:  # one persona: the shop's buyers as a whole
            name, action = "all buyers", "no behaviour type to target: cut campaigns by RFM segment"
        out.append(
            {
                "persona_id": int(pid),
                "name": name,
                "size": int(mask.sum()),
                "share": round(float(mask.mean()), 4),
                "description": describe(numbers),
                "action": action,
                "distinguishing": [{"feature": f, "z": round(z, 2)} for f, z in top[:3]],
                "medians": {k: (None if np.isnan(v) else round(v, 4)) for k, v in numbers.items()},
            }
        )
    seen = pd.Series([p["name"] for p in out]).value_counts()
    for p in out:  # two personas with the same words: keep names unique, they are a filter's values
        if seen[p["name"]] > 1:
            p["name"] = f"{p['name']} ({p['persona_id']})"
    return out
