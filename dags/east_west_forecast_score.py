"""
### Daily score of yesterday's forecast against what the meters measured

Every night at 02:00 Asia/Shanghai, for the local day that just ended: that day's minute power
readings and the forecasts made for it the night before (from the warehouse's `energy_forecast`)
travel west; the `score_energy_forecast` job computes actual hourly energy per enterprise and the
realised error (MAE, MAPE) per model version, which replaces that day's rows of `forecast_scores`.
"""

from eastwest import SqlInput, Target, Workload
from eastwest.airflow import east_west_dag

score = Workload(
    job="score_energy_forecast",
    inputs=(
        SqlInput("readings", sql="source/extract_energy.sql", time_column="ts"),
        SqlInput("forecast", sql="warehouse/forecasts_for_day.sql", conn_id="east_warehouse", time_column="day"),
    ),
    target=Target("forecast_scores", keys=("day", "model_version"), partition_column="day"),
)

dag = east_west_dag("east_west_forecast_score", score, schedule="0 2 * * *", doc_md=__doc__, tags=["model", "forecast"])
