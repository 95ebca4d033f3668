"""
### Nightly energy per unit produced, from telemetry and production orders

Every night at 00:45 Asia/Shanghai, for the local day that just ended: the park's minute telemetry
(from the east source) and the production orders that enterprises dropped as CSV files into
`landing/orders/<day>/` travel west; the `energy_per_unit` job joins them on the hub and computes
energy per unit produced per enterprise, product and day; the result is validated with
`include/expectations/energy_per_unit.json` and replaces that day's partition of `energy_per_unit`.
No order files for the day, or a row that does not parse, fails the run naming the folder or the
file and line; nothing is published.
"""

from eastwest import LandingFiles, SqlInput, Target, Workload
from eastwest.airflow import east_west_dag

energy_per_unit = Workload(
    job="energy_per_unit",
    inputs=(
        SqlInput("readings", sql="source/extract_readings.sql", time_column="ts"),
        LandingFiles("orders", glob="landing/orders/{{ ds }}/*.csv", columns={"units": "int64"}),
    ),
    target=Target("energy_per_unit", keys=("day", "enterprise_id", "product"), partition_column="day"),
)

dag = east_west_dag("east_west_orders", energy_per_unit, schedule="45 0 * * *", doc_md=__doc__, tags=["orders"])
