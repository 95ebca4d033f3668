"""End to end: the real DAGs with dag.test(), real sshd hubs, PostgreSQL as east source and warehouse."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pendulum
import pytest

from conftest import ROOT, TEST_HOME, load_dag
from eastwest import pipeline, source, telemetry, warehouse
from eastwest.settings import get_settings

pytestmark = pytest.mark.integration

MACHINES = 12
GOOD_DAY = date(2026, 11, 24)
BAD_DAY = date(2026, 11, 25)


@pytest.fixture(scope="module")
def east(pg_url, hubs, airflow_db, tmp_path_factory):
    """PostgreSQL holds a good day and a broken day of telemetry; the pipeline uses it and the hubs."""
    mp = pytest.MonkeyPatch()
    mp.setenv("EASTWEST_SOURCE_URL", pg_url)
    mp.setenv("EASTWEST_WAREHOUSE_URL", pg_url)
    mp.setenv("EASTWEST_DATA_DIR", str(tmp_path_factory.mktemp("e2e-data")))
    source.load_day(pg_url, GOOD_DAY, telemetry.generate_day(GOOD_DAY, MACHINES))
    source.load_day(pg_url, BAD_DAY, telemetry.generate_day(BAD_DAY, MACHINES, bad=True))
    yield pg_url
    mp.undo()


def run_nightly(day: date):
    dag = load_dag(ROOT / "dags" / "east_west_nightly.py")
    after = day + timedelta(days=1)  # the 00:30 run of the next morning covers `day`
    return dag.test(logical_date=pendulum.datetime(after.year, after.month, after.day, 0, 30, tz="Asia/Shanghai"))


def nightly_rows(url: str, day: date) -> list[dict]:
    return warehouse.partition_rows(url, "nightly", day, date.fromordinal(day.toordinal() + 1))


def report(day: date) -> dict:
    key = f"nightly__{day:%Y%m%d}-{date.fromordinal(day.toordinal() + 1):%Y%m%d}"
    return json.loads((get_settings().reports_dir / key / "report.json").read_text())


def test_nightly_publishes_once_and_a_rerun_changes_nothing(east) -> None:
    first = run_nightly(GOOD_DAY)
    assert first.state == "success"
    rows = nightly_rows(east, GOOD_DAY)
    assert len(rows) == MACHINES
    assert {r["day"] for r in rows} == {"2026-11-24"}
    assert all(r["readings"] == 1440 and r["hub"] == "west_guizhou" for r in rows)
    summary = report(GOOD_DAY)
    assert summary["rows_extracted"] == MACHINES * 1440
    assert summary["rows_published"] == MACHINES
    assert summary["wire_mb"] < summary["raw_mb"]
    assert summary["validation"].startswith("passed")
    # The hub's scratch and the local staging of the run are gone.
    assert not (TEST_HOME / "hubs" / "west_guizhou" / "root" / "scratch" / "nightly__20261124-20261125").exists()
    assert not (get_settings().staging_dir / "nightly__20261124-20261125").exists()

    second = run_nightly(GOOD_DAY)
    assert second.state == "success"
    assert nightly_rows(east, GOOD_DAY) == rows
    assert report(GOOD_DAY)["warehouse"].startswith("partition unchanged")


def test_bad_day_fails_validation_publishes_nothing_and_is_quarantined(east) -> None:
    run = run_nightly(BAD_DAY)
    assert run.state == "failed"
    assert nightly_rows(east, BAD_DAY) == []
    quarantine = get_settings().quarantine_dir / "nightly__20261125-20261126"
    assert (quarantine / "daily_kpis.arrows").exists()
    gx_result = json.loads((quarantine / "validation.json").read_text())
    assert gx_result["success"] is False
    failed = {r["expectation_config"]["kwargs"].get("column") for r in gx_result["results"] if not r["success"]}
    assert {"min_power_kw", "max_temperature_c", "null_readings"} <= failed
    summary = report(BAD_DAY)
    assert summary["validation"].startswith("FAILED")
    assert summary["rows_published"] is None
    html = (get_settings().reports_dir / "nightly__20261125-20261126" / "report.html").read_text()
    assert "<tr class='FAIL'>" in html


def test_analyst_request_with_filter_on_the_other_hub(east) -> None:
    dag = load_dag(ROOT / "dags" / "east_west_analyst.py")
    conf = {
        "start_date": "2026-11-24",
        "end_date": None,
        "hub": "west_ningxia",
        "job": "daily_kpis",
        "enterprise_ids": "E0002,E0001",
    }
    run = dag.test(run_conf=conf)
    assert run.state == "success"
    plan = pipeline.analyst_plan(conf)
    rows = warehouse.partition_rows(east, plan.scope, GOOD_DAY, date(2026, 11, 25))
    assert sorted({r["enterprise_id"] for r in rows}) == ["E0001", "E0002"]
    assert {r["hub"] for r in rows} == {"west_ningxia"}
    nightly = {r["machine_id"]: r for r in nightly_rows(east, GOOD_DAY)}
    for row in rows:  # the same job on the same data gives the same numbers on either hub
        assert row["energy_kwh"] == pytest.approx(nightly[row["machine_id"]]["energy_kwh"])
