"""A run's plan: which days, hub, job, parameters and scope, validated once and passed between tasks.

A scheduled run covers the local days of its data interval; an analyst's run covers the days of
the form, and its scope is a digest of the normalised request (list parameters de-duplicated and
sorted, values equal to the job's default left out), so the same request replaces its own rows.
A snapshot workload has no interval. Every field is checked here: :func:`plan_run`, which the DAG's
plan task calls, returns a :class:`Plan` or raises :class:`PlanError` naming the field and what to
do, whatever the run's conf holds; the DAG turns that into a failure without retries.

Days lie between :data:`FIRST_DAY` and :func:`last_day` (31 December of next year); the trigger
form enforces the same bound with :func:`day_pattern`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from eastwest.config import Workload
from eastwest.settings import POLICIES, Settings
from eastwest.west import jobs
from eastwest.west.protocol import check_name

MAX_RANGE_DAYS = 31
#: The first day a run may cover; the last is :func:`last_day`.
FIRST_DAY = date(2000, 1, 1)
#: The keys an analyst's request (the conf of a run of an unscheduled DAG) may hold, besides the
#: workload's ``form`` parameters.
FORM_KEYS = ("start_date", "end_date", "hub", "policy", "deadline_minutes")
#: The keys the conf of a run of a scheduled DAG may hold: its days come from the data interval.
SCHEDULED_KEYS = ("hub", "policy", "deadline_minutes")
#: The longest deadline a run may give placement (a day).
MAX_DEADLINE_MINUTES = 24 * 60
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def last_day(today: date | None = None) -> date:
    """The last day a run may cover: 31 December of the year after ``today`` (UTC, by default now).

    Far enough for any data that exists (and a year of forward-dated tests), near enough to refuse
    typos such as 2062 or the 9999-12-31 sentinel before anything runs.
    """
    return date((today or datetime.now(UTC).date()).year + 1, 12, 31)


def day_pattern(last: date | None = None) -> str:
    """A regular expression for ``YYYY-MM-DD`` days of the years ``FIRST_DAY.year``..``last.year``.

    JSON schema has no date range keyword that the Airflow form checks, so the trigger form bounds
    the year with this pattern (``format: date`` refuses days that do not exist, like 2026-02-30).
    """
    last_year = (last or last_day()).year
    if not FIRST_DAY.year <= last_year <= 2099 or FIRST_DAY.year % 100:
        raise ValueError(f"no day pattern for the years {FIRST_DAY.year}..{last_year}")
    tens, units = divmod(last_year - 2000, 10)
    years = ([f"[0-{tens - 1}][0-9]"] if tens else []) + [f"{tens}[0-{units}]"]
    return f"^20(?:{'|'.join(years)})-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])$"


def _shown(value: Any) -> str:
    """A short, safe rendering of any value for a message (``str`` of a huge int raises)."""
    try:
        text = value if isinstance(value, str) else str(value)
    except ValueError:
        text = f"<a {type(value).__name__}>"
    return repr(text[:40] + ("…" if len(text) > 40 else ""))


def utc_start(day: date, tz: str) -> datetime:
    """The start of local ``day`` in time zone ``tz``, as a naive UTC timestamp."""
    return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz)).astimezone(UTC).replace(tzinfo=None)


class PlanError(ValueError):
    """A request that cannot be planned; the message names the field."""


@dataclass(frozen=True)
class Plan:
    """Everything a run needs to know; travels between tasks as a dict (XCom)."""

    dag_id: str
    scope: str
    run_key: str
    hub: str  # a configured hub, or "auto": placement chooses (eastwest.east.placing)
    job: str
    params: dict[str, Any] = field(default_factory=dict)
    policy: str = "fastest"  # placement policy of an "auto" run
    deadline_s: int | None = None  # with "cheapest": the cheapest hub that finishes within this
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

    def day_bounds(self, tz: str) -> list[tuple[date, datetime, datetime]]:
        """Each local day of the interval with its naive UTC bounds ``[start, end)`` in time zone ``tz``."""
        return [(day, utc_start(day, tz), utc_start(day + timedelta(days=1), tz)) for day in self.days]

    def describe(self) -> str:
        if self.interval:
            return f"{self.start_day} .. {self.end_day} (local days, end exclusive)"
        return "full snapshot"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        return cls(**data)


def _check_day(what: str, value: Any, *, exclusive_end: bool = False) -> date:
    """A day between :data:`FIRST_DAY` and :func:`last_day` (the day after it for an exclusive end)."""
    if isinstance(value, date) and not isinstance(value, datetime):  # a datetime is a date too, not a day
        day = date(value.year, value.month, value.day)  # also from pendulum's Date
    elif isinstance(value, str) and _DAY.fullmatch(value):
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise PlanError(f"{what} {_shown(value)} is not a day of the calendar; use YYYY-MM-DD") from None
    else:
        raise PlanError(f"{what} {_shown(value)} is not a date; use YYYY-MM-DD")
    first, last = FIRST_DAY, last_day()
    if exclusive_end:
        first, last = first + timedelta(days=1), last + timedelta(days=1)
    if not first <= day <= last:
        shown = day - timedelta(days=1) if exclusive_end else day
        raise PlanError(
            f"{what} {shown} is outside {FIRST_DAY}..{last_day()}; choose a day in that range (data before "
            f"{FIRST_DAY.year} is not kept, and no data exists for days that far ahead)"
        )
    return day


def check_conf(conf: Any, accepted: tuple[str, ...]) -> dict[str, Any]:
    """The run's conf as a dict, refusing keys it may not hold (the message lists the accepted ones)."""
    if not isinstance(conf, Mapping):
        raise PlanError(f"the run's conf must be a JSON object with the keys {', '.join(accepted)}")
    unknown = sorted(_shown(k)[1:-1] for k in conf if k not in accepted)
    if unknown:
        raise PlanError(
            f"unknown field(s) {', '.join(unknown)} in the run's conf; accepted: {', '.join(accepted) or 'none'}"
        )
    return dict(conf)


