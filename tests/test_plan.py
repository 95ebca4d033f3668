"""Plans: every request is validated before anything runs, and maps to one warehouse partition."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from eastwest.pipeline import Plan, analyst_plan, make_plan, nightly_plan


def test_nightly_plan_covers_the_local_day_of_the_interval() -> None:
    # The 00:30 Asia/Shanghai run on 2026-11-25 covers the local day 2026-11-24.
    plan = nightly_plan(
        datetime(2026, 11, 23, 16, 30, tzinfo=UTC),
        datetime(2026, 11, 24, 16, 30, tzinfo=UTC),
        "west_guizhou",
        "daily_kpis",
    )
    assert (plan.start_day, plan.end_day) == ("2026-11-24", "2026-11-25")
    assert (plan.start, plan.end) == ("2026-11-23T16:00:00", "2026-11-24T16:00:00")  # UTC bounds
    assert plan.run_key == "nightly__20261124-20261125"
    assert Plan.from_dict(plan.to_dict()) == plan


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hub": "west_gansu; rm -rf /"}, "hub"),
        ({"job": "../../bin/sh"}, "job"),
        ({"end_day": date(2026, 11, 24)}, "must be after"),
        ({"end_day": date(2027, 1, 30)}, "at most 31 days"),
        ({"enterprise_ids": ["E0001", "x; touch /tmp/canary"]}, "enterprise id"),
    ],
)
def test_bad_requests_are_refused_with_the_field_named(change, message) -> None:
    request = {
        "scope": "nightly",
        "start_day": date(2026, 11, 24),
        "end_day": date(2026, 11, 25),
        "hub": "west_guizhou",
        "job": "daily_kpis",
    }
    with pytest.raises(ValueError, match=message):
        make_plan(**{**request, **change})


def test_analyst_scope_depends_on_the_request_not_the_hub() -> None:
    form = {
        "start_date": "2026-11-24",
        "end_date": "2026-11-25",
        "hub": "west_guizhou",
        "job": "daily_kpis",
        "enterprise_ids": "E0002,E0001",
    }
    a = analyst_plan(form)
    b = analyst_plan({**form, "hub": "west_ningxia", "enterprise_ids": "E0001,E0002"})
    c = analyst_plan({**form, "enterprise_ids": "E0003"})
    assert a.scope == b.scope != c.scope
    assert a.scope.startswith("analyst-")
    assert (a.start_day, a.end_day) == ("2026-11-24", "2026-11-26")  # the last day is inclusive
    assert a.enterprise_ids == ["E0001", "E0002"]
