"""tests/unit: no servers, no dbt: pure functions, models on small data, the BentoML model store in a
temp folder.

Every test collected under this folder carries the `unit` marker (`pytest -m unit`)."""

from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.unit)
