"""
### Analyst request: KPIs for a date range, hub and enterprises of your choice

Trigger this DAG from the UI and fill in the form. Every field is checked by the form before a run
is created (dates as `YYYY-MM-DD`, the hub from the configured list, enterprise ids as
`E0001,E0002`) and again by the pipeline. The run ships the chosen days to the chosen western hub,
runs `daily_kpis` there, validates and publishes the result to `daily_kpis` under scope
`analyst-<request digest>` (the same request replaces its own rows), and writes a report whose
path is in the `report` task's log and return value.
"""

from eastwest import SqlInput, Target, Workload
from eastwest.airflow import east_west_dag

kpis = Workload(
    job="daily_kpis",
    inputs=SqlInput("readings", sql="source/extract_readings.sql", time_column="ts"),
    target=Target("daily_kpis", keys=("day", "enterprise_id", "machine_id"), partition_column="day"),
    form=("enterprise_ids",),
)

dag = east_west_dag("east_west_analyst", kpis, schedule=None, doc_md=__doc__, tags=["analyst"])
