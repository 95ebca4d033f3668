"""Plans: every request is validated before anything runs, and maps to one warehouse partition."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from conftest import ROOT
from eastwest import SqlInput, Target, Workload
from eastwest.east.plan import Plan, PlanError, make_plan, requested_plan, scheduled_plan
from eastwest.settings import Project, get_settings

KPIS = Workload(
    job="daily_kpis",
    inputs=SqlInput("readings", sql="source/extract_readings.sql", time_column="ts"),
    target=Target("daily_kpis", keys=("day", "enterprise_id", "machine_id"), partition_column="day"),
    form=("enterprise_ids",),
)


@pytest.fixture(scope="module")
def spec():
    return KPIS.check(Project(ROOT))


def test_scheduled_plan_covers_the_local_day_of_the_interval(spec) -> None:
    # The 00:30 Asia/Shanghai run on 2026-11-25 covers the local day 2026-11-24.
    plan = scheduled_plan(
        KPIS,
        spec,
        get_settings(),
        dag_id="east_west_nightly",
        hub="west_guizhou",
        data_interval_start=datetime(2026, 11, 23, 16, 30, tzinfo=UTC),
        data_interval_end=datetime(2026, 11, 24, 16, 30, tzinfo=UTC),
    )
    assert (plan.start_day, plan.end_day) == ("2026-11-24", "2026-11-25")
    assert (plan.start, plan.end) == ("2026-11-23T16:00:00", "2026-11-24T16:00:00")  # UTC bounds
    assert plan.run_key == "east_west_nightly.nightly.20261124-20261125"
    assert Plan.from_dict(plan.to_dict()) == plan


def test_a_job_receives_only_the_parameters_it_declares(spec) -> None:
    plan = make_plan(KPIS, spec, get_settings(), dag_id="d", scope="s", hub="west_guizhou",
                     start_day=date(2026, 11, 24), end_day=date(2026, 11, 25))  # fmt: skip
    assert set(plan.params) == set(spec.params) == {"tz", "z_threshold", "enterprise_ids"}
    with pytest.raises(PlanError, match="does not take parameter"):
        make_plan(KPIS, spec, get_settings(), dag_id="d", scope="s", hub="west_guizhou",
                  start_day=date(2026, 11, 24), end_day=date(2026, 11, 25), params={"units": 3})  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hub": "west_gansu; rm -rf /"}, "hub"),
        ({"end_day": date(2026, 11, 24)}, "must not be before"),
        ({"end_day": date(2027, 1, 30)}, "at most 31 days"),
        ({"start_day": date(1, 1, 1)}, "outside"),
        ({"params": {"enterprise_ids": ["E0001", "x; touch /tmp/canary"]}}, "does not match"),
        ({"params": {"z_threshold": float("nan")}}, "finite"),
        ({"params": {"tz": "../../etc/passwd"}}, "tz database"),
    ],
)
def test_bad_requests_are_refused_with_the_field_named(spec, change, message) -> None:
    request = {
        "dag_id": "east_west_analyst",
        "scope": "nightly",
        "start_day": date(2026, 11, 24),
        "end_day": date(2026, 11, 25),
        "hub": "west_guizhou",
    }
    with pytest.raises(PlanError, match=message):
        make_plan(KPIS, spec, get_settings(), **{**request, **change})


def test_analyst_scope_depends_on_the_normalised_request_not_the_hub(spec) -> None:
    form = {
        "start_date": "2026-11-24",
        "end_date": "2026-11-25",
        "hub": "west_guizhou",
        "enterprise_ids": "E0002,E0001",
    }

    def plan(conf: dict) -> Plan:
        return requested_plan(KPIS, spec, get_settings(), dag_id="east_west_analyst", conf=conf)

    a = plan(form)
    b = plan({**form, "hub": "west_ningxia", "enterprise_ids": "E0001,E0002,E0001"})
    c = plan({**form, "enterprise_ids": "E0003"})
    assert a.scope == b.scope != c.scope
    assert a.scope.startswith("analyst-")
    assert (a.start_day, a.end_day) == ("2026-11-24", "2026-11-26")  # the last day is inclusive
    assert a.params["enterprise_ids"] == ["E0001", "E0002"]


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"start_date": "2026-11-24", "job": "format_disk"}, "unknown field"),
        ({"start_date": "9999-12-31"}, "outside"),
        ({"start_date": "yesterday"}, "not a date"),
        ({}, "start_date is required"),
    ],
)
def test_bad_analyst_requests_fail_before_anything_runs(spec, conf, message) -> None:
    with pytest.raises(PlanError, match=message):
        requested_plan(KPIS, spec, get_settings(), dag_id="east_west_analyst", conf=conf)


def test_a_snapshot_workload_has_no_interval_and_its_report_names_none() -> None:
    from eastwest.east import report, steps

    snapshot = Workload(
        job="daily_kpis",
        inputs=SqlInput("readings", sql="source/extract_all_readings.sql"),
        target=Target("machine_totals", keys=("day", "enterprise_id", "machine_id")),
    )
    spec = snapshot.check(Project(ROOT))
    plan = make_plan(snapshot, spec, get_settings(), dag_id="snap", scope="nightly", hub="west_guizhou")
    assert not plan.interval and plan.run_key == "snap.nightly.snapshot" and plan.days == []
    assert plan.describe() == "full snapshot"
    ctx = steps.RunContext.create("snap", snapshot, Project(ROOT))
    summary = report.summarize(ctx, plan, {})
    assert "interval" not in summary and summary["target"] == "machine_totals"
