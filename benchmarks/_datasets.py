"""The data sets benchmarks/recommenders.py and benchmarks/models.py run on: the synthetic shop (with or
without re-buys), the real Online Retail log (retail-30d protocol), The Complete Journey (a grocery
shop, ../shared/data/complete-journey) and a split given from outside (personaflow/training/data/given.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DATA = ("synthetic", "synthetic-norebuy", "online-retail", "complete-journey", "given")
COMPLETE_JOURNEY = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "complete-journey"
# Complete Journey sells 68,509 products; most are bought by a handful of households. Kept: the products
# bought by at least this many households (3,866 products, 59 % of the lines), a catalogue the size of
# Online Retail's, so the dense per-batch scores and the item x item baselines stay affordable.
CJ_MIN_HOUSEHOLDS = 50


def owner(key: str) -> str | None:
    """The data set a result key belongs to: the longest data prefix it starts with ("synthetic_" is a
    prefix of "synthetic_norebuy_", so a plain startswith would let one run delete another's rows)."""
    names = [d for d in DATA if key.startswith(d.replace("-", "_") + "_")]
    return max(names, key=len, default=None)


def synthetic_shop(args: argparse.Namespace):
    from personaflow.ingest.generate import generate_shop

    rebuy = args.data != "synthetic-norebuy"
    return generate_shop(users=args.users, items=args.items, days=args.days, seed=7, rebuy=rebuy)


def load_complete_journey(folder: Path = COMPLETE_JOURNEY, min_households: int = CJ_MIN_HOUSEHOLDS):
    """transactions.parquet -> purchases (user_id = household, item_id = product, ts = the basket's time,
    quantity), as PROVENANCE.md maps them: quantity > 0 and sales value > 0; products bought by fewer
    than `min_households` households left out (see CJ_MIN_HOUSEHOLDS). Every basket has one timestamp, so
    a basket is one `ts`, as an invoice is in Online Retail."""
    import pandas as pd

    path = Path(folder) / "transactions.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (see ../shared/data/complete-journey/PROVENANCE.md)")
    columns = ["household_id", "basket_id", "product_id", "quantity", "sales_value", "transaction_timestamp"]
    t = pd.read_parquet(path, columns=columns)
    t = t.loc[(t["quantity"] > 0) & (t["sales_value"] > 0)]
    households = t.groupby("product_id")["household_id"].nunique()
    t = t.loc[t["product_id"].isin(households.index[households >= min_households])]
    return pd.DataFrame(
        {
            "user_id": t["household_id"].astype(str).to_numpy(),
            "item_id": t["product_id"].astype(str).to_numpy(),
            "ts": pd.to_datetime(t["transaction_timestamp"]).to_numpy(),
            "quantity": t["quantity"].to_numpy(),
        }
    )


def load_purchases(args: argparse.Namespace):
    """The purchases of --data (not `given`): Online Retail, Complete Journey or the synthetic shop."""
    from personaflow.training.data.purchases import load_online_retail, purchases_from_events

    try:
        if args.data == "online-retail":
            return load_online_retail(Path(args.path))
        if args.data == "complete-journey":
            return load_complete_journey(Path(getattr(args, "cj_path", None) or COMPLETE_JOURNEY))
    except FileNotFoundError as exc:
        sys.exit(f"--data {args.data}: {exc}")
    return purchases_from_events(synthetic_shop(args).events)


def load_split(args: argparse.Namespace):
    from personaflow.training.data.purchases import split_purchases

    if args.data == "given":
        return given_split(args)
    return split_purchases(load_purchases(args), args.test_days)


def rerank_features(args: argparse.Namespace):
    """Features from each split's training rows, plus the synthetic shop's catalogue (category, brand)."""
    from personaflow.training.data.features import purchases_source

    if args.data in ("online-retail", "complete-journey", "given"):
        return purchases_source(None)
    return purchases_source(synthetic_shop(args).items.set_index("item_id"))  # as load_split


def given_split(args: argparse.Namespace):
    """--train/--test files, or --purchases with --cuts (one cut per user): the shop's own protocol."""
    from personaflow.training.data.given import read_given

    try:
        return read_given(args.train, args.test, args.purchases, args.cuts)
    except ValueError as exc:
        sys.exit(f"--data given: {exc}")