def _hub(value: Any, settings: Settings) -> str:
    if value is None or value == "":
        return settings.default_hub
    if not isinstance(value, str) or value not in settings.hub_choices:
        raise PlanError(f"hub {_shown(value)} is not 'auto' or one of the configured hubs: {', '.join(settings.hubs)}")
    return value


def _placement(conf: Mapping[str, Any], settings: Settings) -> tuple[str, int | None]:
    """The run's placement policy and deadline (seconds) from ``policy`` and ``deadline_minutes``."""
    policy = conf.get("policy")
    if policy in (None, ""):
        policy = settings.default_policy
    if not isinstance(policy, str) or policy not in POLICIES:
        raise PlanError(f"policy {_shown(policy)} is not one of {', '.join(POLICIES)}")
    minutes = conf.get("deadline_minutes")
    if minutes in (None, ""):
        return policy, None
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= MAX_DEADLINE_MINUTES:
        raise PlanError(f"deadline_minutes {_shown(minutes)} must be a whole number from 1 to {MAX_DEADLINE_MINUTES}")
    if policy != "cheapest":
        raise PlanError("deadline_minutes goes with policy 'cheapest' (the cheapest hub that finishes in time)")
    return policy, minutes * 60


def _job_params(spec: jobs.JobSpec, params: dict[str, Any], *, fill_defaults: bool = True) -> dict[str, Any]:
    try:
        return jobs.check_params(spec, params, fill_defaults=fill_defaults)
    except (jobs.JobError, TypeError, ValueError, OverflowError) as exc:  # e.g. a number beyond float
        if isinstance(exc, jobs.JobError):
            raise PlanError(str(exc)) from None
        raise PlanError(f"a parameter of job {spec.name} has a value it cannot take ({type(exc).__name__})") from None


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
    policy: str = "fastest",
    deadline_s: int | None = None,
) -> Plan:
    """Validate a request and turn it into a plan; raises :class:`PlanError` naming the bad field."""
    try:
        check_name("scope", scope)
        check_name("dag id", dag_id)
    except ValueError as exc:
        raise PlanError(str(exc)) from None
    if not isinstance(hub, str) or hub not in settings.hub_choices:
        raise PlanError(f"hub {_shown(hub)} is not 'auto' or one of the configured hubs: {', '.join(settings.hubs)}")
    if policy not in POLICIES:
        raise PlanError(f"policy {_shown(policy)} is not one of {', '.join(POLICIES)}")
    given = {**workload.params, **(params or {})}
    if "tz" in spec.params and "tz" not in given:  # the job's days are the workload's days
        given["tz"] = workload.tz
    job_params = _job_params(spec, given)
    common: dict[str, Any] = {
        "dag_id": dag_id, "scope": scope, "hub": hub, "job": workload.job, "params": job_params, "policy": policy,
        "deadline_s": deadline_s,
    }  # fmt: skip
    if not workload.interval:
        return Plan(run_key=f"{dag_id}.{scope}.snapshot", **common)
    if start_day is None or end_day is None:
        raise PlanError("this workload is partitioned by time; the run needs a first and a last day")
    start_day = _check_day("first day", start_day)
    end_day = _check_day("end day", end_day, exclusive_end=True)
    if end_day <= start_day:
        raise PlanError(f"the last day must not be before the first day ({start_day})")
    if (end_day - start_day).days > MAX_RANGE_DAYS:
        raise PlanError(
            f"a run covers at most {MAX_RANGE_DAYS} days; split {start_day}..{end_day - timedelta(days=1)} "
            "into several runs"
        )
    return Plan(
        run_key=f"{dag_id}.{scope}.{start_day:%Y%m%d}-{end_day:%Y%m%d}",
        start=utc_start(start_day, workload.tz).isoformat(),
        end=utc_start(end_day, workload.tz).isoformat(),
        start_day=start_day.isoformat(),
        end_day=end_day.isoformat(),
        **common,
    )


