"""The energy forecast's jobs as pure functions (no hub, no Airflow): features that never look
ahead, a backtest on the last days, gaps reported, the same bytes from the same data, a changed
model refused, the seasonal-naive fallback, scoring; and the telemetry's learnable structure."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta

import polars as pl
import pyarrow as pa
import pytest

from conftest import ROOT
from eastwest.west import jobs
from eastwest_dev import telemetry

JOBS = ROOT / "include" / "jobs"
TZ = "Asia/Shanghai"
FIRST = date(2026, 6, 1)  # a Monday
MACHINES = 12
EMPTY_MODEL = pl.DataFrame(schema={"name": pl.String, "version": pl.String, "onnx": pl.Binary})
TRAIN = {"model_name": "energy_forecast", "tz": TZ, "holdout_days": 7, "max_iter": 60}


@pytest.fixture(scope="module")
def energy():
    """The jobs' private module, as the jobs import it (``from . import _energy``)."""
    return jobs.load_module(JOBS, "energy_forecast")._energy


@pytest.fixture(scope="module")
def readings() -> pl.DataFrame:
    """Four weeks of minute power readings of a small park."""
    days = [FIRST + timedelta(days=i) for i in range(28)]
    return pl.concat(
        pl.from_arrow(pa.Table.from_batches(list(telemetry.generate_day(day, MACHINES)))).select(
            "ts", "enterprise_id", "machine_id", "power_kw"
        )
        for day in days
    )


@pytest.fixture(scope="module")
def trained(readings) -> dict:
    job = jobs.load_module(JOBS, "train_energy_forecast")
    return job.transform(readings.lazy(), EMPTY_MODEL.lazy(), TRAIN).collect().to_dicts()[0]


def local_day(ts: str) -> pl.Expr:
    return pl.col("ts").dt.replace_time_zone("UTC").dt.convert_time_zone(TZ).dt.date()


def test_features_of_a_day_use_only_the_days_before_it(energy, readings) -> None:
    hours = energy.hourly(readings.lazy(), TZ)
    day = FIRST + timedelta(days=20)
    before = energy.features(energy.grid(hours, FIRST, FIRST + timedelta(days=27)))
    changed = hours.with_columns(
        pl.when(pl.col("day") >= day).then(pl.col("energy_kwh") * 3).otherwise(pl.col("energy_kwh"))
    )
    after = energy.features(energy.grid(changed, FIRST, FIRST + timedelta(days=27)))
    columns = [c for c in before.columns if c != "energy_kwh"]
    on_day = pl.col("day") == day
    assert before.filter(on_day).select(columns).equals(after.filter(on_day).select(columns))  # no leakage
    assert not before.filter(pl.col("day") == day + timedelta(days=1)).equals(
        after.filter(pl.col("day") == day + timedelta(days=1))
    )  # and the next day does see it
    row = before.filter(on_day & (pl.col("enterprise_id") == "E0001") & (pl.col("hour") == 10)).to_dicts()[0]
    week_ago = hours.filter(
        (pl.col("enterprise_id") == "E0001") & (pl.col("hour") == 10) & (pl.col("day") == day - timedelta(days=7))
    )["energy_kwh"][0]
    assert row["lag_7d"] == week_ago and energy.seasonal_naive(pl.DataFrame([row]))[0] == week_ago


def test_mape_is_weighted_by_actual_energy(energy) -> None:
    mae, mape = energy.errors([0.0, 10.0, 30.0], [1.0, 12.0, 27.0])
    assert mae == pytest.approx(2.0) and mape == pytest.approx(6.0 / 40.0)


def test_training_holds_out_the_last_days_and_beats_seasonal_naive(trained) -> None:
    assert (trained["train_start"], trained["train_end"]) == (FIRST, FIRST + timedelta(days=20))
    assert (trained["holdout_start"], trained["holdout_end"]) == (
        FIRST + timedelta(days=21),
        FIRST + timedelta(days=27),
    )
    assert trained["train_rows"] == 14 * 24 * MACHINES and trained["holdout_rows"] == 7 * 24 * MACHINES
    assert trained["version"] == hashlib.sha256(trained["onnx"]).hexdigest()
    assert trained["mape"] < trained["baseline_mape"], trained
    assert (trained["missing_hours"], trained["dropped_enterprises"]) == (0, 0)


def test_the_same_readings_in_another_order_give_the_same_model_bytes(readings, trained) -> None:
    job = jobs.load_module(JOBS, "train_energy_forecast")
    shuffled = readings.sample(fraction=1.0, shuffle=True, seed=7)
    again = job.transform(shuffled.lazy(), EMPTY_MODEL.lazy(), TRAIN).collect().to_dicts()[0]
    assert again["version"] == trained["version"]


def test_gaps_are_counted_and_an_enterprise_without_training_data_is_reported(readings) -> None:
    job = jobs.load_module(JOBS, "train_energy_forecast")
    holdout = datetime(2026, 6, 21, 16)  # 00:00 of June 22 in Shanghai: the held-out days
    gappy = readings.filter(
        ~((pl.col("enterprise_id") == "E0003") & (pl.col("ts") < holdout))  # E0003 arrives for the held-out week only
        & ~((pl.col("enterprise_id") == "E0004") & (local_day("ts") == FIRST + timedelta(days=10)))  # a day lost
    )
    got = job.transform(gappy.lazy(), EMPTY_MODEL.lazy(), TRAIN).collect().to_dicts()[0]
    assert got["dropped_enterprises"] == 1 and got["dropped"] == "E0003"
    assert got["missing_hours"] == 24 + 14 * 24  # E0004's lost day; E0003's two weeks with no data
    assert got["enterprises"] == MACHINES


