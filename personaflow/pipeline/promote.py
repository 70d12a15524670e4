"""The promote stage: the production pointer moves only through the gate."""

from __future__ import annotations

from typing import Any

from personaflow.core.settings import Settings
from personaflow.core.warehouse import location


def promote(tag: str, s: Settings, report: str | None = None, force: bool = False) -> dict[str, Any]:
    """Move the production pointer to `tag` only if it passes the gate on today's split (re-measured
    unless the candidate's evidence is from today's cut and production); `force` overrides, logged.
    The verdict goes into the candidate's run report when its path is given. A re-measure re-fits the
    recipes as recorded, so it gets the nightly features and the customer table (a re-ranker kept with
    demographics is re-fitted with them)."""
    from personaflow.pipeline.train import customers, features
    from personaflow.training.pipeline import promote_candidate

    def nightly(split: Any) -> Any:  # read the marts only when a re-fit needs features (a re-ranker)
        return features(s)(split)

    return promote_candidate(
        tag, s.production_pointer, report=report, warehouse=location(s), holdout_days=s.holdout_days,
        force=force, features=nightly, customers=customers(s),
    )  # fmt: skip
