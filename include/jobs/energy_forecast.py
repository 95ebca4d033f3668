"""Forecast the next local day's 24 hours of energy for every enterprise with the champion model.

The readings (``ts``, ``enterprise_id``, ``machine_id``, ``power_kw``) end with the day the forecast
is made on; the forecast is for the day after. The model arrives as a one-row table (``name``,
``version``, ``onnx``): its bytes are checked against the version before anything parses them, and
a changed model fails the run naming the version. An empty model table (a workload whose
``ModelInput`` is not required, before any training) forecasts seasonal-naive instead, and every
row says so in ``model_version``.

Each enterprise's physical bound, ``capacity_kwh``, is one hour of all its machines at their peak
power in the readings; forecasts are clipped to [0, capacity].
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from . import _energy

INPUTS = ("readings", "model")

PARAMS = {
    "tz": {"type": "string", "format": "timezone", "default": "Asia/Shanghai", "title": "Time zone of the days"},
}


def forecast(
    readings: pl.DataFrame | pl.LazyFrame, onnx: bytes | None, tz: str, version: str | None = None
) -> pl.DataFrame:
    """The next day's forecast from ``readings`` with the ONNX model ``onnx`` (None: seasonal-naive).

    Pure and the same east and west: the east loads the registry's bytes and gets the hub's numbers.
    """
    import hashlib

    lf = readings.lazy()
    hours = _energy.hourly(lf.select("ts", "enterprise_id", "power_kw"), tz)
    if hours.height == 0:
        raise ValueError("no readings: nothing to forecast from")
    made_on = hours["day"].max()
    day = made_on + timedelta(days=1)
    table = _energy.features(_energy.grid(hours, made_on - timedelta(days=_energy.HISTORY_DAYS - 1), day))
    rows = table.filter(pl.col("day") == day)
    if onnx is None:
        predicted, version = _energy.seasonal_naive(rows).to_numpy(), _energy.SEASONAL_NAIVE
    else:
        predicted = _energy.predict(_energy.session(onnx), rows)
        version = version or hashlib.sha256(onnx).hexdigest()
    capacity = (
        lf.group_by("enterprise_id", "machine_id")
        .agg(pl.col("power_kw").max().fill_null(0.0).clip(lower_bound=0.0).alias("peak_kw"))
        .group_by("enterprise_id")
        .agg(pl.col("peak_kw").sum().alias("capacity_kwh"))
        .collect()
    )
    return (
        rows.select("enterprise_id", "day", "hour")
        .with_columns(pl.Series("energy_kwh", predicted, dtype=pl.Float64))
        .join(capacity, on="enterprise_id", how="left")
        .with_columns(
            pl.lit(made_on).alias("made_on"),
            pl.min_horizontal(pl.col("energy_kwh").clip(lower_bound=0.0), pl.col("capacity_kwh")).alias("energy_kwh"),
            pl.lit(version).alias("model_version"),
            pl.len().over("enterprise_id").cast(pl.Int64).alias("hours_forecast"),
        )
        .select(
            "made_on", "day", "hour", "enterprise_id", "energy_kwh", "capacity_kwh", "model_version", "hours_forecast"
        )
        .sort("enterprise_id", "hour")
    )


def transform(readings: pl.LazyFrame, model: pl.LazyFrame, params: dict) -> pl.LazyFrame:
    found = model.collect()
    if found.height == 0:
        return forecast(readings, None, params["tz"]).lazy()
    [row] = found.to_dicts()
    _energy.check_model(row["name"], row["version"], row["onnx"])
    return forecast(readings, row["onnx"], params["tz"], row["version"]).lazy()