def test_too_few_days_fail_saying_what_training_needs(readings) -> None:
    job = jobs.load_module(JOBS, "train_energy_forecast")
    week = readings.filter(local_day("ts") < FIRST + timedelta(days=10))
    with pytest.raises(job.TrainingError, match="10 days; training needs 7 days of history"):
        job.transform(week.lazy(), EMPTY_MODEL.lazy(), TRAIN).collect()


def _model(trained: dict, onnx: bytes | None = None) -> pl.DataFrame:
    return pl.DataFrame(
        [{"name": "energy_forecast", "version": trained["version"], "onnx": onnx or trained["onnx"]}],
        schema=EMPTY_MODEL.schema,
    )


def test_a_model_whose_bytes_changed_is_refused_naming_its_version(readings, trained) -> None:
    job = jobs.load_module(JOBS, "energy_forecast")
    changed = bytearray(trained["onnx"])
    changed[len(changed) // 2] ^= 0x01
    with pytest.raises(ValueError, match=f"model energy_forecast version {trained['version']}: its bytes hash to"):
        job.transform(readings.lazy(), _model(trained, bytes(changed)).lazy(), {"tz": TZ})


def test_the_forecast_is_complete_bounded_and_made_with_the_model(readings, trained) -> None:
    job = jobs.load_module(JOBS, "energy_forecast")
    got = job.transform(readings.lazy(), _model(trained).lazy(), {"tz": TZ}).collect()
    assert got.height == 24 * MACHINES and set(got["hours_forecast"]) == {24}
    assert set(got["day"]) == {FIRST + timedelta(days=28)} and set(got["made_on"]) == {FIRST + timedelta(days=27)}
    assert set(got["model_version"]) == {trained["version"]}
    assert (got["energy_kwh"] >= 0).all() and (got["energy_kwh"] <= got["capacity_kwh"]).all()
    peak = readings.group_by("enterprise_id", "machine_id").agg(pl.col("power_kw").max()).group_by("enterprise_id")
    expected = dict(peak.agg(pl.col("power_kw").sum()).iter_rows())
    assert dict(got.select("enterprise_id", "capacity_kwh").unique().iter_rows()) == pytest.approx(expected)


def test_without_a_model_the_forecast_is_seasonal_naive_and_says_so(energy, readings) -> None:
    job = jobs.load_module(JOBS, "energy_forecast")
    got = job.transform(readings.lazy(), EMPTY_MODEL.lazy(), {"tz": TZ}).collect()
    assert set(got["model_version"]) == {energy.SEASONAL_NAIVE}
    hours = energy.hourly(readings.lazy(), TZ)
    week_ago = hours.filter(pl.col("day") == FIRST + timedelta(days=21)).select(
        "enterprise_id", "hour", pl.col("energy_kwh").alias("week_ago")
    )
    joined = got.join(week_ago, on=["enterprise_id", "hour"])
    assert joined.height == got.height
    assert (joined["energy_kwh"] - joined["week_ago"].clip(upper_bound=joined["capacity_kwh"])).abs().max() < 1e-9


@pytest.mark.parametrize("as_timestamp", [False, True])
def test_scoring_joins_the_forecast_with_the_measured_hours(energy, readings, as_timestamp) -> None:
    job = jobs.load_module(JOBS, "score_energy_forecast")
    day = FIRST + timedelta(days=27)
    actual = energy.hourly(readings.lazy(), TZ).filter(pl.col("day") == day)
    forecast = actual.select(
        pl.col("day").cast(pl.Datetime("us")) if as_timestamp else pl.col("day"),
        "hour",
        "enterprise_id",
        (pl.col("energy_kwh") + pl.when(pl.col("hour") == 12).then(2.0).otherwise(0.0)).alias("energy_kwh"),
        pl.lit("v1").alias("model_version"),
    )
    [score] = job.transform(readings.lazy(), forecast.lazy(), {"tz": TZ}).collect().to_dicts()
    assert (score["day"], score["model_version"], score["enterprises"], score["hours"]) == (
        day,
        "v1",
        MACHINES,
        24 * MACHINES,
    )
    assert score["mae"] == pytest.approx(2.0 / 24) and score["mape"] == pytest.approx(
        2.0 * MACHINES / actual["energy_kwh"].sum()
    )


def test_the_telemetry_has_weekly_and_holiday_structure_and_stable_machines(energy) -> None:
    def day_kwh(day: date) -> dict[str, float]:
        table = pl.from_arrow(pa.Table.from_batches(list(telemetry.generate_day(day, 60))))
        return dict(table.group_by("machine_id").agg(pl.col("power_kw").sum() / 60).iter_rows())

    wednesday, saturday, sunday = date(2026, 9, 16), date(2026, 9, 19), date(2026, 9, 20)
    national_day = date(2026, 10, 2)  # a Friday
    assert national_day in energy.HOLIDAYS and telemetry.holidays() == energy.HOLIDAYS
    totals = {d: sum(day_kwh(d).values()) for d in (wednesday, saturday, sunday, national_day)}
    assert totals[saturday] < 0.75 * totals[wednesday] and totals[sunday] < 0.5 * totals[wednesday]
    assert totals[national_day] < 0.3 * totals[wednesday]
    # A machine keeps its size: one Wednesday's energy predicts the next one's.
    this, next_week = day_kwh(wednesday), day_kwh(wednesday + timedelta(days=7))
    ratios = sorted(next_week[m] / this[m] for m in this if this[m] > 100)
    assert 0.7 < ratios[len(ratios) // 2] < 1.3 and len(ratios) > 40
