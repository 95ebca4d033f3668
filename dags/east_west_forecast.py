"""
### Nightly forecast of tomorrow's hourly energy per enterprise, with the champion model

Every night at 01:00 Asia/Shanghai, and whenever training promotes a model (asset
`model_energy_forecast`): the last 8 local days of minute power readings and the champion model
(ONNX, content-addressed: a hub that holds it already is not sent it again) travel west; the
`energy_forecast` job checks the model's bytes against its version, builds the features and
forecasts the next day's 24 hours for every enterprise. The forecast is validated
(`energy_forecast.json`: non-negative, within each enterprise's physical bound, 24 hours × every
enterprise) and replaces that night's rows of `energy_forecast`. With no champion yet, the run
fails at once saying to run `east_west_train_forecast` first.
"""

from eastwest import ModelInput, SqlInput, Target, Workload
from eastwest.airflow import east_west_dag

forecast = Workload(
    job="energy_forecast",
    inputs=(
        SqlInput("readings", sql="source/extract_machine_power.sql", time_column="ts", lookback_days=7),
        ModelInput("model", model="energy_forecast"),
    ),
    target=Target("energy_forecast", keys=("day", "enterprise_id", "hour"), partition_column="made_on"),
)

dag = east_west_dag("east_west_forecast", forecast, schedule="0 1 * * *", doc_md=__doc__, tags=["model", "forecast"])
