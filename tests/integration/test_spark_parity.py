"""The Spark path (PERSONAFLOW_WAREHOUSE_URL=spark) against the DuckDB path on the real Online Retail log.

Two months of ../shared/data/online-retail (2010-12-01 .. 2011-01-31, 77,628 invoice lines with every
real fault) are landed once as daily batch files, then loaded by each engine's loader: the DuckDB file,
and Spark in local mode (two cores, bound to 127.0.0.1, one session for this whole module, stopped at
its end). dbt builds every model on each: a full run as of the last day, then the incremental models
again for that day (on Spark: the day's partitions dropped and rewritten, macros/replace_days_strategy.sql).
Every mart must then hold the same rows on both engines: each mart's rows, columns in name order,
floats rounded to 6 decimals, timestamps as ISO text, sorted, hashed (SHA-256).

DuckDB runs `dbt build` (its data tests are the reference); Spark runs `dbt run`, to keep this
module's time down: ~4-6 minutes on a busy 2-core machine, mostly Spark's per-query and metastore cost.

Then the features stage for two nights on each engine (Spark: Feast's Spark offline store over the
`features` tables, materializing into Redis; DuckDB: the dask store over Parquet into SQLite): the
snapshots, the point-in-time training set and every user's online values are equal; training reads the
interactions from Spark in ranges of days (never one collect) into DuckDB's frame, and the same
two-tower model (its features from Feast as of the cut) is trained and gated alike.

Measured here at load ~8: the features stage for two nights 19-20 s on DuckDB and 54-65 s on Spark,
the two trainings with their gates 29 s (DuckDB) and 37 s (Spark); the two Feast and training tests
add ~2.5 min to this module.

Then, on the same warehouse: the batch check of one real day through GX's Spark data source, failing a
stricter bound and quarantined (DuckDB's verdict, expectation for expectation), the mart checks (DuckDB's
verdict), and last `personaflow forget` of one customer, proven by reading every Parquet cell and
searching every file's bytes under the Spark dir (they added ~5 min here at load 9-12; not measured on
an idle machine).
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from personaflow.core import spark
from personaflow.core import warehouse as wh
from personaflow.core.alert import SmtpConfig
from personaflow.core.placeholders import PlaceholderError
from personaflow.core.settings import Settings
from personaflow.ingest.load import load_batch, load_pending
from personaflow.pipeline.ingest import import_events
from personaflow.pipeline.transform import run_dbt
from personaflow.quality.quarantine import quarantine_batch
from personaflow.quality.suites import Thresholds
from personaflow.quality.validate import DataQualityError, validate_batch, validate_marts
from tests.integration.test_transform import PROJECT

SOURCE = Path(__file__).resolve().parents[3] / "shared" / "data" / "online-retail" / "online_retail.csv.gz"
FIRST, AS_OF = date(2010, 12, 1), date(2011, 1, 31)
# A churn horizon the two months can label (the default 90 days leaves churn_labels empty).
VARS = {"churn_horizon_days": 14}
FLOAT_DIGITS = 6
MARTS = (
    "interactions", "user_features", "item_features", "sessions", "co_purchase", "churn_labels",
    "returned_items", "data_quality", "data_quality_items", "data_quality_days",
)  # fmt: skip


def canonical_rows(frame: pd.DataFrame) -> list[tuple]:
    """The rows as engine-neutral tuples (columns by name; every number as a float rounded to
    FLOAT_DIGITS, since a NULL in an integer column makes one driver hand pandas floats and the other
    nullable integers; NULL/NaN/NaT as None; dates and timestamps as ISO text), sorted."""
    frame = frame[sorted(frame.columns)]
    rows = []
    for row in frame.itertuples(index=False):
        values: list[object] = []
        for v in row:
            if v is None or (not isinstance(v, str) and pd.isna(v)):
                values.append(None)
            elif isinstance(v, (bool, np.bool_)):
                values.append(bool(v))
            elif isinstance(v, (int, float, np.integer, np.floating)):
                values.append(round(float(v), FLOAT_DIGITS) + 0.0)  # + 0.0: -0.0 and 0.0 alike
            elif hasattr(v, "isoformat"):
                values.append(pd.Timestamp(v).isoformat())
            else:
                values.append(str(v))
        rows.append(tuple(values))
    return sorted(rows, key=repr)


def digest(rows: list[tuple]) -> str:
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def _mart(where: wh.Location, mart: str) -> pd.DataFrame:
    with wh.connect(where, read_only=True) as con:
        return con.execute(f"select * from marts.{mart}").df()


def _day_counts(where: wh.Location) -> dict[date, int]:
    with wh.connect(where, read_only=True) as con:
        return dict(con.execute("select batch_date, count(*) from raw.events group by batch_date").fetchall())


def timings(loaded: list[dict]) -> str:
    return f"{len(loaded)} days, {sum(int(b['rows']) for b in loaded)} rows"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("spark_parity")
    export = pd.read_csv(SOURCE, dtype=str, keep_default_na=False)
    rows = export[export["InvoiceDate"].str.match(r"(12/\d+/2010|1/\d+/2011) ")]
    path = root / "online_retail_2m.csv.gz"
    rows.to_csv(path, index=False, compression="gzip")
    s = Settings(home=root / "home", warehouse_url="spark", spark_master="local[2]")
    import_events(path, "online-retail", s, load=False)  # the daily batch files both engines load
    duck, where = s.warehouse, wh.location(s)
    runs: dict[str, dict] = {}
    try:
        started = time.perf_counter()
        spark.session(where)  # started once for the module (~10-25 s), reused by the loader and dbt
        print(f"spark: session started in {time.perf_counter() - started:.1f} s")
        for name, target, command in (("duckdb", duck, "build"), ("spark", where, "run")):
            started = time.perf_counter()
            loaded = load_pending(target, s.landing_dir, AS_OF)
            load_seconds = round(time.perf_counter() - started, 1)
            full = run_dbt(target, AS_OF, PROJECT, root / f"dbt-{name}", command=command, full_refresh=True,
                           dbt_vars=VARS)  # fmt: skip
            # the last day again through the incremental strategy (on Spark: its partition dropped and
            # rewritten); one model shows it, each model costs Spark several seconds
            again = run_dbt(target, AS_OF, PROJECT, root / f"dbt-{name}", command="run", dbt_vars=VARS,
                            select="interactions")  # fmt: skip
            runs[name] = {"loaded": loaded, "full": full, "again": again}
            print(
                f"{name}: load {timings(loaded)} {load_seconds} s, dbt {full['seconds']} s, "
                f"again {again['seconds']} s"
            )
        yield {"s": s, "duck": duck, "spark": where, "runs": runs, "rows": rows, "root": root}
    finally:
        spark.stop()


def test_the_slice_is_two_months_of_the_real_log(built):
    rows = built["rows"]
    assert len(rows) == 77_628
    loaded = built["runs"]["spark"]["loaded"]
    assert len(loaded) == len(built["runs"]["duckdb"]["loaded"]) > 40
    assert sum(b["rows"] for b in loaded) == len(rows)


def test_spark_runs_on_loopback_with_its_files_under_the_home(built):
    where, home = built["spark"], built["s"].home
    session = spark.session(where)
    assert session.conf.get("spark.driver.host") == "127.0.0.1"
    assert session.conf.get("spark.driver.bindAddress") == "127.0.0.1"
    assert session.sparkContext.master == "local[2]"
    assert where.directory == home / "spark"
    assert (home / "spark" / "metastore_db").is_dir() and (home / "spark" / "derby.log").is_file()
    assert not Path("derby.log").exists() and not Path("metastore_db").exists()  # nothing in the cwd


def test_raw_events_are_parquet_partitioned_by_day(built):
    where = built["spark"]
    with wh.connect(where, read_only=True) as con:
        detail = dict((r[0], r[1]) for r in con.execute("describe table extended raw.events").fetchall())
        partitions = [r[0] for r in con.execute("show partitions raw.events").fetchall()]
    assert detail["Provider"] == "parquet"
    days = sorted(_day_counts(where))
    assert partitions == [f"batch_date={d.isoformat()}" for d in days]
    folder = where.directory / "warehouse" / "raw.db" / "events" / f"batch_date={FIRST.isoformat()}"
    assert list(folder.glob("*.parquet")), folder
    assert _day_counts(where) == _day_counts(built["duck"])


def test_reloading_a_day_replaces_exactly_its_partition(built):
    where, landing = built["spark"], built["s"].landing_dir
    before = _day_counts(where)
    day = date(2010, 12, 7)
    again = load_batch(where, landing, day)
    assert again["replay"] and again["rows"] == before[day]
    assert _day_counts(where) == before  # the same file again: nothing doubled
    path = landing / "events" / f"events_{day.isoformat()}.csv"
    original = path.read_bytes()
    lines = original.splitlines(keepends=True)
    try:
        path.write_bytes(b"".join(lines[:101]))  # a re-delivery with the header and 100 rows
        assert load_batch(where, landing, day)["rows"] == 100
        after = _day_counts(where)
        assert after[day] == 100
        assert {d: n for d, n in after.items() if d != day} == {d: n for d, n in before.items() if d != day}
    finally:
        path.write_bytes(original)
        load_batch(where, landing, day)
    assert _day_counts(where) == before


def test_every_model_builds_on_spark(built):
    duck, spark_runs = built["runs"]["duckdb"], built["runs"]["spark"]
    assert spark_runs["full"]["models"] == duck["full"]["models"] == 22
    assert duck["full"]["tests"] >= 80  # DuckDB's data tests passed on the same raw rows
    assert spark_runs["full"]["rows"] == duck["full"]["rows"]
    assert spark_runs["again"]["rows"] == duck["again"]["rows"]
    assert list(spark_runs["again"]["rows"]) == ["marts.interactions"]


def test_incremental_tables_are_partitioned_by_their_day_on_spark(built):
    with wh.connect(built["spark"], read_only=True) as con:
        partitions = [r[0] for r in con.execute("show partitions marts.interactions").fetchall()]
    assert partitions[-1] == f"event_date={AS_OF.isoformat()}"
    assert all(re.fullmatch(r"event_date=\d{4}-\d{2}-\d{2}", p) for p in partitions)


@pytest.mark.parametrize("mart", MARTS)
def test_marts_equal_row_for_row(built, mart):
    left = canonical_rows(_mart(built["duck"], mart))
    right = canonical_rows(_mart(built["spark"], mart))
    assert len(left) > 0, f"marts.{mart} is empty: the comparison would prove nothing"
    assert len(left) == len(right)
    if digest(left) != digest(right):
        only_duck = sorted(set(left) - set(right), key=repr)[:3]
        only_spark = sorted(set(right) - set(left), key=repr)[:3]
        pytest.fail(f"marts.{mart} differs: only on DuckDB {only_duck}; only on Spark {only_spark}")


def test_columns_and_key_figures_agree(built):
    duck, where = built["duck"], built["spark"]
    for mart in MARTS:
        assert sorted(_mart(duck, mart).columns) == sorted(_mart(where, mart).columns), mart
    users = {name: _mart(w, "user_features").set_index("user_id").sort_index() for name, w in
             (("duckdb", duck), ("spark", where))}  # fmt: skip
    for column in ("monetary", "frequency", "recency_days", "rfm_segment"):
        assert users["duckdb"][column].tolist() == users["spark"][column].tolist(), column
    assert users["spark"]["monetary"].map(math.isfinite).all()


def test_the_warehouse_dollar_markers_bind_on_spark_and_literals_stay_text(built):
    """The SQL the other engines read, `$n` markers and all, on Spark (bound as `:pn`): a `?`, `%` or
    `$1` in a literal or a backquoted name is text, a marker may repeat, and a `?` marker is refused."""
    day = AS_OF - timedelta(days=1)
    with wh.connect(built["spark"], read_only=True) as con:
        got = con.execute(
            "select $1 as d, 'is 50%? ask $1' as `why? $2`, $2 || '?' as s, $1 = $1 as same "
            "from raw.batches where batch_date <= $1 limit 1",
            [day, "%s and $1"],
        ).fetchone()
        assert got == (day, "is 50%? ask $1", "%s and $1?", True)
        with pytest.raises(PlaceholderError):
            con.execute("select count(*) from raw.batches where batch_date = ?", [day])


def test_the_profile_stages_sql_reads_the_same_on_spark(built):
    """The SQL the profile stages send to the warehouse (the personas' behaviour features, today's churn
    features) in Spark's dialect gives DuckDB's numbers: Spark numbers the weekdays from Sunday = 1, has
    no epoch of an interval, makes an interval of date - date, and averages the decimal 1.0 to 5 places
    (personaflow/profiles/personas.py, personaflow/pipeline/profiles.py)."""
    from personaflow.pipeline.profiles import churn_features_sql
    from personaflow.profiles.personas import behaviour_sql

    got: dict[str, list[pd.DataFrame]] = {}
    for engine, where in (("duckdb", built["duck"]), ("spark", built["spark"])):
        with wh.connect(where, read_only=True) as con:
            got[engine] = [con.execute(behaviour_sql(engine=engine)).df(),
                           con.execute(churn_features_sql(engine), [AS_OF]).df()]  # fmt: skip
    behaviour = got["duckdb"][0]
    assert len(behaviour) > 500 and (behaviour["weekend_share"] > 0).any()  # the real log sells on Sundays
    for duck, on_spark in zip(got["duckdb"], got["spark"], strict=True):
        duck, on_spark = (f.sort_values("user_id").set_index("user_id") for f in (duck, on_spark))
        assert list(on_spark.index) == list(duck.index) and len(duck) > 100
        assert sorted(on_spark.columns) == sorted(duck.columns)
        for column in duck.columns:
            a, b = on_spark[column].astype(float).to_numpy(), duck[column].astype(float).to_numpy()
            assert np.allclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True), column


def test_canonical_rows_tell_engines_apart():
    """The comparison can fail: a cent, a NULL or a day of difference changes the hash."""
    days = pd.to_datetime(["2011-01-01", "2011-01-02"])
    base = pd.DataFrame({"a": [1.5, 2.0], "b": ["x", None], "d": days})
    same = base[["d", "b", "a"]].iloc[::-1]
    assert digest(canonical_rows(base)) == digest(canonical_rows(same))
    later = pd.to_datetime(["2011-01-01", "2011-01-03"])
    for change in ({"a": [1.51, 2.0]}, {"b": ["x", "y"]}, {"d": later}):
        assert digest(canonical_rows(base.assign(**change))) != digest(canonical_rows(base))
    assert digest(canonical_rows(base.assign(a=[1.5 + 1e-9, 2.0]))) == digest(canonical_rows(base))
    assert FIRST + timedelta(days=61) == AS_OF


# ---- Feast on Spark's offline store, and training's reads of the Spark tables.

NIGHTS = (date(2011, 1, 15), AS_OF)  # two nights: the second reuses, windows and materializes anew


@pytest.fixture(scope="module")
def spark_redis(redis_server):
    """Feast's online store for the Spark path: the session's Redis server, a database of its own
    (db 0-2 belong to other tests and the Celery stacks), emptied before and after."""
    import redis

    from personaflow.core.feature_store import feast_redis_connection

    url = f"redis://127.0.0.1:{redis_server.port}/5"
    feast_redis_connection(url)  # a URL Feast can take
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture(scope="module")
def featured(built, spark_redis):
    """The features stage for two nights on each warehouse, each into its own features dir (registry,
    Parquet files): DuckDB through Feast's dask store over Parquet snapshots into SQLite, Spark through
    Feast's Spark offline store over the `features` tables into Redis (the scale path's online store).
    The marts are those of AS_OF on both nights (a snapshot of what the marts hold: the same input on
    both engines)."""
    from personaflow.pipeline.features import build_features

    out = {}
    for name, online in (("duck", ""), ("spark", spark_redis)):
        features_dir = built["root"] / f"features-{name}"
        started = time.perf_counter()
        repo = built["s"].feature_repo_dir
        runs = [build_features(built[name], features_dir, repo, night, online) for night in NIGHTS]
        print(f"{name}: features stage, two nights, in {time.perf_counter() - started:.1f} s: "
              f"{[r['seconds'] for r in runs]}")  # fmt: skip
        out[name] = {"dir": features_dir, "runs": runs, "redis_url": online}
    return out


def _purchases(where: wh.Location) -> list[tuple]:
    with wh.connect(where, read_only=True) as con:
        return con.execute("select user_id, item_id, last_event_ts from marts.interactions "
                           "where n_purchases > 0").fetchall()  # fmt: skip


def _after(where: wh.Location, night: date) -> int:
    """Purchase rows (user, item, day) after the end of `night`: what a snapshot of that night can serve."""
    end = datetime(night.year, night.month, night.day, 23, 59, 59)
    return sum(1 for *_, ts in _purchases(where) if ts >= end)


def _without_stamps(frame: pd.DataFrame) -> pd.DataFrame:
    """A snapshot's rows less when they were written (created_ts differs between two runs by design)."""
    frame = frame.drop(columns=[c for c in ("created_ts", "as_of") if c in frame])
    if "feature_ts" in frame:  # Spark hands the stamp back naive, in its session's UTC; the files say UTC
        stamps = pd.to_datetime(frame["feature_ts"])
        frame = frame.assign(feature_ts=stamps.dt.tz_localize("UTC") if stamps.dt.tz is None else stamps)
    if "purchased_items" in frame:  # a list per row: its order is part of the value
        frame = frame.assign(purchased_items=frame["purchased_items"].map(
            lambda v: None if v is None else "|".join(v)))  # fmt: skip
    return frame


