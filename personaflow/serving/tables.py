"""The serving side files the features stage writes beside Feast (plain Parquet, read whole by the API at
start and on reload; not Feast views): co-purchase rules, per-segment best sellers, item-name
neighbours and each customer's purchase history (for /recommend's explanations).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from personaflow.core import warehouse as wh

# Serving side-files (plain Parquet, read whole at server start and on reload; not Feast views).
CO_PURCHASE_COLUMNS = ["item_id", "other_item_id", "n_orders_both", "confidence", "lift", "score"]
# Rules kept per antecedent item (best score first, lift > 1): /similar_items never needs more than MAX_K.
MAX_CO_PURCHASE_PER_ITEM = 100
# Most-bought items kept per RFM segment, for /recommend's fallback for users the model does not know.
MAX_SEGMENT_ITEMS = 200
# Per (user, item) purchase history for /recommend's explanations ("bought 5 times, last 12 days ago").
PURCHASE_HISTORY_COLUMNS = ["user_id", "item_id", "n_days", "last_ts", "rfm_segment", "as_of_date"]
# (user, item) pairs the customer returned in full: never recommended back, never cited as bought.
RETURNED_COLUMNS = ["user_id", "item_id"]

def write_atomic(frame: pd.DataFrame, path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)  # a server reloading it never sees a half-written file
    return len(frame)


def export_serving_tables(con: wh.DuckConnection | wh.PgConnection, features_dir: Path) -> dict[str, int]:
    """Latest co-purchase rules (marts.co_purchase) and per-segment best sellers, as the serving API
    reads them at start and on reload. A warehouse without marts.co_purchase gives an empty file."""
    try:
        co = con.execute(
            f"""select {", ".join(CO_PURCHASE_COLUMNS)} from (
                  select *, row_number() over (
                    partition by item_id order by score desc, n_orders_both desc, other_item_id) as rn
                  from marts.co_purchase where lift > 1) as ranked where rn <= {MAX_CO_PURCHASE_PER_ITEM}
                order by item_id, score desc, n_orders_both desc, other_item_id"""
        ).df()
    except wh.MISSING_TABLE:
        co = pd.DataFrame(
            {c: pd.Series(dtype="string" if "item" in c else "float64") for c in CO_PURCHASE_COLUMNS}
        )
    returned = _returned(con)
    kept = "" if returned is None else (
        " and not exists (select 1 from marts.returned_items r where r.user_id = p.user_id "
        "and r.item_id = p.item_id)"
    )  # a fully returned purchase is no purchase: not a buyer, not a "bought" reason
    segments = con.execute(
        f"""select rfm_segment, item_id, n_buyers from (
              select u.rfm_segment, p.item_id, count(distinct p.user_id) as n_buyers,
                row_number() over (partition by u.rfm_segment
                  order by count(distinct p.user_id) desc, sum(p.n_purchases) desc, p.item_id) as rn
              from marts.interactions p join marts.user_features u using (user_id)
              where p.n_purchases > 0 and u.rfm_segment is not null{kept}
              group by u.rfm_segment, p.item_id) as ranked where rn <= {MAX_SEGMENT_ITEMS}
            order by rfm_segment, rn"""
    ).df()
    from personaflow.serving.item_text import text_neighbours

    try:
        catalogue = con.execute("select * from marts.item_features").df()
    except wh.MISSING_TABLE:  # side tables exported without the item mart: no names to compare
        catalogue = pd.DataFrame({"item_id": pd.Series(dtype="string")})
    text = text_neighbours(catalogue)
    # days with a purchase of the item (marts.interactions is per user, item and day) and the last one
    # (and the user's RFM segment and the marts' as-of day: "last bought 12 days ago" counts from it)
    history = con.execute(
        f"""select p.user_id, p.item_id, count(*) as n_days, max(p.last_event_ts) as last_ts,
             max(u.rfm_segment) as rfm_segment, max(u.as_of_date) as as_of_date
           from marts.interactions as p left join marts.user_features as u on p.user_id = u.user_id
           where p.n_purchases > 0{kept}
           group by p.user_id, p.item_id order by p.user_id, p.item_id"""
    ).df()
    if returned is None:
        returned = pd.DataFrame({c: pd.Series(dtype="string") for c in RETURNED_COLUMNS})
    return {
        "co_purchase_rows": write_atomic(co, features_dir / "co_purchase.parquet"),
        "segment_popularity_rows": write_atomic(segments, features_dir / "segment_popularity.parquet"),
        "text_neighbour_rows": write_atomic(text, features_dir / "text_neighbours.parquet"),
        "purchase_history_rows": write_atomic(
            history[PURCHASE_HISTORY_COLUMNS], features_dir / "purchase_history.parquet"
        ),
        "returned_item_rows": write_atomic(
            returned[RETURNED_COLUMNS], features_dir / "returned_items.parquet"
        ),
    }


def _returned(con: wh.DuckConnection | wh.PgConnection) -> pd.DataFrame | None:
    """marts.returned_items' (user, item) pairs, or None for marts built before it existed."""
    try:
        return con.execute("select user_id, item_id from marts.returned_items order by user_id, item_id").df()
    except wh.MISSING_TABLE:
        return None
