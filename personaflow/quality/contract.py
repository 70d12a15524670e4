"""The numbers a good event row must meet, in one place: the nightly batch suite
(personaflow/quality/suites.py)
and the live API (personaflow/serving/schemas.py, POST /events) both read them, so an event the API accepts
can never be the row that gets a whole day quarantined.

No Great Expectations import here: the API server imports this module and stays light.
"""

from __future__ import annotations

EVENT_TYPES = ("view", "cart", "purchase", "return")
MIN_PRICE = 0.01  # our formats: a unit price below one cent is a bug upstream
MAX_PRICE = 100_000.0
MAX_QUANTITY = 1000  # our formats (and the API); a return may be -MAX_QUANTITY..MAX_QUANTITY, never 0
ID_MAX_LENGTH = 128  # user, item and session ids accepted by the API
