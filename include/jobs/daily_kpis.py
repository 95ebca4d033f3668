"""Daily KPIs per enterprise and machine from minute telemetry.

One row per (local day, enterprise, machine): energy in kWh, running hours, utilisation, p95
temperature, and the number of readings whose power or vibration is anomalous by a robust z-score
(median and MAD over that machine's day; |z| > ``z_threshold``). The extreme readings and the
count of incomplete readings travel along so that validation can reject impossible source data.
"""

from __future__ import annotations

import polars as pl

INPUTS = ("readings",)
#: One machine's readings never meet another's, so a hub may run a large input machine group by
#: machine group (its memory then stays flat whatever the number of days).
PARTITION_BY = ("machine_id",)

#: The only parameters this job accepts (JSON-schema literals; the hub checks them before it runs).
PARAMS = {
    "tz": {"type": "string", "format": "timezone", "default": "Asia/Shanghai", "title": "Time zone of the day"},
    "z_threshold": {"type": "number", "default": 3.5, "minimum": 0.5, "maximum": 50, "title": "Anomaly |z| above"},
    "enterprise_ids": {
        "type": "array",
        "items": {"type": "string", "pattern": "^E[0-9]{4}$"},
        "maxItems": 600,
        "uniqueItems": True,
        "default": [],
        "title": "Enterprises",
        "description": "Comma-separated enterprise ids, e.g. E0001,E0042 (empty: all)",
    },
}

#: 0.6745 scales MAD to a standard deviation for normal data (Iglewicz & Hoaglin).
_MAD_SCALE = 0.6745
_MINUTES_PER_DAY = 24 * 60

KEYS = ("day", "enterprise_id", "machine_id")


def _robust_z(column: str, by: list[str]) -> pl.Expr:
    x = pl.col(column)
    median = x.median().over(by)
    mad = (x - median).abs().median().over(by)
    return pl.when(mad > 0).then(_MAD_SCALE * (x - median) / mad).otherwise(0.0)


def transform(readings: pl.LazyFrame, params: dict) -> pl.LazyFrame:
    """Aggregate minute readings into daily KPIs; pure: no I/O, no clock."""
    tz = params["tz"]
    threshold = float(params["z_threshold"])
    enterprises = params["enterprise_ids"]

    lf = readings
    if enterprises:
        lf = lf.filter(pl.col("enterprise_id").is_in(enterprises))

    machine_day = ["day", "enterprise_id", "machine_id"]
    lf = lf.with_columns(
        pl.col("ts").dt.replace_time_zone("UTC").dt.convert_time_zone(tz).dt.date().alias("day"),
    ).with_columns(
        (
            (_robust_z("power_kw", machine_day).abs() > threshold)
            | (_robust_z("vibration_mm_s", machine_day).abs() > threshold)
        ).alias("is_anomaly"),
    )
    running = pl.col("status") == "running"
    return (
        lf.group_by(machine_day)
        .agg(
            pl.len().cast(pl.Int64).alias("readings"),
            (pl.col("power_kw").sum() / 60.0).alias("energy_kwh"),
            (running.sum() / 60.0).alias("running_hours"),
            (running.sum() / _MINUTES_PER_DAY).alias("utilisation"),
            pl.col("temperature_c").quantile(0.95, interpolation="linear").alias("p95_temperature_c"),
            pl.col("is_anomaly").sum().cast(pl.Int64).alias("anomaly_count"),
            pl.col("power_kw").min().alias("min_power_kw"),
            pl.col("temperature_c").max().alias("max_temperature_c"),
            (
                pl.col("power_kw").is_null()
                | pl.col("temperature_c").is_null()
                | pl.col("vibration_mm_s").is_null()
                | pl.col("status").is_null()
            )
            .sum()
            .cast(pl.Int64)
            .alias("null_readings"),
        )
        .sort(machine_day)
    )
