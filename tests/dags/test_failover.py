"""A test-only DAG: the analyst workload with quick retries and a short failover, eight runs at once.

``tests/test_placement_stack.py`` kills hubs under its runs; a one-second retry delay and a six-second
failover keep that test short. Everything else is the product's DAG factory.
"""

from datetime import timedelta

from eastwest import SqlInput, Target, Workload
from eastwest.airflow import east_west_dag

kpis = Workload(
    job="daily_kpis",
    inputs=SqlInput("readings", sql="source/extract_readings.sql", time_column="ts"),
    target=Target("daily_kpis", keys=("day", "enterprise_id", "machine_id"), partition_column="day"),
    form=("enterprise_ids",),
)

dag = east_west_dag(
    "test_failover",
    kpis,
    schedule=None,
    tags=["test"],
    max_active_runs=8,
    failover_after=timedelta(seconds=6),
    default_args={"retries": 3, "retry_delay": timedelta(seconds=1), "retry_exponential_backoff": False},
)
