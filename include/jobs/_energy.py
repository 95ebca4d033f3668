"""What the energy forecast's jobs share: hourly energy, the holiday calendar, features, the
seasonal-naive baseline, the error measures and ONNX scoring.

A private module (its name starts with ``_``): it travels in the job bundle with the jobs that
import it (``from . import _energy``) but is not a job itself. The synthetic telemetry generator
(``dev/eastwest_dev/telemetry.py``) reads ``HOLIDAYS`` from here too, so the data and the model
agree on one calendar.

The forecast: for an enterprise, a local day D and an hour h, the energy in kWh used in that
hour, from what was known at the end of D-1. Features are the same hour on each of the seven
days before (their last value, the one a week before, their mean, min and max), the energy of
the whole day before and of the week before, the hour, the weekday, and whether D and D-7 are
public holidays.
"""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from typing import Any

import polars as pl

#: Public holidays in the People's Republic of China, 2026 and 2027, as the State Council
#: announces them (the days off; make-up working days are not modelled). 2027's dates follow
#: the lunar calendar and the usual pattern; update them when the State Council publishes.
HOLIDAYS: frozenset[date] = frozenset(
    date.fromisoformat(day)
    for first, last in (
        ("2026-01-01", "2026-01-03"),  # New Year
        ("2026-02-15", "2026-02-23"),  # Spring Festival
        ("2026-04-04", "2026-04-06"),  # Qingming
        ("2026-05-01", "2026-05-05"),  # Labour Day
        ("2026-06-19", "2026-06-21"),  # Dragon Boat
        ("2026-09-25", "2026-09-27"),  # Mid-Autumn
        ("2026-10-01", "2026-10-07"),  # National Day
        ("2027-01-01", "2027-01-03"),
        ("2027-02-05", "2027-02-13"),
        ("2027-04-03", "2027-04-05"),
        ("2027-05-01", "2027-05-05"),
        ("2027-06-09", "2027-06-11"),
        ("2027-09-15", "2027-09-17"),
        ("2027-10-01", "2027-10-07"),
    )
    for day in (
        (date.fromisoformat(first) + timedelta(days=i)).isoformat()
        for i in range((date.fromisoformat(last) - date.fromisoformat(first)).days + 1)
    )
)

#: The history features in kWh; the model sees them divided by the enterprise's ``scale``.
ENERGY_FEATURES = ("lag_1d", "lag_7d", "mean_7d", "min_7d", "max_7d", "day_before_kwh", "week_mean_kwh")
#: The model's input columns, in order (ONNX input ``features``, float32). ``n_`` columns are
#: energy divided by ``scale``: the model learns the shape of a load, the same for a 5 kW shop and
#: a 2 MW plant, and its output is multiplied back by the scale.
FEATURES = ("hour", "weekday", "holiday", "holiday_7d", *(f"n_{name}" for name in ENERGY_FEATURES))
#: The days of history a forecast needs before its day.
HISTORY_DAYS = 7
#: The model_version of forecasts made without a model.
SEASONAL_NAIVE = "seasonal_naive"

KEY = ("enterprise_id", "day", "hour")


def local_time(tz: str) -> pl.Expr:
    """Readings keep naive UTC times; the forecast works in local days and hours."""
    return pl.col("ts").dt.replace_time_zone("UTC").dt.convert_time_zone(tz)


def hourly(readings: pl.LazyFrame, tz: str) -> pl.DataFrame:
    """Energy (kWh) per enterprise, local day and hour, from power readings once a minute."""
    local = local_time(tz)
    return (
        readings.group_by(
            pl.col("enterprise_id"), local.dt.date().alias("day"), local.dt.hour().cast(pl.Int64).alias("hour")
        )
        # Summed in whole watts, as integers: a float sum's last bits depend on the order rows
        # arrive in, and the same readings must give the same model bytes (its version) anywhere.
        .agg(
            ((pl.col("power_kw") * 1000).round().cast(pl.Int64).sum() / 60_000.0).alias("energy_kwh"),
            pl.col("power_kw").count().alias("readings"),
        )
        .filter(pl.col("readings") > 0)
        .drop("readings")
        .collect()
    )


def grid(hours: pl.DataFrame, first: date, last: date, enterprises: list[str] | None = None) -> pl.DataFrame:
    """Every enterprise × local day in [first, last] × hour, with the energy where it was measured
    (null where no reading arrived), so that a shift by k rows is k days back."""
    ids = sorted(hours["enterprise_id"].unique().to_list()) if enterprises is None else enterprises
    full = (
        pl.DataFrame({"enterprise_id": ids}, schema={"enterprise_id": pl.String})
        .join(pl.DataFrame({"day": pl.date_range(first, last, "1d", eager=True)}), how="cross")
        .join(pl.DataFrame({"hour": list(range(24))}, schema={"hour": pl.Int64}), how="cross")
    )
    return full.join(hours, on=list(KEY), how="left").sort(list(KEY))


