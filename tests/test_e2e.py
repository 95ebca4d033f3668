"""End to end: the real DAGs with dag.test(), real sshd hubs, PostgreSQL as east source and warehouse."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import pendulum
import pytest

from conftest import ROOT, TEST_HOME, east_on_postgres, load_dag
from eastwest import Target
from eastwest.east import warehouse
from eastwest.east.warehouse import Partition
from eastwest.settings import get_settings
from eastwest_dev import orders, telemetry

pytestmark = pytest.mark.integration

MACHINES = 12
GOOD_DAY = date(2026, 11, 24)
BAD_DAY = date(2026, 11, 25)
NO_ORDERS_DAY = date(2026, 11, 26)
KPIS = Target("daily_kpis", keys=("day", "enterprise_id", "machine_id"), partition_column="day")
ENERGY = Target("energy_per_unit", keys=("day", "enterprise_id", "product"), partition_column="day")


@pytest.fixture(scope="module")
def east(pg_url, hubs, airflow_db, tmp_path_factory):
    """PostgreSQL (as the east_source and east_warehouse connections) holds a good and a broken day."""
    mp = pytest.MonkeyPatch()
    data = tmp_path_factory.mktemp("e2e-data")
    mp.setenv("EASTWEST_DATA_DIR", str(data))
    with east_on_postgres(pg_url):
        telemetry.load_day(pg_url, GOOD_DAY, telemetry.generate_day(GOOD_DAY, MACHINES))
        telemetry.load_day(pg_url, BAD_DAY, telemetry.generate_day(BAD_DAY, MACHINES, bad=True))
        telemetry.load_day(pg_url, NO_ORDERS_DAY, telemetry.generate_day(NO_ORDERS_DAY, MACHINES))
        orders.write_landing(GOOD_DAY, MACHINES, data)
        yield pg_url
    mp.undo()


def run_scheduled(dag_file: str, day: date, wait: timedelta | None = None):
    dag = load_dag(ROOT / "dags" / dag_file)
    if wait is not None:  # a manual run of a scheduled DAG waits for missing data (2 h by default)
        waiting = dag.get_task("wait_for_data")
        waiting.wait, waiting.poll_interval = wait, timedelta(seconds=1)
    after = day + timedelta(days=1)  # a run late the next day covers `day`
    return dag.test(logical_date=pendulum.datetime(after.year, after.month, after.day, 23, 59, tz="Asia/Shanghai"))


def day_partition(day: date, scope: str = "nightly") -> Partition:
    return Partition(scope, day, day + timedelta(days=1))


def report(dag_id: str, day: date, scope: str = "nightly") -> dict:
    key = f"{dag_id}.{scope}.{day:%Y%m%d}-{day + timedelta(days=1):%Y%m%d}"
    return json.loads((get_settings().reports_dir / key / "report.json").read_text())


def test_nightly_publishes_once_and_a_rerun_changes_nothing(east) -> None:
    first = run_scheduled("east_west_nightly.py", GOOD_DAY)
    assert first.state == "success"
    rows = warehouse.partition_rows(east, KPIS, day_partition(GOOD_DAY))
    assert len(rows) == MACHINES
    assert {r["day"] for r in rows} == {"2026-11-24"}
    assert all(r["readings"] == 1440 and r["hub"] == "west_guizhou" for r in rows)
    summary = report("east_west_nightly", GOOD_DAY)
    assert summary["rows_extracted"] == MACHINES * 1440
    assert summary["rows_published"] == MACHINES
    assert summary["wire_mb"] < summary["raw_mb"]
    assert summary["validation"].startswith("passed")
    assert len(summary["job_bundle"]) == 64  # provenance: the exact job code that ran
    assert summary["params"] == {"enterprise_ids": [], "tz": "Asia/Shanghai", "z_threshold": 3.5}
    # The hub's scratch and the local staging of the run are gone.
    run_key = "east_west_nightly.nightly.20261124-20261125"
    assert not (TEST_HOME / "hubs" / "west_guizhou" / "root" / "scratch" / run_key).exists()
    assert not (get_settings().staging_dir / run_key).exists()

    second = run_scheduled("east_west_nightly.py", GOOD_DAY)
    assert second.state == "success"
    assert warehouse.partition_rows(east, KPIS, day_partition(GOOD_DAY)) == rows
    again = report("east_west_nightly", GOOD_DAY)
    assert again["warehouse"].startswith("partition unchanged")
    assert again["chunks_skipped"] > 0 and again["wire_mb_sent"] < 0.01  # the data was already on the hub


def test_bad_day_fails_validation_publishes_nothing_and_is_quarantined(east) -> None:
    run = run_scheduled("east_west_nightly.py", BAD_DAY)
    assert run.state == "failed"
    assert warehouse.partition_rows(east, KPIS, day_partition(BAD_DAY)) == []
    quarantine = get_settings().quarantine_dir / "east_west_nightly.nightly.20261125-20261126"
    assert (quarantine / "daily_kpis.arrows").exists()
    gx_result = json.loads((quarantine / "validation.json").read_text())
    assert gx_result["success"] is False
    failed = {r["expectation_config"]["kwargs"].get("column") for r in gx_result["results"] if not r["success"]}
    assert {"min_power_kw", "max_temperature_c", "null_readings"} <= failed
    summary = report("east_west_nightly", BAD_DAY)
    assert summary["validation"].startswith("FAILED")
    assert summary["rows_published"] is None
    html = (get_settings().reports_dir / "east_west_nightly.nightly.20261125-20261126" / "report.html").read_text()
    failing = sum(not r["success"] for r in gx_result["results"])
    assert html.count('<tr class="FAIL">') == failing  # the report page shows each failed expectation
    assert "quarantined" in html and "min_power_kw" in html


def test_analyst_request_with_filter_on_the_other_hub(east) -> None:
    dag = load_dag(ROOT / "dags" / "east_west_analyst.py")
    conf = {"start_date": "2026-11-24", "end_date": None, "hub": "west_ningxia", "enterprise_ids": "E0002,E0001"}
    run = dag.test(run_conf=conf)
    assert run.state == "success"
    reports = sorted(get_settings().reports_dir.glob("east_west_analyst.analyst-*/report.json"))
    summary = json.loads(reports[-1].read_text())
    assert summary["params"]["enterprise_ids"] == ["E0001", "E0002"]
    rows = warehouse.partition_rows(east, KPIS, day_partition(GOOD_DAY, summary["scope"]))
    assert sorted({r["enterprise_id"] for r in rows}) == ["E0001", "E0002"]
    assert {r["hub"] for r in rows} == {"west_ningxia"}
    nightly = {r["machine_id"]: r for r in warehouse.partition_rows(east, KPIS, day_partition(GOOD_DAY))}
    for row in rows:  # the same job on the same data gives the same numbers on either hub
        assert row["energy_kwh"] == pytest.approx(nightly[row["machine_id"]]["energy_kwh"])


def test_orders_workload_joins_landing_files_with_telemetry_and_reruns_identically(east) -> None:
    first = run_scheduled("east_west_orders.py", GOOD_DAY)
    assert first.state == "success"
    rows = warehouse.partition_rows(east, ENERGY, day_partition(GOOD_DAY))
    expected_orders = orders.generate_orders(GOOD_DAY, MACHINES)
    assert sum(r["orders"] for r in rows) == expected_orders.num_rows
    assert sum(r["units"] for r in rows) == sum(expected_orders.column("units").to_pylist())
    assert all(r["energy_per_unit_kwh"] > 0 and r["orders_without_readings"] == 0 for r in rows)
    summary = report("east_west_orders", GOOD_DAY)
    assert summary["inputs"] == {"readings": MACHINES * 1440, "orders": expected_orders.num_rows}

    second = run_scheduled("east_west_orders.py", GOOD_DAY)
    assert second.state == "success"
    assert warehouse.partition_rows(east, ENERGY, day_partition(GOOD_DAY)) == rows
    assert report("east_west_orders", GOOD_DAY)["warehouse"].startswith("partition unchanged")


def test_a_day_without_order_files_fails_once_naming_the_folder(east, capfd) -> None:
    started = datetime.now()
    run = run_scheduled("east_west_orders.py", NO_ORDERS_DAY, wait=timedelta(seconds=5))
    out = capfd.readouterr()
    assert run.state == "failed"
    assert (datetime.now() - started).total_seconds() < 120  # waited 5 s, then failed at once: no retries
    waited = next(ti for ti in run.get_task_instances() if ti.task_id == "wait_for_data")
    assert (waited.state, waited.try_number) == ("failed", 1)
    assert "still incomplete after waiting" in out.out + out.err
    assert "no landing files match" in out.out + out.err and "landing/orders/2026-11-26" in out.out + out.err
    assert warehouse.partition_rows(east, ENERGY, day_partition(NO_ORDERS_DAY)) == []
