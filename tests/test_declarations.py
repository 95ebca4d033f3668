"""A wrong declaration fails when the DAG file is parsed, naming the field: never at 2 a.m. on a hub."""

from __future__ import annotations

import shutil
import textwrap

import pytest

from conftest import ROOT
from eastwest import LandingFiles, SqlInput, Target, Workload, WorkloadError
from eastwest.settings import Project

READINGS = SqlInput("readings", sql="source/extract_readings.sql", time_column="ts")
KPIS_TARGET = Target("daily_kpis", keys=("day", "enterprise_id", "machine_id"), partition_column="day")


def check(**changes) -> None:
    fields = {"job": "daily_kpis", "inputs": (READINGS,), "target": KPIS_TARGET, **changes}
    Workload(**fields).check(Project(ROOT))


def test_a_good_declaration_returns_the_jobs_spec() -> None:
    spec = Workload(job="daily_kpis", inputs=READINGS, target=KPIS_TARGET).check(Project(ROOT))
    assert spec.inputs == ("readings",) and "z_threshold" in spec.params


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"job": "no_such_job"}, r"Workload job: job 'no_such_job' is not in the jobs package"),
        (
            {"inputs": (SqlInput("meter", sql="source/extract_readings.sql", time_column="ts"),)},
            r"Workload inputs: the job daily_kpis does not declare an input named 'meter'; its INPUTS are readings",
        ),
        ({"params": {"units": 3}}, r"Workload params: job daily_kpis does not take parameter\(s\) units"),
        (
            {"params": {"z_threshold": "high"}},
            r"Workload params: parameter z_threshold of job daily_kpis must be a number",
        ),
        ({"params": {"tz": "Mars/Olympus"}}, r"is not a time zone"),
        ({"suite": "missing.json"}, r"Workload suite: expectation suite .*missing\.json does not exist"),
        ({"form": ("colour",)}, r"Workload form: the job daily_kpis has no parameter 'colour'"),
        (
            {"target": Target("daily_kpis", keys=("day",))},
            r"partition_column is required because inputs are partitioned by time",
        ),
        (
            {"inputs": (SqlInput("readings", sql="source/count_readings_interval.sql", time_column="ts"),)},
            None,  # this one filters with :start and :end, so it is accepted
        ),
        (
            {"inputs": (SqlInput("readings", sql="source/create_readings.sql", time_column="ts"),)},
            r"must filter ts with the binds :start and :end",
        ),
        (
            {"inputs": (SqlInput("readings", sql="source/nope.sql", time_column="ts"),)},
            r"sql file .*nope\.sql does not exist",
        ),
    ],
)
def test_bad_declarations_name_the_field(changes, message) -> None:
    if message is None:
        check(**changes)
        return
    with pytest.raises(WorkloadError, match=message):
        check(**changes)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Target("daily_kpis", keys=()), r"keys must name at least one key column"),
        (lambda: Target("daily kpis; drop", keys=("day",)), r"Target table .* must be a lower-case SQL identifier"),
        (lambda: Target("t", keys=("scope",)), r"'scope' is added by the warehouse"),
        (lambda: SqlInput("readings", sql="../../etc/passwd.sql"), r"sql must name a \.sql file under sql/"),
        (lambda: LandingFiles("orders", glob="landing/orders/*.xlsx"), r"format must be 'csv' or 'parquet'"),
        (lambda: LandingFiles("orders", glob="x/*.csv", columns={"units": "int"}), r"column units has type 'int'"),
        (lambda: SqlInput("readings", sql="a.sql", conn_id="east source"), r"conn_id 'east source'"),
    ],
)
def test_bad_parts_fail_when_constructed(build, message) -> None:
    with pytest.raises(WorkloadError, match=message):
        build()


BAD_DAG = '''
    """A DAG file with a mistake in its declaration."""

    from eastwest import SqlInput, Target, Workload
    from eastwest.airflow import east_west_dag

    dag = east_west_dag(
        "bad_declaration",
        Workload(
            job="daily_kpis",
            inputs=SqlInput("readings", sql="source/extract_readings.sql", time_column="ts", conn_id="{conn}"),
            target=Target("daily_kpis", keys=("day", "enterprise_id", "machine_id"), partition_column="day"),
            params={params},
        ),
        schedule="30 0 * * *",
    )
'''


