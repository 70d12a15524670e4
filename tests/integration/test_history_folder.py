"""`personaflow history FOLDER` end to end (--no-train): a folder recognised by its file names, holding
transactions, customers, products, campaigns (with their members), coupons and redemptions, builds the events,
every table, the marts (categories from the catalogue) and the profile's demographics and campaign
fields in one command; a faulty table stops it in one line naming the file, row and column."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from personaflow.core.settings import REPO_ROOT


def _folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(5)
    n = 400
    folder = tmp_path / "shop"
    folder.mkdir()
    pd.DataFrame({
        "user_id": [f"c{i}" for i in rng.integers(0, 25, n)],
        "item_id": [f"p{i}" for i in rng.integers(0, 8, n)],
        "event_type": "purchase",
        "event_ts": [f"2024-05-{1 + i % 9:02d} {8 + i % 11}:{i % 60:02d}:00" for i in range(n)],
        "price": rng.uniform(1, 20, n).round(2),
        "order_id": [f"o{i // 3}" for i in range(n)],
    }).to_parquet(folder / "transactions.parquet")  # fmt: skip
    (folder / "customers.csv").write_text(
        "user_id,age,income,valid_from\nc1,25-34,50-74K,2024-01-01\nc2,65+,Under 15K,2024-01-01\n"
    )
    (folder / "products.csv").write_text(
        "item_id,name,category,brand\n" + "".join(f"p{i},Thing {i},cat{i % 3},Acme\n" for i in range(8))
    )
    (folder / "campaigns.csv").write_text(
        "campaign_id,campaign_type,start_date,end_date\n1,A,2024-05-03,2024-05-06\n"
    )
    (folder / "campaign_members.csv").write_text("campaign_id,user_id\n1,c1\n1,c2\n1,c3\n")
    (folder / "coupons.csv").write_text("coupon_id,item_id,campaign_id\nk1,p1,1\nk1,p2,1\nk1,p2,1\n")
    (folder / "redemptions.csv").write_text("user_id,campaign_id,redemption_date\nc1,1,2024-05-04\n")
    (folder / "README.txt").write_text("the shop's export of May")
    return folder


def _history(tmp_path: Path, folder: Path) -> subprocess.CompletedProcess:
    home = tmp_path / "home"
    env = {**os.environ, "PERSONAFLOW_HOME": str(home), "PERSONAFLOW_FEATURES_DIR": str(home / "features"),
           "PERSONAFLOW_SMTP_PORT": "1"}  # fmt: skip
    args = [sys.executable, "-m", "personaflow.cli", "history", str(folder), "--no-train"]
    return subprocess.run(args, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)


def test_a_folder_of_tables_builds_in_one_command(tmp_path: Path) -> None:
    done = _history(tmp_path, _folder(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["folder"]["unused_files"] == ["README.txt"]
    assert summary["tables"]["products"]["table_rows"] == 8
    assert summary["tables"]["customers"]["table_rows"] == 2
    assert summary["tables"]["redemptions"]["redemptions"] == 1
    assert (summary["tables"]["coupons"]["table_rows"], summary["tables"]["coupons"]["repeats"]) == (2, 1)
    assert summary["rows"] == 400 and summary["failed_days"] == []
    for stage in ("import_customers", "import_products", "import_campaigns", "import_coupons",
                  "import_redemptions"):  # fmt: skip
        assert any(line.startswith(f"[history] {stage}: done in") for line in done.stderr.splitlines()), stage
    home = tmp_path / "home"
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        cats = dict(con.execute("select item_id, category from marts.item_features").fetchall())
    assert cats["p4"] == "cat1" and set(cats.values()) == {"cat0", "cat1", "cat2"}  # from the catalogue
    demo = pd.read_parquet(home / "features" / "customer_demographics.parquet").set_index("user_id")
    assert demo.loc["c1", "income_band"] == "mid income" and demo.loc["c5", "demographic_label"] == "unknown"
    camp = pd.read_parquet(home / "features" / "customer_campaigns.parquet").set_index("user_id")
    assert camp.loc["c1", "coupons_redeemed"] == 1 and camp.loc["c3", "campaigns_reached"] == 1


def test_a_faulty_table_stops_the_history_in_one_line_naming_it(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "products.csv").write_text("item_id,price\np1,cheap\n")
    done = _history(tmp_path, folder)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert "products.csv" in last and "'price' (ours: price)" in last and "'cheap'" in last
