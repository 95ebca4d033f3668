"""
### Analyst request: KPIs for a date range, hub and enterprises of your choice

Trigger this DAG from the UI and fill in the form. Every field is checked by the form before a run
is created (dates as `YYYY-MM-DD`, hub and job from the registered lists, enterprise ids as
`E0001,E0002`) and again by the pipeline. The run ships the chosen days to the chosen western hub,
runs the job there, validates and publishes the result to `daily_kpis` under scope
`analyst-<request digest>` (the same request replaces its own rows), and writes a report whose path
is in the `report` task's log and return value.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param, task

from eastwest.dag_factory import DEFAULT_ARGS, east_west_pipeline, plan_or_fail
from eastwest.settings import JOBS, LOCAL_TZ, get_settings

DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
ENTERPRISES_PATTERN = r"^(E[0-9]{4}(,E[0-9]{4}){0,99})?$"

with DAG(
    dag_id="east_west_analyst",
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2026, 11, 1, tz=LOCAL_TZ),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=4),
    default_args=DEFAULT_ARGS,
    tags=["eastwest", "analyst"],
    params={
        "start_date": Param(
            "2026-11-24",
            type="string",
            format="date",
            pattern=DATE_PATTERN,
            title="First day",
            description="First local day (Asia/Shanghai), YYYY-MM-DD",
        ),
        "end_date": Param(
            None,
            type=["null", "string"],
            format="date",
            pattern=DATE_PATTERN,
            title="Last day",
            description="Last local day, inclusive (empty: same as the first day); at most 31 days",
        ),
        "hub": Param(get_settings().default_hub, enum=list(get_settings().hubs), title="Western hub"),
        "job": Param(JOBS[0], enum=list(JOBS), title="Job"),
        "enterprise_ids": Param(
            None,
            type=["null", "string"],
            pattern=ENTERPRISES_PATTERN,
            maxLength=599,
            title="Enterprises",
            description="Optional comma-separated enterprise ids, e.g. E0001,E0042 (empty: all)",
        ),
    },
) as dag:

    @task
    def plan(params=None) -> dict:
        """Validate the form once more and turn it into a plan."""
        from eastwest.pipeline import analyst_plan

        return plan_or_fail(lambda: analyst_plan(dict(params)).to_dict())

    east_west_pipeline(plan())
