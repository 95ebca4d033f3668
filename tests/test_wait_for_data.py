"""Missing data is waited for (deferred), then reported once, naming the input and the day.

Unit tests of the completeness signals (an SQL input's rows or ``ready_sql``, a landing input's
files or ``marker``), of the ``WaitForData`` operator's deferral loop driven by hand, and two real
DAG runs with ``dag.test()`` (an Airflow metadata DB, no hubs): data that arrives during the wait
lets the run go on; nothing arriving fails the run once with the message naming what is missing.
"""

from __future__ import annotations

import shutil
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace

import pendulum
import pytest
from airflow.providers.common.compat.sdk import AirflowFailException
from airflow.sdk.exceptions import TaskDeferred

from conftest import ROOT, load_dag
from eastwest import LandingFiles, SqlInput, Target, Workload
from eastwest.airflow.wait import RecheckTrigger
from eastwest.config import WorkloadError
from eastwest.east import arrowdb, sources, steps
from eastwest.east.plan import make_plan
from eastwest.settings import Project, get_settings
from eastwest_dev import telemetry

DAY = date(2026, 11, 24)
NEXT = date(2026, 11, 25)
READINGS = SqlInput("readings", sql="source/extract_readings.sql", time_column="ts")
KPIS = Workload(
    job="daily_kpis",
    inputs=READINGS,
    target=Target("daily_kpis", keys=("day", "enterprise_id", "machine_id"), partition_column="day"),
)
DOWNSTREAM = "ship|compute|fetch|validate|publish|cleanup|report"  # need hubs: marked success in dag.test


def plan_for(workload: Workload = KPIS, days: int = 1, project: Project | None = None):
    spec = workload.check(project or Project(ROOT))
    return make_plan(
        workload, spec, get_settings(), dag_id="t", scope="nightly", hub="west_guizhou", start_day=DAY,
        end_day=DAY + timedelta(days=days),
    )  # fmt: skip


def source_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'east_source.db'}"


def load(data_dir: Path, day: date = DAY, machines: int = 2) -> None:
    telemetry.load_day(source_url(data_dir), day, telemetry.generate_day(day, machines))


def missing(item, plan, project: Project | None = None) -> list[str]:
    return sources.missing(item, plan, project or Project(ROOT), get_settings(), "Asia/Shanghai")


# -- the signals ---------------------------------------------------------------------------------------


def test_sql_input_without_a_signal_is_complete_when_each_day_has_a_row(data_dir) -> None:
    telemetry.ensure_source(source_url(data_dir))
    plan = plan_for(days=2)
    assert missing(READINGS, plan) == [
        "input readings: sql/source/extract_readings.sql returns no rows for 2026-11-24 "
        "(2026-11-23 16:00..2026-11-24 16:00 UTC)",
        "input readings: sql/source/extract_readings.sql returns no rows for 2026-11-25 "
        "(2026-11-24 16:00..2026-11-25 16:00 UTC)",
    ]
    load(data_dir, DAY)
    assert [m.split(" for ")[-1] for m in missing(READINGS, plan)] == [
        "2026-11-25 (2026-11-24 16:00..2026-11-25 16:00 UTC)"
    ]
    load(data_dir, NEXT)
    assert missing(READINGS, plan) == []


