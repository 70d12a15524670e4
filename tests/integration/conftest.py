"""tests/integration: real DuckDB/dbt, BentoML servers, PostgreSQL, Redis, an SMTP server, the CLI
in a subprocess.

Every test collected under this folder carries the `integration` marker (`pytest -m integration`), set by
tests/conftest.py."""