def _local_day(what: str, moment: Any, tz: str) -> date:
    if not isinstance(moment, datetime):
        raise PlanError(f"the run's {what} {_shown(moment)} is not a point in time")
    try:
        return moment.astimezone(ZoneInfo(tz)).date()
    except (OverflowError, ValueError):  # e.g. 0001-01-01 west of UTC, or 9999-12-31 east of it
        raise PlanError(
            f"the run's {what} {_shown(moment)} is outside {FIRST_DAY}..{last_day()}; trigger it with a logical "
            "date in that range"
        ) from None


def scheduled_plan(
    workload: Workload,
    spec: jobs.JobSpec,
    settings: Settings,
    *,
    dag_id: str,
    hub: str,
    data_interval_start: datetime | None,
    data_interval_end: datetime | None,
    policy: str = "fastest",
    deadline_s: int | None = None,
    run_after: datetime | None = None,
    through: date | None = None,
) -> Plan:
    """The plan of a scheduled run: the local days its data interval covers (scope ``nightly``).

    ``run_after`` is given for runs that an asset event triggered: without a data interval of their
    own, they cover the day ``through`` (from the event), else the last complete local day before
    ``run_after``.
    """
    placed: dict[str, Any] = {"hub": hub, "policy": policy, "deadline_s": deadline_s}
    if not workload.interval:
        return make_plan(workload, spec, settings, dag_id=dag_id, scope="nightly", **placed)
    if (data_interval_start is None or data_interval_end is None) and run_after is not None:
        # an asset-triggered run (a new model, for example) has no data interval: it covers the day
        # its event names (the last day the model was trained on), else the last complete local
        # day before it was triggered, like the scheduled run after that day
        day = through or _local_day("trigger time", run_after, workload.tz) - timedelta(days=1)
        data_interval_start, data_interval_end = (
            datetime.combine(day, time(), ZoneInfo(workload.tz)),
            datetime.combine(day + timedelta(days=1), time(), ZoneInfo(workload.tz)),
        )
    if data_interval_start is None or data_interval_end is None:
        raise PlanError(
            f"this run has no data interval; trigger {dag_id} with a logical date (the day after the day to "
            "process), or use an analyst DAG for ad-hoc ranges"
        )
    return make_plan(
        workload,
        spec,
        settings,
        dag_id=dag_id,
        scope="nightly",
        **placed,
        start_day=_local_day("data interval start", data_interval_start, workload.tz),
        end_day=_local_day("data interval end", data_interval_end, workload.tz),
    )


