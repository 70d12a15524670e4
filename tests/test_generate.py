"""The synthetic shop: deterministic, shaped like a shop, written as one file per day."""

from datetime import date

import pandas as pd

from ingest.generate import batch_dates, generate_shop, write_shop


def test_same_seed_same_shop_and_other_seed_differs():
    a = generate_shop(users=200, items=50, days=10, seed=7)
    b = generate_shop(users=200, items=50, days=10, seed=7)
    c = generate_shop(users=200, items=50, days=10, seed=8)
    pd.testing.assert_frame_equal(a.events, b.events)
    assert not a.events["item_id"].equals(c.events["item_id"])


def test_events_follow_the_funnel_and_stay_in_the_window():
    shop = generate_shop(users=500, items=100, days=14, seed=1, start=date(2026, 1, 1))
    ev = shop.events
    counts = ev["event_type"].value_counts()
    assert counts["view"] > counts["cart"] > counts["purchase"] > 0
    assert ev["event_ts"].min() >= pd.Timestamp("2026-01-01")
    assert ev["event_ts"].max() < pd.Timestamp("2026-01-15")
    assert ev["event_ts"].is_monotonic_increasing
    assert ev["event_id"].is_unique
    assert set(ev["user_id"]) <= set(shop.users["user_id"])
    assert set(ev["item_id"]) <= set(shop.items["item_id"])
    assert (ev["quantity"] >= 1).all() and (ev["price"] > 0).all()
    # Every cart follows a view of the same item in the same session.
    views = ev[ev.event_type == "view"]
    carts = ev[ev.event_type == "cart"]
    seen = set(zip(views["session_id"], views["item_id"], strict=True))
    assert all(pair in seen for pair in zip(carts["session_id"], carts["item_id"], strict=True))


def test_popularity_is_long_tailed_and_users_rebuy():
    ev = generate_shop(users=2000, items=500, days=30, seed=3).events
    buys = ev[ev.event_type == "purchase"]
    share = buys["item_id"].value_counts(normalize=True)
    assert share.head(50).sum() > 0.3  # top 10% of items carry a large share of purchases
    repeat = buys.groupby(["user_id", "item_id"]).size()
    assert (repeat > 1).mean() > 0.05  # re-buying the same item happens


def test_some_users_churn():
    shop = generate_shop(users=1000, items=100, days=60, seed=5)
    last_seen = shop.events.groupby("user_id")["event_ts"].max()
    end = shop.events["event_ts"].max()
    assert (last_seen < end - pd.Timedelta(days=20)).mean() > 0.1


def test_write_one_file_per_day(tmp_path):
    shop = generate_shop(users=100, items=20, days=5, seed=2, start=date(2026, 3, 1))
    files = write_shop(shop, tmp_path)
    assert batch_dates(tmp_path) == [date(2026, 3, d) for d in range(1, 6)][: len(files)]
    back = pd.concat(pd.read_csv(f) for f in files)
    assert len(back) == len(shop.events)
    assert (tmp_path / "users.csv").exists() and (tmp_path / "items.csv").exists()
