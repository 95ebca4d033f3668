"""Fail fast: every invalid request and every "no data" error fails its task once, saying what to do.

Each case runs the DAG's own task code (the callable of the real DAG's task, built from the DAG
file) and asserts a single try: the task raises ``AirflowFailException`` (which Airflow never
retries) and/or the task has ``retries == 0``. The last test runs a whole DAG run with
``dag.test()`` (no hubs: it stops at the plan) and counts the plan task's tries.
"""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from conftest import ROOT, load_dag
from eastwest.east import plan as plans

DAGS = ROOT / "dags"
GOOD_INTERVAL = (datetime(2026, 11, 23, 16, 30, tzinfo=UTC), datetime(2026, 11, 24, 16, 30, tzinfo=UTC))


@pytest.fixture(scope="module")
def analyst():
    return load_dag(DAGS / "east_west_analyst.py")


@pytest.fixture(scope="module")
def nightly():
    return load_dag(DAGS / "east_west_nightly.py")


def run_plan(dag, conf: dict, interval: tuple = (None, None)) -> dict:
    """The DAG's plan task, as the worker runs it: the DAG's params updated with the run's conf."""
    params = {**{k: dag.params[k] for k in dag.params}, **conf}
    task = dag.get_task("plan")
    return task.python_callable(params=params, data_interval_start=interval[0], data_interval_end=interval[1])


def fails_once(dag, conf: dict, interval: tuple = (None, None)) -> str:
    """Run the plan task; assert it fails without a retry; return the message."""
    assert dag.get_task("plan").retries == 0
    with pytest.raises(AirflowFailException) as failed:  # Airflow never retries this exception
        run_plan(dag, conf, interval)
    message = str(failed.value)
    assert "retrying this one cannot help" in message and "start a new run" in message
    return message


def test_a_valid_request_plans(analyst, nightly) -> None:
    plan = run_plan(analyst, {"start_date": "2026-11-24", "enterprise_ids": "E0002,E0001"})
    assert plan["start_day"] == "2026-11-24" and plan["params"]["enterprise_ids"] == ["E0001", "E0002"]
    assert run_plan(nightly, {}, GOOD_INTERVAL)["run_key"] == "east_west_nightly.nightly.20261124-20261125"


def test_the_plan_task_never_retries_even_with_retries_in_default_args() -> None:
    from eastwest import SqlInput, Target, Workload
    from eastwest.airflow import east_west_dag

    workload = Workload(
        job="daily_kpis",
        inputs=SqlInput("readings", sql="source/extract_readings.sql", time_column="ts"),
        target=Target("daily_kpis", keys=("day", "enterprise_id", "machine_id"), partition_column="day"),
    )
    dag = east_west_dag("retry_happy", workload, schedule="0 1 * * *", default_args={"retries": 7})
    assert dag.get_task("plan").retries == 0
    assert dag.get_task("extract").retries == 7


@pytest.mark.parametrize(
    ("conf", "expected"),
    [
        ({"start_date": "9999-12-31"}, "start_date 9999-12-31 is outside 2000-01-01"),
        ({"start_date": "0001-01-01"}, "start_date 0001-01-01 is outside 2000-01-01"),
        ({"start_date": "2026-11-24", "end_date": "9999-12-31"}, "end_date 9999-12-31 is outside"),
        ({"start_date": "1999-12-31"}, "is outside 2000-01-01"),
        ({"start_date": "2026-02-30"}, "not a day of the calendar"),
        ({"start_date": "2026-11-24", "end_date": "2026-11-23"}, "must not be before"),
        ({"start_date": "2026-11-01", "end_date": "2026-12-31"}, "at most 31 days"),
        ({"start_date": 20261124}, "not a date"),
        ({"start_date": "2026-11-24", "hub": "west_tibet"}, "hub 'west_tibet' is not 'auto' or one of"),
        ({"start_date": "2026-11-24", "policy": "slowest"}, "policy 'slowest' is not one of fastest, cheapest"),
        ({"start_date": "2026-11-24", "deadline_minutes": 30}, "deadline_minutes goes with policy 'cheapest'"),
        ({"start_date": "2026-11-24", "enterprise_ids": "E1,E0002"}, "does not match"),
        ({"start_date": "2026-11-24", "enterprise_ids": ["E0001", 7]}, "must be a string"),
    ],
    ids=lambda v: str(v)[:40],
)
def test_an_invalid_analyst_request_fails_once(analyst, conf, expected) -> None:
    assert expected in fails_once(analyst, conf)


def test_the_date_bound_is_the_forms_bound(analyst) -> None:
    last = plans.last_day()
    assert last == date(datetime.now(UTC).year + 1, 12, 31)
    assert run_plan(analyst, {"start_date": last.isoformat()})["end_day"] == (last + timedelta(days=1)).isoformat()
    assert run_plan(analyst, {"start_date": "2000-01-01"})["start_day"] == "2000-01-01"
    assert f"outside 2000-01-01..{last}" in fails_once(analyst, {"start_date": (last + timedelta(days=1)).isoformat()})


