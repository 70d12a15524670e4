"""The Spark warehouse is chosen through the one settings channel, and its session's confs keep it on
loopback with its files under the home (no JVM started here: tests/integration/test_spark_parity.py
starts one)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from personaflow.core import spark, warehouse
from personaflow.core.settings import Settings
from personaflow.core.tool_env import tool_vars


def test_spark_value_selects_a_spark_warehouse_under_the_home(tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "pf", warehouse_url="spark")
    where = warehouse.location(s)
    assert warehouse.is_spark(where) and not warehouse.is_postgres(where)
    assert where.master == "local[*]"
    assert where.directory == (tmp_path / "pf" / "spark").resolve()
    assert warehouse.exists(where)
    assert "local[*]" in warehouse.describe(where)
    # the dbt profile's PostgreSQL variables are only derived from a postgresql:// URL
    assert "PERSONAFLOW_PG_HOST" not in tool_vars(s)


def test_default_and_postgres_locations_are_unchanged(tmp_path: Path) -> None:
    assert warehouse.location(Settings(home=tmp_path)) == (tmp_path / "warehouse.duckdb").resolve()
    url = "postgresql://u@127.0.0.1:5432/db"
    assert warehouse.location(Settings(home=tmp_path, warehouse_url=url)) == url


def test_local_session_binds_loopback_and_keeps_its_files_under_the_home(tmp_path: Path) -> None:
    where = warehouse.location(Settings(home=tmp_path, warehouse_url="spark", spark_master="local[2]"))
    conf = spark.confs(where)
    assert conf["spark.driver.host"] == conf["spark.driver.bindAddress"] == "127.0.0.1"
    directory = str((tmp_path / "spark").resolve())
    for key in ("spark.sql.warehouse.dir", "spark.hadoop.javax.jdo.option.ConnectionURL", "spark.local.dir"):
        assert directory in conf[key], key
    assert f"-Dderby.system.home={directory}" in conf["spark.driver.extraJavaOptions"]
    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert conf["spark.sql.sources.partitionOverwriteMode"] == "dynamic"


def test_a_cluster_master_binds_nothing_and_the_shop_confs_win(tmp_path: Path) -> None:
    s = Settings(
        home=tmp_path, warehouse_url="spark", spark_master="yarn",
        spark_conf="spark.executor.memory=8g, spark.sql.warehouse.dir=s3a://shop/warehouse",
    )  # fmt: skip
    conf = spark.confs(warehouse.location(s))
    assert "spark.driver.host" not in conf and "spark.driver.bindAddress" not in conf
    assert conf["spark.executor.memory"] == "8g"
    assert conf["spark.sql.warehouse.dir"] == "s3a://shop/warehouse"
    assert conf["spark.sql.shuffle.partitions"] == "200"


def test_a_local_driver_gets_a_quarter_of_the_machine_and_the_setting_or_a_shop_conf_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gib = 2**30
    assert spark.default_driver_memory(24 * gib) == "6144m"  # a quarter
    assert spark.default_driver_memory(2 * gib) == "1024m"  # never under 1g
    assert spark.default_driver_memory(256 * gib) == "8192m"  # never over 8g
    monkeypatch.setattr(spark, "machine_memory_bytes", lambda: 16 * gib)
    local = spark.confs(warehouse.location(Settings(home=tmp_path, warehouse_url="spark")))
    assert local["spark.driver.memory"] == "4096m"
    # PERSONAFLOW_SPARK_DRIVER_MEMORY, read through the one settings channel
    monkeypatch.setenv("PERSONAFLOW_SPARK_DRIVER_MEMORY", " 3G ")
    s = Settings(home=tmp_path, warehouse_url="spark")
    assert s.spark_driver_memory == "3g"
    assert spark.confs(warehouse.location(s))["spark.driver.memory"] == "3g"
    # a cluster's driver only plans and collects: Spark's own default unless the setting names one
    monkeypatch.delenv("PERSONAFLOW_SPARK_DRIVER_MEMORY")
    yarn = Settings(home=tmp_path, warehouse_url="spark", spark_master="yarn")
    assert "spark.driver.memory" not in spark.confs(warehouse.location(yarn))
    named = Settings(home=tmp_path, warehouse_url="spark", spark_master="yarn", spark_driver_memory="6g")
    assert spark.confs(warehouse.location(named))["spark.driver.memory"] == "6g"
    # a spark.driver.memory among the shop's confs wins, as every conf there does
    both = Settings(home=tmp_path, warehouse_url="spark", spark_driver_memory="6g",
                    spark_conf="spark.driver.memory=12g")  # fmt: skip
    assert spark.confs(warehouse.location(both))["spark.driver.memory"] == "12g"
    for bad in ("lots", "4 g", "0g", "-1g", "4gb"):
        with pytest.raises(ValidationError, match="SPARK_DRIVER_MEMORY"):
            Settings(home=tmp_path, spark_driver_memory=bad)


def test_a_local_driver_uses_the_quick_jit_and_a_shop_can_append_its_own_jvm_options(tmp_path: Path) -> None:
    local = spark.confs(warehouse.location(Settings(home=tmp_path, warehouse_url="spark")))
    jit = spark.LOCAL_JIT.split()
    options = local["spark.driver.extraJavaOptions"].split()
    assert options[-len(jit):] == jit == ["-XX:TieredStopAtLevel=1", "-XX:ReservedCodeCacheSize=240m"]
    # a cluster's driver keeps the JVM's default JIT: it runs no executor work
    yarn = Settings(home=tmp_path, warehouse_url="spark", spark_master="yarn")
    cluster = spark.confs(warehouse.location(yarn))
    assert not set(jit) & set(cluster["spark.driver.extraJavaOptions"].split())
    # the shop's options come last (the JVM takes a flag's last value); Derby's home stays
    s = Settings(home=tmp_path, warehouse_url="spark",
                 spark_conf="spark.driver.extraJavaOptions=-XX:TieredStopAtLevel=4 -Xss4m")  # fmt: skip
    options = spark.confs(warehouse.location(s))["spark.driver.extraJavaOptions"].split()
    assert options[-2:] == ["-XX:TieredStopAtLevel=4", "-Xss4m"], options
    assert f"-Dderby.system.home={(tmp_path / 'spark').resolve()}" in options
    assert options.index(jit[0]) < options.index("-XX:TieredStopAtLevel=4")


def test_spark_conf_entries_must_be_key_value(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="key=value"):
        Settings(home=tmp_path, spark_conf="spark.executor.memory")


def test_read_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PERSONAFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("PERSONAFLOW_WAREHOUSE_URL", "spark")
    monkeypatch.setenv("PERSONAFLOW_SPARK_MASTER", "spark://10.0.0.5:7077")
    monkeypatch.setenv("PERSONAFLOW_SPARK_CONF", "spark.executor.cores=4")
    where = warehouse.location(Settings())
    assert (where.master, where.conf) == ("spark://10.0.0.5:7077", ("spark.executor.cores=4",))


def test_forget_leaves_the_spark_warehouse_files_to_spark(tmp_path: Path) -> None:
    """forget's file walk skips the Spark dir when Spark is the warehouse: its Parquet files (with .crc
    checksums Spark verifies on read) and the Derby metastore change only through Spark
    (personaflow/core/spark_forget.py); other files under the home are still walked."""
    from personaflow.pipeline.forget import _files

    s = Settings(home=tmp_path, warehouse_url="spark")
    part = s.spark_dir / "warehouse" / "raw.db" / "events" / "batch_date=2011-01-05" / "part-0.parquet"
    landing = s.landing_dir / "events" / "events_2011-01-05.csv"
    for path in (part, part.with_name(".part-0.parquet.crc"), landing):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"user_id\n14911\n")
    assert set(_files(s)) == {landing}
    on_duckdb = Settings(home=tmp_path)  # a Spark dir that is not the warehouse is files like any other
    assert part in set(_files(on_duckdb))


def test_the_embedded_metastore_is_locked_a_shared_one_is_not(tmp_path: Path) -> None:
    local = spark.confs(warehouse.location(Settings(home=tmp_path, warehouse_url="spark")))
    assert spark.embedded_metastore(local)
    shared = Settings(home=tmp_path, warehouse_url="spark", spark_master="yarn",
                      spark_conf="spark.hadoop.hive.metastore.uris=thrift://metastore:9083")  # fmt: skip
    assert not spark.embedded_metastore(spark.confs(warehouse.location(shared)))


def _holder(directory: Path, seconds: float) -> subprocess.Popen:
    """Another process holding the metastore lock for `seconds` (as a night's other task would)."""
    code = (
        "import time; from pathlib import Path; from personaflow.core import spark; "
        f"h = spark.hold_metastore(Path({str(directory)!r})); print('held', flush=True); "
        f"time.sleep({seconds})"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_waits_for_the_metastore_and_gives_up_with_a_reason(tmp_path: Path) -> None:
    holder = _holder(tmp_path, 30)
    try:
        started = time.monotonic()
        with pytest.raises(spark.SparkError, match="stayed held by another process"):
            spark.hold_metastore(tmp_path, timeout=1.5)
        assert time.monotonic() - started >= 1.5
    finally:
        holder.kill()
        holder.wait()
    # the holder gone (its lock went with it), the metastore is free at once
    started = time.monotonic()
    spark.hold_metastore(tmp_path, timeout=5).close()
    assert time.monotonic() - started < 2


def test_the_next_holder_waits_for_the_previous_holders_jvm_to_exit(tmp_path: Path) -> None:
    # the previous holder's JVM (here a stand-in) outlives its Python process by a moment
    jvm = subprocess.Popen(["sleep", "3"])
    (tmp_path / "metastore.lock").write_text(str(jvm.pid))
    waiter = threading.Thread(target=jvm.wait)  # its parent reaps it, as init would
    waiter.start()
    started = time.monotonic()
    spark.hold_metastore(tmp_path, timeout=30).close()
    waited = time.monotonic() - started
    waiter.join()
    assert jvm.returncode == 0 and waited >= 1.0, waited
