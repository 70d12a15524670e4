"""The synthetic shop: deterministic, shaped like a shop, written as one file per day."""

import hashlib
from datetime import date

import numpy as np
import pandas as pd
import pytest

from personaflow.core.landing import batch_dates
from personaflow.ingest.generate import CHUNK_USERS, generate_shop, stream_shop, successors, write_shop


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


def _shop_hash(shop) -> str:
    digest = hashlib.sha256()
    for frame in (shop.users, shop.items, shop.events):
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def test_shops_drawn_without_follow_are_unchanged():
    # Hashes computed from the generator before `follow` existed (same seeds, same pandas): every seeded
    # test and benchmark keeps its shop.
    assert _shop_hash(generate_shop(users=200, items=50, days=20, seed=7)) == "f25d4cbed9f2f8cd"
    assert _shop_hash(generate_shop(users=200, items=50, days=20, seed=7, follow=0.0)) == "f25d4cbed9f2f8cd"
    old_no_rebuy = generate_shop(users=200, items=50, days=20, seed=7, rebuy=False, follow=0.0)
    assert _shop_hash(old_no_rebuy) == "ea0dba99f1ca2dac"
    with pytest.raises(ValueError, match="follow must be in"):
        generate_shop(users=10, items=5, days=3, follow=1.5)


def _successor_lift(follow: float | None) -> tuple[float, float]:
    """P(the successor of A is bought on a later day | A bought), and the successors' base rate
    (share of buyers who buy that item at all)."""
    shop = generate_shop(users=800, items=150, days=90, seed=3, rebuy=False, follow=follow)
    buys = shop.events[shop.events["event_type"] == "purchase"]
    assert not buys.duplicated(["user_id", "item_id"]).any()  # still nobody buys an item twice
    succ = successors(np.random.default_rng((3, 1)), 150)  # the map the generator draws first
    index = {item: k for k, item in enumerate(shop.items["item_id"])}
    first = (
        buys.assign(i=buys["item_id"].map(index), day=buys["event_ts"].dt.floor("D"))
        .groupby(["user_id", "i"], as_index=False)["day"]
        .min()
    )
    pairs = first.assign(next_i=succ[first["i"].to_numpy()]).merge(
        first.rename(columns={"i": "next_i", "day": "next_day"}), on=["user_id", "next_i"], how="left"
    )
    followed = float((pairs["next_day"] > pairs["day"]).mean())
    buyers_of = first.groupby("i")["user_id"].nunique() / first["user_id"].nunique()
    base = float(buyers_of.reindex(pairs["next_i"]).fillna(0.0).mean())
    return followed, base


def test_no_rebuy_shop_has_item_to_successor_structure():
    followed, base = _successor_lift(None)  # rebuy=False switches `follow` on
    assert followed > 0.2 and followed > 4 * base, (followed, base)
    plain, plain_base = _successor_lift(0.0)  # without it, a successor is just another item
    assert plain < 2 * plain_base, (plain, plain_base)


@pytest.mark.parametrize("rebuy", [True, False])
def test_streamed_shop_is_the_drawn_shop_file_for_file(tmp_path, rebuy):
    # Several chunks (chunk_users=70 over 200 users): the streamed files hold exactly what write_shop
    # writes for the in-memory shop, ids numbered across days and sessions across chunks.
    shape = dict(users=200, items=40, days=12, seed=9, rebuy=rebuy, chunk_users=70)
    shop = generate_shop(**shape)
    expected = write_shop(shop, tmp_path / "memory")
    written = stream_shop(tmp_path / "stream", **shape)
    assert [p.name for p in written.files] == [p.name for p in expected]
    for a, b in zip(expected, written.files, strict=True):
        assert a.read_bytes() == b.read_bytes()
    for name in ("users.csv", "items.csv"):
        assert (tmp_path / "memory" / name).read_bytes() == (tmp_path / "stream" / name).read_bytes()
    assert written.events == len(shop.events)
    assert sorted(p.name for p in (tmp_path / "stream").iterdir()) == ["events", "items.csv", "users.csv"]
    ev = shop.events
    assert ev["event_id"].is_unique and ev["event_ts"].is_monotonic_increasing
    chunk_of_user = ev["user_id"].str[1:].astype(int).sub(1) // 70
    assert set(chunk_of_user) == {0, 1, 2}  # users of every chunk have events
    if not rebuy:
        assert not ev[ev.event_type == "purchase"].duplicated(["user_id", "item_id"]).any()


def test_chunking_is_part_of_the_shop_and_deterministic():
    # Same seed and chunking: same shop; the chunk size is a constant of the generator (CHUNK_USERS),
    # never the machine's, because another chunking draws another shop.
    a = generate_shop(users=300, items=50, days=10, seed=4, chunk_users=100)
    b = generate_shop(users=300, items=50, days=10, seed=4, chunk_users=100)
    pd.testing.assert_frame_equal(a.events, b.events)
    assert not a.events.equals(generate_shop(users=300, items=50, days=10, seed=4).events)
    assert CHUNK_USERS >= 10_000  # every seeded test shop is one chunk: drawn as before chunks existed


def test_the_cli_streams_the_shop_generate_shop_draws(tmp_path):
    import json

    from typer.testing import CliRunner

    from personaflow.cli import app

    home = tmp_path / "home"
    args = [
        "generate",
        "--users",
        "150",
        "--items",
        "30",
        "--days",
        "6",
        "--seed",
        "3",
        "--start",
        "2026-03-01",
    ]
    result = CliRunner().invoke(
        app, [*args, "--sessions-per-day", "0.3"], env={"PERSONAFLOW_HOME": str(home)}
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    shop = generate_shop(users=150, items=30, days=6, seed=3, start=date(2026, 3, 1), sessions_per_day=0.3)
    expected = write_shop(shop, tmp_path / "memory")
    landed = sorted((home / "landing" / "events").glob("*.csv"))
    assert [p.name for p in landed] == [p.name for p in expected]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(expected, landed, strict=True))
    assert summary["events"] == len(shop.events) and summary["batches"] == len(expected)
