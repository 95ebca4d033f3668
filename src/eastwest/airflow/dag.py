"""Turn a declared workload into a DAG: plan → extract → ship → compute → fetch → validate → publish.

    plan → extract → ship → compute (on the hub) → fetch → validate → publish
                      └──────────── cleanup (teardown) ────────────┘ → report (teardown)

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
from airflow.sdk import DAG, CronDataIntervalTimetable, Param, task

from eastwest.airflow.operators import WestJobOperator
from eastwest.config import Workload, WorkloadError
from eastwest.east import connections, sources, steps, warehouse
from eastwest.east import plan as plans
from eastwest.east import report as reports
from eastwest.east.plan import Plan
from eastwest.settings import Project, get_settings
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
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
#: Errors that retrying cannot fix: the task fails at once, saying what to do.
FINAL = (
    plans.PlanError,
    steps.ValidationFailed,
    steps.InputChanged,
    WorkloadError,
    sources.InputError,
    warehouse.PublishError,
    connections.ConnectionNotFound,
    JobError,
)


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


def _form(workload: Workload, spec: Any, hubs: Sequence[str], default_hub: str) -> dict[str, Param]:
    fields: dict[str, Param] = {}
    if workload.interval:
        fields["start_date"] = Param(
            "2026-11-24", type="string", format="date", pattern=DATE_PATTERN, title="First day",
            description=f"First local day ({workload.tz}), YYYY-MM-DD",
        )  # fmt: skip
        fields["end_date"] = Param(
            None, type=["null", "string"], format="date", pattern=DATE_PATTERN, title="Last day",
            description=f"Last local day, inclusive (empty: the first day); at most {plans.MAX_RANGE_DAYS} days",
        )  # fmt: skip
    fields["hub"] = Param(default_hub, enum=list(hubs), title="Western hub")
    for name in workload.form:
        fields[name] = form_param(spec.params[name])
    return fields


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
) -> DAG:
    """Build the DAG of ``workload``: scheduled on a cron in the workload's time zone, or (``schedule=None``)
    triggered with a form of first day, last day, hub and the workload's ``form`` parameters.

    :param dag_id: the DAG's id.
    :param workload: the declaration (checked here, when the DAG file is parsed).
    :param schedule: a cron expression; each run covers the local days of its data interval.
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
    with DAG(
        dag_id=dag_id,
        doc_md=doc_md,
        schedule=CronDataIntervalTimetable(schedule, timezone=workload.tz) if schedule is not None else None,
        start_date=start_date or pendulum.datetime(2026, 11, 1, tz=workload.tz),
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=dagrun_timeout,
        default_args={**DEFAULT_ARGS, **(default_args or {})},
        tags=["eastwest", *tags],
        params=_form(workload, spec, settings.hubs, settings.default_hub) if not scheduled else {
            "hub": Param(settings.default_hub, enum=list(settings.hubs), title="Western hub"),
        },
    ) as dag:  # fmt: skip

        @task(task_id="plan", retries=0, execution_timeout=timedelta(minutes=5))
        def plan(params: Any = None, data_interval_start: Any = None, data_interval_end: Any = None) -> dict:
            """Validate the request once more and turn it into a plan (a bad request fails without retries)."""
            conf = dict(params or {})
            if scheduled:
                made = lambda: plans.scheduled_plan(  # noqa: E731
                    workload, spec, settings, dag_id=dag_id, hub=str(conf.get("hub") or settings.default_hub),
                    data_interval_start=data_interval_start, data_interval_end=data_interval_end,
                )  # fmt: skip
            else:
                made = lambda: plans.requested_plan(workload, spec, settings, dag_id=dag_id, conf=conf)  # noqa: E731
            try:
                return made().to_dict()
            except (plans.PlanError, ValueError, KeyError, OverflowError) as exc:
                raise AirflowFailException(f"invalid request: {exc}") from exc

        def step(name: str, func: Callable[[steps.RunContext, Plan], dict], doc: str) -> Any:
            @task(task_id=name, execution_timeout=STEP_TIMEOUT, doc_md=doc)
            def run(plan: Any) -> dict:
                return _final(lambda: func(ctx, Plan.from_dict(plan)))

            return run

        @task(task_id="report", execution_timeout=STEP_TIMEOUT)
        def report(plan: Any) -> dict:
            """Write the run report (JSON and HTML) from every step's metrics, whatever their outcome."""
            ti = get_current_context()["ti"]
            metrics = {name: ti.xcom_pull(task_ids=name) for name in reports.STEPS}
            parsed = Plan.from_dict(plan)
            summary = reports.summarize(ctx, parsed, metrics)
            reports.write_report(ctx, parsed, summary)
            for key, value in summary.items():
                log.info("%-24s %s", key, value)
            return summary

        planned = plan()
        extracted = step("extract", steps.extract, "Stream every input from the east into zstd Arrow chunks.")(planned)
        shipped = step("ship", steps.ship, "Send the job bundle and the inputs; the hub verifies each.")(planned)
        compute = WestJobOperator(
            task_id="compute", plan=planned, timeout=int(JOB_TIMEOUT.total_seconds()), execution_timeout=JOB_TIMEOUT
        )
        fetched = step("fetch", steps.fetch, "Bring the result back east, verified.")(planned)
        validated = step("validate", steps.validate, "Validate with the suite; a failure quarantines.")(planned)
        published = step("publish", steps.publish, "Replace the run's partition in one transaction.")(planned)
        cleaned = step("cleanup", steps.cleanup, "Remove the run's scratch files on the hub and locally.")(planned)
        reported = report(planned)
        extracted >> shipped >> compute >> fetched >> validated >> published >> cleaned >> reported
        cleaned.as_teardown(setups=[extracted, shipped])
        reported.as_teardown(setups=extracted)
    dag.fileloc = fileloc
    return dag
