"""A test-only DAG: the forecast's training with a deliberately weak model (ten boosting rounds).

``tests/test_forecast_e2e.py`` checks that such a model, trained on the same weeks as the champion,
is registered as a candidate with the reason and never promoted. Everything else is the product's
training workload.
"""

from eastwest import ModelInput, ModelTarget, SqlInput, Workload
from eastwest.airflow import east_west_dag

weak = Workload(
    job="train_energy_forecast",
    inputs=(
        SqlInput("readings", sql="source/extract_energy.sql", time_column="ts", lookback_days=21),
        ModelInput("champion", model="energy_forecast", required=False),
    ),
    target=ModelTarget("energy_forecast"),
    params={"max_iter": 10},
)

dag = east_west_dag("east_west_train_forecast_weak", weak, schedule="0 3 * * 1", tags=["test"])
