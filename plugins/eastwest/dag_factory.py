"""Build the east → west → east task chain that every DAG of this project uses.

    plan → extract → ship → compute (on the hub) → fetch → validate → publish
                       └──────────── cleanup (teardown) ────────────┘ → report (teardown)

DAG files only choose how the plan is made (from the data interval, or from an analyst's form) and
call :func:`east_west_pipeline`. Heavy libraries are imported inside the steps, never here.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException, get_current_context
from airflow.sdk import task

from eastwest import pipeline
from eastwest.operators import WestJobOperator
from eastwest.pipeline import Plan

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


@task(execution_timeout=STEP_TIMEOUT)
def extract(plan: dict) -> dict:
    """Stream the interval from the east source into a compressed Arrow file."""
    return pipeline.extract(Plan.from_dict(plan))


@task(execution_timeout=STEP_TIMEOUT)
def ship(plan: dict) -> dict:
    """Send the Arrow file to the hub; verified there (SHA-256, bytes, rows) before it is renamed."""
    return pipeline.ship(Plan.from_dict(plan))


@task(execution_timeout=STEP_TIMEOUT)
def fetch(plan: dict) -> dict:
    """Bring the result back east, verified the same way."""
    return pipeline.fetch(Plan.from_dict(plan))


@task(execution_timeout=STEP_TIMEOUT)
def validate(plan: dict) -> dict:
    """Validate with the job's Great Expectations suite; a failure quarantines and does not retry."""
    try:
        return pipeline.validate(Plan.from_dict(plan))
    except pipeline.ValidationFailed as exc:
        raise AirflowFailException(str(exc)) from exc


@task(execution_timeout=STEP_TIMEOUT)
def publish(plan: dict) -> dict:
    """Replace the interval's warehouse partition in one transaction."""
    return pipeline.publish(Plan.from_dict(plan))


@task(execution_timeout=STEP_TIMEOUT)
def cleanup(plan: dict) -> dict:
    """Remove the run's scratch files on the hub and locally."""
    return pipeline.cleanup(Plan.from_dict(plan))


@task(execution_timeout=STEP_TIMEOUT)
def report(plan: dict) -> dict:
    """Write the run report (JSON and HTML) from every step's metrics, whatever their outcome."""
    ti = get_current_context()["ti"]
    steps = {name: ti.xcom_pull(task_ids=name) for name in ("extract", "ship", "fetch", "validate", "publish")}
    parsed = Plan.from_dict(plan)
    summary = pipeline.summarize(parsed, steps)
    summary["report"] = str(pipeline.write_report(parsed, summary))
    for key, value in summary.items():
        log.info("%-24s %s", key, value)
    return summary


def plan_or_fail(make: Any) -> dict:
    """Build a plan; a request that is wrong fails at once instead of being retried."""
    try:
        return make()
    except (ValueError, KeyError) as exc:
        raise AirflowFailException(f"invalid request: {exc}") from exc


def east_west_pipeline(plan: Any) -> None:
    """Wire the steps after ``plan`` (the output of a task returning ``Plan.to_dict()``)."""
    extracted = extract(plan)
    shipped = ship(plan)
    compute = WestJobOperator(
        task_id="compute", plan=plan, timeout=int(JOB_TIMEOUT.total_seconds()), execution_timeout=JOB_TIMEOUT
    )
    fetched = fetch(plan)
    validated = validate(plan)
    published = publish(plan)
    cleaned = cleanup(plan)
    reported = report(plan)
    extracted >> shipped >> compute >> fetched >> validated >> published >> cleaned >> reported
    cleaned.as_teardown(setups=[extracted, shipped])
    reported.as_teardown(setups=extracted)