def form_value(spec: jobs.JobSpec, name: str, value: Any) -> Any:
    """A form field's value as the job parameter it stands for (lists are typed comma-separated)."""
    if spec.params[name]["type"] == "array" and isinstance(value, str | type(None)):
        return [v.strip() for v in (value or "").split(",") if v.strip()]
    return value


def normalise(spec: jobs.JobSpec, params: dict[str, Any]) -> dict[str, Any]:
    """Checked job parameters in one canonical form: lists de-duplicated and sorted, defaults left out.

    Two requests that mean the same (``E0001`` and ``E0001,E0001``; an empty field and the job's
    default) normalise to the same parameters, hence the same scope and the same warehouse rows.
    """
    canonical: dict[str, Any] = {}
    for name, value in params.items():
        schema = spec.params[name]
        default = schema.get("default")
        if schema["type"] == "array":
            value = sorted(set(value))
            default = sorted(set(default)) if isinstance(default, list) else default
        if "default" in schema and value == default and type(value) is type(default):
            continue
        canonical[name] = value
    return canonical


def requested_plan(
    workload: Workload, spec: jobs.JobSpec, settings: Settings, *, dag_id: str, conf: dict[str, Any]
) -> Plan:
    """The plan of an analyst's request; its scope is a digest of the normalised request."""
    conf = check_conf(conf, (*FORM_KEYS, *workload.form))
    given = {name: form_value(spec, name, conf[name]) for name in workload.form if conf.get(name) is not None}
    normalised = normalise(spec, _job_params(spec, given, fill_defaults=False))
    start_day = end_day = None
    if workload.interval:
        if conf.get("start_date") in (None, ""):
            raise PlanError("start_date is required (YYYY-MM-DD)")
        start_day = _check_day("start_date", conf["start_date"])
        end = conf.get("end_date")
        end_day = (start_day if end in (None, "") else _check_day("end_date", end)) + timedelta(days=1)
    request = {"start": str(start_day), "end": str(end_day), "job": workload.job, "params": normalised}
    key = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:12]
    policy, deadline_s = _placement(conf, settings)
    return make_plan(
        workload,
        spec,
        settings,
        dag_id=dag_id,
        scope=f"analyst-{key}",
        hub=_hub(conf.get("hub"), settings),
        start_day=start_day,
        end_day=end_day,
        params=normalised,
        policy=policy,
        deadline_s=deadline_s,
    )


def plan_run(
    workload: Workload,
    spec: jobs.JobSpec,
    settings: Settings,
    *,
    dag_id: str,
    scheduled: bool,
    conf: Any,
    data_interval_start: Any = None,
    data_interval_end: Any = None,
    asset_triggered_at: Any = None,
    asset_through: Any = None,
) -> Plan:
    """The plan of one run, as the DAG's plan task makes it; raises only :class:`PlanError`.

    ``conf`` is the run's parameters (the DAG's params updated with the run's conf). A scheduled DAG
    takes only ``hub`` from it (its days come from the data interval); an unscheduled DAG takes the
    analyst's request (:func:`requested_plan`).
    """
    if not scheduled:
        return requested_plan(workload, spec, settings, dag_id=dag_id, conf=conf)
    conf = check_conf(conf, SCHEDULED_KEYS)
    policy, deadline_s = _placement(conf, settings)
    return scheduled_plan(
        workload,
        spec,
        settings,
        dag_id=dag_id,
        hub=_hub(conf.get("hub"), settings),
        data_interval_start=data_interval_start,
        data_interval_end=data_interval_end,
        policy=policy,
        deadline_s=deadline_s,
        run_after=asset_triggered_at,
        through=_check_day("the asset event's day", asset_through) if asset_through is not None else None,
    )
