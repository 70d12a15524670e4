"""tests/unit: no servers, no dbt: pure functions, models on small data, the BentoML model store in a
temp folder.

Every test collected under this folder carries the `unit` marker (`pytest -m unit`), set by
tests/conftest.py."""
