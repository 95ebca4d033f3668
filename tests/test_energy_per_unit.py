"""The energy-per-unit job against small golden frames, and the order generator it is fed by (no SSH, no Airflow)."""

from __future__ import annotations

import csv
import json
from datetime import date, datetime, timedelta
from pathlib import Path
from types import ModuleType

import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

from conftest import ROOT
from eastwest_dev.orders import generate_orders, write_landing
from eastwest_dev.telemetry import generate_day

DAY = date(2026, 11, 24)
START = datetime(2026, 11, 23, 16, 0)  # 2026-11-24 00:00 in Asia/Shanghai
SUITE = ROOT / "include" / "expectations" / "energy_per_unit.json"


def load_job() -> ModuleType:
    from jobs import energy_per_unit

    return energy_per_unit


job = load_job()


def readings(machine: str, first: datetime, powers: list[float]) -> pl.LazyFrame:
    """One machine's minute readings from ``first`` (naive UTC) on."""
    return pl.LazyFrame(
        {
            "ts": [first + timedelta(minutes=i) for i in range(len(powers))],
            "enterprise_id": [machine[:5]] * len(powers),
            "machine_id": [machine] * len(powers),
            "power_kw": powers,
            "temperature_c": [40.0] * len(powers),
            "vibration_mm_s": [2.0] * len(powers),
            "status": ["running"] * len(powers),
        },
        schema_overrides={"ts": pl.Datetime("us")},
    )