@pytest.fixture
def ready_project(tmp_path) -> Project:
    """A project whose sql/ has the readings query and a completeness query on a `loads` table."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "include", project / "include")
    (project / "sql" / "source").mkdir(parents=True)
    shutil.copy(ROOT / "sql" / "source" / "extract_readings.sql", project / "sql" / "source")
    (project / "sql" / "source" / "readings_ready.sql").write_text(
        "-- 1 when the loader has finished the day (a colon in a comment would count as a bind)\n"
        "SELECT MAX(finished) FROM loads WHERE day_start = :start AND :end IS NOT NULL\n"
    )
    (project / "sql" / "source" / "says_maybe.sql").write_text("SELECT 'maybe'\n")
    return Project(project)


def test_sql_input_with_ready_sql_waits_for_the_sources_own_signal(data_dir, ready_project) -> None:
    item = SqlInput(
        "readings", sql="source/extract_readings.sql", time_column="ts", ready_sql="source/readings_ready.sql"
    )
    workload = Workload(job="daily_kpis", inputs=item, target=KPIS.target)
    plan = plan_for(workload, project=ready_project)
    url = source_url(data_dir)
    load(data_dir)  # the rows are there, but the loader has not said it is done
    with arrowdb.connect(url) as conn:
        arrowdb.execute(conn, url, "CREATE TABLE loads (day_start TEXT, finished INTEGER)").close()
        conn.commit()
    assert missing(item, plan, ready_project) == [
        "input readings: sql/source/readings_ready.sql says 2026-11-24 (2026-11-23 16:00..2026-11-24 16:00 UTC) "
        "is not complete yet"
    ]
    with arrowdb.connect(url) as conn:
        arrowdb.execute(conn, url, "INSERT INTO loads VALUES ('2026-11-23 16:00:00', 1)").close()
        conn.commit()
    assert missing(item, plan, ready_project) == []

    odd = SqlInput("readings", sql="source/extract_readings.sql", time_column="ts", ready_sql="source/says_maybe.sql")
    with pytest.raises(sources.InputError, match="must return true/false or a number"):
        missing(odd, plan, ready_project)


ORDERS = LandingFiles("orders", glob="landing/orders/{{ ds }}/*.csv", columns={"units": "int64"})
MARKED = LandingFiles("orders", glob="landing/orders/{{ ds }}/*", format="csv", marker="_SUCCESS")


def test_landing_files_without_a_marker_are_complete_when_a_file_matches(data_dir) -> None:
    plan = plan_for()
    folder = data_dir / "landing" / "orders" / DAY.isoformat()
    assert missing(ORDERS, plan) == [
        f"input orders: no landing files match {folder}/*.csv for 2026-11-24; the folder {folder} does not exist"
    ]
    folder.mkdir(parents=True)
    (folder / "a.csv").write_text("order_id,units\nO1,3\n")
    assert missing(ORDERS, plan) == []


def test_landing_files_with_a_marker_wait_for_the_marker_and_never_read_it(data_dir) -> None:
    plan = plan_for()
    folder = data_dir / "landing" / "orders" / DAY.isoformat()
    folder.mkdir(parents=True)
    (folder / "a.csv").write_text("order_id,units\nO1,3\n")
    assert missing(MARKED, plan) == [
        f"input orders: the marker file {folder}/_SUCCESS for 2026-11-24 is not there yet (1 file(s) match * so far)"
    ]
    (folder / "_SUCCESS").write_text("")
    assert missing(MARKED, plan) == []
    assert sources.landing_paths(MARKED, plan, get_settings()) == [folder / "a.csv"]


def test_a_source_that_cannot_be_asked_counts_as_missing_with_the_reason(data_dir) -> None:
    ctx = steps.RunContext.create("t", KPIS, Project(ROOT))  # the source DB has no readings table yet
    lacking = steps.missing_data(ctx, plan_for())
    assert len(lacking) == 1 and lacking[0].startswith("input readings: could not be checked (ProgrammingError")
    assert "no such table: readings" in lacking[0]


# -- declarations --------------------------------------------------------------------------------------


@pytest.mark.parametrize("marker", ["", "a/_SUCCESS", "..", "*.done", "_S?CCESS", 7])
def test_a_marker_must_be_a_plain_file_name(marker) -> None:
    with pytest.raises(WorkloadError, match="marker must be a plain file name"):
        LandingFiles("orders", glob="landing/orders/{{ ds }}/*.csv", marker=marker)


def test_a_marker_needs_one_folder_per_day() -> None:
    with pytest.raises(WorkloadError, match="one folder per day"):
        LandingFiles("orders", glob="landing/*/{{ ds }}/*.csv", marker="_SUCCESS")


def test_ready_sql_is_checked_when_the_dag_file_is_parsed(ready_project) -> None:
    def declare(ready_sql: str) -> None:
        item = SqlInput("readings", sql="source/extract_readings.sql", time_column="ts", ready_sql=ready_sql)
        Workload(job="daily_kpis", inputs=item, target=KPIS.target).check(ready_project)

    declare("source/readings_ready.sql")
    with pytest.raises(WorkloadError, match=r"ready_sql file .*nope\.sql does not exist"):
        declare("source/nope.sql")
    (ready_project.sql_dir / "source" / "bad_ready.sql").write_text("SELECT 1 FROM loads WHERE who = :loader")
    with pytest.raises(WorkloadError, match=r"binds :loader"):
        declare("source/bad_ready.sql")
    with pytest.raises(WorkloadError, match="ready_sql must name a .sql file"):
        declare("../outside.sql")


def test_wait_settings_of_the_dags() -> None:
    from eastwest.airflow import east_west_dag
    from eastwest.airflow.dag import STEP_TIMEOUT, WAIT_FOR_DATA

    nightly = load_dag(ROOT / "dags" / "east_west_nightly.py").get_task("wait_for_data")
    analyst = load_dag(ROOT / "dags" / "east_west_analyst.py").get_task("wait_for_data")
    assert nightly.wait == WAIT_FOR_DATA == timedelta(hours=2) and analyst.wait == timedelta(0)
    assert nightly.execution_timeout == WAIT_FOR_DATA + STEP_TIMEOUT
    assert nightly.waits_for("scheduled") == nightly.waits_for("manual") == WAIT_FOR_DATA
    assert nightly.waits_for("backfill") == timedelta(0)  # a backfill of past days does not stall
    assert nightly.downstream_task_ids == {"extract"} and nightly.upstream_task_ids == {"plan"}
    dag = east_west_dag("w", KPIS, schedule="0 1 * * *", wait_for_data=timedelta(minutes=20))
    assert dag.get_task("wait_for_data").wait == timedelta(minutes=20)
    for bad in (timedelta(hours=4), timedelta(seconds=-1), 60):
        with pytest.raises(WorkloadError, match="wait_for_data must be a timedelta"):
            east_west_dag("w", KPIS, schedule="0 1 * * *", wait_for_data=bad)  # type: ignore[arg-type]


# -- the operator's deferral loop, driven by hand ------------------------------------------------------


def wait_task(seconds: float, poll: float = 1.0):
    task = load_dag(ROOT / "dags" / "east_west_nightly.py").get_task("wait_for_data")
    task.wait, task.poll_interval = timedelta(seconds=seconds), timedelta(seconds=poll)
    task.plan = plan_for().to_dict()  # what the template renders from the plan task's XCom
    return task


def run_context(run_type: str) -> dict:
    return {"dag_run": SimpleNamespace(run_type=run_type)}


def test_the_wait_defers_then_goes_on_when_the_data_arrives(data_dir) -> None:
    telemetry.ensure_source(source_url(data_dir))
    task = wait_task(600, poll=30)
    with pytest.raises(TaskDeferred) as deferred:
        task.execute(run_context("scheduled"))
    d = deferred.value
    assert d.method_name == "check_again" and d.kwargs["checks"] == 1
    assert isinstance(d.trigger, RecheckTrigger) and d.trigger.state == d.kwargs
    assert 25 <= d.trigger.moment - time.time() <= 30  # the poll interval
    assert 595 <= d.kwargs["deadline"] - time.time() <= 600
    assert d.timeout >= timedelta(seconds=590)  # the scheduler resumes it even without a triggerer
    load(data_dir)
    result = task.check_again(run_context("scheduled"), event=None, **d.kwargs)  # as the triggerer resumes it
    assert result["complete"] and result["checks"] == 2
    result = task.check_again(run_context("scheduled"), event=d.kwargs)  # as dag.test() resumes it
    assert result["complete"] and result["checks"] == 2


def test_the_recheck_trigger_fires_at_its_moment_with_the_waits_state() -> None:
    import asyncio

    from airflow.sdk._shared.module_loading import import_string

    trigger = RecheckTrigger(time.time() + 0.3, {"checks": 3, "deadline": 1.5})
    classpath, kwargs = trigger.serialize()
    again = import_string(classpath)(**kwargs)  # the triggerer rebuilds it from its serialized form

    async def first_event():
        started = time.monotonic()
        async for event in again.run():
            return event, time.monotonic() - started

    event, seconds = asyncio.run(first_event())
    assert event.payload == {"checks": 3, "deadline": 1.5} and 0.2 <= seconds < 2


def test_the_wait_fails_once_at_its_bound_naming_what_is_missing(data_dir) -> None:
    telemetry.ensure_source(source_url(data_dir))
    task = wait_task(600)
    with pytest.raises(TaskDeferred) as deferred:
        task.execute(run_context("manual"))
    kwargs = {**deferred.value.kwargs, "deadline": time.time() - 1}  # the bound has passed
    with pytest.raises(AirflowFailException) as failed:
        task.check_again(run_context("manual"), event=None, **kwargs)
    message = str(failed.value)
    assert "t.nightly.20261124-20261125" in message and "still incomplete after waiting" in message
    assert "input readings: sql/source/extract_readings.sql returns no rows for 2026-11-24" in message
    assert "clear this run" in message


def test_a_backfill_run_checks_once_and_fails_at_once(data_dir) -> None:
    telemetry.ensure_source(source_url(data_dir))
    with pytest.raises(AirflowFailException, match="a backfill run does not wait for it: input readings"):
        wait_task(600).execute(run_context("backfill"))


def test_a_lost_trigger_gets_one_last_check(data_dir) -> None:
    telemetry.ensure_source(source_url(data_dir))
    task = wait_task(600)
    with pytest.raises(AirflowFailException, match="airflow triggerer"):
        task.resume_execution("__fail__", {"error": "Trigger timeout"}, run_context("scheduled"))
    load(data_dir)
    assert task.resume_execution("__fail__", {"error": "Trigger timeout"}, run_context("scheduled"))["complete"]


# -- real runs with dag.test() (no hubs) ---------------------------------------------------------------


def nightly_with_wait(seconds: float, poll: float = 1.0):
    dag = load_dag(ROOT / "dags" / "east_west_nightly.py")  # after data_dir: the DAG's settings use it
    task = dag.get_task("wait_for_data")
    task.wait, task.poll_interval = timedelta(seconds=seconds), timedelta(seconds=poll)
    return dag


def run_for(dag, day: date = DAY, **kwargs):
    after = day + timedelta(days=1)  # a manual run late the next day covers `day`
    return dag.test(
        logical_date=pendulum.datetime(after.year, after.month, after.day, 23, 59, tz="Asia/Shanghai"), **kwargs
    )


@pytest.mark.integration  # an Airflow metadata DB (SQLite, isolated), no hubs
def test_data_arriving_during_the_wait_lets_the_run_go_on(airflow_db, data_dir, monkeypatch) -> None:
    telemetry.ensure_source(source_url(data_dir))
    dag = nightly_with_wait(120)
    checks: list[list[str]] = []
    loaders: list[threading.Timer] = []
    real = steps.missing_data

    def observed(ctx, plan):  # the real check; the day is loaded 2 s after the first one found it missing
        lacking = real(ctx, plan)
        checks.append(lacking)
        if len(checks) == 1 and lacking:
            loaders.append(threading.Timer(2.0, load, args=(data_dir,)))
            loaders[0].start()
        return lacking

    monkeypatch.setattr(steps, "missing_data", observed)
    run = run_for(dag, mark_success_pattern=DOWNSTREAM)
    for loader in loaders:
        loader.join()
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert checks[0] and "returns no rows for 2026-11-24" in checks[0][0] and checks[-1] == []
    assert (tis["wait_for_data"].state, tis["wait_for_data"].try_number) == ("success", 1)
    assert tis["extract"].state == "success"
    waited = tis["wait_for_data"].xcom_pull(task_ids="wait_for_data")
    assert waited["checks"] == len(checks) >= 2 and waited["waited_seconds"] >= 2  # it did wait, then went on
    assert run.state == "success"


@pytest.mark.integration  # an Airflow metadata DB (SQLite, isolated), no hubs
def test_nothing_arriving_fails_the_run_once_naming_what_is_missing(airflow_db, data_dir, capfd) -> None:
    telemetry.ensure_source(source_url(data_dir))
    started = time.monotonic()
    run = run_for(nightly_with_wait(3), mark_success_pattern=DOWNSTREAM)
    seconds = time.monotonic() - started
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert run.state == "failed"
    assert (tis["wait_for_data"].state, tis["wait_for_data"].try_number) == ("failed", 1)  # once, no retry
    assert tis["extract"].state == "upstream_failed"
    assert seconds < 90  # 3 s of waiting, no retries with backoff
    out = capfd.readouterr()
    text = out.out + out.err
    assert "still incomplete after waiting" in text
    assert "input readings: sql/source/extract_readings.sql returns no rows for 2026-11-24" in text