@pytest.mark.parametrize(
    ("conn", "params", "message"),
    [
        ("no_such_db", "{}", "Airflow connection 'no_such_db' is not defined"),
        ("east_source", '{"z_threshold": -1}', "parameter z_threshold of job daily_kpis must be at least 0.5"),
    ],
)
def test_a_bad_declaration_is_an_import_error_in_airflow(tmp_path, conn, params, message) -> None:
    """Parsed the way the DAG processor parses a DAG folder: the error lands in import_errors."""
    from airflow.dag_processing.dagbag import DagBag

    project = tmp_path / "project"
    shutil.copytree(ROOT / "include", project / "include")
    shutil.copytree(ROOT / "sql", project / "sql")
    (project / "dags").mkdir()
    (project / "dags" / "bad.py").write_text(textwrap.dedent(BAD_DAG).format(conn=conn, params=params))
    bag = DagBag(dag_folder=str(project / "dags"))
    assert not bag.dags
    errors = "\n".join(bag.import_errors.values())
    assert message in errors


def test_a_transform_whose_arguments_are_not_the_inputs_is_refused(tmp_path) -> None:
    from eastwest.west import jobs

    (tmp_path / "odd.py").write_text(
        'INPUTS = ("readings",)\nPARAMS = {}\n\ndef transform(frames, params):\n    return frames\n'
    )
    with pytest.raises(jobs.JobError, match=r"transform takes \(frames, params\); it must take one argument per input"):
        jobs.read_spec(tmp_path, "odd")


def test_a_query_that_binds_something_the_run_does_not_provide_is_refused(tmp_path) -> None:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "include", project / "include")
    (project / "sql").mkdir()
    (project / "sql" / "q.sql").write_text("SELECT * FROM readings WHERE ts >= :start AND ts < :end AND site = :site")
    workload = Workload(
        job="daily_kpis", inputs=SqlInput("readings", sql="q.sql", time_column="ts"), target=KPIS_TARGET
    )
    with pytest.raises(WorkloadError, match=r"binds :site, which is not a parameter of the job"):
        workload.check(Project(project))


def test_the_jobs_time_zone_follows_the_workloads() -> None:
    from datetime import date

    from eastwest.east.plan import make_plan
    from eastwest.settings import get_settings

    urumqi = Workload(job="daily_kpis", inputs=READINGS, target=KPIS_TARGET, tz="Asia/Urumqi")
    spec = urumqi.check(Project(ROOT))
    plan = make_plan(urumqi, spec, get_settings(), dag_id="d", scope="s", hub="west_guizhou",
                     start_day=date(2026, 11, 24), end_day=date(2026, 11, 25))  # fmt: skip
    assert plan.params["tz"] == "Asia/Urumqi" and plan.start == "2026-11-23T18:00:00"
    fixed = Workload(job="daily_kpis", inputs=READINGS, target=KPIS_TARGET, tz="Asia/Urumqi", params={"tz": "UTC"})
    assert make_plan(fixed, spec, get_settings(), dag_id="d", scope="s", hub="west_guizhou",
                     start_day=date(2026, 11, 24), end_day=date(2026, 11, 25)).params["tz"] == "UTC"  # fmt: skip


def test_a_dag_declared_with_a_hub_that_is_not_configured_is_refused_when_parsed() -> None:
    from eastwest.airflow import dag as dags

    workload = Workload(
        job="daily_kpis",
        inputs=SqlInput("readings", sql="source/extract_readings.sql", time_column="ts"),
        target=Target("daily_kpis", keys=("day", "enterprise_id", "machine_id"), partition_column="day"),
    )
    with pytest.raises(WorkloadError, match="hub 'west_tibet' is not 'auto' or a configured hub"):
        dags.east_west_dag("pinned", workload, schedule=None, hub="west_tibet")
    with pytest.raises(WorkloadError, match="a deadline goes with placement_policy='cheapest'"):
        dags.east_west_dag("late", workload, schedule=None, deadline=dags.timedelta(minutes=30))
    pinned = dags.east_west_dag("pinned", workload, schedule=None, hub="west_gansu", placement_policy="cheapest")
    assert pinned.params["hub"] == "west_gansu" and pinned.params["policy"] == "cheapest"
