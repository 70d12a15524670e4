"""Audiences as a stage: read the night's profiles, select, export, save definitions, refresh them.

The selection itself is personaflow/profiles/audiences.py (pure). Here: where the inputs come from (the marts,
and the segment and churn snapshots the profile stages wrote for Feast), where saved definitions live
(`<home>/audiences/definitions/<name>.json`), and the size of every saved audience night after night
(`<home>/audiences/sizes.parquet`), which the nightly `profiles.audiences` task appends to.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from personaflow.core import warehouse as wh
from personaflow.core.exports import write_csv
from personaflow.core.settings import Settings
from personaflow.pipeline.shop_tables import CAMPAIGNS_FILE, DEMOGRAPHICS_FILE, refresh_profile_tables
from personaflow.profiles.audiences import (
    BOUGHT_FILE,
    PROFILES_FILE,
    AudienceError,
    AudienceSpec,
    check_labels,
    select,
    summarise,
)

PROFILE_SQL = """
    select user_id, rfm_segment, recency_days, frequency, monetary, country, favourite_categories,
        as_of_date from marts.user_features
    where as_of_date = (select max(as_of_date) from marts.user_features)
"""
BOUGHT_SQL = """
    select distinct i.user_id, i.item_id, f.category, f.description as name
    from marts.interactions i
    left join marts.item_features f on i.item_id = f.item_id
    where i.n_purchases > 0
"""


REVIEW_COLUMNS = ["user_id", "last_review_sentiment_label", "review_share_negative"]
REVIEWS_SQL = (
    "select user_id, last_review_sentiment_label, share_negative as review_share_negative "
    "from marts.customer_reviews"
)


def audiences_dir(s: Settings) -> Path:
    return s.home / "audiences"


def load_inputs(s: Settings) -> tuple[pd.DataFrame, pd.DataFrame, date]:
    """(profile per customer with segment and churn score, what each bought, the as-of day)."""
    where = wh.location(s)
    if not wh.exists(where):
        raise AudienceError(f"warehouse {wh.describe(where)} does not exist: build the marts first")
    with wh.connect(where, read_only=True) as con:
        try:
            profile, bought = con.execute(PROFILE_SQL).df(), con.execute(BOUGHT_SQL).df()
        except wh.MISSING_TABLE as exc:
            raise AudienceError(
                f"marts missing ({str(exc).splitlines()[0]}): run personaflow transform"
            ) from exc
    if profile.empty:
        raise AudienceError("marts.user_features is empty: no customers to pick from")
    as_of = pd.Timestamp(profile["as_of_date"].iloc[0]).date()
    profile = profile.merge(
        _latest(s.features_dir / "user_segment.parquet", ["segment_label", "persona"]), "left", "user_id"
    )
    profile = profile.merge(
        _latest(s.features_dir / "user_churn.parquet", ["churn_score"]), "left", "user_id"
    )
    profile = profile.merge(_reviews(where), "left", "user_id")
    return _with_shop_tables(s, profile), bought, as_of


def _reviews(where: wh.Location) -> pd.DataFrame:
    """Each reviewer's newest review label and share negative (marts.customer_reviews), for the review
    filters; no rows before reviews were imported (personaflow/pipeline/reviews.py)."""
    try:
        with wh.connect(where, read_only=True) as con:
            return con.execute(REVIEWS_SQL).df()
    except wh.MISSING_TABLE:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in REVIEW_COLUMNS})


def _with_shop_tables(s: Settings, profile: pd.DataFrame) -> pd.DataFrame:
    """The demographics and campaign fields (personaflow/pipeline/shop_tables.py), where the shop has them."""
    for name, columns in ((DEMOGRAPHICS_FILE, ["age_band", "income_band", "household", "demographic_label"]),
                          (CAMPAIGNS_FILE, ["redeem_score", "reached_by_running_campaign"])):  # fmt: skip
        path = s.features_dir / name
        if path.exists():
            profile = profile.merge(pd.read_parquet(path, columns=["user_id", *columns]), "left", "user_id")
    return profile


def _write_inputs(s: Settings, profile: pd.DataFrame, bought: pd.DataFrame) -> None:
    """Tonight's audience inputs as Parquet beside the other serving files, so POST /audiences answers
    from them without opening the warehouse (the DAG may be writing it)."""
    s.features_dir.mkdir(parents=True, exist_ok=True)
    for frame, name in ((profile, PROFILES_FILE), (bought, BOUGHT_FILE)):
        tmp = s.features_dir / f".{name}.tmp"
        frame.to_parquet(tmp, index=False)
        tmp.replace(s.features_dir / name)


def _latest(path: Path, columns: list[str]) -> pd.DataFrame:
    """The newest snapshot per user of a profile stage's Feast source (empty before the stage ran)."""
    if not path.exists():
        return pd.DataFrame(
            {"user_id": pd.Series(dtype=str), **{c: pd.Series(dtype=object) for c in columns}}
        )
    import pyarrow.parquet as pq

    present = set(pq.read_schema(path).names)  # a file from before a column existed (persona) lacks it
    frame = pd.read_parquet(path, columns=["user_id", *[c for c in columns if c in present], "feature_ts"])
    frame = frame.sort_values("feature_ts").drop_duplicates("user_id", keep="last")
    return frame.reindex(columns=["user_id", *columns])


