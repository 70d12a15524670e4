"""tests/e2e: a real Airflow (standalone or Celery) running the nightly DAG.

Every test collected under this folder carries the `e2e` marker (`pytest -m e2e`), set by
tests/conftest.py."""