def test_feast_on_spark_gives_duckdbs_snapshots_training_set_and_online_values(built, featured):
    from personaflow.core.feature_store import USER_COLUMNS, open_store
    from personaflow.pipeline.features import TRAINING_FILE

    where, repo = built["spark"], built["s"].feature_repo_dir
    duck_runs, spark_runs = featured["duck"]["runs"], featured["spark"]["runs"]
    assert [r["offline_store"] for r in spark_runs] == ["spark", "spark"]
    assert [r["offline_store"] for r in duck_runs] == ["dask", "dask"]
    assert {r["online_store"] for r in spark_runs} == {"RedisOnlineStoreConfig"}
    assert {r["online_store"] for r in duck_runs} == {"SqliteOnlineStoreConfig"}
    keys = ("user_snapshot_rows", "item_snapshot_rows", "user_history_rows", "item_history_rows",
            "training_set_rows", "training_rows_joined_tonight", "training_rows_with_features",
            "materialized")  # fmt: skip
    for duck, on_spark in zip(duck_runs, spark_runs, strict=True):
        assert {k: on_spark[k] for k in keys} == {k: duck[k] for k in keys}
    # the first night joined every purchase: those after its stamp (Jan 15, 23:59:59) took its features
    # (point in time) and are kept, every one of them (the items of one order too: feast-dev/feast#6787),
    # the earlier ones have none and are left out; the second night's snapshot lies in every purchase's
    # future (the marts are the same), so it reused every row and joined none
    first, second = spark_runs
    purchases, served = len(_purchases(built["spark"])), _after(built["spark"], NIGHTS[0])
    assert first["training_rows_joined_tonight"] == purchases > first["training_set_rows"]
    assert first["training_set_rows"] == first["training_rows_with_features"] == served > 10_000
    assert second["training_rows_joined_tonight"] == 0
    assert second["training_set_rows"] == first["training_set_rows"]

    # the snapshots: Spark's `features` tables hold DuckDB's Parquet files' rows, night for night
    with wh.connect(where, read_only=True) as con:
        for name in ("user_features", "item_features", "user_purchases"):
            parts = [r[0] for r in con.execute(f"show partitions features.{name}").fetchall()]
            assert parts == [f"as_of={n.isoformat()}" for n in NIGHTS]
            on_spark = con.execute(f"select * from features.{name}").df()
            duck = pd.read_parquet(featured["duck"]["dir"] / f"{name}.parquet")
            assert len(on_spark) == len(duck) > 1000, name
            left, right = canonical_rows(_without_stamps(duck)), canonical_rows(_without_stamps(on_spark))
            assert digest(left) == digest(right), (name, sorted(set(left) ^ set(right), key=repr)[:3])

    # Feast's registry on Spark names SparkSources; the training set equals DuckDB's, row for row
    store = open_store(repo, featured["spark"]["dir"], featured["spark"]["redis_url"], offline=where)
    kinds = {type(s.batch_source).__name__ for s in store.list_feature_views()}
    assert kinds == {"SparkSource"}
    training = {n: pd.read_parquet(featured[n]["dir"] / TRAINING_FILE) for n in ("duck", "spark")}
    assert sorted(training["spark"].columns) == sorted(training["duck"].columns)
    assert str(training["spark"]["event_timestamp"].dtype) == "datetime64[ns, UTC]"
    assert digest(canonical_rows(training["spark"])) == digest(canonical_rows(training["duck"]))

    # the serving side files the stage writes beside Feast (co-purchase rules, segment best sellers,
    # purchase histories, returned pairs, item-name neighbours)
    sides = ("co_purchase", "segment_popularity", "purchase_history", "returned_items", "text_neighbours")
    for side in sides:
        frames = {n: pd.read_parquet(featured[n]["dir"] / f"{side}.parquet") for n in ("duck", "spark")}
        assert len(frames["spark"]) == len(frames["duck"]), side
        assert digest(canonical_rows(frames["spark"])) == digest(canonical_rows(frames["duck"])), side

    # what both materialized: every user's profile and purchases read back from each online store equal
    users = sorted(pd.read_parquet(featured["duck"]["dir"] / "user_features.parquet")["user_id"].unique())
    refs = [f"user_profile:{c}" for c in USER_COLUMNS[1:]] + ["user_purchases:purchased_items"]
    online = {}
    for name in ("duck", "spark"):
        store = open_store(repo, featured[name]["dir"], featured[name]["redis_url"],
                           offline=where if name == "spark" else None)  # fmt: skip
        rows = store.get_online_features(features=refs, entity_rows=[{"user_id": u} for u in users]).to_df()
        bought = rows["purchased_items"].map(lambda v: None if v is None else list(v))
        online[name] = _without_stamps(rows.assign(purchased_items=bought))
    assert online["spark"]["frequency"].notna().all() and len(online["spark"]) == len(users) > 1000
    assert digest(canonical_rows(online["spark"])) == digest(canonical_rows(online["duck"]))