def orders(rows: list[tuple], *, as_datetime: bool = False) -> pl.LazyFrame:
    """Orders of (machine, product, units, local start, local end), times as CSV strings or naive datetimes."""
    lf = pl.LazyFrame(
        {
            "order_id": [f"O-{i}" for i in range(len(rows))],
            "enterprise_id": [r[0][:5] for r in rows],
            "machine_id": [r[0] for r in rows],
            "product": [r[1] for r in rows],
            "units": [r[2] for r in rows],
            "start_time": [r[3] for r in rows],
            "end_time": [r[4] for r in rows],
        },
        schema_overrides={"units": pl.Int64},
    )
    if as_datetime:
        lf = lf.with_columns(pl.col("start_time", "end_time").str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S"))
    return lf


def expected(rows: list[tuple]) -> pl.DataFrame:
    """The job's result from (day, enterprise, product, orders, units, energy, readings, orders without readings)."""
    frame = pl.DataFrame(
        rows,
        schema={
            "day": pl.Date,
            "enterprise_id": pl.String,
            "product": pl.String,
            "orders": pl.Int64,
            "units": pl.Int64,
            "energy_kwh": pl.Float64,
            "readings": pl.Int64,
            "orders_without_readings": pl.Int64,
        },
        orient="row",
    )
    columns = ["day", "enterprise_id", "product", "orders", "units", "energy_kwh", "energy_per_unit_kwh"]
    per_unit = (pl.col("energy_kwh") / pl.col("units")).alias("energy_per_unit_kwh")
    return frame.with_columns(per_unit).select(*columns, "readings", "orders_without_readings")


def run(readings_lf: pl.LazyFrame, orders_lf: pl.LazyFrame, **params: object) -> pl.DataFrame:
    """The job's result without ``coverage`` (tested on its own below)."""
    return job.transform(readings=readings_lf, orders=orders_lf, params=params).collect().drop("coverage")


def test_coverage_is_readings_over_the_orders_minutes() -> None:
    """An order of 3 minutes with 2 readings (one minute missing) has two thirds coverage."""
    readings_lf = pl.LazyFrame(
        {
            "ts": [START, START + timedelta(minutes=1), START + timedelta(minutes=5)],
            "enterprise_id": ["E0001"] * 3,
            "machine_id": ["E0001-M01"] * 3,
            "power_kw": [60.0, 60.0, 60.0],
        },
        schema_overrides={"ts": pl.Datetime("us")},
    )
    orders_lf = pl.LazyFrame(
        {
            "order_id": ["o1"],
            "enterprise_id": ["E0001"],
            "machine_id": ["E0001-M01"],
            "product": ["P-gear"],
            "units": [3],
            "start_time": ["2026-11-24 00:00:00"],
            "end_time": ["2026-11-24 00:03:00"],
        }
    )
    got = job.transform(readings=readings_lf, orders=orders_lf, params={"tz": "Asia/Shanghai"}).collect()
    assert got["readings"].to_list() == [2]
    assert got["coverage"].to_list() == [round(2 / 3, 6)]
    assert got["energy_kwh"].to_list() == [2.0]


def test_declaration_is_literal_and_matches_the_contract() -> None:
    assert job.INPUTS == ("readings", "orders")
    assert job.PARAMS == {"tz": {"type": "string", "format": "timezone", "default": "Asia/Shanghai"}}


@pytest.mark.parametrize("as_datetime", [False, True], ids=["string-times", "datetime-times"])
def test_energy_is_summed_over_the_order_span_end_exclusive(as_datetime: bool) -> None:
    # 60 kW for 4 minutes from 2026-11-24 09:00 local (01:00 UTC); the order ends at 09:03, so the
    # 09:03 reading belongs to the next order (end exclusive) and the 08:59 one to none.
    lf = readings("E0001-M01", datetime(2026, 11, 24, 0, 59), [600.0, 60.0, 60.0, 120.0, 30.0])
    got = run(
        lf,
        orders(
            [
                ("E0001-M01", "P-gear", 4, "2026-11-24 09:00:00", "2026-11-24 09:03:00"),
                ("E0001-M01", "P-shaft", 1, "2026-11-24 09:03:00", "2026-11-24 09:04:00"),
            ],
            as_datetime=as_datetime,
        ),
    )
    want = expected(
        [
            (DAY, "E0001", "P-gear", 1, 4, 4.0, 3, 0),  # (60 + 60 + 120) kW × 1 min
            (DAY, "E0001", "P-shaft", 1, 1, 0.5, 1, 0),  # 30 kW × 1 min
        ]
    )
    assert_frame_equal(got, want)


def test_local_times_cross_utc_midnight() -> None:
    # 2026-11-25 07:58–08:02 local is 2026-11-24 23:58 – 2026-11-25 00:02 UTC; the order's day is local.
    lf = readings("E0002-M01", datetime(2026, 11, 24, 23, 57), [6.0] * 6)  # 23:57 .. 00:02 UTC
    got = run(lf, orders([("E0002-M01", "P-valve", 2, "2026-11-25 07:58:00", "2026-11-25 08:02:00")]))
    assert_frame_equal(got, expected([(date(2026, 11, 25), "E0002", "P-valve", 1, 2, 0.4, 4, 0)]))


def test_local_day_is_that_of_the_start_in_the_given_time_zone() -> None:
    # 00:30 local in Shanghai is the previous UTC day: the order still belongs to 2026-11-24.
    lf = readings("E0001-M01", START + timedelta(minutes=30), [60.0, 60.0])
    got = run(lf, orders([("E0001-M01", "P-gear", 1, "2026-11-24 00:30:00", "2026-11-24 00:32:00")]))
    assert_frame_equal(got, expected([(DAY, "E0001", "P-gear", 1, 1, 2.0, 2, 0)]))
    # The same wall-clock times read as UTC meet none of the readings.
    got_utc = run(lf, orders([("E0001-M01", "P-gear", 1, "2026-11-24 00:30:00", "2026-11-24 00:32:00")]), tz="UTC")
    assert_frame_equal(got_utc, expected([(DAY, "E0001", "P-gear", 1, 1, 0.0, 0, 1)]))


def test_orders_of_one_product_are_summed_across_machines() -> None:
    lf = pl.concat(
        [
            readings("E0003-M01", datetime(2026, 11, 24, 2, 0), [30.0, 30.0]),  # 10:00 local
            readings("E0003-M02", datetime(2026, 11, 24, 2, 0), [90.0, 90.0]),
        ]
    )
    got = run(
        lf,
        orders(
            [
                ("E0003-M01", "P-bracket", 10, "2026-11-24 10:00:00", "2026-11-24 10:02:00"),
                ("E0003-M02", "P-bracket", 30, "2026-11-24 10:00:00", "2026-11-24 10:02:00"),
            ]
        ),
    )
    # (30 + 30 + 90 + 90) kW × 1 min = 4 kWh over 40 units.
    assert_frame_equal(got, expected([(DAY, "E0003", "P-bracket", 2, 40, 4.0, 4, 0)]))


def test_readings_of_another_machine_do_not_count() -> None:
    lf = readings("E0001-M02", datetime(2026, 11, 24, 2, 0), [60.0, 60.0])
    got = run(lf, orders([("E0001-M01", "P-gear", 3, "2026-11-24 10:00:00", "2026-11-24 10:02:00")]))
    assert_frame_equal(got, expected([(DAY, "E0001", "P-gear", 1, 3, 0.0, 0, 1)]))


def test_an_order_without_readings_is_kept_with_zero_energy() -> None:
    lf = readings("E0001-M01", datetime(2026, 11, 24, 2, 0), [60.0, 60.0])  # 10:00 local
    got = run(
        lf,
        orders(
            [
                ("E0001-M01", "P-gear", 5, "2026-11-24 10:00:00", "2026-11-24 10:02:00"),
                ("E0001-M01", "P-gear", 5, "2026-11-24 15:00:00", "2026-11-24 16:00:00"),  # no telemetry
                ("E0001-M01", "P-shaft", 2, "2026-11-24 17:00:00", "2026-11-24 18:00:00"),  # no telemetry
            ]
        ),
    )
    want = expected(
        [
            (DAY, "E0001", "P-gear", 2, 10, 2.0, 2, 1),
            (DAY, "E0001", "P-shaft", 1, 2, 0.0, 0, 1),
        ]
    )
    assert_frame_equal(got, want)


def test_generator_is_deterministic_and_well_formed(tmp_path: Path) -> None:
    table = generate_orders(DAY, 40)
    assert table.equals(generate_orders(DAY, 40))
    assert not table.equals(generate_orders(DAY, 40, seed=7))
    # A machine's orders do not depend on the size of the park.
    small = pl.from_arrow(generate_orders(DAY, 12))
    assert_frame_equal(small, pl.from_arrow(table).filter(pl.col("machine_id").is_in(small["machine_id"].implode())))

    frame = pl.from_arrow(table).with_columns(
        pl.col("start_time", "end_time").str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S")
    )
    assert frame["order_id"].is_unique().all()
    assert (frame["units"] > 0).all()
    midnight = datetime(2026, 11, 24)
    assert (frame["start_time"] >= midnight + timedelta(hours=8)).all()
    assert (frame["end_time"] <= midnight + timedelta(hours=20)).all()
    hours = (frame["end_time"] - frame["start_time"]).dt.total_minutes() / 60
    assert hours.min() >= 1 and hours.max() <= 5
    per_machine = frame.sort("machine_id", "start_time").with_columns(
        pl.col("end_time").shift().over("machine_id").alias("previous_end"),
        pl.len().over("machine_id").alias("count"),
    )
    assert (per_machine["count"].is_between(2, 4)).all()
    assert (per_machine["start_time"] >= per_machine["previous_end"]).fill_null(True).all()
    assert frame["machine_id"].n_unique() == 40

    paths = write_landing(DAY, 40, tmp_path / "a")
    again = write_landing(DAY, 40, tmp_path / "b")
    assert [p.name for p in paths] == [p.name for p in again] == [f"E{i:04d}.csv" for i in range(1, 41)]
    assert all(p.read_bytes() == q.read_bytes() for p, q in zip(paths, again, strict=True))
    assert paths[0].parent == tmp_path / "a" / "landing" / "orders" / "2026-11-24"
    assert not list(paths[0].parent.glob("*.partial"))
    landed = pl.scan_csv(paths, schema_overrides={"start_time": pl.String, "end_time": pl.String}).collect()
    assert_frame_equal(landed.sort("order_id"), pl.from_arrow(table).sort("order_id"))


def test_bad_row_does_not_parse(tmp_path: Path) -> None:
    paths = write_landing(DAY, 3, tmp_path, bad_row=True)
    with paths[0].open(newline="") as handle:
        units = [row["units"] for row in csv.DictReader(handle)]
    assert units[-1] == "twelve"
    landed = pl.scan_csv(paths[0], try_parse_dates=True)
    with pytest.raises(pl.exceptions.InvalidOperationError):
        run(readings("E0001-M01", START, [1.0]), landed)


@pytest.mark.parametrize("landed", [False, True], ids=["arrow", "csv"])
def test_a_generated_day_gives_energy_for_every_product(tmp_path: Path, landed: bool) -> None:
    telemetry = pl.from_arrow(pa.Table.from_batches(list(generate_day(DAY, 12))))
    if landed:  # as the east reads the landing folder: the CSV reader infers the timestamps
        orders_lf = pl.scan_csv(write_landing(DAY, 12, tmp_path), try_parse_dates=True)
        assert orders_lf.collect_schema()["start_time"] == pl.Datetime("us")
    else:
        orders_lf = pl.from_arrow(generate_orders(DAY, 12)).lazy()
    got = job.transform(readings=telemetry.lazy(), orders=orders_lf, params={"tz": "Asia/Shanghai"}).collect()
    assert (got["coverage"] >= 0.95).all()  # generated telemetry reads every minute of every order

    suite = json.loads(SUITE.read_text())
    suite_columns = {e["kwargs"]["column"] for e in suite["expectations"] if "column" in e["kwargs"]}
    suite_columns |= {c for e in suite["expectations"] for c in e["kwargs"].get("column_list", [])}
    suite_columns |= {c for e in suite["expectations"] for c in e["kwargs"].get("column_set", [])}
    assert suite_columns <= set(got.columns)
    assert got.height > 0
    assert (got["day"] == DAY).all()
    assert got["enterprise_id"].n_unique() == 12
    assert (got["energy_per_unit_kwh"] > 0).all()
    assert (got["orders_without_readings"] == 0).all()
    assert got.select(job.KEYS).is_unique().all()
    assert got["orders"].sum() == orders_lf.collect().height
