"""A run's plan: which days, hub, job, parameters and scope, validated once and passed between tasks.

A scheduled run covers the local days of its data interval; an analyst's run covers the days of
the form, and its scope is a digest of the (normalised) request, so the same request replaces its
own rows. A snapshot workload has no interval. Every field is checked here; a bad request raises
:class:`PlanError`, which the DAG turns into a failure without retries.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from eastwest.config import Workload
from eastwest.settings import Settings
from eastwest.west import jobs
from eastwest.west.protocol import check_name

MAX_RANGE_DAYS = 31
FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(2099, 12, 31)
FORM_KEYS = ("start_date", "end_date", "hub")


class PlanError(ValueError):
    """A request that cannot be planned; the message names the field."""


@dataclass(frozen=True)
class Plan:
    """Everything a run needs to know; travels between tasks as a dict (XCom)."""

    dag_id: str
    scope: str
    run_key: str
    hub: str
    job: str
    params: dict[str, Any] = field(default_factory=dict)
    start: str | None = None  # naive UTC ISO timestamps bounding the interval [start, end)
    end: str | None = None
    start_day: str | None = None  # local calendar days of the target partition [start_day, end_day)
    end_day: str | None = None

    @property
    def interval(self) -> bool:
        return self.start is not None

    @property
    def days(self) -> list[date]:
        """The local days of the interval (one ``{{ ds }}`` each)."""
        if self.start_day is None or self.end_day is None:
            return []
        first, last = date.fromisoformat(self.start_day), date.fromisoformat(self.end_day)
        return [first + timedelta(days=i) for i in range((last - first).days)]

    def describe(self) -> str:
        if self.interval:
            return f"{self.start_day} .. {self.end_day} (local days, end exclusive)"
        return "full snapshot"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        return cls(**data)


def _check_day(what: str, value: Any) -> date:
    try:
        day = value if isinstance(value, date) else date.fromisoformat(str(value))
    except (TypeError, ValueError):
        raise PlanError(f"{what} {str(value)[:40]!r} is not a date (YYYY-MM-DD)") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise PlanError(f"{what} {day} is outside {FIRST_DAY}..{LAST_DAY}")
    return day


def make_plan(
    workload: Workload,
    spec: jobs.JobSpec,
    settings: Settings,
    *,
    dag_id: str,
    scope: str,
    hub: str,
    start_day: date | None = None,
    end_day: date | None = None,
    params: dict[str, Any] | None = None,
) -> Plan:
    """Validate a request and turn it into a plan; raises :class:`PlanError` naming the bad field."""
    try:
        check_name("scope", scope)
        check_name("dag id", dag_id)
    except ValueError as exc:
        raise PlanError(str(exc)) from None
    if hub not in settings.hubs:
        raise PlanError(f"hub {hub!r} is not one of the configured hubs: {', '.join(settings.hubs)}")
    given = {**workload.params, **(params or {})}
    if "tz" in spec.params and "tz" not in given:  # the job's days are the workload's days
        given["tz"] = workload.tz
    try:
        job_params = jobs.check_params(spec, given)
    except jobs.JobError as exc:
        raise PlanError(str(exc)) from None
    common: dict[str, Any] = {"dag_id": dag_id, "scope": scope, "hub": hub, "job": workload.job, "params": job_params}
    if not workload.interval:
        return Plan(run_key=f"{dag_id}.{scope}.snapshot", **common)
    if start_day is None or end_day is None:
        raise PlanError("this workload is partitioned by time; the run needs a first and a last day")
    start_day, end_day = _check_day("first day", start_day), _check_day("end day", end_day)
    if end_day <= start_day:
        raise PlanError(f"the last day must not be before the first day ({start_day})")
    if (end_day - start_day).days > MAX_RANGE_DAYS:
        raise PlanError(f"a run covers at most {MAX_RANGE_DAYS} days; split {start_day}..{end_day}")
    tz, utc = ZoneInfo(workload.tz), ZoneInfo("UTC")

    def utc_bound(day: date) -> str:
        return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(utc).replace(tzinfo=None).isoformat()

    return Plan(
        run_key=f"{dag_id}.{scope}.{start_day:%Y%m%d}-{end_day:%Y%m%d}",
        start=utc_bound(start_day),
        end=utc_bound(end_day),
        start_day=start_day.isoformat(),
        end_day=end_day.isoformat(),
        **common,
    )


def scheduled_plan(
    workload: Workload,
    spec: jobs.JobSpec,
    settings: Settings,
    *,
    dag_id: str,
    hub: str,
    data_interval_start: datetime | None,
    data_interval_end: datetime | None,
) -> Plan:
    """The plan of a scheduled run: the local days its data interval covers (scope ``nightly``)."""
    if not workload.interval:
        return make_plan(workload, spec, settings, dag_id=dag_id, scope="nightly", hub=hub)
    if data_interval_start is None or data_interval_end is None:
        raise PlanError(
            f"this run has no data interval; trigger {dag_id} with a logical date (the day after the day to "
            "process), or use an analyst DAG for ad-hoc ranges"
        )
    tz = ZoneInfo(workload.tz)
    return make_plan(
        workload,
        spec,
        settings,
        dag_id=dag_id,
        scope="nightly",
        hub=hub,
        start_day=data_interval_start.astimezone(tz).date(),
        end_day=data_interval_end.astimezone(tz).date(),
    )


def form_value(spec: jobs.JobSpec, name: str, value: Any) -> Any:
    """A form field's value as the job parameter it stands for (lists are typed comma-separated)."""
    if spec.params[name]["type"] == "array" and isinstance(value, str | type(None)):
        return [v.strip() for v in (value or "").split(",") if v.strip()]
    return value


def requested_plan(
    workload: Workload, spec: jobs.JobSpec, settings: Settings, *, dag_id: str, conf: dict[str, Any]
) -> Plan:
    """The plan of an analyst's request; its scope is a digest of the normalised request."""
    accepted = (*FORM_KEYS, *workload.form)
    unknown = sorted(set(conf) - set(accepted))
    if unknown:
        raise PlanError(f"unknown field(s) {', '.join(unknown)} in the run's conf; accepted: {', '.join(accepted)}")
    try:
        params = {name: form_value(spec, name, conf.get(name)) for name in workload.form if conf.get(name) is not None}
        normalised = jobs.check_params(spec, params, fill_defaults=False)
    except jobs.JobError as exc:
        raise PlanError(str(exc)) from None
    start_day = end_day = None
    if workload.interval:
        if not conf.get("start_date"):
            raise PlanError("start_date is required (YYYY-MM-DD)")
        start_day = _check_day("start_date", conf["start_date"])
        end_day = _check_day("end_date", conf.get("end_date") or start_day) + timedelta(days=1)
    request = {"start": str(start_day), "end": str(end_day), "job": workload.job, "params": normalised}
    key = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:12]
    return make_plan(
        workload,
        spec,
        settings,
        dag_id=dag_id,
        scope=f"analyst-{key}",
        hub=str(conf.get("hub") or settings.default_hub),
        start_day=start_day,
        end_day=end_day,
        params=normalised,
    )