def test_training_reads_spark_in_day_chunks_and_trains_and_gates_the_same_model(
    built, featured, monkeypatch, store
):
    """The interactions come from Spark in ranges of days (a small chunk size here, so the two months
    take several reads, none of them the whole table) and equal DuckDB's frame, dtypes included; the
    same model (two-tower, which reads its user and item features from Feast as of the split's cut:
    from the Spark offline store on Spark) is trained on both with DuckDB's result, and gated alike."""
    from personaflow.core import spark as spark_module
    from personaflow.training.data.features import nightly_source
    from personaflow.training.data.interactions import load_interactions
    from personaflow.training.pipeline import promote_candidate, train_candidate

    duck, where = built["duck"], built["spark"]
    reads: list[int] = []
    original = spark_module.SparkConnection.df

    def counted(self):
        frame = original(self)
        reads.append(len(frame))
        return frame

    with monkeypatch.context() as patch:
        patch.setattr(spark_module, "CHUNK_ROWS", 5_000)
        patch.setattr(spark_module.SparkConnection, "df", counted)
        on_spark = load_interactions(where)
    expected = load_interactions(duck)
    pd.testing.assert_frame_equal(on_spark, expected)
    assert len(reads) >= len(expected) // 5_000 >= 3 and max(reads) < len(expected)

    results, decisions = {}, {}
    for name, target in (("duck", duck), ("spark", where)):
        offline = where if name == "spark" else None
        features = nightly_source(built["s"].feature_repo_dir, featured[name]["dir"], None, offline)
        started = time.perf_counter()
        pointer = built["root"] / f"registry-{name}" / "production.json"
        results[name] = train_candidate(target, 7, seed=3, epochs=1, dim=8, model="two_tower",
                                        pointer_path=pointer, features=features)  # fmt: skip
        decisions[name] = promote_candidate(results[name]["tag"], pointer)
        print(f"{name}: two-tower trained and gated in {time.perf_counter() - started:.1f} s")

    def same(result: dict) -> dict:
        learned = {f"learned_{k}": v for k, v in result.get("learned_metrics", {}).items()}
        return {k: v for k, v in {**result["params"], **result["metrics"], **learned}.items()
                if "seconds" not in k}  # fmt: skip

    left, right = same(results["duck"]), same(results["spark"])
    assert sorted(right) == sorted(left)
    for key, value in left.items():  # the engines' sums may differ in the last bits of a float feature
        if isinstance(value, float):
            assert right[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
        else:
            assert right[key] == value, key
    assert results["spark"]["params"]["kind"] == results["duck"]["params"]["kind"]
    assert results["spark"]["params"]["data_sha256"] == results["duck"]["params"]["data_sha256"]
    assert decisions["spark"]["promoted"] == decisions["duck"]["promoted"]
    assert decisions["spark"]["reason"] == decisions["duck"]["reason"]


# ---- The batch and mart checks on Spark: GX's Spark data source over the warehouse's tables.

CHECKED_DAY = date(2010, 12, 9)
NOW = datetime(2011, 2, 1, 6, 0)  # the night after AS_OF: no event lies in the future


def _verdict(run) -> dict:
    """A check's outcome, engine-neutral: what failed, warned and was noticed (with counts)."""
    result = run.result if isinstance(run, DataQualityError) else run

    def labels(failures):
        return sorted((f.expectation, f.table, f.column, f.unexpected_count) for f in failures)

    return {"success": result.success, "rows": result.n_rows, "expectations": result.n_expectations,
            "failures": labels(result.failures), "warnings": labels(result.warnings),
            "notices": labels(result.notices)}  # fmt: skip


def _validate_batch(where, root: Path, name: str, limits: Thresholds):
    smtp = SmtpConfig("127.0.0.1", 9, "personaflow@localhost", ("data-team@localhost",))  # nobody listens
    with pytest.raises(DataQualityError) as failed:
        validate_batch(where, CHECKED_DAY, root / f"quarantine-{name}", root / f"reports-{name}", smtp,
                       now=NOW, limits=limits)  # fmt: skip
    return failed.value


def test_a_failing_batch_is_checked_by_gx_on_spark_and_quarantined_as_on_duckdb(built):
    """The batch suite on the day's partition through GX's Spark data source gives DuckDB's (pandas)
    verdict expectation for expectation; the failing batch moves to quarantine.events (never deleted),
    raw.batches says so, the landing file is kept with its reasons, and the same alert is written."""
    where, duck, root, landing = built["spark"], built["duck"], built["root"], built["s"].landing_dir
    rows = _day_counts(where)[CHECKED_DAY]
    # A real day fails a stricter quantity bound (Online Retail has lines of hundreds of units).
    strict = Thresholds(max_quantity_lenient=100)
    started = time.perf_counter()
    on_spark = _validate_batch(where, root, "spark", strict)
    print(f"spark: batch suite + quarantine of {rows} rows in {time.perf_counter() - started:.1f} s")
    on_duck = _validate_batch(duck, root, "duckdb", strict)
    assert _verdict(on_spark) == _verdict(on_duck)
    assert ("expect_column_values_to_be_between", "raw.events", "quantity") in {
        f[:3] for f in _verdict(on_spark)["failures"]}  # fmt: skip
    assert _verdict(on_spark)["rows"] == rows and _verdict(on_spark)["expectations"] >= 15
    bad = next(f for f in on_spark.result.failures if f.column == "quantity")
    assert bad.sample_rows and all("event_id" in r for r in bad.sample_rows)  # named by their key
    gx_config = (root / "reports-spark" / "quality" / "gx" / "great_expectations.yml").read_text()
    assert "warehouse_spark" in gx_config and "type: spark" in gx_config  # GX's Spark data source ran it

    assert on_spark.quarantine_path == root / "quarantine-spark" / CHECKED_DAY.isoformat()
    assert (on_spark.quarantine_path / "reasons.json").is_file()
    assert (on_spark.quarantine_path / f"events_{CHECKED_DAY.isoformat()}.csv").is_file()
    spark_alert = on_spark.eml_path.read_text()
    duck_alert = on_duck.eml_path.read_text()
    subject = [ln for ln in spark_alert.splitlines() if ln.startswith("Subject:")]
    assert subject and subject == [ln for ln in duck_alert.splitlines() if ln.startswith("Subject:")]
    with wh.connect(where, read_only=True) as con:
        assert CHECKED_DAY not in _day_counts(where)
        day = CHECKED_DAY.isoformat()
        assert con.execute(f"select count(*) from quarantine.events where batch_date = '{day}'"
                           ).fetchone()[0] == rows  # fmt: skip
        assert con.execute(f"select status from raw.batches where batch_date = '{day}'").fetchone()[0] == (
            "quarantined")  # fmt: skip
        [(suite, severity)] = con.execute(
            f"select suite, severity from raw.batch_validations where batch_date = '{day}'").fetchall()
        assert (suite, severity) == ("raw_events", "critical")
    # quarantining again (a retry) finds no raw rows and keeps the quarantined ones
    quarantine_batch(where, CHECKED_DAY, root / "quarantine-spark", [])
    with wh.connect(where, read_only=True) as con:
        assert con.execute(f"select count(*) from quarantine.events where batch_date = '{day}'"
                           ).fetchone()[0] == rows  # fmt: skip
    # the fixed file loaded again: the day is back (the quarantined copy stays as evidence)
    assert load_batch(where, landing, CHECKED_DAY)["rows"] == rows
    assert load_batch(duck, landing, CHECKED_DAY)["rows"] == rows
    assert _day_counts(where)[CHECKED_DAY] == rows


def test_the_mart_checks_run_on_spark_through_gx_with_duckdbs_verdict(built):
    smtp = SmtpConfig("127.0.0.1", 9, "personaflow@localhost", ("data-team@localhost",))
    verdicts = {}
    for name in ("spark", "duck"):
        started = time.perf_counter()
        try:
            summary = validate_marts(built[name], AS_OF, built["root"] / f"reports-{name}", smtp, now=NOW)
            keys = ("success", "rows", "expectations", "failed", "warnings")
            verdicts[name] = {k: summary[k] for k in keys}
            verdicts[name]["notices"] = sorted(n.split(" ")[0] for n in summary["notices"])
        except DataQualityError as exc:  # the same verdict is what counts, a pass or a fail
            verdicts[name] = _verdict(exc)
        print(f"{name}: mart checks in {time.perf_counter() - started:.1f} s")
    assert verdicts["spark"] == verdicts["duck"]
    assert verdicts["spark"]["rows"] > 10_000 and verdicts["spark"]["expectations"] >= 20


# ---- `personaflow forget` on the Spark warehouse. Runs last in this module: it rewrites the warehouse
# the tests above compare (and stops the session to search the scratch space Spark deletes at stop).


def _string_cells(directory: Path) -> dict[Path, dict[str, list[str]]]:
    """Every string cell of every Parquet file under `directory`, decompressed (pyarrow reads the pages:
    dictionary-encoded and snappy-compressed values are searched as the text they hold)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cells = {}
    for path in sorted(directory.rglob("*.parquet")):
        table = pq.read_table(path)
        cells[path] = {
            f.name: [v for v in table.column(f.name).to_pylist() if v is not None]
            for f in table.schema
            if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
        }
    return cells


# A number standing as a token: not inside a longer number or word, nor after '.' (a price's decimals) or
# '-' (Online Retail's event ids are `<invoice>-<line>`: a line number equal to a customer id is not them).
TOKEN = r"(?<![A-Za-z0-9_.\-])0*({id})(?![A-Za-z0-9_])"


def _bounded(user_id: str) -> re.Pattern[bytes]:
    return re.compile(TOKEN.format(id=re.escape(user_id)).encode())


def _files_holding(directory: Path, user_id: str) -> list[str]:
    pattern = _bounded(user_id)
    return [str(p) for p in sorted(directory.rglob("*")) if p.is_file() and pattern.search(p.read_bytes())]


def _customer_to_forget(cells: dict[Path, dict[str, list[str]]]) -> str:
    """The busiest customer whose id stands as a token in no string cell but customer cells and session
    ids (`<customer>-<start>`, in rows of theirs): so after forget no cell or byte may hold it, and a hit
    can only be a left-over of theirs."""
    from collections import Counter

    from personaflow.core.ids import is_session_column, is_user_column, normal_user_id

    users: Counter[str] = Counter()
    other: Counter[str] = Counter()
    numbers = re.compile(TOKEN.format(id="[1-9][0-9]*"))
    for columns in cells.values():
        for column, values in columns.items():
            if is_user_column(column):
                users.update(normal_user_id(v) for v in values)
            elif not is_session_column(column):
                other.update(numbers.findall("\n".join(values)))
    free = [u for u, _ in users.most_common(300) if u not in other]
    assert free, "no customer id of the slice is free of collisions"
    return free[0]


def test_forget_on_spark_leaves_no_cell_and_no_byte_of_the_customer(built):
    from personaflow.core.ids import is_user_column, normal_user_id
    from personaflow.pipeline.forget import forget_user

    s, where = built["s"], built["spark"]
    tables = where.directory / "warehouse"
    cells = _string_cells(tables)
    user_id = _customer_to_forget(cells)
    raw_events = {p: cols for p, cols in cells.items() if "raw.db/events/" in p.as_posix()}
    mine = {p: sum(normal_user_id(v) == user_id for v in cols["user_id"]) for p, cols in raw_events.items()}
    theirs, days = sum(mine.values()), len({p.parent.name for p, n in mine.items() if n})
    with wh.connect(where, read_only=True) as con:
        events = con.execute("select count(*) from raw.events").fetchone()[0]
        customers = con.execute("select count(*) from marts.user_features").fetchone()[0]
    assert theirs > 0 and days >= 2  # their rows lie in several day partitions
    assert _files_holding(tables, user_id)  # the byte search can find them: it is not blind to Parquet

    started = time.perf_counter()
    result = forget_user(user_id, s)
    print(f"spark: forget {user_id} in {time.perf_counter() - started:.1f} s: {result}")
    assert result["still_holding"] == []  # forget's own check, through Spark, finds them nowhere
    assert result["warehouse_rows"] >= theirs  # raw.events' rows and the models' rows built from them
    with wh.connect(where, read_only=True) as con:
        assert con.execute("select count(*) from raw.events").fetchone()[0] == events - theirs
        assert con.execute("select count(*) from marts.user_features").fetchone()[0] == customers - 1
        names = {r[1] for db in ("raw", "marts") for r in con.execute(f"show tables in {db}").fetchall()}
    assert not [n for n in names if n.endswith("__forget")]  # the staging tables are gone
    assert not list(tables.rglob(".spark-staging*"))

    # every string cell of every Parquet file left, decompressed: no cell holds the id as a token (the
    # customer was chosen so that only their own cells did)
    token = re.compile(TOKEN.format(id=re.escape(user_id)))
    after = _string_cells(tables)
    left = {(str(p), c) for p, cols in after.items() for c, vs in cols.items() if token.search("\n".join(vs))}
    assert left == set()
    # other customers' cells are still there: the search reads real rows
    assert sum(len(vs) for cols in after.values() for c, vs in cols.items() if is_user_column(c)) > 10_000
    assert all(normal_user_id(v) != user_id for cols in after.values() for c, vs in cols.items()
               if is_user_column(c) for v in vs)  # fmt: skip

    # the raw bytes of every file under the Spark dir (Parquet with its footers' statistics, .crc and
    # _SUCCESS files, the Derby metastore and its log, the scratch space) once the session has stopped
    spark.stop()
    assert _files_holding(where.directory, user_id) == []
    # (The landing files are not byte-searched: their `source_row` column holds line numbers, one of
    # which equals the id and is rightly kept; forget's own by-column check above covers them.)
