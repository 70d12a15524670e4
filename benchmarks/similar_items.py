"""Benchmark: which co-purchase measure should rank /similar_items, judged by "bought together later".

Rules are counted on the orders before the cut (last order - --test-days), as marts.co_purchase counts
them (orders = invoices; products only, the mart's non_product_codes / prefixes left out; pairs in
fewer than --min-orders common orders dropped); every measure of
personaflow/training/evaluation/co_purchase.py
ranks each item's rules (lift > 1 only, as served); the score is how often an item's top 10 holds the
other items of the same order in the test window.

    python benchmarks/similar_items.py --data online-retail

Writes benchmarks/results/similar_items.json with flat keys `<data>_<measure>_<metric>` plus the data
size, the cut and the machine's cores; `<data>_chosen` is the measure with the best NDCG@10.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd
import yaml
from _common import merge_results

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "similar_items.json"
DATA = ROOT.parent / "shared" / "data" / "online-retail"


def products_only(frame: pd.DataFrame) -> pd.DataFrame:
    """The dbt macro is_product: the project's non-product codes and prefixes (dbt_project.yml vars)."""
    project = yaml.safe_load((ROOT / "dbt_project" / "dbt_project.yml").read_text())["vars"]
    codes = {str(c).upper() for c in project["non_product_codes"]}
    prefixes = tuple(str(p).lower() for p in project["non_product_prefixes"])
    item = frame["item_id"].astype(str).str.strip()
    keep = ~item.str.upper().isin(codes) & ~item.str.lower().str.startswith(prefixes)
    return frame.loc[keep]


def orders_of(path: Path) -> pd.DataFrame:
    """Online Retail purchases with an order key: an invoice is one customer's lines at one time."""
    from personaflow.training.data.purchases import load_online_retail

    frame = products_only(load_online_retail(path))
    frame = frame.assign(order_key=frame["user_id"].astype(str) + "|" + frame["ts"].astype(str))
    return frame[["order_key", "item_id", "ts"]]


def main() -> None:
    from personaflow.training.evaluation.co_purchase import (
        bought_together_later,
        count_rules,
        measures,
        top_lists,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("online-retail",), default="online-retail")
    parser.add_argument("--path", default=os.environ.get("PERSONAFLOW_RETAIL_PATH", str(DATA)))
    parser.add_argument("--test-days", type=int, default=30)
    parser.add_argument("--min-orders", type=int, default=3)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    started = time.perf_counter()
    orders = orders_of(Path(args.path))
    cut = orders["ts"].max() - pd.Timedelta(days=args.test_days)
    # the measure is chosen on a validation window (the test-days before the cut, rules from before
    # it), then every measure is reported on the test window
    val_cut = cut - pd.Timedelta(days=args.test_days)
    windows = {
        "val": (orders[orders["ts"] < val_cut], orders[(orders["ts"] >= val_cut) & (orders["ts"] < cut)]),
        "test": (orders[orders["ts"] < cut], orders[orders["ts"] >= cut]),
    }
    prefix = args.data.replace("-", "_")
    before, later = windows["test"]
    out: dict[str, object] = {
        "cores": os.cpu_count(),
        f"{prefix}_test_days": args.test_days,
        f"{prefix}_cut": str(cut),
        f"{prefix}_val_cut": str(val_cut),
        f"{prefix}_min_orders": args.min_orders,
        f"{prefix}_train_orders": int(before["order_key"].nunique()),
        f"{prefix}_test_orders": int(later["order_key"].nunique()),
        f"{prefix}_train_lines": len(before),
    }
    val_ndcg: dict[str, float] = {}
    for window, (rows, held_out) in windows.items():
        rules = count_rules(rows, args.min_orders)
        out[f"{prefix}_{window}_rules"] = int(rules.a.size)
        pairs = zip(rules.items[rules.a], rules.items[rules.b], strict=True)
        n_ab = dict(zip(pairs, rules.n_ab, strict=True))
        print(f"{window}: {'measure':<20}{'NDCG@10':>9}{'hit@10':>9}{'prec@10':>9}  median common orders")
        for name, score in measures(rules).items():
            lists = top_lists(rules, score, args.k)
            scored = bought_together_later(lists, held_out, args.k)
            support = pd.Series([n_ab[(a, b)] for a, shown in lists.items() for b in shown])
            scored["median_common_orders_shown"] = float(support.median()) if len(support) else 0.0
            if window == "val":
                val_ndcg[name] = scored["ndcg_at_10"]
            key = f"{prefix}_{name}" if window == "test" else f"{prefix}_val_{name}"
            out.update({f"{key}_{k}": v for k, v in scored.items()})
            print(
                f"      {name:<20}{scored['ndcg_at_10']:>9.4f}{scored['hit_rate_at_10']:>9.4f}"
                f"{scored['precision_at_10']:>9.4f}  {scored['median_common_orders_shown']:.0f}"
            )
    best = max(val_ndcg, key=val_ndcg.get)
    out[f"{prefix}_chosen"] = best
    out[f"{prefix}_seconds"] = round(time.perf_counter() - started, 1)
    print(
        f"chosen on validation: {best}; test anchors {out[f'{prefix}_{best}_anchors']}, "
        f"{out[f'{prefix}_seconds']} s"
    )
    merge_results(RESULTS, out)


if __name__ == "__main__":
    main()
