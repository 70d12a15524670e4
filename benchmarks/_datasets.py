"""The data sets benchmarks/recommenders.py runs on: the synthetic shop (with or without re-buys), the
real Online Retail log (retail-30d protocol) and a split given from outside
(personaflow/training/data/given.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DATA = ("synthetic", "synthetic-norebuy", "online-retail", "given")


def owner(key: str) -> str | None:
    """The data set a result key belongs to: the longest data prefix it starts with ("synthetic_" is a
    prefix of "synthetic_norebuy_", so a plain startswith would let one run delete another's rows)."""
    names = [d for d in DATA if key.startswith(d.replace("-", "_") + "_")]
    return max(names, key=len, default=None)


def synthetic_shop(args: argparse.Namespace):
    from personaflow.ingest.generate import generate_shop

    rebuy = args.data != "synthetic-norebuy"
    return generate_shop(users=args.users, items=args.items, days=args.days, seed=7, rebuy=rebuy)


def load_split(args: argparse.Namespace):
    from personaflow.training.data.purchases import load_online_retail, purchases_from_events, split_purchases

    if args.data == "given":
        return given_split(args)
    if args.data == "online-retail":
        try:
            purchases = load_online_retail(Path(args.path))
        except FileNotFoundError as exc:
            sys.exit(f"--data online-retail: {exc}")
    else:
        purchases = purchases_from_events(synthetic_shop(args).events)
    return split_purchases(purchases, args.test_days)


def rerank_features(args: argparse.Namespace):
    """Features from each split's training rows, plus the synthetic shop's catalogue (category, brand)."""
    from personaflow.training.data.features import purchases_source

    if args.data in ("online-retail", "given"):
        return purchases_source(None)
    return purchases_source(synthetic_shop(args).items.set_index("item_id"))  # as load_split


def given_split(args: argparse.Namespace):
    """--train/--test files, or --purchases with --cuts (one cut per user): the shop's own protocol."""
    from personaflow.training.data.given import read_given

    try:
        return read_given(args.train, args.test, args.purchases, args.cuts)
    except ValueError as exc:
        sys.exit(f"--data given: {exc}")