def test_unknown_keys_in_an_analyst_conf_are_refused_with_the_accepted_keys(analyst) -> None:
    message = fails_once(analyst, {"start_date": "2026-11-24", "job": "format_disk", "Start_Date": "x"})
    assert "unknown field(s) Start_Date, job" in message
    assert "accepted: start_date, end_date, hub, policy, deadline_minutes, enterprise_ids" in message


def test_unknown_keys_in_a_scheduled_runs_conf_are_refused(nightly) -> None:
    message = fails_once(nightly, {"start_date": "9999-12-31"}, GOOD_INTERVAL)
    assert "unknown field(s) start_date" in message and "accepted: hub" in message


@pytest.mark.parametrize(
    "interval",
    [
        (datetime(9999, 12, 31, 20, tzinfo=UTC), datetime.max.replace(tzinfo=UTC)),  # overflows in Asia/Shanghai
        (datetime(1, 1, 1, tzinfo=UTC), datetime(1, 1, 2, tzinfo=UTC)),
        (datetime(2100, 1, 1, tzinfo=UTC), datetime(2100, 1, 2, tzinfo=UTC)),
        (None, None),
        ("2026-11-24", "2026-11-25"),
    ],
    ids=["9999-12-31", "0001-01-01", "2100", "no-interval", "strings"],
)
def test_a_scheduled_run_with_an_impossible_data_interval_fails_once(nightly, interval) -> None:
    message = fails_once(nightly, {}, interval)
    assert "outside" in message or "no data interval" in message or "not a point in time" in message


def test_an_unexpected_error_in_the_plan_fails_once_too(analyst, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("the planner tripped")

    monkeypatch.setattr(plans, "plan_run", broken)
    assert "RuntimeError: the planner tripped" in fails_once(analyst, {"start_date": "2026-11-24"})


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01", "1999-12-31", "2100-01-01", "2026-02-30"])
def test_the_form_refuses_days_outside_the_bound(analyst, day) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    for field in ("start_date", "end_date"):
        form = copy.deepcopy(analyst.params)
        with pytest.raises(ParamValidationError):
            form[field] = day  # the UI form and the REST API validate this way, before a run exists


def test_the_form_accepts_the_bounds_themselves(analyst) -> None:
    form = copy.deepcopy(analyst.params)
    form["start_date"] = "2000-01-01"
    form["end_date"] = plans.last_day().isoformat()
    assert form.validate()["end_date"] == plans.last_day().isoformat()


def test_day_pattern_matches_exactly_the_years_of_the_bound() -> None:
    import re

    pattern = re.compile(plans.day_pattern(date(2027, 12, 31)))
    for year in range(1990, 2110):
        assert bool(pattern.fullmatch(f"{year}-06-15")) == (2000 <= year <= 2027), year
    assert re.fullmatch(plans.day_pattern(date(2030, 12, 31)), "2030-12-31")
    assert not re.fullmatch(plans.day_pattern(date(2030, 12, 31)), "2031-01-01")


# -- extract: "no data" is final ---------------------------------------------------------------------


def test_extract_with_no_rows_fails_once_naming_input_and_interval(data_dir) -> None:
    from eastwest_dev import telemetry

    nightly = load_dag(DAGS / "east_west_nightly.py")  # after data_dir: the DAG's settings use it
    telemetry.ensure_source(f"sqlite:///{data_dir / 'east_source.db'}")  # the table exists, the day is empty
    plan = run_plan(nightly, {}, GOOD_INTERVAL)
    extract = nightly.get_task("extract")
    with pytest.raises(AirflowFailException, match=r"input readings has no rows for 2026-11-24 \.\. 2026-11-25"):
        extract.python_callable(plan=plan)


def test_extract_with_no_landing_files_fails_once_naming_the_folder(data_dir) -> None:
    from eastwest_dev import telemetry

    orders = load_dag(DAGS / "east_west_orders.py")
    url = f"sqlite:///{data_dir / 'east_source.db'}"
    telemetry.load_day(url, date(2026, 11, 24), telemetry.generate_day(date(2026, 11, 24), 2))
    plan = run_plan(orders, {}, GOOD_INTERVAL)
    with pytest.raises(AirflowFailException, match=r"no landing files match .*landing/orders/2026-11-24/\*\.csv"):
        orders.get_task("extract").python_callable(plan=plan)


# -- a whole run: the plan fails once, nothing else runs ---------------------------------------------


@pytest.mark.integration  # an Airflow metadata DB (SQLite, isolated), no hubs
def test_a_bad_request_fails_the_run_after_one_try_of_plan(airflow_db, data_dir, capfd) -> None:
    analyst = load_dag(DAGS / "east_west_analyst.py")
    run = analyst.test(run_conf={"start_date": "2026-11-24", "job": "format_disk"})
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert run.state == "failed"
    assert (tis["plan"].state, tis["plan"].try_number) == ("failed", 1)
    assert all(ti.state in ("upstream_failed", "skipped", None) for name, ti in tis.items() if name != "plan")
    out = capfd.readouterr()
    assert "unknown field(s) job in the run's conf" in out.out + out.err
