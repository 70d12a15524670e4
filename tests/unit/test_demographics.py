"""Demographics bands and labels, and the point-in-time rule for a changed dimension: through the real
import into the as-of table (raw.customers) and back."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from personaflow.core import warehouse as wh
from personaflow.ingest.customers import customer_mapping, load_customers, read_customers
from personaflow.profiles import demographics as dm


@pytest.mark.parametrize(
    ("age", "income", "comp", "kids", "size", "expected"),
    [
        ("25-34", "50-74K", "2 Adults Kids", "2", "4", "young families, mid income"),
        ("65+", "Under 15K", "2 Adults No Kids", "0", "2", "older couples, low income"),
        ("45-54", "125-149K", "1 Adult No Kids", "0", "1", "middle-aged singles, high income"),
        (41, 250000, None, None, None, "middle-aged customers, high income"),  # numbers, income in units
        (None, None, None, None, None, "unknown"),
        (None, "35-49K", None, "3+", None, "families, mid income"),
    ],
)
def test_bands_read_any_shops_text_into_a_readable_label(age, income, comp, kids, size, expected) -> None:
    frame = pd.DataFrame(
        [
            {
                "user_id": "1",
                "age": age,
                "income": income,
                "household_comp": comp,
                "kids_count": kids,
                "household_size": size,
            }
        ]
    )
    assert dm.bands(frame)["demographic_label"].iloc[0] == expected


def test_customers_without_demographics_are_unknown_never_dropped() -> None:
    known = pd.DataFrame(
        {"user_id": ["a"], "age": ["19-24"], "income": ["15-24K"], "valid_from": [pd.Timestamp("2017-01-01")]}
    )
    out = dm.for_customers(["a", "b", "c", "b"], known, "2017-06-01").set_index("user_id")
    assert list(out.index) == ["a", "b", "c"]
    assert out.loc["a", "demographic_label"] == "young customers, low income"
    assert (out.loc[["b", "c"], list(dm.FIELDS)] == "unknown").all().all()
    assert (dm.for_customers(["x"], None)["income_band"] == "unknown").all()


def _export(path: Path, income: str, valid_from: str) -> Path:
    pd.DataFrame(
        {
            "hh": ["7", "8"],
            "income": [income, "50-74K"],
            "age": ["25-34", "35-44"],
            "since": [valid_from, valid_from],
        }
    ).to_csv(path, index=False)
    return path


def test_a_changed_income_is_kept_as_of_its_date_and_a_point_in_time_read_never_sees_it_early(
    tmp_path: Path,
) -> None:
    mapping = tmp_path / "shop.toml"
    mapping.write_text(
        'format = "csv"\n[columns]\nuser_id = "hh"\nincome = "income"\nage = "age"\nvalid_from = "since"\n'
    )
    warehouse = tmp_path / "w.duckdb"
    spec = customer_mapping(mapping)
    for name, income, since in (("jan.csv", "35-49K", "2017-01-01"), ("jun.csv", "100-124K", "2017-06-01")):
        path = _export(tmp_path / name, income, since)
        frame, _ = read_customers(path, spec)
        load_customers(warehouse, frame, path)
    path = tmp_path / "jun.csv"
    frame, _ = read_customers(path, spec)
    assert load_customers(warehouse, frame, path)["table_rows"] == 4  # a re-run replaces, adds nothing
    with wh.connect(warehouse, read_only=True) as con:
        history = con.execute("select user_id, age, income, valid_from from raw.customers").df()
    assert len(history[history["user_id"] == "7"]) == 2  # both versions kept, not overwritten

    def income_of(when: str) -> str:
        return dm.for_customers(["7"], history, when)["income_band"].iloc[0]

    assert income_of("2016-12-31") == "unknown"  # before the first record
    assert income_of("2017-05-31 23:59") == "mid income"  # the day before the change
    assert income_of("2017-06-01") == "high income"
    assert dm.as_of(history, "2017-03-01").set_index("user_id").loc["7", "income"] == "35-49K"
