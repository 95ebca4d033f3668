"""
### Nightly east → west → east KPIs

Every night at 00:30 Asia/Shanghai, for the local day that just ended (the data interval, snapped
to local midnights): extract the park's minute
telemetry from the east source, ship it to a western hub as zstd Arrow (verified by SHA-256 and row
count on both sides), run the registered `daily_kpis` Polars job there, bring the result back the
same way, validate it with `include/expectations/daily_kpis.json`, and replace that day's
`daily_kpis` partition (scope `nightly`) in the east warehouse. A rerun of the same day replaces
the same partition: nothing is duplicated. A failed validation publishes nothing and leaves the
result and the Great Expectations report in quarantine.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable, Param, task

from eastwest.dag_factory import DEFAULT_ARGS, east_west_pipeline, plan_or_fail
from eastwest.settings import JOBS, LOCAL_TZ, get_settings

with DAG(
    dag_id="east_west_nightly",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable("30 0 * * *", timezone=LOCAL_TZ),
    start_date=pendulum.datetime(2026, 11, 1, tz=LOCAL_TZ),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=4),
    default_args=DEFAULT_ARGS,
    tags=["eastwest", "nightly"],
    params={
        "hub": Param(
            get_settings().default_hub, enum=list(get_settings().hubs), description="Western hub to compute on"
        ),
        "job": Param(JOBS[0], enum=list(JOBS), description="Registered Polars job"),
    },
) as dag:

    @task
    def plan(data_interval_start=None, data_interval_end=None, params=None) -> dict:
        """Turn the data interval into the local day(s) to process."""
        from eastwest.pipeline import nightly_plan

        return plan_or_fail(
            lambda: nightly_plan(data_interval_start, data_interval_end, params["hub"], params["job"]).to_dict()
        )

    east_west_pipeline(plan())
