"""A test-only DAG: runs the daily_kpis job on a hub for a run that shipped nothing, so the job fails."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from eastwest.operators import WestJobOperator

with DAG(
    "test_west_job_failure",
    schedule=None,
    start_date=pendulum.datetime(2026, 11, 1),
    catchup=False,
    tags=["test"],
    default_args={"retries": 0},
) as dag:

    @task
    def plan() -> dict:
        from datetime import date

        from eastwest.pipeline import make_plan

        return make_plan(
            scope="nothing-shipped",
            start_day=date(2026, 11, 24),
            end_day=date(2026, 11, 25),
            hub="west_guizhou",
            job="daily_kpis",
        ).to_dict()

    WestJobOperator(task_id="compute", plan=plan())
