"""Turn a declared workload into a DAG: plan → wait → extract → place → ship → compute → fetch → validate → publish.

    plan → wait_for_data → extract → place → ship ─┬→ compute_<hub> (one per hub, in its pool) ─┬→ fetch → validate → publish
                                                   └→ …  (ship branches to the placed hub's)   ─┘
                                      └──────────────── cleanup (teardown) ────────────────┘ → report (teardown)

:func:`east_west_dag` checks the declaration when the DAG file is parsed (a wrong one is an import
error naming the field), builds the trigger form of an unscheduled DAG from the job's declared
parameters, and wires thin tasks around :mod:`eastwest.east.steps`. Heavy libraries are imported
inside the steps, never here.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException, get_current_context
from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, CronDataIntervalTimetable, Param, task

from eastwest.airflow.operators import WestJobOperator
from eastwest.airflow.wait import WaitForData
from eastwest.config import ModelTarget, Workload, WorkloadError
from eastwest.east import connections, placing, sources, steps, warehouse
from eastwest.east import plan as plans
from eastwest.east import report as reports
from eastwest.east.plan import Plan
from eastwest.hub import placement
from eastwest.settings import POLICIES, Project, Settings, get_settings, pool_name
from eastwest.west.jobs import JobError

log = logging.getLogger(__name__)

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "eastwest",
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "execution_timeout": timedelta(minutes=30),
}
STEP_TIMEOUT = timedelta(minutes=30)
JOB_TIMEOUT = timedelta(hours=2)
#: How long a scheduled DAG's runs wait for their data by default (unscheduled DAGs: not at all).
WAIT_FOR_DATA = timedelta(hours=2)
DATA_POLL_INTERVAL = timedelta(minutes=5)
#: How long a compute step waits for an unreachable hub before it counts as failed (and the
#: retry of an ``auto`` run moves to another hub).
FAILOVER_AFTER = timedelta(minutes=2)
#: Errors that retrying cannot fix: the task fails at once, saying what to do.
FINAL = (
    placement.PlacementError,
    plans.PlanError,
    steps.ValidationFailed,
    steps.InputChanged,
    WorkloadError,
    sources.MissingData,  # the run waited for the data first (wait_for_data)
    sources.InputError,
    warehouse.PublishError,
    connections.ConnectionNotFound,
    JobError,
)


def model_asset(model: str) -> Asset:
    """The Airflow asset of a registered model: training publishes to it, inference runs on it."""
    return Asset(name=f"model_{model}", uri=f"eastwest://models/{model}", group="model")


def _final(step: Callable[[], Any]) -> Any:
    try:
        return step()
    except FINAL as exc:
        raise AirflowFailException(str(exc)) from exc


def form_param(schema: dict[str, Any]) -> Param:
    """An Airflow form field for a job parameter (a list is typed comma-separated)."""
    common = {k: schema[k] for k in ("title", "description") if k in schema}
    if schema["type"] == "array":
        item = schema.get("items", {}).get("pattern", "^[A-Za-z0-9_.-]+$").removeprefix("^").removesuffix("$")
        most = int(schema.get("maxItems", 1000))
        return Param(
            None,
            type=["null", "string"],
            pattern=f"^(({item})(,({item})){{0,{most - 1}}})?$",
            maxLength=most * 64,
            **common,
        )
    extra = {k: schema[k] for k in ("minimum", "maximum", "enum", "pattern", "maxLength") if k in schema}
    return Param(schema.get("default"), type=schema["type"], **extra, **common)


def _placement_fields(settings: Settings, hub: str, policy: str, deadline_minutes: int | None) -> dict[str, Param]:
    return {
        "hub": Param(
            hub, enum=list(settings.hub_choices), title="Western hub",
            description="auto: the hub where the run finishes soonest (fastest) or costs least (cheapest)",
        ),
        "policy": Param(policy, enum=list(POLICIES), title="Placement policy", description="for hub auto"),
        "deadline_minutes": Param(
            deadline_minutes, type=["null", "integer"], minimum=1, maximum=plans.MAX_DEADLINE_MINUTES,
            title="Deadline (minutes)",
            description="with cheapest: the cheapest hub that finishes within this many minutes",
        ),
    }  # fmt: skip


def _form(workload: Workload, spec: Any, settings: Settings, placed: dict[str, Param]) -> dict[str, Param]:
    fields: dict[str, Param] = {}
    if workload.interval:
        last = plans.last_day()  # the plan enforces the same bound when the run starts
        days = plans.day_pattern(last)
        fields["start_date"] = Param(
            "2026-11-24", type="string", format="date", pattern=days, title="First day",
            description=f"First local day ({workload.tz}), YYYY-MM-DD, from {plans.FIRST_DAY} to {last}",
        )  # fmt: skip
        fields["end_date"] = Param(
            None, type=["null", "string"], format="date", pattern=days, title="Last day",
            description=f"Last local day, inclusive (empty: the first day); at most {plans.MAX_RANGE_DAYS} days",
        )  # fmt: skip
    fields.update(placed)
    for name in workload.form:
        fields[name] = form_param(spec.params[name])
    return fields


def _event_day(events: Any) -> str | None:
    """The latest ``through`` day of the asset events that triggered this run (training's last day)."""
    events = events or {}
    days = [
        str(event.extra["through"])
        for asset_events in events.values()
        for event in asset_events
        if isinstance(getattr(event, "extra", None), dict) and event.extra.get("through")
    ]
    return max(days) if days else None


def _register_task(ctx: steps.RunContext, target: ModelTarget) -> Any:
    """The publish step of a training workload: register and gate the model, then announce it on its asset."""
    asset = model_asset(target.model)

    @task(task_id="publish", execution_timeout=STEP_TIMEOUT, outlets=[asset], doc_md=_register_task.__doc__)
    def publish(plan: Any) -> dict:
        parsed = Plan.from_dict(plan)
        done = _final(lambda: steps.publish(ctx, parsed))
        extra = {k: done[k] for k in ("name", "version", "status", "champion", "changed")}
        if parsed.days:  # the last day the model learned from: what a run it triggers forecasts from
            extra["through"] = parsed.days[-1].isoformat()
        get_current_context()["outlet_events"][asset].extra = extra
        return done

    return publish


def east_west_dag(
    dag_id: str,
    workload: Workload,
    *,
    schedule: str | None = None,
    start_date: datetime | None = None,
    doc_md: str | None = None,
    tags: Sequence[str] = (),
    default_args: dict[str, Any] | None = None,
    dagrun_timeout: timedelta = timedelta(hours=4),
    wait_for_data: timedelta | None = None,
    data_poll_interval: timedelta = DATA_POLL_INTERVAL,
    hub: str | None = None,
    placement_policy: str | None = None,
    deadline: timedelta | None = None,
    max_active_runs: int = 1,
    failover_after: timedelta = FAILOVER_AFTER,
) -> DAG:
    """Build the DAG of ``workload``: scheduled on a cron in the workload's time zone, or (``schedule=None``)
    triggered with a form of first day, last day, hub and the workload's ``form`` parameters.

    :param dag_id: the DAG's id.
    :param workload: the declaration (checked here, when the DAG file is parsed).
    :param schedule: a cron expression; each run covers the local days of its data interval.
    :param wait_for_data: how long a run waits, deferred (no worker slot), for its inputs to be
        complete before it fails once naming what is missing; by default 2 hours for a scheduled DAG
        and none for an unscheduled one. Backfill runs never wait. Must be shorter than ``dagrun_timeout``.
    :param data_poll_interval: how often a waiting run checks its inputs again.
    :param hub: the hub runs ask for unless the form or conf says otherwise: ``auto`` (default
        ``EASTWEST_DEFAULT_HUB``, else auto) or a configured hub.
    :param placement_policy: how ``hub=auto`` runs choose their hub: ``fastest`` or ``cheapest``
        (default ``EASTWEST_PLACEMENT_POLICY``, else fastest); the form and the conf may override it.
    :param deadline: with ``cheapest``, the cheapest hub that finishes within this (whole minutes).
    :param max_active_runs: runs of this DAG at once (analyst DAGs: several requests in parallel).
    :param failover_after: how long a compute step waits for an unreachable hub before it counts
        as failed; the retry of an ``auto`` run then goes to another hub.
    """
    import pendulum

    fileloc = sys._getframe(1).f_code.co_filename  # the DAG file, as Airflow finds it
    project = Project.for_dag_file(fileloc)
    spec = workload.check(project)
    settings = get_settings(project)
    for conn_id in workload.connection_ids():
        if not connections.exists(conn_id):
            raise WorkloadError(
                f"Workload: Airflow connection {conn_id!r} is not defined; add it (Admin → Connections or "
                f"AIRFLOW_CONN_{conn_id.upper()}) or use east_source / east_warehouse"
            )
    ctx = steps.RunContext(dag_id=dag_id, workload=workload, project=project, settings=settings)
    scheduled = schedule is not None
    wait = (WAIT_FOR_DATA if scheduled else timedelta(0)) if wait_for_data is None else wait_for_data
    if not isinstance(wait, timedelta) or not timedelta(0) <= wait < dagrun_timeout:
        raise WorkloadError(
            f"east_west_dag {dag_id!r}: wait_for_data must be a timedelta from 0 to less than dagrun_timeout "
            f"({dagrun_timeout}), got {wait_for_data!r}"
        )
    if not isinstance(data_poll_interval, timedelta) or data_poll_interval <= timedelta(0):
        raise WorkloadError(f"east_west_dag {dag_id!r}: data_poll_interval must be a positive timedelta")
    hub = hub or settings.default_hub
    if hub not in settings.hub_choices:
        raise WorkloadError(
            f"east_west_dag {dag_id!r}: hub {hub!r} is not 'auto' or a configured hub ({', '.join(settings.hubs)}; "
            "EASTWEST_HUBS lists them)"
        )
    policy = placement_policy or settings.default_policy
    if policy not in POLICIES:
        raise WorkloadError(f"east_west_dag {dag_id!r}: placement_policy must be one of {', '.join(POLICIES)}")
    deadline_minutes = None
    if deadline is not None:
        if not isinstance(deadline, timedelta) or not timedelta(minutes=1) <= deadline <= timedelta(days=1):
            raise WorkloadError(f"east_west_dag {dag_id!r}: deadline must be a timedelta from 1 minute to 1 day")
        if policy != "cheapest":
            raise WorkloadError(f"east_west_dag {dag_id!r}: a deadline goes with placement_policy='cheapest'")
        deadline_minutes = int(deadline.total_seconds() // 60)
    placement_params = _placement_fields(settings, hub, policy, deadline_minutes)
    params = _form(workload, spec, settings, placement_params) if not scheduled else placement_params
    timetable: Any = CronDataIntervalTimetable(schedule, timezone=workload.tz) if schedule is not None else None
    if timetable is not None and workload.models_awaited:  # a new model runs it too (the UI shows the lineage)
        timetable = AssetOrTimeSchedule(timetable=timetable, assets=[model_asset(m) for m in workload.models_awaited])
    with DAG(
        dag_id=dag_id,
        doc_md=doc_md,
        schedule=timetable,
        # Catchup is off: the start date only bounds the days a manual run or a backfill may cover.
        start_date=start_date or pendulum.datetime(2026, 1, 1, tz=workload.tz),
        catchup=False,
        max_active_runs=max_active_runs,
        dagrun_timeout=dagrun_timeout,
        default_args={**DEFAULT_ARGS, **(default_args or {})},
        tags=["eastwest", *tags],
        params=params,
    ) as dag:

        @task(task_id="plan", retries=0, execution_timeout=timedelta(minutes=5))
        def plan(
            params: Any = None,
            data_interval_start: Any = None,
            data_interval_end: Any = None,
            dag_run: Any = None,
            triggering_asset_events: Any = None,
        ) -> dict:
            """Validate the request once more and turn it into a plan: any error fails at once, without retries."""
            triggered = getattr(dag_run, "run_type", None) == "asset_triggered"
            try:
                return plans.plan_run(
                    workload, spec, settings, dag_id=dag_id, scheduled=scheduled, conf=dict(params or {}),
                    data_interval_start=data_interval_start, data_interval_end=data_interval_end,
                    asset_triggered_at=getattr(dag_run, "run_after", None) if triggered else None,
                    asset_through=_event_day(triggering_asset_events) if triggered else None,
                ).to_dict()  # fmt: skip
            except Exception as exc:  # a bad request never gets better by retrying
                what = str(exc) if isinstance(exc, plans.PlanError) else f"{type(exc).__name__}: {exc}"
                raise AirflowFailException(
                    f"invalid request for {dag_id}: {what}. Nothing ran; fix the "
                    f"{'trigger form or the run conf' if not scheduled else 'logical date or the run conf'} "
                    "and start a new run (retrying this one cannot help)"
                ) from exc

        def step(name: str, func: Callable[[steps.RunContext, Plan], dict], doc: str, **kwargs: Any) -> Any:
            @task(task_id=name, execution_timeout=STEP_TIMEOUT, doc_md=doc, **kwargs)
            def run(plan: Any) -> dict:
                return _final(lambda: func(ctx, Plan.from_dict(plan)))

            return run

        @task(task_id="report", execution_timeout=STEP_TIMEOUT)
        def report(plan: Any) -> dict:
            """Write the run report (JSON and HTML, and the document the Report tab shows) from every step's metrics,
            whatever their outcome."""
            from eastwest.ui import pages

            context = get_current_context()
            ti = context["ti"]
            metrics = {name: ti.xcom_pull(task_ids=name) for name in reports.STEPS}
            metrics["ship"] = ti.xcom_pull(task_ids="ship", key="transfer")
            parsed = Plan.from_dict(plan)
            summary = reports.summarize(ctx, parsed, metrics)
            reports.record_usage(ctx, parsed, summary, run_id=str(context["run_id"]))
            document = reports.document(ctx, parsed, summary, metrics)
            reports.write_report(ctx, parsed, summary)
            page = pages.report_page(document, tasks=[], standalone=True)  # the Report tab's page, for make run
            (ctx.report_dir(parsed) / "report.html").write_text(page)
            ti.xcom_push(key=reports.DOCUMENT_KEY, value=document)  # what the Report tab shows
            for key, value in summary.items():
                log.info("%-24s %s", key, value)
            return summary

        planned = plan()
        waited = WaitForData(
            task_id="wait_for_data", plan=planned, run_context=ctx, wait=wait, poll_interval=data_poll_interval,
            execution_timeout=wait + STEP_TIMEOUT, doc_md=WaitForData.__doc__,
        )  # fmt: skip
        extracted = step("extract", steps.extract, "Stream every input from the east into zstd Arrow chunks.")(planned)
        waited >> extracted
        placed = step("place", placing.place, "Choose the hub by the run's policy; the table says why.")(planned)

        @task.branch(task_id="ship", execution_timeout=STEP_TIMEOUT)
        def ship(plan: Any) -> list[str]:
            """Send the job bundle and the inputs to the run's hub (the hub verifies each); go on to its compute task."""
            metrics = _final(lambda: steps.ship(ctx, Plan.from_dict(plan)))
            get_current_context()["ti"].xcom_push(key="transfer", value=metrics)
            return [f"compute_{metrics['hub']}"]

        shipped = ship(planned)
        computes = [
            WestJobOperator(
                task_id=f"compute_{hub}", plan=planned, run_context=ctx, timeout=int(JOB_TIMEOUT.total_seconds()),
                execution_timeout=JOB_TIMEOUT, pool=pool_name(hub), lost_after=failover_after.total_seconds(),
                doc_md=f"Run the job on {hub} (pool {pool_name(hub)}), or where the run failed over to.",
            )
            for hub in settings.hubs
        ]  # fmt: skip
        fetched = step(
            "fetch", steps.fetch, "Bring the result back east, verified.", trigger_rule="none_failed_min_one_success"
        )(planned)
        validated = step("validate", steps.validate, "Validate with the suite; a failure quarantines.")(planned)
        if isinstance(workload.target, ModelTarget):
            published = _register_task(ctx, workload.target)(planned)
        else:
            published = step("publish", steps.publish, "Replace the run's partition in one transaction.")(planned)
        cleaned = step("cleanup", steps.cleanup, "Remove the run's scratch files on the hubs and locally.")(planned)
        reported = report(planned)
        extracted >> placed >> shipped >> computes >> fetched >> validated >> published >> cleaned >> reported
        cleaned.as_teardown(setups=[extracted, shipped])
        reported.as_teardown(setups=extracted)
    dag.fileloc = fileloc
    return dag
