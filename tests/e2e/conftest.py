"""tests/e2e: a real Airflow (standalone or Celery) running the nightly DAG.

Every test collected under this folder carries the `e2e` marker (`pytest -m e2e`)."""

from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)
