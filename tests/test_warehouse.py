"""Publishing replaces exactly one partition, atomically, on SQLite and on PostgreSQL (through ADBC)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import pyarrow as pa
import pytest

from eastwest import Target
from eastwest.east import arrowdb, warehouse
from eastwest.east.warehouse import Partition, PublishError

KPIS = Target("daily_kpis", keys=("day", "enterprise_id", "machine_id"), partition_column="day")


def rows(day: str, machines: int, energy: float = 1.0) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "day": date.fromisoformat(day),
                "enterprise_id": f"E{m:04d}",
                "machine_id": f"E{m:04d}-M01",
                "readings": 1440,
                "energy_kwh": energy,
                "anomaly_count": 0,
            }
            for m in range(1, machines + 1)
        ]
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'warehouse.db'}"
    pg_url = request.getfixturevalue("pg_url")
    with arrowdb.connect(pg_url) as conn:
        cursor = conn.cursor()
        cursor.execute("DROP TABLE IF EXISTS daily_kpis")
        cursor.execute("DROP TABLE IF EXISTS snapshot_target")
        conn.commit()
    return pg_url


D1, D2, D3 = date(2026, 11, 24), date(2026, 11, 25), date(2026, 11, 26)
NIGHTLY_D1 = Partition("nightly", D1, D2)


def publish(url: str, partition: Partition, table: pa.Table, hub: str = "west_guizhou", target: Target = KPIS):
    return warehouse.publish(url, target, partition, table, hub)


def test_the_table_is_created_from_the_results_schema_and_republishing_changes_nothing(url) -> None:
    first = publish(url, NIGHTLY_D1, rows("2026-11-24", 5))
    assert first.changed and first.rows_after == 5
    with arrowdb.connect(url) as conn:
        columns = arrowdb.columns_of(conn, "daily_kpis")
    assert columns is not None and set(columns) == {"scope", "hub", *rows("2026-11-24", 1).schema.names}
    again = publish(url, NIGHTLY_D1, rows("2026-11-24", 5))
    assert not again.changed
    assert again.rows_before == again.rows_after == 5
    assert "unchanged" in again.describe()
    published = warehouse.partition_rows(url, KPIS, NIGHTLY_D1)
    assert len(published) == 5 and published[0]["day"] == "2026-11-24" and published[0]["hub"] == "west_guizhou"


def test_a_rerun_whose_floats_differ_only_in_their_last_bits_changes_nothing(url) -> None:
    publish(url, NIGHTLY_D1, rows("2026-11-24", 5, energy=0.1 + 0.2))
    noisy = publish(url, NIGHTLY_D1, rows("2026-11-24", 5, energy=0.3))  # 0.1 + 0.2 != 0.3 in binary
    assert not noisy.changed, noisy
    # nothing changed, so the first publish's rows stay, bit for bit
    assert {r["energy_kwh"] for r in warehouse.partition_rows(url, KPIS, NIGHTLY_D1)} == {0.1 + 0.2}
    real = publish(url, NIGHTLY_D1, rows("2026-11-24", 5, energy=0.300001))
    assert real.changed and "replaced: 5 rows before, 5 rows now" in real.describe()


def test_a_value_that_became_null_is_a_change() -> None:
    before = pa.table({"day": ["2026-11-24"], "energy_kwh": [1.0]})
    assert warehouse.same_rows(before, pa.table({"day": ["2026-11-24"], "energy_kwh": [1.0 + 1e-12]}))
    assert not warehouse.same_rows(
        before, pa.table({"day": ["2026-11-24"], "energy_kwh": pa.array([None], pa.float64())})
    )
    assert not warehouse.same_rows(before, pa.table({"day": ["2026-11-25"], "energy_kwh": [1.0]}))


def test_replacing_a_partition_leaves_other_days_and_scopes_alone(url) -> None:
    publish(url, NIGHTLY_D1, rows("2026-11-24", 5))
    publish(url, Partition("nightly", D2, D3), rows("2026-11-25", 3))
    publish(url, Partition("analyst-abc", D1, D2), rows("2026-11-24", 2), "west_ningxia")
    outcome = publish(url, NIGHTLY_D1, rows("2026-11-24", 4, energy=2.0), "west_ningxia")
    assert outcome.changed and (outcome.rows_before, outcome.rows_after) == (5, 4)
    assert [r["energy_kwh"] for r in warehouse.partition_rows(url, KPIS, NIGHTLY_D1)] == [2.0] * 4
    assert len(warehouse.partition_rows(url, KPIS, Partition("nightly", D2, D3))) == 3
    assert len(warehouse.partition_rows(url, KPIS, Partition("analyst-abc", D1, D2))) == 2


def test_a_snapshot_target_is_replaced_whole_per_scope(url) -> None:
    target = Target("snapshot_target", keys=("enterprise_id", "machine_id"))
    whole = Partition("nightly")
    publish(url, whole, rows("2026-11-24", 5).drop_columns(["day"]), target=target)
    outcome = publish(url, whole, rows("2026-11-24", 2).drop_columns(["day"]), target=target)
    assert (outcome.rows_before, outcome.rows_after) == (5, 2)


def test_rows_outside_the_partition_are_refused_and_nothing_changes(url) -> None:
    publish(url, NIGHTLY_D1, rows("2026-11-24", 5))
    mixed = pa.concat_tables([rows("2026-11-24", 2), rows("2026-11-25", 1)])
    with pytest.raises(PublishError, match="outside the partition"):
        publish(url, NIGHTLY_D1, mixed)
    assert len(warehouse.partition_rows(url, KPIS, NIGHTLY_D1)) == 5


def test_a_result_without_the_key_columns_is_refused(url) -> None:
    with pytest.raises(PublishError, match="lacks the target's column"):
        publish(url, NIGHTLY_D1, rows("2026-11-24", 2).drop_columns(["machine_id"]))


def test_a_failed_ingest_rolls_back_the_delete(url) -> None:
    publish(url, NIGHTLY_D1, rows("2026-11-24", 5))
    duplicate_keys = pa.concat_tables([rows("2026-11-24", 2), rows("2026-11-24", 2)])
    with pytest.raises(Exception, match="(?i)unique|duplicate"):
        publish(url, NIGHTLY_D1, duplicate_keys)
    assert len(warehouse.partition_rows(url, KPIS, NIGHTLY_D1)) == 5


def at_once(count: int, work) -> list:
    """Run ``work(i)`` for i < count on as many threads, started together."""
    start = threading.Barrier(count)

    def one(i: int):
        start.wait()
        return work(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_eight_runs_publishing_at_once_into_an_empty_warehouse_all_succeed_first_time(empty_warehouse) -> None:
    """As eight analyst runs of one DAG finishing together: the target, the schema records and the
    usage table are all created by whichever comes first, and no publish fails on another's."""
    days = [D1 + timedelta(days=i) for i in range(8)]

    def run(i: int) -> warehouse.PublishOutcome:
        day = days[i]
        outcome = warehouse.publish(
            empty_warehouse, KPIS, Partition("analyst-x", day, day + timedelta(days=1)), rows(day.isoformat(), 40),
            "west_gansu", schema_records={"readings": f'{{"run": {i}}}'}, dag_id="analyst",
        )  # fmt: skip
        usage = {c: 0 for c in warehouse.USAGE_COLUMNS}
        warehouse.record_usage(
            empty_warehouse, {**usage, "dag_id": "analyst", "run_id": f"run{i}", "hub": "west_gansu"}
        )
        return outcome

    outcomes = at_once(8, run)
    assert [o.rows_after for o in outcomes] == [40] * 8 and all(o.changed for o in outcomes)
    for day in days:
        assert (
            len(warehouse.partition_rows(empty_warehouse, KPIS, Partition("analyst-x", day, day + timedelta(1)))) == 40
        )
    assert warehouse.recorded_schema(empty_warehouse, "analyst", "readings") in {f'{{"run": {i}}}' for i in range(8)}
    assert sorted(r["run_id"] for r in warehouse.usage_rows(empty_warehouse, "analyst")) == [
        f"run{i}" for i in range(8)
    ]