def features(table: pl.DataFrame) -> pl.DataFrame:
    """Add the model's features to a full ``grid``; rows whose history lies before the grid get nulls."""
    by_hour = ["enterprise_id", "hour"]
    energy = pl.col("energy_kwh")
    lags = [energy.shift(k).over(by_hour, order_by="day").alias(f"_lag{k}") for k in range(1, HISTORY_DAYS + 1)]
    lag_names = [f"_lag{k}" for k in range(1, HISTORY_DAYS + 1)]
    daily = (
        table.group_by("enterprise_id", "day")
        .agg(pl.when(energy.count() > 0).then(energy.sum()).alias("_day_kwh"))
        .sort("enterprise_id", "day")
        .with_columns(pl.col("_day_kwh").shift(1).over("enterprise_id").alias("day_before_kwh"))
        .drop("_day_kwh")
    )
    holidays = pl.Series(sorted(HOLIDAYS), dtype=pl.Date)
    return (
        table.with_columns(lags)
        .with_columns(
            pl.col("day").dt.weekday().cast(pl.Float64).alias("weekday"),
            pl.col("day").is_in(holidays.implode()).cast(pl.Float64).alias("holiday"),
            (pl.col("day") - timedelta(days=7)).is_in(holidays.implode()).cast(pl.Float64).alias("holiday_7d"),
            pl.col("_lag1").alias("lag_1d"),
            pl.col(f"_lag{HISTORY_DAYS}").alias("lag_7d"),
            pl.mean_horizontal(lag_names).alias("mean_7d"),
            pl.min_horizontal(lag_names).alias("min_7d"),
            pl.max_horizontal(lag_names).alias("max_7d"),
        )
        .with_columns(pl.col("mean_7d").mean().over("enterprise_id", "day").alias("week_mean_kwh"))
        .join(daily, on=["enterprise_id", "day"], how="left")
        .drop(lag_names)
        .with_columns(pl.col("max_7d").max().over("enterprise_id", "day").alias("scale"))
        .with_columns(
            pl.when(pl.col("scale") > 0).then(pl.col(name) / pl.col("scale")).alias(f"n_{name}")
            for name in ENERGY_FEATURES
        )
        .sort(list(KEY))  # joins need not keep the order; training must see rows in one order
    )


def matrix(table: pl.DataFrame) -> Any:
    """The feature matrix the model reads: float32, nulls as NaN (the trees route them)."""
    import numpy as np

    return (
        table.select(pl.col(name).cast(pl.Float32).fill_null(float("nan")) for name in FEATURES)
        .to_numpy(order="c")
        .astype(np.float32, copy=False)
    )


def seasonal_naive(table: pl.DataFrame) -> pl.Series:
    """The baseline: the same hour one week earlier (the week's mean where that hour is missing)."""
    return table.select(pl.coalesce("lag_7d", "mean_7d", pl.lit(0.0)).alias("seasonal_naive")).to_series()


def errors(actual: Any, predicted: Any) -> tuple[float, float]:
    """MAE (kWh per enterprise-hour) and MAPE weighted by actual energy: Σ|error| ÷ Σ actual, so
    that the night's near-zero hours do not dominate the percentage."""
    import numpy as np

    actual = np.asarray(actual, dtype=np.float64)
    error = np.abs(actual - np.asarray(predicted, dtype=np.float64))
    total = float(actual.sum())
    return float(error.mean()), float(error.sum() / total) if total > 0 else float("nan")


class ModelError(ValueError):
    """A model that must not be loaded: its bytes do not match its version, or it expects other features."""


def check_model(name: str, version: str, onnx: bytes) -> None:
    """Refuse a model whose bytes changed since they were registered (before anything parses them)."""
    digest = hashlib.sha256(onnx).hexdigest()
    if digest != version:
        raise ModelError(
            f"model {name} version {version}: its bytes hash to {digest}, not to the version; "
            "refusing to load a changed model file"
        )


def session(onnx: bytes) -> Any:
    """An onnxruntime session on one thread: the same bytes and features give the same numbers anywhere."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    found = ort.InferenceSession(onnx, sess_options=options, providers=["CPUExecutionProvider"])
    meta = found.get_modelmeta().custom_metadata_map
    if meta.get("eastwest.features") != ",".join(FEATURES):
        raise ModelError(f"the model expects features {meta.get('eastwest.features')!r}, these jobs build {FEATURES}")
    return found


def predict(model: Any, table: pl.DataFrame) -> Any:
    """Predictions (kWh, never negative) of an onnxruntime ``session`` for the rows of ``table``
    (0 for an enterprise with nothing measured in the week before: it has no scale)."""
    import numpy as np

    if table.height == 0:
        return np.zeros(0, dtype=np.float64)
    out = np.asarray(model.run(None, {"features": matrix(table)})[0], dtype=np.float64).ravel()
    scale = table["scale"].fill_null(0.0).to_numpy()
    return np.clip(out * scale, 0.0, None)


def target(table: pl.DataFrame) -> Any:
    """What the model learns: energy divided by the enterprise's scale (rows with a scale only)."""
    return (table["energy_kwh"] / table["scale"]).to_numpy()
