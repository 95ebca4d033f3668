"""
### Weekly training of the next-day hourly energy forecast, in the west

Every Monday at 03:00 Asia/Shanghai: 28 local days of minute power readings (the week that just
ended and the three before it) travel west; on the hub, the `train_energy_forecast` job builds
hourly energy per enterprise and its features with Polars, trains scikit-learn's
`HistGradientBoostingRegressor` on all but the last 7 days and backtests it on those against the
seasonal-naive baseline (same hour one week earlier) and the current champion. The model comes
back as ONNX bytes named by their SHA-256. After validation (`train_energy_forecast.json`) the
version enters the model registry (`models` in the warehouse) and becomes champion only if it
beats both; otherwise it stays a candidate with the reason. Publishing announces the model on
the asset `model_energy_forecast`, which the forecast DAG also runs on.
"""

from eastwest import ModelInput, ModelTarget, SqlInput, Workload
from eastwest.airflow import east_west_dag

training = Workload(
    job="train_energy_forecast",
    inputs=(
        SqlInput("readings", sql="source/extract_energy.sql", time_column="ts", lookback_days=21),
        ModelInput("champion", model="energy_forecast", required=False),
    ),
    target=ModelTarget("energy_forecast"),
)

dag = east_west_dag(
    "east_west_train_forecast", training, schedule="0 3 * * 1", doc_md=__doc__, tags=["model", "forecast"]
)
