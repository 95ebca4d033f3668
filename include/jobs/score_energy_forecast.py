"""Score a day's forecasts against what the meters measured: the realised error per model version.

``readings`` (``ts``, ``enterprise_id``, ``power_kw``) give the actual hourly energy per enterprise;
``forecast`` holds the rows of ``energy_forecast`` made for those days. One row per (day, model
version): how many enterprises and enterprise-hours were scored, MAE (kWh per enterprise-hour),
MAPE weighted by actual energy, and the day's actual and forecast totals.
"""

from __future__ import annotations

import polars as pl

from . import _energy

INPUTS = ("readings", "forecast")

PARAMS = {
    "tz": {"type": "string", "format": "timezone", "default": "Asia/Shanghai", "title": "Time zone of the days"},
}


def transform(readings: pl.LazyFrame, forecast: pl.LazyFrame, params: dict) -> pl.LazyFrame:
    actual = _energy.hourly(readings.select("ts", "enterprise_id", "power_kw"), params["tz"]).lazy()
    made = forecast.select(
        pl.col("day").cast(pl.Date),  # a date column, or a timestamp where a database has no dates
        pl.col("hour").cast(pl.Int64),
        "enterprise_id",
        pl.col("energy_kwh").alias("forecast_kwh"),
        "model_version",
    )
    error = (pl.col("energy_kwh") - pl.col("forecast_kwh")).abs()
    return (
        made.join(actual, on=["day", "enterprise_id", "hour"], how="inner")
        .group_by("day", "model_version")
        .agg(
            pl.col("enterprise_id").n_unique().cast(pl.Int64).alias("enterprises"),
            pl.len().cast(pl.Int64).alias("hours"),
            error.mean().alias("mae"),
            (error.sum() / pl.col("energy_kwh").sum()).alias("mape"),
            pl.col("energy_kwh").sum().alias("actual_kwh"),
            pl.col("forecast_kwh").sum().alias("forecast_kwh"),
        )
        .sort("day", "model_version")
    )
