"""tests/integration: real DuckDB/dbt, BentoML servers, PostgreSQL, Redis, an SMTP server, the CLI
in a subprocess.

Every test collected under this folder carries the `integration` marker (`pytest -m integration`)."""

from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)
