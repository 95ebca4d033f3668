"""
### Nightly east → west → east KPIs

Every night at 00:30 Asia/Shanghai, for the local day that just ended: extract the park's minute
telemetry from the east source, ship it to a western hub as zstd Arrow (verified by SHA-256 and
row count on both sides), run the `daily_kpis` Polars job there, bring the result back the same
way, validate it with `include/expectations/daily_kpis.json`, and replace that day's partition of
`daily_kpis` (scope `nightly`) in the east warehouse. A rerun replaces the same partition: nothing
is duplicated. A failed validation publishes nothing and leaves the result and the Great
Expectations report in quarantine.
"""

from eastwest import SqlInput, Target, Workload
from eastwest.airflow import east_west_dag

kpis = Workload(
    job="daily_kpis",
    inputs=SqlInput("readings", sql="source/extract_readings.sql", time_column="ts"),
    target=Target("daily_kpis", keys=("day", "enterprise_id", "machine_id"), partition_column="day"),
)

dag = east_west_dag("east_west_nightly", kpis, schedule="30 0 * * *", doc_md=__doc__, tags=["nightly"])