def run_audience(
    spec: AudienceSpec, s: Settings, export: Path | None = None, show: int = 10
) -> dict[str, Any]:
    """Select `spec`'s customers now; optionally export them (.csv or .parquet)."""
    profile, bought, as_of = load_inputs(s)
    check_labels(profile, spec)
    members = select(profile, bought, spec)
    result = {"audience": spec.name, "definition": spec.to_json(), "as_of": as_of.isoformat(),
              **summarise(members, len(profile)), "first": members.head(show).to_dict("records")}  # fmt: skip
    if export is not None:
        result["export"] = str(_export(members.assign(audience=spec.name, as_of=as_of), export))
    return result


def _export(members: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".parquet":
        members.to_parquet(path, index=False)
    elif path.suffix.lower() == ".csv":
        write_csv(members, path)  # opened in spreadsheets: no cell may run as a formula
    else:
        raise AudienceError(f"export {path}: use a .csv or .parquet file name")
    return path


def save_audience(spec: AudienceSpec, s: Settings) -> Path:
    """Keep the definition; the nightly `profiles.audiences` task refreshes it from then on."""
    path = audiences_dir(s) / "definitions" / f"{spec.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec.to_json(), indent=2) + "\n")
    return path


def saved_audience(name: str, s: Settings) -> AudienceSpec:
    path = audiences_dir(s) / "definitions" / f"{name}.json"
    if not path.exists():
        known = sorted(p.stem for p in path.parent.glob("*.json"))
        raise AudienceError(f"no saved audience {name!r} (saved: {', '.join(known) or 'none'})")
    return AudienceSpec.from_json(json.loads(path.read_text()))


def refresh_saved(s: Settings) -> dict[str, Any]:
    """Re-select every saved audience on tonight's profiles; write each member list and append sizes."""
    folder = audiences_dir(s)
    specs, invalid = [], {}
    for path in sorted(folder.glob("definitions/*.json")):
        try:
            specs.append(AudienceSpec.from_json(json.loads(path.read_text())))
        except AudienceError as exc:  # saved before names were checked: said, not a failed night
            invalid[path.stem] = str(exc)
    nothing = {
        "status": "ok",
        "as_of": None,
        "audiences": {},
        "sizes": "none saved yet (personaflow audience --save)",
        **({"invalid": invalid} if invalid else {}),
    }
    if not specs and not wh.exists(wh.location(s)):  # nothing saved, nothing built: a normal first night
        return nothing
    refresh_profile_tables(s)  # tonight's demographics and campaign fields (none without those tables)
    profile, bought, as_of = load_inputs(s)  # one read for the API's inputs and every saved audience
    _write_inputs(s, profile, bought)
    from personaflow.pipeline.reviews import export_customer_reviews

    export_customer_reviews(s)  # tonight's review summaries for /profile (empty without reviews)
    if not specs:  # nothing to refresh is a normal night, not a skipped stage
        return nothing
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = []
    for spec in specs:
        members = select(profile, bought, spec)
        _export(members.assign(audience=spec.name, as_of=as_of), folder / "members" / f"{spec.name}.parquet")
        rows.append({"audience": spec.name, "as_of": as_of, "size": len(members),
                     "share": round(len(members) / len(profile), 4), "refreshed_at": now})  # fmt: skip
    sizes = folder / "sizes.parquet"
    fresh = pd.DataFrame(rows)
    if sizes.exists():  # the same night again replaces its rows
        history = pd.read_parquet(sizes)
        again = (history["as_of"] == as_of) & history["audience"].isin(fresh["audience"])
        fresh = pd.concat([history[~again], fresh], ignore_index=True)
    fresh.to_parquet(sizes, index=False)
    return {"status": "ok", "as_of": as_of.isoformat(), "audiences": {r["audience"]: r["size"] for r in rows},
            "sizes": str(sizes), **({"invalid": invalid} if invalid else {})}  # fmt: skip


def size_history(s: Settings, name: str) -> list[dict[str, Any]]:
    sizes = audiences_dir(s) / "sizes.parquet"
    if not sizes.exists():
        return []
    frame = pd.read_parquet(sizes)
    frame = frame[frame["audience"] == name].sort_values("as_of")
    return [{"as_of": str(pd.Timestamp(r.as_of).date()), "size": int(r.size)} for r in frame.itertuples()]
