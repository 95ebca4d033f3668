"""Energy per unit produced, per enterprise, product and local day, from orders and minute telemetry.

An order says which machine made how many units of a product between two local wall-clock times
(end exclusive). Its energy is the machine's metered energy over that span: the sum of
``power_kw / 60`` over the machine's minute readings with ``start <= ts < end``, where the order's
times are converted from ``tz`` to the readings' naive UTC. Orders are then summed per local day
of their start, enterprise and product.

An order that matched no reading still counts, with zero energy; ``orders_without_readings`` says
how many there were, and ``coverage`` (readings over the orders' minutes, one reading a minute)
how much of the work the telemetry saw, so validation can reject a day whose telemetry does not
cover its orders (a gap, or an order that runs past the end of the run's interval).
"""

from __future__ import annotations

import polars as pl

INPUTS = ("readings", "orders")

#: Allowed parameters, as JSON-schema literals. Anything else is refused by the runner.
PARAMS = {
    "tz": {"type": "string", "format": "timezone", "default": "Asia/Shanghai"},
}

KEYS = ("day", "enterprise_id", "product")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_ORDER = "_order"


def _to_utc(column: str, dtype: pl.DataType, tz: str) -> pl.Expr:
    """Turn a local wall-clock column (string or naive datetime) into naive UTC microseconds."""
    value = pl.col(column)
    if dtype == pl.String:
        value = value.str.strptime(pl.Datetime("us"), TIME_FORMAT)
    elif isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        # Already an instant: only the local wall-clock reading is ambiguous.
        return value.dt.convert_time_zone("UTC").dt.replace_time_zone(None).dt.cast_time_unit("us")
    elif not isinstance(dtype, pl.Datetime):
        raise TypeError(f"orders.{column} must be a string {TIME_FORMAT!r} or a datetime, not {dtype}")
    return (
        value.cast(pl.Datetime("us"))
        .dt.replace_time_zone(tz, ambiguous="earliest")
        .dt.convert_time_zone("UTC")
        .dt.replace_time_zone(None)
    )


def transform(readings: pl.LazyFrame, orders: pl.LazyFrame, params: dict) -> pl.LazyFrame:
    """Join orders with their machines' readings and sum energy and units per day, enterprise and product."""
    tz = params.get("tz", PARAMS["tz"]["default"])
    order_schema = orders.collect_schema()

    timed = (
        orders.with_row_index(_ORDER)
        .with_columns(
            _to_utc("start_time", order_schema["start_time"], tz).alias("start_utc"),
            _to_utc("end_time", order_schema["end_time"], tz).alias("end_utc"),
            pl.col("units").cast(pl.Int64),
        )
        .with_columns(
            ((pl.col("end_utc") - pl.col("start_utc")).dt.total_minutes()).cast(pl.Int64).alias("_minutes"),
        )
    )
    spans = timed.select(_ORDER, "enterprise_id", "machine_id", "start_utc", "end_utc")
    # Each reading meets only its own machine's few orders, so the equi-join stays small.
    metered = (
        spans.join(
            readings.select("enterprise_id", "machine_id", "ts", "power_kw"),
            on=["enterprise_id", "machine_id"],
            how="inner",
        )
        .filter((pl.col("ts") >= pl.col("start_utc")) & (pl.col("ts") < pl.col("end_utc")))
        .group_by(_ORDER)
        .agg(
            (pl.col("power_kw").sum() / 60.0).alias("energy_kwh"),
            pl.len().cast(pl.Int64).alias("readings"),
        )
    )
    per_order = timed.join(metered, on=_ORDER, how="left").with_columns(
        pl.col("start_utc").dt.replace_time_zone("UTC").dt.convert_time_zone(tz).dt.date().alias("day"),
        pl.col("energy_kwh").fill_null(0.0),
        pl.col("readings").fill_null(0),
    )
    return (
        per_order.group_by(KEYS)
        .agg(
            pl.len().cast(pl.Int64).alias("orders"),
            pl.col("units").sum().cast(pl.Int64).alias("units"),
            # Not rounded: a parallel sum's last bits depend on thread scheduling, and the warehouse
            # compares floats to a relative 1e-9, so a rerun changes nothing; rounding would turn
            # those bits into a visible difference at a tie.
            pl.col("energy_kwh").sum().cast(pl.Float64).alias("energy_kwh"),
            pl.col("readings").sum().cast(pl.Int64).alias("readings"),
            # One reading a minute: readings over the orders' minutes says how much of the work
            # the telemetry saw (an order past the day's end, or a gap, shows as less than 1).
            (pl.col("readings").sum() / pl.col("_minutes").sum().clip(lower_bound=1)).round(6).alias("coverage"),
            (pl.col("readings") == 0).sum().cast(pl.Int64).alias("orders_without_readings"),
        )
        .with_columns((pl.col("energy_kwh") / pl.col("units")).alias("energy_per_unit_kwh"))
        .select(
            *KEYS,
            "orders",
            "units",
            "energy_kwh",
            "energy_per_unit_kwh",
            "readings",
            "coverage",
            "orders_without_readings",
        )
        .sort(KEYS)
    )
