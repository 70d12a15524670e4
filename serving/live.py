"""The API's side of the live landing file; the format and both ends live in ingest/live.py (the
nightly load reads what /events writes), re-exported here for serving code."""

from ingest.live import LIVE_COLUMNS, LiveLog, live_path, read_live

__all__ = ["LIVE_COLUMNS", "LiveLog", "live_path", "read_live"]
