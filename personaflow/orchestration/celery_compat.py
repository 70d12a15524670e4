"""`python -m personaflow.orchestration.celery_compat ARGS...` = `airflow ARGS...`, with the Celery provider
importable. 
The lock's apache-airflow-providers-celery 3.26.0 imports `retry` from `celery.backends.database`, which
celery 5.7.0 (also in the lock, and allowed by the provider's `celery>=5.5,<6`) no longer has: its
database backend retries through `_ensure_retryable` instead. Without it, the scheduler cannot load the
CeleryExecutor and `airflow celery worker` dies at import. The lock is fixed, so every Airflow process
the supervisor starts runs through here, and the decorator comes back as celery 5.5 defined it (three
tries on a database error) before Airflow imports the provider. A celery that has `retry` is left alone.
"""

from __future__ import annotations

import functools
import logging
import sys

log = logging.getLogger(__name__)


def _retry(fun):
    """celery 5.5's `celery.backends.database.retry`: up to `max_retries` (3) tries on a DB error."""
    from sqlalchemy.exc import DatabaseError, InvalidRequestError
    from sqlalchemy.orm.exc import StaleDataError

    @functools.wraps(fun)
    def inner(*args, **kwargs):
        max_retries = kwargs.pop("max_retries", 3)
        for tries in range(1, max_retries + 1):
            try:
                return fun(*args, **kwargs)
            except (DatabaseError, InvalidRequestError, StaleDataError):
                log.warning("%s failed, %d tries left", fun.__name__, max_retries - tries, exc_info=True)
                if tries >= max_retries:
                    raise

    return inner


def patch() -> bool:
    """Give `celery.backends.database` its `retry` back if it lacks one; True if it was missing."""
    import celery.backends.database as database

    if hasattr(database, "retry"):
        return False
    database.retry = _retry
    return True


def main(argv: list[str]) -> None:
    patch()
    from airflow.__main__ import main as airflow_main

    sys.argv = ["airflow", *argv]
    airflow_main()


if __name__ == "__main__":
    main(sys.argv[1:])
